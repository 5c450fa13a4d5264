"""dlr-bench's inference suite and the extract suite's default-command rows: the providers
compute the same outputs, so their times compare like with like."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from dlr_engine.bench import suite_extract, suite_inference
from dlr_engine.engine import extract
from dlr_engine.models import load_model


def test_inference_suite_cases(monkeypatch):
    """Every family's providers run, and the inference form's outputs match the eager ones."""
    monkeypatch.setattr(suite_inference, "SEGMENT_SECONDS", 6.0)
    monkeypatch.setitem(suite_inference.BATCH, True, 1)
    monkeypatch.setattr(suite_inference, "MODELS", {k: suite_inference.MODELS[k]
                                                    for k in ("default", "fcn dlr")})
    cases = suite_inference.cases(quick=True)
    assert [(c.op, c.provider) for c in cases if c.baseline] == [("fwd default", "eager"),
                                                                 ("fwd fcn dlr", "eager")]
    for op in ("fwd default", "fwd fcn dlr"):
        rows = {c.provider: c for c in cases if c.op == op}
        assert rows["eager"].flop == rows["inference"].flop > 4096 * 48000
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
