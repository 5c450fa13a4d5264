"""pytest-benchmark suite of the DLR op at small sizes, for quick local comparisons of the
providers of ``dlr-bench dlr`` (same providers, inputs and calls; see suite_dlr.py):

    pytest bench/test_bench_dlr.py                        # every provider usable here
    pytest bench/test_bench_dlr.py --benchmark-save=base  # then, after a change:
    pytest bench/test_bench_dlr.py --benchmark-compare    # against the saved run

Each group is one pass (``fwd`` / ``fwd_bwd``) at one size, so pytest-benchmark's table compares
the providers within a run. Not collected by the main test run (``testpaths = ["tests"]``);
``torch.compile`` is left out here (its compile takes longer than the whole measurement; use
``dlr-bench dlr`` for it).
"""
from __future__ import annotations

import pytest

from dlr_engine.bench import suite_dlr
from dlr_engine.bench.harness import bench_device

DEVICE = bench_device()
BATCH = 2
SAMPLES = 5 * suite_dlr.PAPER.sample_rate
"""5 s clips (40,000 samples): 27 frames, above the 32,956-sample receptive field."""
PROVIDERS = [p for p in suite_dlr.providers_on(DEVICE) if p.name != "compile"]


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd_bwd"])
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_dlr(benchmark, provider, backward):
    reason = suite_dlr.availability_reason(provider, DEVICE)
    if reason:
        pytest.skip(f"{provider.name}: {reason}")
    call = suite_dlr.make_call(provider, BATCH, SAMPLES, backward, DEVICE)
    passname = "fwd_bwd" if backward else "fwd"
    benchmark.group = f"dlr_{passname} {BATCH}x{SAMPLES} {DEVICE}"
    benchmark.extra_info["gflop"] = suite_dlr.flop_per_call(BATCH, SAMPLES, backward) / 1e9
    if DEVICE == "cuda":
        import torch

        benchmark.pedantic(lambda: (call(), torch.cuda.synchronize()), warmup_rounds=2,
                           rounds=20)
    else:
        benchmark.pedantic(call, warmup_rounds=1, rounds=10)
