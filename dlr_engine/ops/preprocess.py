"""The DLR authors' input preprocessing, ``|x / max|x||`` per clip: a plain-torch reference
(any device and dtype, differentiable) and, for float32 CPU inference, one fused C++ pass per
clip (its peak, then the scaled magnitudes while the clip is still in cache; custom op
``dlr_engine::peak_abs_cpu``) instead of four full-size torch passes and three temporaries.
"""
from __future__ import annotations

import torch
from torch import Tensor

try:
    from .. import _dlr_cpu
except ImportError:  # extension not built: the torch reference runs
    _dlr_cpu = None


def peak_abs_reference(x: Tensor) -> Tensor:
    """x (batch, samples) -> ``|x / max|x||`` per clip (a silent clip stays 0; a clip holding
    a NaN becomes all NaN, its peak being NaN)."""
    peak = x.abs().amax(dim=-1, keepdim=True)
    return (x / torch.where(peak == 0, torch.ones_like(peak), peak)).abs()


@torch.library.custom_op("dlr_engine::peak_abs_cpu", mutates_args=())
def peak_abs_cpu(x: Tensor) -> Tensor:
    """``peak_abs_reference`` of a float32 CPU tensor (batch, samples) in one C++ pass per clip."""
    x = x.contiguous()
    out = torch.empty(x.shape)
    if x.numel():
        _dlr_cpu.peak_abs(x.data_ptr(), x.shape[0], x.shape[1], out.data_ptr(),
                          torch.get_num_threads())
    return out


@peak_abs_cpu.register_fake
def _peak_abs_cpu_fake(x):
    return torch.empty_like(x)


def peak_abs(x: Tensor) -> Tensor:
    """The authors' preprocessing, per clip: ``|x / max|x||`` (clips of silence stay 0).

    x: (batch, samples) -> same shape; the C++ pass for float32 CPU tensors without a gradient
    (the plain ops while exporting to ONNX).
    """
    if (_dlr_cpu is not None and not torch.onnx.is_in_onnx_export() and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.dim() == 2
            and not (torch.is_grad_enabled() and x.requires_grad)):
        return peak_abs_cpu(x)
    return peak_abs_reference(x)
