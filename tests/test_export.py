"""Export: ``DLR`` and ``MelSpectrogram`` to ONNX through their plain-torch formulation (the
custom ops step aside while ``torch.onnx.is_in_onnx_export()``), checked in onnxruntime at
another input shape; ``torch.export`` of ``DLR``. Documented limitations:
``torch.jit.script`` (the modules dispatch in Python) and ONNX export of ``Tempogram``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlr_engine import DLR, MelSpectrogram, Tempogram

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra")
# the TorchScript-based exporter and torch.jit warn that they are deprecated, and trace warnings
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")
pytest.importorskip("onnx", reason="onnx is in the test extra")

ONNX_CASES = {
    "DLR": (lambda: DLR(), DLR().min_samples + 1000),
    "MelSpectrogram-dlr": (lambda: MelSpectrogram(preset="dlr"), 8000),
    "MelSpectrogram-amplitude": (lambda: MelSpectrogram(sr=8000, n_fft=512, power=1.0,
                                                        to_db="amplitude"), 8000),
}


def export_onnx(module: torch.nn.Module, x: torch.Tensor, path) -> None:
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["out"],
                      dynamic_axes={"x": {0: "batch", 1: "samples"}})


@pytest.mark.filterwarnings("ignore:.*return_complex=False")  # ONNX's STFT is real-valued
@pytest.mark.parametrize("name", ONNX_CASES)
def test_onnx_export_runs_in_onnxruntime_at_another_shape(tmp_path, name):
    build, samples = ONNX_CASES[name]
    torch.manual_seed(0)
    module = build().eval()
    export_onnx(module, torch.randn(2, samples), tmp_path / "model.onnx")
    x = torch.randn(3, samples + 777)  # batch and length differ from the traced ones
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    out = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        expected = module(x).numpy()
    assert out.shape == expected.shape
    assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-5


def test_onnx_graph_holds_only_standard_ops(tmp_path):
    import onnx

    export_onnx(DLR().eval(), torch.randn(1, DLR().min_samples), tmp_path / "dlr.onnx")
    graph = onnx.load(str(tmp_path / "dlr.onnx")).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}
    assert "Conv" in {node.op_type for node in graph.node}


def test_torch_export_matches_the_module():
    module = DLR().eval()
    x = torch.randn(2, module.min_samples + 500)
    with torch.no_grad():
        exported = torch.export.export(module, (x,)).module()
        torch.testing.assert_close(exported(x), module(x))


def test_torch_jit_script_is_a_documented_limitation():
    """README: TorchScript scripting is not supported (use trace, torch.export or ONNX)."""
    with pytest.raises(RuntimeError):
        torch.jit.script(DLR())


@pytest.mark.filterwarnings("ignore:.*return_complex=False")
def test_tempogram_onnx_export_is_a_documented_limitation(tmp_path):
    """README: torch's ONNX exporter cannot translate the tempogram's framing (``unfold`` of
    a length it cannot see); compute the tempogram outside the exported graph."""
    with pytest.raises(Exception, match="export of operator Unfold"):
        export_onnx(Tempogram(preset="dlr").eval(), torch.randn(2, 8000), tmp_path / "t.onnx")
