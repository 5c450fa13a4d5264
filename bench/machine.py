"""The machine header of every dlr-bench report, and this run's measured ceilings.

`describe(device)` returns a flat JSON-able dict: CPU model and vector flags, threads, RAM,
library versions, git commit, memory allocator, the GPU (through NVML when nvidia-ml-py is
installed) and the load average. `measure_ceilings(device)` measures two ceilings, at the start
and at the end of every run (`ceilings` keeps the better of the two and both readings, so a
reader sees how much a shared machine drifted while the rows were measured):

- ``matmul_peak_gflops``: fp32 ``torch.mm`` of two n x n matrices (2 n^3 FLOP), best of several;
- ``copy_bandwidth_gbps``: ``dst.copy_(src)`` of a large buffer, counting bytes read + written
  (2 x size; write-allocate traffic, which can add a third, is not counted), best of several.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from .harness import CPU_MEMORY_METHOD, GPU_MEMORY_METHOD, MB, cpu_memory_unsupported

REPO = Path(__file__).resolve().parents[1]
"""The checkout dlr-bench runs from (bench/ is mapped into the package in editable installs)."""
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "amx_tile", "asimd", "sve")
"""CPU flags worth a line in the header (x86 vector extensions, Arm NEON / SVE)."""
ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")
CEILING_SIZES = {"cpu": {"matmul_n": 2048, "copy_mb": 256}, "cuda": {"matmul_n": 8192, "copy_mb": 1024}}
"""Problem sizes of the ceilings per device: large enough to reach the plateau, small enough
to take well under a second each."""
CEILING_REPEATS = 5
COMPARED_FIELDS = ("cpu_model", "torch_threads", "allocator", "torch", "device", "gpu_name")
"""Header fields that must match for a cross-run comparison to measure code, not setup."""


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _ram_gb() -> tuple[float | None, float | None]:
    """(total, available) GB from /proc/meminfo."""
    values = {}
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                key, _, value = line.partition(":")
                values[key] = int(value.split()[0]) * 1024 / 1e9
    except OSError:
        return None, None
    return values.get("MemTotal"), values.get("MemAvailable")


def load_average() -> float | None:
    """1-minute load average: above the core count, other work shared the machine."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def allocator() -> str:
    """The malloc in use: a preloaded or linked tcmalloc / jemalloc / mimalloc, else glibc."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ALLOCATORS:
        if name in preload:
            return f"{name} (LD_PRELOAD)"
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    for name in ALLOCATORS:
        if f"lib{name}" in maps:
            return f"{name} (linked)"
    return "glibc malloc" if platform.system() == "Linux" else "system malloc"


def git_commit() -> str:
    """Short commit of the checkout, ``+dirty`` when tracked files differ; read-only git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), *args],
                              capture_output=True, text=True, check=True, timeout=10).stdout
    try:
        commit = git("rev-parse", "--short=12", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # absent or broken: the header says so, it never fails
        return "not installed"


def _gpu() -> dict[str, object]:
    """GPU name, memory, clocks and power: NVML when nvidia-ml-py is installed, else torch."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    gpu: dict[str, object] = {"gpu_name": props.name, "gpu_memory_gb": props.total_memory / 1e9,
                              "gpu_sms": props.multi_processor_count}
    try:
        import pynvml
    except ImportError:
        gpu["gpu_nvml"] = "nvidia-ml-py not installed: no clocks or power"
        return gpu
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        gpu["gpu_nvml"] = f"NVML unavailable: {exc}"
        return gpu
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        gpu.update(
            gpu_driver=pynvml.nvmlSystemGetDriverVersion(),
            gpu_sm_clock_mhz=pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            gpu_sm_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            gpu_mem_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            gpu_power_limit_w=pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3,
            gpu_temperature_c=pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        )
    finally:
        pynvml.nvmlShutdown()
    return gpu


def _best_seconds(fn, device: str, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_gflops(device: str, n: int, repeats: int = CEILING_REPEATS) -> float:
    """fp32 GFLOP/s of ``torch.mm`` on n x n matrices (2 n^3 FLOP per product), best of
    ``repeats``. On CUDA, TF32 is whatever torch's default is (off for matmul)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b, out=out), device, repeats) / 1e9


def copy_bandwidth_gbps(device: str, size_mb: int, repeats: int = CEILING_REPEATS) -> float:
    """GB/s of ``dst.copy_(src)`` on ``size_mb`` MB buffers, counting read + write, best of
    ``repeats``."""
    src = torch.ones(int(size_mb * MB) // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / _best_seconds(lambda: dst.copy_(src), device, repeats) / 1e9


CEILINGS = ("matmul_peak_gflops", "copy_bandwidth_gbps")


def measure_ceilings(device: str) -> dict[str, float]:
    """Both ceilings on ``device`` now, at the sizes of `CEILING_SIZES`."""
    size = CEILING_SIZES[device]
    return {"matmul_peak_gflops": matmul_peak_gflops(device, size["matmul_n"]),
            "copy_bandwidth_gbps": copy_bandwidth_gbps(device, size["copy_mb"])}


def ceilings(device: str, start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """Header fields from the readings at the start and end of a run: each ceiling is the
    better of the two (the most this machine showed during the run), both kept as well."""
    fields: dict[str, float] = dict(CEILING_SIZES[device])
    for name in CEILINGS:
        fields.update({name: max(start[name], end[name]), f"{name}_start": start[name],
                       f"{name}_end": end[name]})
    return fields


def describe(device: str) -> dict[str, object]:
    """The header: identity of the machine and the software."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", cpu.get("Features", "")).split())
    ram_total, ram_available = _ram_gb()
    memory_unsupported = cpu_memory_unsupported()
    header: dict[str, object] = {
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu.get("model name", platform.processor() or platform.machine()),
        "cpu_flags": " ".join(f for f in VECTOR_FLAGS if f in flags),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "ram_gb": ram_total,
        "ram_available_gb": ram_available,
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": np.__version__,
        "dlr_engine": _version("dlr_engine"),
        "git_commit": git_commit(),
        "allocator": allocator(),
        "device": device,
        "memory_method": (GPU_MEMORY_METHOD if device == "cuda"
                          else memory_unsupported or CPU_MEMORY_METHOD),
    }
    if device == "cuda":
        header.update(_gpu())
    return header


def header_lines(machine: dict[str, object]) -> list[str]:
    """The header as short human lines (terminal and markdown)."""
    def get(key: str, fmt: str = "{}") -> str:
        value = machine.get(key)
        return "?" if value is None else fmt.format(value)

    lines = [
        f"CPU {get('cpu_model')} [{get('cpu_flags')}], {get('usable_cpus')} usable cores, "
        f"torch threads {get('torch_threads')}, RAM {get('ram_gb', '{:.1f}')} GB "
        f"({get('ram_available_gb', '{:.1f}')} available), load average "
        f"{get('load_average_start', '{:.2f}')} at start, {get('load_average_end', '{:.2f}')} at end",
        f"torch {get('torch')}, triton {get('triton')}, numpy {get('numpy')}, python "
        f"{get('python')}, dlr-engine {get('dlr_engine')} @ {get('git_commit')}, "
        f"allocator {get('allocator')}",
    ]
    if machine.get("gpu_name"):
        lines.append(f"GPU {get('gpu_name')}, {get('gpu_memory_gb', '{:.0f}')} GB, "
                     f"{get('gpu_sms')} SMs, SM clock {get('gpu_sm_clock_mhz')}/"
                     f"{get('gpu_sm_clock_max_mhz')} MHz, power limit "
                     f"{get('gpu_power_limit_w', '{:.0f}')} W, driver {get('gpu_driver')}")
    if "matmul_peak_gflops" in machine:
        lines.append(f"ceilings measured in this run on {get('device')} (better of start / end): "
                     f"fp32 matmul {get('matmul_peak_gflops', '{:.0f}')} GFLOP/s "
                     f"({get('matmul_peak_gflops_start', '{:.0f}')} / "
                     f"{get('matmul_peak_gflops_end', '{:.0f}')}; {get('matmul_n')}^2 mm, best of "
                     f"{CEILING_REPEATS}), copy {get('copy_bandwidth_gbps', '{:.1f}')} GB/s "
                     f"({get('copy_bandwidth_gbps_start', '{:.1f}')} / "
                     f"{get('copy_bandwidth_gbps_end', '{:.1f}')}; {get('copy_mb')} MB, "
                     f"read + write)")
    lines.append(f"peak memory: {get('memory_method')}")
    return lines
