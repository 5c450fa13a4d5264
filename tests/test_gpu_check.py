"""scripts/gpu_check.sh in its dry mode (what CI can run without a GPU) and the summary table
it prints last."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.skipif(sys.platform != "linux", reason="a bash script for Linux GPU machines")
def test_dry_run_reports_the_plan_and_passes_the_cpu_side_checks(tmp_path):
    run = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run",
                          str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={"PYTHON": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin"})
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "DLR_ENGINE_BUILD_CUDA=1" in out and "pip install" in out
    assert "tests/test_gpu_real_shapes.py" in out and "tests collected" in out
    assert "dlr_engine.bench.cli dlr,mel,tempogram,inference --device cuda" in out
    try:
        import triton  # noqa: F401
    except ImportError:
        assert "triton is not installed" in out
    else:  # the Triton kernels compiled for sm_90: tensor cores in tf32 and bfloat16
        reduced = [line for line in out.splitlines() if line.startswith("dlr_")
                   and (" tf32 " in line or " bfloat16 " in line)]
        assert len(reduced) == 6 and all("wgmma.mma_async" in line for line in reduced)
        assert "PROBLEM" not in out
    assert "(dry run), 0 failed step(s)" in out


def test_summary_prints_per_clip_times_ratios_and_errors(tmp_path):
    rows = [{"op": "dlr_fwd", "shape": "64x240000", "provider": "eager", "batch": 64,
             "median_ms": 31.5, "ratio_to_baseline": 1.0, "baseline": "eager",
             "peak_mem_mb": 14500.0, "status": "ok", "note": ""},
            {"op": "dlr_fwd", "shape": "64x240000", "provider": "triton_bf16", "batch": 64,
             "median_ms": 1.6, "ratio_to_baseline": 31.5 / 1.6, "baseline": "eager",
             "peak_mem_mb": 26.0, "status": "ok", "note": ""},
            {"op": "dlr_fwd", "shape": "64x240000", "provider": "cpu", "batch": 64,
             "median_ms": None, "ratio_to_baseline": None, "baseline": "eager",
             "peak_mem_mb": None, "status": "skipped", "note": "runs on cpu only"}]
    (tmp_path / "bench.json").write_text(json.dumps({"machine": {"gpu_name": "H200"},
                                                     "rows": rows}))
    errors = [{"check": "real_shapes", "backend": "triton", "precision": "tf32", "batch": 4,
               "tolerance": 2e-3, "out": 1e-4, "grad_x": 3e-4, "grad_weight": 2e-4,
               "grad_bias": 1e-4},
              {"check": "real_shapes", "backend": "cuda", "precision": "float32", "batch": 4,
               "tolerance": 1e-5, "out": 1e-7, "grad_x": 1.75e-4, "grad_weight": 9.5e-5,
               "grad_bias": 2e-5},
              {"check": "mel_real_shapes", "backend": "mel", "precision": "librosa", "batch": 4,
               "tolerance": 1e-5, "out": 3e-7}]
    (tmp_path / "errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors))
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"),
                          str(tmp_path / "bench.json"), str(tmp_path / "errors.jsonl"),
                          str(tmp_path / "H200.json"), "--commit", "abc123"],
                         capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert "H200, commit abc123" in lines[1]
    eager = next(line for line in lines if " eager " in line)
    bf16 = next(line for line in lines if "triton_bf16" in line)
    assert "492.2" in eager and "25.0" in bf16 and "19.69x eager" in bf16  # us per clip
    assert "skipped: runs on cpu only" in run.stdout
    tf32 = next(line for line in lines if line.startswith("triton   tf32"))
    cuda = next(line for line in lines if line.startswith("cuda"))
    mel = next(line for line in lines if line.startswith("mel"))
    assert tf32.endswith("ok") and cuda.endswith("FAILS") and mel.endswith("ok")
    assert mel.count(" - ") == 3  # no gradients measured
    kept = json.loads((tmp_path / "H200.json").read_text())
    assert kept["commit"] == "abc123" and kept["real_shape_errors"] == errors
