"""Timing and peak-memory measurement shared by every dlr-bench suite.

A suite describes its work as `Case`s; `run_case` measures one (`run_cases_in_rounds` several,
their timed calls interleaved in rounds):

1. ``case.make()`` builds the inputs and returns the zero-argument call to measure;
2. ``plan.warmup`` untimed calls (compilation, lazy initialisation, first-touch page faults);
3. one untimed call whose peak memory above what is already resident is recorded
   (`peak_memory_mb`);
4. timed calls: the first sets the repeat count (``plan.budget_s`` divided by its time, clamped
   to ``[plan.min_repeats, plan.max_repeats]``); the result is their median and 20th / 80th
   percentiles (linear interpolation, as ``numpy.quantile`` and ``triton.testing.do_bench``).

Timers: ``wall`` (``time.perf_counter`` around each call; CPU), ``cuda`` (CUDA events around
each call, the L2 cache flushed before each as ``do_bench`` does) and ``triton``
(``triton.testing.do_bench``, for providers that are Triton kernels on a GPU).
"""
from __future__ import annotations

import ctypes
import gc
import math
import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

Call = Callable[[], object]

BENCH_DEVICE_ENV = "DLR_BENCH_DEVICE"
"""cpu | cuda: the device suites build their cases on (default: cuda when available)."""
L2_FLUSH_BYTES = 256 * 2**20
"""Buffer zeroed before each CUDA-event timed call so no call finds its inputs in L2 (as
``triton.testing.do_bench``); 256 MiB exceeds the L2 of every current GPU."""
MB = 1e6
"""Memory columns are in MB = 10**6 bytes."""


def bench_device() -> str:
    """The device of this run: $DLR_BENCH_DEVICE, else ``cuda`` when torch sees a GPU."""
    device = os.environ.get(BENCH_DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"{BENCH_DEVICE_ENV}={device!r}: choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{BENCH_DEVICE_ENV}=cuda but torch sees no GPU "
                         f"(torch {torch.__version__}, cuda {torch.version.cuda}); use cpu")
    return device


@dataclass(frozen=True)
class Case:
    """One (op, provider, shape) to measure.

    op: what is computed, e.g. ``dlr_fwd``; provider: who computes it, e.g. ``eager``.
    shape: input shape as text, e.g. ``8x240000``; batch: its batch size (the plot's x axis).
    make: builds the inputs and returns the call to measure; called once, when the case runs,
      so one case's inputs are freed before the next case's are built.
    flop, bytes: work of one call. Use the same counts for every provider of an (op, shape), so
      GFLOP/s ratios equal time ratios; None where a count means nothing.
    baseline: the provider every other provider of the same (op, shape) is compared with.
    device: cpu | cuda. triton: the call is a Triton kernel (timed with ``do_bench`` on cuda).
    skip_reason: reported instead of measured when set (provider unavailable, too large...).
    """

    op: str
    provider: str
    shape: str
    batch: int | None
    make: Callable[[], Call] | None
    flop: float | None = None
    bytes: float | None = None
    baseline: bool = False
    device: str = "cpu"
    triton: bool = False
    skip_reason: str | None = None

    @property
    def timer(self) -> str:
        if self.device == "cpu":
            return "wall"
        return "triton" if self.triton else "cuda"


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure one case: warm-up calls, then between ``min_repeats`` and
    ``max_repeats`` timed calls filling about ``budget_s`` seconds."""

    warmup: int
    min_repeats: int
    max_repeats: int
    budget_s: float

    def repeats_for(self, first_call_s: float) -> int:
        wanted = math.ceil(self.budget_s / max(first_call_s, 1e-9))
        return max(self.min_repeats, min(self.max_repeats, wanted))


FULL = TimingPlan(warmup=2, min_repeats=5, max_repeats=50, budget_s=3.0)
QUICK = TimingPlan(warmup=1, min_repeats=3, max_repeats=10, budget_s=0.5)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over ``repeats`` timed calls (None: decided by ``do_bench``)."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int | None


def summarize(samples_ms: Sequence[float], repeats: int | None = None) -> Timing:
    """Median and 20th / 80th percentiles (linear interpolation) of per-call times in ms."""
    if len(samples_ms) == 0:
        raise ValueError("no timing samples to summarise")
    median, p20, p80 = np.quantile(np.asarray(samples_ms, dtype=np.float64), [0.5, 0.2, 0.8])
    return Timing(float(median), float(p20), float(p80),
                  len(samples_ms) if repeats is None else repeats)


def wall_samples(call: Call, plan: TimingPlan, clock: Callable[[], float] = time.perf_counter
                 ) -> list[float]:
    """Per-call wall-clock times of ``call`` in ms (seconds from ``clock``), as many calls as
    ``plan`` gives for the first one's time."""

    def once() -> float:
        start = clock()
        call()
        return (clock() - start) * 1e3

    first = once()
    return [first] + [once() for _ in range(plan.repeats_for(first / 1e3) - 1)]


def time_wall(call: Call, plan: TimingPlan, clock: Callable[[], float] = time.perf_counter
              ) -> Timing:
    """``wall_samples`` summarised."""
    return summarize(wall_samples(call, plan, clock))


def time_cuda(call: Call, plan: TimingPlan) -> Timing:
    """Per-call GPU times from CUDA events, the L2 cache flushed before every call."""
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device="cuda")

    def run(repeats: int) -> list[float]:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for start, end in events:
            flush.zero_()
            start.record()
            call()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]

    first_ms = run(1)[0]
    return summarize(run(plan.repeats_for(first_ms / 1e3)))


def time_triton(call: Call, plan: TimingPlan) -> Timing:
    """``triton.testing.do_bench`` over about ``plan.budget_s`` seconds (it flushes L2 too)."""
    from triton.testing import do_bench

    median, p20, p80 = do_bench(call, warmup=25, rep=int(plan.budget_s * 1e3),
                                quantiles=[0.5, 0.2, 0.8])
    return Timing(float(median), float(p20), float(p80), None)


# --- peak memory ------------------------------------------------------------------------------

_PROC_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
CPU_MEMORY_METHOD = ("peak RSS (VmHWM) of the measured call minus the RSS before it; the peak is "
                     "reset by writing 5 to /proc/self/clear_refs and the allocator's free pages "
                     "are returned to the OS first (malloc_trim / tcmalloc / jemalloc purge), so "
                     "memory the allocator cached from earlier calls cannot hide the call's need")
GPU_MEMORY_METHOD = ("torch.cuda.max_memory_allocated() during the measured call minus "
                     "memory_allocated() before it")


def _status_kib(field: str) -> int:
    with open(_PROC_STATUS) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{_PROC_STATUS} has no {field} line")


def _reset_peak_rss() -> None:
    with open(_CLEAR_REFS, "w") as clear_refs:
        clear_refs.write("5")


def cpu_memory_unsupported() -> str | None:
    """Why the CPU peak-memory measurement cannot work here, or None."""
    try:
        _reset_peak_rss()
        _status_kib("VmHWM")
    except (OSError, RuntimeError) as exc:
        return (f"cannot reset the peak RSS ({exc}); needs Linux >= 4.0 with a writable "
                f"{_CLEAR_REFS}")
    return None


def release_free_memory() -> None:
    """Return the allocators' cached free pages to the OS (every allocator found in the process:
    glibc ``malloc_trim``, gperftools ``MallocExtension_ReleaseFreeMemory``, jemalloc purge)."""
    gc.collect()
    process = ctypes.CDLL(None)
    if hasattr(process, "MallocExtension_ReleaseFreeMemory"):
        process.MallocExtension_ReleaseFreeMemory()
    if hasattr(process, "mallctl"):  # jemalloc: MALLCTL_ARENAS_ALL = 4096
        process.mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))
    if hasattr(process, "malloc_trim"):
        process.malloc_trim(ctypes.c_size_t(0))


def peak_memory_mb(call: Call, device: str) -> float | None:
    """Peak memory of one ``call`` above what was resident (CPU) or allocated (CUDA) before
    it, in MB; None when this machine cannot measure it. Inputs built before are not counted;
    outputs and everything the call allocates are."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MB
    if cpu_memory_unsupported():
        return None
    release_free_memory()
    _reset_peak_rss()
    before_kib = _status_kib("VmRSS")
    call()
    return max(0, _status_kib("VmHWM") - before_kib) * 1024 / MB


# --- one case ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """What `run_case` measured for a case: timing and memory, or why there are none."""

    case: Case
    timing: Timing | None = None
    peak_mem_mb: float | None = None
    status: str = "ok"
    """ok | skipped | error"""
    note: str = ""


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _error(case: Case, exc: Exception) -> Result:
    last = traceback.format_exception_only(exc)[-1].strip()
    return Result(case, status="error", note=last[:300])


def _prepare(case: Case, plan: TimingPlan, measure_memory: bool) -> tuple[Call, float | None]:
    """The case's call, warmed up, and its peak memory (None when not measured)."""
    call = case.make()
    for _ in range(plan.warmup):
        call()
    _sync(case.device)
    return call, peak_memory_mb(call, case.device) if measure_memory else None


def run_case(case: Case, plan: TimingPlan, clock: Callable[[], float] = time.perf_counter,
             measure_memory: bool = True) -> Result:
    """Warm up, measure peak memory, time. A provider that fails (out of memory, a compiler
    error...) gives an ``error`` result with the exception's last line instead of stopping the
    run, so the other providers' rows survive."""
    if case.skip_reason is not None:
        return Result(case, status="skipped", note=case.skip_reason)
    call = None
    try:
        call, memory = _prepare(case, plan, measure_memory)
        if case.timer == "wall":
            timing = time_wall(call, plan, clock)
        elif case.timer == "cuda":
            timing = time_cuda(call, plan)
        else:
            timing = time_triton(call, plan)
        return Result(case, timing, memory)
    except Exception as exc:  # reported in the row; one provider's failure must not end the run
        return _error(case, exc)
    finally:
        del call
        gc.collect()
        if case.device == "cuda":
            torch.cuda.empty_cache()


def round_plan(plan: TimingPlan, rounds: int) -> TimingPlan:
    """The share of ``plan`` one of ``rounds`` rounds times (no warm-up: done before)."""
    return TimingPlan(warmup=0, min_repeats=max(1, math.ceil(plan.min_repeats / rounds)),
                      max_repeats=max(1, plan.max_repeats // rounds),
                      budget_s=plan.budget_s / rounds)


def run_cases_in_rounds(cases: Sequence[Case], plan: TimingPlan, rounds: int,
                        clock: Callable[[], float] = time.perf_counter,
                        measure_memory: bool = True) -> list[Result]:
    """``run_case`` of every case, but the timed calls of the wall-clock cases are spread over
    ``rounds`` rounds, each timing every case in turn (``round_plan``): on a machine whose speed
    drifts over minutes (a shared host), every provider then sees the same drift and their
    ratios hold. All cases are built and warmed up first and stay alive until the last round
    (their inputs together must fit in memory); GPU-timed cases run one by one as in
    ``run_case``."""
    results: dict[int, Result] = {}
    alive: dict[int, tuple[Call, float | None]] = {}
    for i, case in enumerate(cases):
        if case.skip_reason is not None or case.timer != "wall":
            results[i] = run_case(case, plan, clock, measure_memory)
            continue
        try:
            alive[i] = _prepare(case, plan, measure_memory)
        except Exception as exc:
            results[i] = _error(case, exc)
    samples: dict[int, list[float]] = {i: [] for i in alive}
    per_round = round_plan(plan, rounds)
    for _ in range(rounds):
        for i in list(alive):
            try:
                samples[i] += wall_samples(alive[i][0], per_round, clock)
            except Exception as exc:
                results[i] = _error(cases[i], exc)
                del alive[i]
    for i, (_, memory) in alive.items():
        results[i] = Result(cases[i], summarize(samples[i]), memory)
    alive.clear()
    gc.collect()
    return [results[i] for i in range(len(cases))]
