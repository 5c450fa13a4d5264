"""Launcher of the fused C++ CPU kernels (csrc/cpu): checks, allocation, thread count.

The compiled module takes raw pointers, so every tensor handed to it is made float32 and
contiguous here; bfloat16 / float16 inputs compute in float32 and are cast back.
The kernels are compiled for AVX-512, AVX2 and generic x86-64; the best this CPU runs is used
unless ``DLR_ENGINE_CPU_ISA=avx512|avx2|generic`` (or ``set_isa``) picks another.
"""
from __future__ import annotations

import os

import torch

from .. import _dlr_cpu  # ImportError when the extension was not built: backend unavailable

ISA_ENV = "DLR_ENGINE_CPU_ISA"


def supported_isas() -> list[str]:
    """Instruction sets whose kernels this CPU runs, best first."""
    return _dlr_cpu.supported_isas()


def active_isa() -> str:
    return _dlr_cpu.isa()


def set_isa(isa: str) -> None:
    """Run the kernels compiled for ``isa``; raises ValueError if this CPU cannot."""
    _dlr_cpu.set_isa(isa)


if os.environ.get(ISA_ENV):
    set_isa(os.environ[ISA_ENV])


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _frames(x: torch.Tensor, weight: torch.Tensor, dilations: tuple[int, ...], pool: int) -> int:
    return _dlr_cpu.output_frames(x.shape[1], weight.shape[2], max(dilations), pool)


def dlr_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                dilations: tuple[int, ...], pool: int, bfloat16: bool = False) -> torch.Tensor:
    """x: (batch, samples) -> (batch, branches * channels, frames), in x's dtype.

    bfloat16: x and weight rounded to bfloat16, float32 sums (the AVX512_BF16 kernel).
    """
    xf, wf, bf = _float32(x), _float32(weight), _float32(bias)
    branches, channels, taps = wf.shape
    out = torch.empty(x.shape[0], branches * channels, _frames(x, weight, dilations, pool))
    _dlr_cpu.forward(xf.data_ptr(), wf.data_ptr(), bf.data_ptr(), out.data_ptr(), x.shape[0],
                     x.shape[1], channels, taps, pool, list(dilations), torch.get_num_threads(),
                     bfloat16)
    return out.to(x.dtype)


def bf16_supported() -> bool:
    """Whether this CPU runs the bfloat16 forward (AVX512_BF16)."""
    return _dlr_cpu.bf16_supported()


def dlr_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, dilations: tuple[int, ...], pool: int,
                 need_x_grad: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of x (or None), weight and bias, recomputing the ReLU mask from x.

    Each (batch, branch) pair owns a part of every gradient; the parts are summed here in a
    fixed order, so the result is deterministic whatever the thread count.
    """
    gf, xf, wf, bf = _float32(grad_out), _float32(x), _float32(weight), _float32(bias)
    batch, samples = x.shape
    branches, channels, taps = wf.shape
    grad_x_parts = torch.zeros(batch, branches, samples) if need_x_grad else None
    grad_w_parts = torch.zeros(batch, branches, channels, taps)
    grad_b_parts = torch.zeros(batch, branches, channels)
    _dlr_cpu.backward(gf.data_ptr(), xf.data_ptr(), wf.data_ptr(), bf.data_ptr(),
                      grad_x_parts.data_ptr() if need_x_grad else 0, grad_w_parts.data_ptr(),
                      grad_b_parts.data_ptr(), batch, samples, channels, taps, pool,
                      list(dilations), torch.get_num_threads())
    grad_x = grad_x_parts.sum(1).to(x.dtype) if need_x_grad else None
    return grad_x, grad_w_parts.sum(0).to(weight.dtype), grad_b_parts.sum(0).to(bias.dtype)
