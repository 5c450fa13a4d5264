"""The fused DLR op registered with ``torch.library``: custom op, fake (shape) function and
autograd, so ``torch.compile(fullgraph=True)`` traces models using it without a graph break.

The backend name and the precision are arguments of the op: the compiled kernels (cpu,
triton, cuda) all run behind the same two ops, ``dlr_engine::dlr_fused`` and
``dlr_engine::dlr_fused_backward``; ``tf32`` and ``bfloat16`` reach only backends that offer
them (``Backend.precisions``: triton). ``dlr_bf16`` is the inference-only bfloat16 forward on
CPU (``dlr_engine::dlr_cpu_bf16``: x and the weights rounded to bfloat16, float32 sums; CPUs
with AVX512_BF16), which ``dlr(..., precision="bfloat16")`` picks for CPU tensors.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .backends import BACKENDS, PRECISIONS, BackendUnavailable, explain, select
from .dlr_reference import check_dlr_args, dlr_reference


def _precision_arg(precision: str) -> dict[str, str]:
    """Launcher keyword for ``precision``: only backends offering more than float32 take one
    (``Backend.precisions``; ``select`` sends them nothing else)."""
    return {} if precision == "float32" else {"precision": precision}


@torch.library.custom_op("dlr_engine::dlr_fused", mutates_args=())
def dlr_fused(x: Tensor, weight: Tensor, bias: Tensor, dilations: list[int], pool: int,
              backend: str, precision: str = "float32") -> Tensor:
    """x: (batch, samples) -> (batch, branches * channels, frames), by a compiled backend."""
    launcher = BACKENDS[backend].launcher()
    return launcher.dlr_forward(x.contiguous(), weight.contiguous(), bias.contiguous(),
                                tuple(dilations), pool, **_precision_arg(precision))


@dlr_fused.register_fake
def _dlr_fused_fake(x, weight, bias, dilations, pool, backend, precision="float32"):
    branches, channels, taps = weight.shape
    frames = (x.shape[1] - (taps - 1) * max(dilations)) // pool
    return x.new_empty((x.shape[0], branches * channels, frames))


@torch.library.custom_op("dlr_engine::dlr_fused_backward", mutates_args=())
def dlr_fused_backward(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
                       dilations: list[int], pool: int, backend: str,
                       need_x_grad: bool, precision: str = "float32"
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (x, weight, bias); the x gradient is an empty tensor when not needed.

    Recomputes the pre-activation from ``x`` for the ReLU mask; nothing full-rate is stored.
    """
    launcher = BACKENDS[backend].launcher()
    grad_x, grad_weight, grad_bias = launcher.dlr_backward(
        grad_out.contiguous(), x.contiguous(), weight.contiguous(), bias.contiguous(),
        tuple(dilations), pool, need_x_grad, **_precision_arg(precision))
    if grad_x is None:
        grad_x = x.new_empty((0,))
    return grad_x, grad_weight, grad_bias


@dlr_fused_backward.register_fake
def _dlr_fused_backward_fake(grad_out, x, weight, bias, dilations, pool, backend, need_x_grad,
                             precision="float32"):
    grad_x = torch.empty_like(x) if need_x_grad else x.new_empty((0,))
    return grad_x, torch.empty_like(weight), torch.empty_like(bias)


@torch.library.custom_op("dlr_engine::dlr_cpu_bf16", mutates_args=())
def dlr_cpu_bf16(x: Tensor, weight: Tensor, bias: Tensor, dilations: list[int],
                 pool: int) -> Tensor:
    """x: (batch, samples) -> (batch, branches * channels, frames) in x's dtype, x and weight
    rounded to bfloat16, float32 sums (AVX512_BF16 kernel)."""
    from . import dlr_cpu
    return dlr_cpu.dlr_forward(x.contiguous(), weight.contiguous(), bias.contiguous(),
                               tuple(dilations), pool, bfloat16=True)


@dlr_cpu_bf16.register_fake
def _dlr_cpu_bf16_fake(x, weight, bias, dilations, pool):
    return _dlr_fused_fake(x, weight, bias, dilations, pool, "cpu")


def _setup_context(ctx, inputs, output):
    x, weight, bias, dilations, pool, backend, precision = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.dilations, ctx.pool, ctx.backend, ctx.precision = dilations, pool, backend, precision


def _backward(ctx, grad_out):
    x, weight, bias = ctx.saved_tensors
    need_x_grad = ctx.needs_input_grad[0]
    grad_x, grad_weight, grad_bias = dlr_fused_backward(
        grad_out, x, weight, bias, ctx.dilations, ctx.pool, ctx.backend, need_x_grad,
        ctx.precision)
    return (grad_x if need_x_grad else None), grad_weight, grad_bias, None, None, None, None


dlr_fused.register_autograd(_backward, setup_context=_setup_context)


def dlr(x: Tensor, weight: Tensor, bias: Tensor, dilations: tuple[int, ...] | list[int],
        pool: int = 256, backend: str | None = None, precision: str = "float32") -> Tensor:
    """The DLR op (DESIGN §3) on the best available backend.

    x: (batch, samples) at 8 kHz; weight: (branches, channels, taps); bias: (branches, channels).
    Returns (batch, branches * channels, frames), frames = (samples - (taps-1)*max(dilations))
    // pool. ``backend``: torch | cpu | triton | cuda; default $DLR_ENGINE_BACKEND, else auto.
    ``precision``: one of ``PRECISIONS``; raises ``BackendUnavailable`` with every backend's
    reasons when none offers it for this input.
    """
    check_dlr_args(x, weight, bias, dilations, pool)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if torch.onnx.is_in_onnx_export():  # ONNX knows none of our kernels: the plain ops
        return dlr_reference(x, weight, bias, dilations, pool)
    if precision == "bfloat16" and x.device.type == "cpu" and backend in (None, "cpu"):
        return dlr_bf16(x, weight, bias, dilations, pool)
    name = select(x.device.type, x.dtype, backend, precision)
    if name == "torch":
        return dlr_reference(x, weight, bias, dilations, pool)
    return dlr_fused(x, weight, bias, [int(d) for d in dilations], int(pool), name, precision)


def dlr_bf16_supported() -> bool:
    """Whether this machine runs ``dlr_bf16`` (the extension built, a CPU with AVX512_BF16)."""
    try:
        from . import dlr_cpu
    except ImportError:
        return False
    return dlr_cpu.bf16_supported()


def precision_unavailable(precision: str, device_type: str) -> str | None:
    """Why no backend runs the DLR forward in ``precision`` on ``device_type`` tensors here
    (float32 inputs, published geometry assumed), or None."""
    if precision not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {precision!r}"
    if precision == "bfloat16" and device_type == "cpu":
        return None if dlr_bf16_supported() else (
            "bfloat16 on CPU needs the C++ extension and a CPU with AVX512_BF16")
    reasons = explain(device_type, torch.float32, precision)
    automatic = [name for name in reasons if not (name == "triton" and device_type == "cpu")]
    if any(not reasons[name] for name in automatic):
        return None
    return (f"no DLR backend offers precision {precision} on {device_type}: "
            + "; ".join(f"{name}: {', '.join(reasons[name])}" for name in automatic))


def bf16_unsupported_reasons(x: Tensor, weight: Tensor, pool: int) -> list[str]:
    """Why ``dlr_bf16`` cannot run on ``x`` with ``weight`` (branches, channels, taps)."""
    reasons = []
    if x.device.type != "cpu":
        reasons.append(f"runs on CPU tensors, input is on {x.device.type}")
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        reasons.append("inference only: run it under torch.no_grad() / inference_mode()")
    if not dlr_bf16_supported():
        reasons.append("the C++ extension is not built, or this CPU has no AVX512_BF16 "
                       "(bfloat16 dot products)")
    _, channels, taps = weight.shape
    if taps % 2 or channels % 8 or pool % 32:
        reasons.append(f"needs an even kernel size, channels a multiple of 8 and a pool a "
                       f"multiple of 32 (got {taps}, {channels}, {pool})")
    return reasons


def dlr_bf16(x: Tensor, weight: Tensor, bias: Tensor, dilations: tuple[int, ...] | list[int],
             pool: int = 256) -> Tensor:
    """The DLR op in bfloat16 precision: ``dlr`` of x and weight rounded to bfloat16 (round to
    nearest even), float32 sums, bias, ReLU and pooling; about 1.8x the float32 kernel's
    throughput, features within ~0.2 % of float32 (relative norm). Raises
    ``BackendUnavailable`` with the reasons when it cannot run (not a CPU with AVX512_BF16, a
    gradient needed, another geometry)."""
    check_dlr_args(x, weight, bias, dilations, pool)
    reasons = bf16_unsupported_reasons(x, weight, pool)
    if reasons:
        raise BackendUnavailable("bfloat16 DLR precision: " + "; ".join(reasons)
                                 + " (use precision='float32')")
    return dlr_cpu_bf16(x, weight, bias, [int(d) for d in dilations], int(pool))
