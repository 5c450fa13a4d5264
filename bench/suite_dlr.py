"""dlr-bench suite ``dlr``: the DLR op (DESIGN §3) per provider, forward and forward+backward,
on 30 s clips at 8 kHz (240,000 samples) with the published geometry (4 branches x 32
channels, 16 taps, dilations 1, 13, 169, 2197, pool 256).

Providers: ``eager`` (the plain-torch reference ``dlr_engine.ops.dlr_reference``, the
baseline), ``compile`` (``torch.compile`` of that reference, shapes static), the fused
backends of ``dlr_engine.ops.dlr``: ``cpu`` on CPU, ``triton`` and ``cuda`` on a GPU, and the
reduced precisions (x and weights rounded, float32 sums; their ``% peak`` is against the
float32 matmul peak, which they can exceed): ``triton_tf32`` and ``triton_bf16`` (tensor
cores, forward and backward) on a GPU, ``cpu_bf16`` (``dlr_engine.ops.dlr_op.dlr_bf16``,
forward only, CPUs with AVX512_BF16). A GPU run lists the CPU-only providers as skipped, with
the reason.

Work per call, the same count for every provider so that GFLOP/s ratios equal time ratios:

- computed steps per clip ``S = frames * pool``: the output steps that reach a pooled frame.
  For 240,000 samples, ``T_min = 240000 - 15 * 2197 = 207,045`` steps exist in every branch;
  ``frames = 207045 // 256 = 808``; ``S = 808 * 256 = 206,848`` (the last 197 steps fall in no
  pool window and are dropped).
- forward: 2 FLOP (multiply, add) x 16 taps x 128 channels = 4,096 FLOP per step,
  ``206,848 x 4,096 = 847.2 MFLOP`` per clip. Bias, ReLU and the pooling sum (3 FLOP per
  channel per step, +9 %) are not counted, as attention benchmarks count only the matmuls.
- forward+backward: 3 x forward = 12,288 FLOP per step = 2.54 GFLOP per clip: the forward
  (4,096), the pre-activation recomputed in the backward for the ReLU mask (4,096; the fused
  backends recompute it, eager reads a stored copy instead and executes only 2 x forward) and
  the weight gradient ``sum_t g[c, t] x[t + k d]`` (4,096). The input is audio and needs no
  gradient (it would add another 4,096).
- compulsory bytes (float32; 8 KB of weights ignored): the forward reads x (4 x 240,000 =
  960,000 B) and writes the output (4 x 128 x 808 = 413,696 B): 1.37 MB per clip;
  forward+backward adds reading grad_out and x again: 2.75 MB per clip. Arithmetic intensity
  ~620 FLOP/B (forward): the op is compute-bound on every machine; ``gbps`` shows how far from
  the bandwidth roof it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from dlr_engine.config import PAPER, DLRConfig
from dlr_engine.nn import DLR
from dlr_engine.ops import dlr, dlr_reference, explain
from dlr_engine.ops.dlr_op import precision_unavailable

from .harness import Call, Case, bench_device

BATCHES = {("cpu", True): (1, 8), ("cpu", False): (1, 8, 32),
           ("cuda", True): (8, 64), ("cuda", False): (32, 128, 512)}
"""Batch sizes per (device, quick). CPU: issue 2's 1, 8, 32 (quick: 1, 8, keeping eager's
seconds per call and GB of memory affordable). GPU: sizes that fill an H100 (from 32 clips,
tens of thousands of (clip, branch, frame) programs; 512 clips = 434 GFLOP forward); quick:
8 and issue 14's batch 64 (scripts/gpu_check.sh)."""
FORWARD_FLOP_PER_STEP = 2 * PAPER.kernel_size * PAPER.out_channels
"""4,096: a multiply and an add per tap per channel per computed step."""
BACKWARD_FACTOR = 3
"""fwd+bwd FLOP = 3 x forward: forward, recomputed pre-activation, weight gradient."""
BYTES_PER_FLOAT = 4
EAGER_BYTES_PER_SAMPLE = {False: 1100, True: 1500}
"""Peak memory of the eager reference per input sample, forward and forward+backward, with
~10 % margin: measured by this harness at batch 1 and 2 (2.13 CPU, glibc): 240 MB and 320 MB
more per 30 s clip (the four ReLU outputs, their concatenation and one convolution output in
float32; the backward adds gradients of the full-rate maps). DESIGN §8 saw 7.2-11 GB forward at
batch 32. Used only to skip sizes that would exhaust memory; see `memory_skip_reason`."""
MEMORY_HEADROOM = 0.6
"""Run an eager / compile case only if its estimate is below this share of available memory."""


@dataclass(frozen=True)
class Provider:
    """An implementation of the DLR op: ``build(config)`` returns ``op(x, weight, bias)``."""

    name: str
    build: Callable[[DLRConfig], Callable]
    devices: tuple[str, ...]
    backend: str | None = None
    """The dlr_engine backend it runs (its availability decides whether the case runs)."""
    triton: bool = False
    materializes: bool = False
    """Allocates the full-rate (batch, 128, T) maps (the eager memory estimate applies)."""
    forward_only: bool = False
    """Inference only: no forward+backward rows."""
    precision: str = "float32"
    """``dlr(..., precision=)`` of the fused backends."""


def _reference(config: DLRConfig) -> Callable:
    def op(x, weight, bias):
        return dlr_reference(x, weight, bias, config.dilations, config.pool)
    return op


def _compiled(config: DLRConfig) -> Callable:
    return torch.compile(_reference(config), dynamic=False)


def _backend(name: str, precision: str = "float32") -> Callable[[DLRConfig], Callable]:
    def build(config: DLRConfig) -> Callable:
        def op(x, weight, bias):
            return dlr(x, weight, bias, config.dilations, config.pool, backend=name,
                       precision=precision)
        return op
    return build


def bf16_missing() -> str | None:
    """Why ``DLR(precision="bfloat16")`` cannot run on this run's device (`bench_device`:
    the AVX512_BF16 kernel on CPU, Triton's tensor cores on a GPU), or None."""
    return precision_unavailable("bfloat16", bench_device())


PROVIDERS = (
    Provider("eager", _reference, ("cpu", "cuda"), materializes=True),
    Provider("compile", _compiled, ("cpu", "cuda"), materializes=True),
    Provider("cpu", _backend("cpu"), ("cpu",), backend="cpu"),
    Provider("cpu_bf16", _backend("cpu", "bfloat16"), ("cpu",), backend="cpu",
             forward_only=True, precision="bfloat16"),
    Provider("triton", _backend("triton"), ("cuda",), backend="triton", triton=True),
    Provider("triton_tf32", _backend("triton", "tf32"), ("cuda",), backend="triton",
             triton=True, precision="tf32"),
    Provider("triton_bf16", _backend("triton", "bfloat16"), ("cuda",), backend="triton",
             triton=True, precision="bfloat16"),
    Provider("cuda", _backend("cuda"), ("cuda",), backend="cuda"),
)
BASELINE = "eager"


def samples_per_clip(config: DLRConfig = PAPER) -> int:
    return round(config.sample_rate * config.segment_seconds)


def computed_steps(samples: int, config: DLRConfig = PAPER) -> int:
    """Output steps per clip that reach a pooled frame: ``frames * pool`` (206,848 for 30 s)."""
    return config.frames(samples) * config.pool


def flop_per_call(batch: int, samples: int, backward: bool, config: DLRConfig = PAPER) -> float:
    per_step = 2 * config.kernel_size * config.out_channels * (BACKWARD_FACTOR if backward else 1)
    return float(batch * computed_steps(samples, config) * per_step)


def bytes_per_call(batch: int, samples: int, backward: bool, config: DLRConfig = PAPER) -> float:
    """x read and output written (forward); twice that with the backward (grad_out, x again)."""
    once = samples + config.out_channels * config.frames(samples)
    return float(batch * once * BYTES_PER_FLOAT * (2 if backward else 1))


def available_memory_bytes(device: str) -> float:
    """Free device memory (CUDA) or MemAvailable (CPU), in bytes."""
    if device == "cuda":
        return float(torch.cuda.mem_get_info()[0])
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def memory_skip_reason(provider: Provider, batch: int, samples: int, backward: bool,
                       device: str) -> str | None:
    """Why a full-rate provider must not run this size here (it would exhaust memory)."""
    if not provider.materializes:
        return None
    estimate = batch * samples * EAGER_BYTES_PER_SAMPLE[backward]
    available = available_memory_bytes(device)
    if estimate <= MEMORY_HEADROOM * available:
        return None
    return (f"needs ~{estimate / 1e9:.1f} GB, {available / 1e9:.1f} GB available "
            f"(runs when under {MEMORY_HEADROOM:.0%} of it)")


def availability_reason(provider: Provider, device: str, backward: bool = False) -> str | None:
    """Why ``provider`` cannot run float32 inputs on ``device`` now, or None."""
    if device not in provider.devices:
        return (f"runs on {'/'.join(provider.devices)} only, this run is on {device} "
                f"(dlr-bench --device {provider.devices[0]} measures it)")
    if provider.forward_only and backward:
        return f"inference only ({provider.precision} forward)"
    if provider.backend == "cpu" and provider.precision == "bfloat16":
        return precision_unavailable("bfloat16", device)  # the AVX512_BF16 kernel's own check
    if provider.backend is None:
        return None
    reasons = explain(device, torch.float32, provider.precision)[provider.backend]
    return "; ".join(reasons) or None


def make_inputs(batch: int, samples: int, backward: bool, device: str,
                config: DLRConfig = PAPER, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x (batch, samples) float32 noise, weight and bias initialised as the authors', and
    (``backward``) a gradient for the output; weight and bias then require grad."""
    torch.manual_seed(seed)
    module = DLR(n_branches=config.n_branches, channels=config.channels,
                 kernel_size=config.kernel_size, dilations=config.dilations, pool=config.pool)
    x = torch.randn(batch, samples).to(device)
    weight = module.weight.detach().to(device).requires_grad_(backward)
    bias = module.bias.detach().to(device).requires_grad_(backward)
    if not backward:
        return x, weight, bias
    grad_out = torch.randn(batch, config.out_channels, config.frames(samples)).to(device)
    return x, weight, bias, grad_out


def make_call(provider: Provider, batch: int, samples: int, backward: bool, device: str,
              config: DLRConfig = PAPER) -> Call:
    """The call to measure: ``op(x, weight, bias)``, or that and the weight and bias
    gradients (``torch.autograd.grad``, no accumulation into ``.grad``)."""
    op = provider.build(config)
    inputs = make_inputs(batch, samples, backward, device, config)
    if not backward:
        x, weight, bias = inputs
        return lambda: op(x, weight, bias)
    x, weight, bias, grad_out = inputs
    return lambda: torch.autograd.grad(op(x, weight, bias), (weight, bias), grad_out)


def providers_on(device: str) -> list[Provider]:
    """Providers a ``device`` run reports: those running there and, on a GPU, the CPU-only
    ones (as skipped rows saying why)."""
    return [p for p in PROVIDERS if device in p.devices or device == "cuda"]


def cases(quick: bool) -> list[Case]:
    """Every (pass, batch, provider) on this run's device, eager first in each group."""
    device = bench_device()
    samples = samples_per_clip()
    result = []
    for backward in (False, True):
        op = "dlr_fwd_bwd" if backward else "dlr_fwd"
        for batch in BATCHES[device, quick]:
            for provider in providers_on(device):
                skip = (availability_reason(provider, device, backward)
                        or memory_skip_reason(provider, batch, samples, backward, device))
                result.append(Case(
                    op=op, provider=provider.name, shape=f"{batch}x{samples}", batch=batch,
                    make=(lambda p=provider, b=batch, bw=backward:
                          make_call(p, b, samples, bw, device)),
                    flop=flop_per_call(batch, samples, backward),
                    bytes=bytes_per_call(batch, samples, backward),
                    baseline=provider.name == BASELINE, device=device,
                    triton=provider.triton, skip_reason=skip))
    return result
