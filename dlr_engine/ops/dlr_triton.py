"""Launcher of the Triton DLR kernels (``dlr_engine.kernels.dlr_fused``): checks the arguments,
picks block sizes and grids (``triton.autotune`` over time tiles, warps and stages, keyed on
the geometry and precision, when compiled), launches, and reduces the per-program partial
gradients.

Precisions (``precision=``): ``float32`` (exact float32 products,
``tl.dot(input_precision="ieee")``), ``tf32`` and ``bfloat16`` (tensor cores: x and the weights
rounded to nearest even with 10 / 7 mantissa bits, float32 sums; `round_operands` is the
plain-torch definition). The errors the tests accept are ``PRECISION_TOLERANCE``.

The kernels run on CUDA tensors, or on CPU tensors in Triton's interpreter when
``TRITON_INTERPRET=1`` was set before ``triton`` was first imported (Triton reads the flag when
``@triton.jit`` decorates a function, and its own ``tl.sum``, ``tl.zeros``... are decorated at
``import triton``; ``torch._dynamo`` imports triton, so set the flag before importing torch's
compiler stack or dlr_engine). Launches go through ``torch.library.wrap_triton`` so that a
``torch.library.triton_op`` around these functions is traceable by ``torch.compile``; outside
such an op it returns the kernel unchanged.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from ..kernels import dlr_fused
from .backends import PRECISIONS
from .dlr_reference import check_dlr_args

INTERPRETED = isinstance(dlr_fused.dlr_forward_kernel, InterpretedFunction)
"""True when the kernels run in Triton's interpreter (on CPU tensors), False when compiled (CUDA)."""
if INTERPRETED and isinstance(tl.sum, JITFunction):
    raise ImportError("TRITON_INTERPRET=1 was set after triton had been imported, so the DLR "
                      "kernels are interpreted but triton.language is compiled; set it before the "
                      "first import of triton, torch._dynamo or dlr_engine (e.g. at the top of "
                      "tests/conftest.py)")

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Input dtypes; the kernels compute in float32 and store outputs in the inputs' dtypes
(bfloat16 inputs only compiled: the interpreter has none)."""
PRECISION_TOLERANCE = {"float32": 1e-5, "tf32": 2e-3, "bfloat16": 1.5e-2}
"""Largest relative error ``||out - ref|| / ||ref||`` of the output and the gradients against
the float64 reference run on `round_operands` of x and the weights, per precision: float32
sums (~1e-7, x 100 margin); the weight gradient's dot also rounds ``grad_out / pool`` (TF32:
2 ** -11 relative, bfloat16: 2 ** -8) and the input gradient uses unrounded weights. The
reference must get the rounded operands: against exact float64 operands the outputs of tf32 /
bfloat16 are ~2e-4 / ~2e-3 off, but a pre-activation within rounding error of 0 flips the ReLU
mask, and the gradients move by ~sqrt(share of flipped steps), ~2 %. The tests hold every path
to these, interpreted at small shapes in CI and compiled at real shapes on a GPU."""
KERNEL_PRECISION = {"float32": "ieee", "tf32": "tf32", "bfloat16": "bf16"}
"""``precision`` -> the kernels' ``PRECISION`` constexpr."""
_MANTISSA_BITS_DROPPED = {"float32": 0, "tf32": 13, "bfloat16": 16}
MIN_DOT = 16
"""``tl.dot`` needs every dimension >= 16: smaller channel / tap / time blocks are padded."""
MAX_BLOCK_CHANNELS = 32
"""Channels of one branch per program; more channels are split over the grid's second axis."""
MAX_BLOCK_TIME = 128
"""Interpreted runs: samples per tile of a pool window (compiled runs autotune it)."""
INPUT_GRAD_BLOCK_SAMPLES = 64
"""Interpreted runs: samples of x per input-gradient program (compiled runs autotune it)."""
FORWARD_FRAMES_PER_PROGRAM = 4
"""Consecutive output frames per forward program (808 frames x 4 branches x batch 64 gives
~52,000 programs: many waves on any GPU)."""
MAX_BACKWARD_FRAME_BLOCKS = 64
"""Programs along time per (clip, branch, channel block) in the weight gradient. Each writes
its own partial weight and bias gradients, so this bounds that buffer to
``batch * 64 * branches * channels * taps`` floats (4 MB at batch 8 for the published model)."""


def _pool_tiles(configs, named_args, **kwargs):
    """Autotune pruning: no time tile longer than the pool window needs (at least one)."""
    limit = max(MIN_DOT, triton.next_power_of_2(named_args["pool"]))
    fitting = [c for c in configs if c.kwargs["BLOCK_T"] <= limit]
    return fitting or [min(configs, key=lambda c: c.kwargs["BLOCK_T"])]


GEOMETRY_KEY = ["branches", "channels", "pool", "TAPS", "PRECISION"]
"""Autotune key: a new geometry or precision is tuned once per process."""
TIME_CONFIGS = [triton.Config({"BLOCK_T": block}, num_warps=warps, num_stages=3)
                for block in (128, 256) for warps in (4, 8)]
"""What the forward kernel's autotuning tries (compiled runs): time tiles of 128 or 256 samples
of one pool window (a (256 x 16) @ (16 x 32) dot per tile: wgmma on sm_90 in tf32 / bfloat16),
4 or 8 warps, 3 stages (the tile loop's loads become cp.async into triple-buffered shared
memory). Few on purpose: each costs a compile (~1 s) per geometry and precision."""
WEIGHT_GRAD_CONFIGS = [triton.Config({"BLOCK_T": block}, num_warps=warps, num_stages=2)
                       for block, warps in ((64, 4), (64, 8), (128, 8))]
"""The weight-gradient kernel's: it holds two (BLOCK_T x 32) tiles and the gradient;
``scripts/triton_sm90.py`` shows bfloat16 spilling registers at 128 samples with 4 warps and
at 256 samples, so those are left out."""
INPUT_GRAD_CONFIGS = [triton.Config({"BLOCK_S": block}, num_warps=warps)
                      for block, warps in ((64, 4), (128, 8))]
"""What the input-gradient kernel's autotuning tries: samples of x per program, warps (the
combinations that spill in float32 on sm_90 are left out)."""
if INTERPRETED:
    _forward_kernel = dlr_fused.dlr_forward_kernel
    _weight_grad_kernel = dlr_fused.dlr_weight_grad_kernel
    _input_grad_kernel = dlr_fused.dlr_input_grad_kernel
else:
    _PRUNE = {"early_config_prune": _pool_tiles}
    _forward_kernel = triton.autotune(TIME_CONFIGS, key=GEOMETRY_KEY, prune_configs_by=_PRUNE)(
        dlr_fused.dlr_forward_kernel)
    _weight_grad_kernel = triton.autotune(WEIGHT_GRAD_CONFIGS, key=GEOMETRY_KEY,
                                          prune_configs_by=_PRUNE)(
        dlr_fused.dlr_weight_grad_kernel)
    _input_grad_kernel = triton.autotune(INPUT_GRAD_CONFIGS, key=GEOMETRY_KEY)(
        dlr_fused.dlr_input_grad_kernel)


def round_operands(t: torch.Tensor, precision: str) -> torch.Tensor:
    """float32 ``t`` rounded to nearest even to what ``precision`` multiplies (TF32: 10
    mantissa bits; bfloat16: 7), still float32: the plain-torch definition of the kernels'
    operand rounding (``dlr_fused._round_mantissa``)."""
    drop = _MANTISSA_BITS_DROPPED[precision]
    if drop == 0:
        return t
    bits = t.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    bits = (bits + (1 << (drop - 1)) - 1 + ((bits >> drop) & 1)) & (0xFFFFFFFF >> drop << drop)
    signed = bits - ((bits >> 31) << 32)  # back to int32's range, same bits
    return signed.to(torch.int32).view(torch.float32).view(t.shape)


def _contiguous(**tensors: torch.Tensor) -> list[torch.Tensor]:
    for name, tensor in tensors.items():
        if tensor.dtype not in SUPPORTED_DTYPES:
            names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
            raise TypeError(f"the triton DLR backend takes {names}, but {name} is "
                            f"{str(tensor.dtype).removeprefix('torch.')}; cast it or use the "
                            f"torch backend")
    return [tensor.contiguous() for tensor in tensors.values()]


def _meta(channels: int, taps: int, pool: int, precision: str, tile: str) -> dict:
    """Constexpr arguments: channel and tap blocks (powers of two, at least `MIN_DOT`), the
    kernel precision, and (interpreted only; compiled runs autotune it) the ``tile`` size."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    meta = {"TAPS": taps,
            "BLOCK_C": max(MIN_DOT, min(triton.next_power_of_2(channels), MAX_BLOCK_CHANNELS)),
            "BLOCK_K": max(MIN_DOT, triton.next_power_of_2(taps)),
            "PRECISION": KERNEL_PRECISION[precision], "EMULATED": INTERPRETED}
    if INTERPRETED and tile == "BLOCK_T":
        meta[tile] = max(MIN_DOT, min(triton.next_power_of_2(pool), MAX_BLOCK_TIME))
    elif INTERPRETED:
        meta[tile] = INPUT_GRAD_BLOCK_SAMPLES
    return meta


def _dilations(dilations: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor([int(d) for d in dilations], dtype=torch.int32, device=device)


def dlr_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                dilations: tuple[int, ...], pool: int, precision: str = "float32") -> torch.Tensor:
    """Fused DLR forward, semantics of ``dlr_reference``, products in ``precision``.

    x: (batch, samples); weight: (branches, channels, taps); bias: (branches, channels).
    Returns (batch, branches * channels, frames) in x's dtype, with
    ``frames = (samples - (taps - 1) * max(dilations)) // pool``.
    """
    frames = check_dlr_args(x, weight, bias, dilations, pool)
    x, weight, bias = _contiguous(x=x, weight=weight, bias=bias)
    batch, samples = x.shape
    branches, channels, taps = weight.shape
    meta = _meta(channels, taps, pool, precision, "BLOCK_T")
    out = torch.empty(batch, branches * channels, frames, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(frames, FORWARD_FRAMES_PER_PROGRAM),
            triton.cdiv(channels, meta["BLOCK_C"]), batch * branches)
    torch.library.wrap_triton(_forward_kernel)[grid](
        x, weight, bias, _dilations(dilations, x.device), out,
        samples, branches, channels, frames, pool, FORWARD_FRAMES_PER_PROGRAM, **meta)
    return out


def dlr_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, dilations: tuple[int, ...], pool: int,
                 need_x_grad: bool, precision: str = "float32"
                 ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of ``dlr_forward`` given grad_out (batch, branches * channels, frames).

    Returns ``(grad_x (batch, samples) or None, grad_weight (branches, channels, taps),
    grad_bias (branches, channels))`` in the dtypes of x, weight and bias. The ReLU mask is
    recomputed from ``x`` in ``precision``. All three are deterministic: grad_weight and
    grad_bias are per-program partial sums reduced with ``torch.sum``; each sample of grad_x
    is written once by the program that owns it (about ``taps`` forwards of work).
    """
    frames = check_dlr_args(x, weight, bias, dilations, pool)
    grad_out, x, weight, bias = _contiguous(grad_out=grad_out, x=x, weight=weight, bias=bias)
    batch, samples = x.shape
    branches, channels, taps = weight.shape
    if tuple(grad_out.shape) != (batch, branches * channels, frames):
        raise ValueError(f"grad_out must be ({batch}, {branches * channels}, {frames}) like the "
                         f"forward output, got {tuple(grad_out.shape)}")
    meta = _meta(channels, taps, pool, precision, "BLOCK_T")
    frames_per_program = triton.cdiv(frames, MAX_BACKWARD_FRAME_BLOCKS)
    frame_blocks = triton.cdiv(frames, frames_per_program)
    dilation_table = _dilations(dilations, x.device)
    grad_w_partial = torch.empty(batch, frame_blocks, branches, channels, taps,
                                 dtype=torch.float32, device=x.device)
    grad_b_partial = torch.empty(batch, frame_blocks, branches, channels,
                                 dtype=torch.float32, device=x.device)
    grid = (frame_blocks, triton.cdiv(channels, meta["BLOCK_C"]), batch * branches)
    torch.library.wrap_triton(_weight_grad_kernel)[grid](
        grad_out, x, weight, bias, dilation_table, grad_w_partial, grad_b_partial,
        samples, branches, channels, frames, pool, frames_per_program, frame_blocks, **meta)
    grad_x = None
    if need_x_grad:
        grad_x = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        meta = _meta(channels, taps, pool, precision, "BLOCK_S")
        torch.library.wrap_triton(_input_grad_kernel)[
            lambda m: (triton.cdiv(samples, m["BLOCK_S"]), batch)](
            grad_out, x, weight, bias, dilation_table, grad_x,
            samples, branches, channels, frames, pool, **meta)
        grad_x = grad_x.to(x.dtype)
    return (grad_x, grad_w_partial.sum(dim=(0, 1)).to(weight.dtype),
            grad_b_partial.sum(dim=(0, 1)).to(bias.dtype))
