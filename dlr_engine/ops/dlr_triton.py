"""Launcher of the Triton DLR kernels (``dlr_engine.kernels.dlr_fused``): checks the arguments,
picks block sizes and grids, launches, and reduces the per-program partial gradients.

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
(bfloat16 only compiled: the interpreter has none)."""
MAX_BLOCK_CHANNELS = 32
"""Channels of one branch per program; more channels are split over the grid's second axis."""
MAX_BLOCK_TIME = 128
"""Samples per tile of a pool window (a power of two); longer windows are walked tile by tile."""
MAX_BACKWARD_FRAME_BLOCKS = 64
"""Programs along time per (clip, branch, channel block) in the backward. Each writes its own
partial weight and bias gradients, so this bounds that buffer to
``batch * 64 * branches * channels * taps`` floats (4 MB at batch 8 for the published model)."""


def _contiguous(**tensors: torch.Tensor) -> list[torch.Tensor]:
    for name, tensor in tensors.items():
        if tensor.dtype not in SUPPORTED_DTYPES:
            names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
            raise TypeError(f"the triton DLR backend takes {names}, but {name} is "
                            f"{str(tensor.dtype).removeprefix('torch.')}; cast it or use the "
                            f"torch backend")
    return [tensor.contiguous() for tensor in tensors.values()]


def _blocks(channels: int, pool: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_T): powers of two covering the channels and the pool window, capped."""
    return (min(triton.next_power_of_2(channels), MAX_BLOCK_CHANNELS),
            min(triton.next_power_of_2(pool), MAX_BLOCK_TIME))


def _dilations(dilations: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor([int(d) for d in dilations], dtype=torch.int32, device=device)


def dlr_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                dilations: tuple[int, ...], pool: int) -> torch.Tensor:
    """Fused DLR forward, semantics of ``dlr_reference``.

    x: (batch, samples); weight: (branches, channels, taps); bias: (branches, channels).
    Returns (batch, branches * channels, frames) in x's dtype, with
    ``frames = (samples - (taps - 1) * max(dilations)) // pool``.
    """
    frames = check_dlr_args(x, weight, bias, dilations, pool)
    x, weight, bias = _contiguous(x=x, weight=weight, bias=bias)
    batch, samples = x.shape
    branches, channels, taps = weight.shape
    block_c, block_t = _blocks(channels, pool)
    frames_per_program = max(1, block_t // pool)  # short windows: several frames per program
    out = torch.empty(batch, branches * channels, frames, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(frames, frames_per_program), triton.cdiv(channels, block_c),
            batch * branches)
    torch.library.wrap_triton(dlr_fused.dlr_forward_kernel)[grid](
        x, weight, bias, _dilations(dilations, x.device), out,
        samples, branches, channels, frames, pool, frames_per_program,
        TAPS=taps, BLOCK_C=block_c, BLOCK_T=block_t)
    return out


def dlr_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, dilations: tuple[int, ...], pool: int,
                 need_x_grad: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of ``dlr_forward`` given grad_out (batch, branches * channels, frames).

    Returns ``(grad_x (batch, samples) or None, grad_weight (branches, channels, taps),
    grad_bias (branches, channels))`` in the dtypes of x, weight and bias. The ReLU mask is
    recomputed from ``x``. grad_weight and grad_bias are deterministic (per-program partial
    sums reduced with ``torch.sum``); grad_x is accumulated with float32 atomics.
    """
    frames = check_dlr_args(x, weight, bias, dilations, pool)
    grad_out, x, weight, bias = _contiguous(grad_out=grad_out, x=x, weight=weight, bias=bias)
    batch, samples = x.shape
    branches, channels, taps = weight.shape
    if tuple(grad_out.shape) != (batch, branches * channels, frames):
        raise ValueError(f"grad_out must be ({batch}, {branches * channels}, {frames}) like the "
                         f"forward output, got {tuple(grad_out.shape)}")
    block_c, block_t = _blocks(channels, pool)
    frames_per_program = triton.cdiv(frames, MAX_BACKWARD_FRAME_BLOCKS)
    frame_blocks = triton.cdiv(frames, frames_per_program)
    grad_x = torch.zeros(x.shape, dtype=torch.float32, device=x.device) if need_x_grad else None
    grad_w_partial = torch.empty(batch, frame_blocks, branches, channels, taps,
                                 dtype=torch.float32, device=x.device)
    grad_b_partial = torch.empty(batch, frame_blocks, branches, channels,
                                 dtype=torch.float32, device=x.device)
    grid = (frame_blocks, triton.cdiv(channels, block_c), batch * branches)
    torch.library.wrap_triton(dlr_fused.dlr_backward_kernel)[grid](
        grad_out, x, weight, bias, _dilations(dilations, x.device),
        grad_w_partial if grad_x is None else grad_x,  # never written when NEED_X_GRAD is False
        grad_w_partial, grad_b_partial,
        samples, branches, channels, frames, pool, frames_per_program, frame_blocks,
        TAPS=taps, BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_K=triton.next_power_of_2(taps),
        NEED_X_GRAD=need_x_grad)
    return (None if grad_x is None else grad_x.to(x.dtype),
            grad_w_partial.sum(dim=(0, 1)).to(weight.dtype),
            grad_b_partial.sum(dim=(0, 1)).to(bias.dtype))
