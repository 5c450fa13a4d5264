"""dlr-bench's dlr suite on a GPU run, built here by pretending the run's device is cuda: the
CPU-only providers are skipped with the reason instead of failing, and every precision row
asks the backend that would run it."""
from __future__ import annotations

import torch

from dlr_engine.bench import suite_dlr


def gpu_run_cases(monkeypatch):
    monkeypatch.setattr(suite_dlr, "bench_device", lambda: "cuda")
    monkeypatch.setattr(suite_dlr, "available_memory_bytes", lambda device: 1e12)
    return suite_dlr.cases(quick=True)


def test_gpu_run_skips_cpu_only_providers_with_the_reason(monkeypatch):
    cases = gpu_run_cases(monkeypatch)
    providers = {case.provider for case in cases}
    assert providers == {p.name for p in suite_dlr.PROVIDERS}
    for case in cases:
        if case.provider in ("cpu", "cpu_bf16"):
            assert case.skip_reason.startswith("runs on cpu only, this run is on cuda"), case
    if not torch.cuda.is_available():  # here: every GPU provider says why it cannot run
        for case in cases:
            if case.provider.startswith(("triton", "cuda")):
                assert case.skip_reason, case
    assert not any(c.provider.startswith("triton_") and "precision" in (c.skip_reason or "")
                   for c in cases)  # the triton backend offers tf32 and bfloat16


def test_cpu_run_leaves_gpu_providers_out_and_checks_precisions():
    names = [p.name for p in suite_dlr.providers_on("cpu")]
    assert names == ["eager", "compile", "cpu", "cpu_bf16"]
    bf16 = next(p for p in suite_dlr.PROVIDERS if p.name == "cpu_bf16")
    assert suite_dlr.availability_reason(bf16, "cpu", backward=True) == \
        "inference only (bfloat16 forward)"
    tf32 = next(p for p in suite_dlr.PROVIDERS if p.name == "triton_tf32")
    assert "runs on cuda only" in suite_dlr.availability_reason(tf32, "cpu")


def test_bf16_missing_follows_the_run_device(monkeypatch):
    """extract's engine_bf16 asks this: on a GPU run it is the Triton path's availability."""
    monkeypatch.setattr(suite_dlr, "bench_device", lambda: "cuda")
    reason = suite_dlr.bf16_missing()
    if torch.cuda.is_available():
        assert reason is None
    else:
        assert "triton: " in reason and "no CUDA device" in reason


def test_cli_takes_several_suites_joined_by_commas():
    """scripts/gpu_check.sh runs ``dlr-bench dlr,mel,tempogram`` in one process."""
    import argparse

    import pytest

    from dlr_engine.bench import cli

    assert cli.suite_names("dlr,mel,tempogram") == ["dlr", "mel", "tempogram"]
    assert "models" not in cli.suite_names("all") and cli.suite_names("models") == ["models"]
    for wrong in ("dlr,nope", "dlr,models"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.suite_names(wrong)
