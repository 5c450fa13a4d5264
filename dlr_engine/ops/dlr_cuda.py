"""Launcher of the fused CUDA C++ kernels (csrc/cuda): checks, allocation, current stream.

Built only where a CUDA toolkit and a CUDA torch exist (setup.py); launched only on a GPU.
"""
from __future__ import annotations

import torch

from .. import _dlr_cuda  # ImportError when the CUDA module was not built: backend unavailable


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _stream(x: torch.Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream


def dlr_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                dilations: tuple[int, ...], pool: int) -> torch.Tensor:
    """x: (batch, samples) on CUDA -> (batch, branches * channels, frames), in x's dtype."""
    xf, wf, bf = _float32(x), _float32(weight), _float32(bias)
    branches, channels, taps = wf.shape
    frames = (x.shape[1] - (taps - 1) * max(dilations)) // pool
    out = torch.empty(x.shape[0], branches * channels, frames, device=x.device)
    _dlr_cuda.forward(xf.data_ptr(), wf.data_ptr(), bf.data_ptr(), out.data_ptr(), x.shape[0],
                      x.shape[1], channels, taps, pool, list(dilations), _stream(x))
    return out.to(x.dtype)


def dlr_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, dilations: tuple[int, ...], pool: int,
                 need_x_grad: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of x (or None), weight and bias; the ReLU mask is recomputed from x."""
    gf, xf, wf, bf = _float32(grad_out), _float32(x), _float32(weight), _float32(bias)
    branches, channels, taps = wf.shape
    grad_x = torch.zeros_like(xf) if need_x_grad else None
    grad_w, grad_b = torch.zeros_like(wf), torch.zeros_like(bf)
    _dlr_cuda.backward(gf.data_ptr(), xf.data_ptr(), wf.data_ptr(), bf.data_ptr(),
                       grad_x.data_ptr() if need_x_grad else 0, grad_w.data_ptr(),
                       grad_b.data_ptr(), x.shape[0], x.shape[1], channels, taps, pool,
                       list(dilations), _stream(x))
    grad_x = grad_x.to(x.dtype) if need_x_grad else None
    return grad_x, grad_w.to(weight.dtype), grad_b.to(bias.dtype)
