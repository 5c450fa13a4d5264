"""dlr-bench's inference suite and the extract suite's default-command rows: the providers
compute the same outputs, so their times compare like with like."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from dlr_engine.bench import suite_extract, suite_inference
from dlr_engine.engine import extract
from dlr_engine.models import load_model
from dlr_engine.models.dlr_source import CONV_KERNELS, CONV_POOLS


def default_model_flop(samples: int) -> int:
    """FLOPs of the default model's forward on one clip, derived by hand: the DLR's 2 x 16 taps
    x 128 channels per sample, the five conv blocks on the (frames, 128) DLR image (TF "SAME"
    padding keeps each block's input size; 32 output channels), and 2 x in x out per Linear
    layer of the embedding and heads (as FlopCounterMode counts them: no bias adds)."""
    model = load_model("default")
    frames = (samples - 15 * 13 ** 3) // 256
    rows, cols, channels, flop = frames, 128, 1, 4096 * samples
    for (kernel_rows, kernel_cols), pool in zip(CONV_KERNELS, CONV_POOLS):
        flop += 2 * 32 * kernel_rows * kernel_cols * channels * rows * cols
        rows, cols, channels = (rows // pool[0], cols // pool[1], 32) if pool else (rows, cols, 32)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return flop + sum(2 * m.in_features * m.out_features for m in linears)


def test_inference_suite_cases(monkeypatch):
    """Every family's providers run, and the inference form's outputs match the eager ones."""
    monkeypatch.setattr(suite_inference, "SEGMENT_SECONDS", 6.0)
    monkeypatch.setitem(suite_inference.BATCH, True, 1)
    monkeypatch.setattr(suite_inference, "MODELS", {k: suite_inference.MODELS[k]
                                                    for k in ("default", "fcn dlr")})
    cases = suite_inference.cases(quick=True)
    assert [(c.op, c.provider) for c in cases if c.baseline] == [("fwd default", "eager"),
                                                                 ("fwd fcn dlr", "eager")]
    assert {c.flop for c in cases if c.op == "fwd default"} == {default_model_flop(48000)}
    for op in ("fwd default", "fwd fcn dlr"):
        rows = {c.provider: c for c in cases if c.op == op}
        assert rows["inference"].flop > 4096 * 48000
        eager, form = rows["eager"].make()(), rows["inference"].make()()
        for key in eager:
            assert torch.allclose(form[key], eager[key], rtol=1e-4, atol=1e-5), (op, key)


def test_window_starts_match_the_engine():
    assert suite_extract.window_starts(100, 30) == [0, 30, 60, 70]
    assert suite_extract.window_starts(90, 30) == [0, 30, 60]
    assert suite_extract.window_starts(30, 30) == [0]


def test_naive_loop_gives_the_default_commands_outputs(tmp_path):
    """On an 8 kHz mono float WAV (no resampling on either side) the naive loop's outputs are
    the default extract's."""
    audio = np.random.default_rng(0).standard_normal(8000 * 40).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", audio, 8000, subtype="FLOAT")
    [result] = list(extract(str(tmp_path / "a.wav"), progress=False, workers=0))
    window = round(suite_extract.SEGMENT_SECONDS * 8000)
    naive = suite_extract.naive_outputs(load_model("default", backend="torch"), audio, window)
    assert set(result.outputs) == set(naive) - {"dlr"}
    for key, value in result.outputs.items():
        np.testing.assert_allclose(value, naive[key], rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(result.features["dlr"], naive["dlr"], rtol=1e-4, atol=1e-6)


def test_cpu_time_table(monkeypatch):
    monkeypatch.setattr(suite_inference, "SEGMENT_SECONDS", 6.0)
    monkeypatch.setattr(suite_inference, "MODELS", {"fcn dlr": suite_inference.MODELS["fcn dlr"]})
    lines = suite_inference.cpu_time_table(batch=1, repeats=1).splitlines()
    assert len(lines) == 3 and lines[2].startswith("| fcn dlr | ")
