"""The mel spectrogram op, dispatched over three backends with librosa's semantics
(``melspec_reference``):

- ``triton``: the fused kernel of ``dlr_engine.kernels.melspec`` (framing, window, DFT, power,
  mel projection and log in one pass; backward recomputes the spectrum), registered as
  ``dlr_engine::melspec_fused`` / ``dlr_engine::melspec_fused_backward``. CUDA tensors, or CPU
  tensors under ``TRITON_INTERPRET=1`` when asked for explicitly.
- ``cpu``: the fastest formulation measured on CPU. Float32 without a gradient (inference,
  feature extraction, a front-end of fixed filters): the fused C++ kernel
  (``spectral_cpu.melspectrogram``: per tile of 16 frames, framing + window, a batched FFT
  with the frames in the vector lanes, power, the projection on the mel matrix without its
  zeros (~1,000 of 65,664 entries are non-zero at the DLR geometry) and the log, straight into
  the output; custom op ``dlr_engine::melspec_cpu``). With a gradient, or float64, or without
  the compiled extension: chunks of ``CHUNK_FRAMES`` frames in torch ops (frame + window as one
  copy, ``torch.fft.rfft``, power, the projection restricted to the band of FFT bins each group
  of ``MEL_BAND_ROWS`` filters touches), differentiable by torch autograd.
- ``torch``: the plain reference (``torch.stft`` + matmul), any device and dtype.

``backend=`` forces one (raising, with every backend's reasons, when it cannot run);
``$DLR_ENGINE_BACKEND`` does the same when it names one of these three (other values, e.g.
``cuda``, are DLR-op backends and leave the mel choice automatic).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from . import spectral_cpu
from .backends import BACKEND_ENV, BackendUnavailable
from .melspec_reference import (check_padding, check_spectrogram_args, frame_count, log_scale,
                                melspectrogram_reference, pad_for_frames, padded_window,
                                spectrum_power)

MEL_BACKENDS = ("triton", "cpu", "torch")
"""Names of the backends of this op, in automatic order of preference."""
TRITON_DTYPES = (torch.float32, torch.float16)
MEL_BAND_ROWS = 16
"""Mel filters per band of the cpu backend's sparse projection (7.6x fewer multiply-adds than
the dense matrix for 128 Slaney or HTK filters, in 8 matmuls)."""

CHUNK_FRAMES = 512
"""Frames per chunk of the cpu backend's torch formulation (frames and spectra stay in cache)."""

BandSpec = tuple[tuple[int, int, int, int], ...]



def _kernels():
    from ..kernels import melspec as melspec_kernels
    return melspec_kernels


def not_supported_reasons(name: str, device_type: str, dtype: torch.dtype,
                          filters_need_grad: bool = False) -> list[str]:
    """Why backend ``name`` cannot run an input on ``device_type`` of ``dtype``."""
    reasons = []
    if name == "triton":
        try:
            interpreted = _kernels().INTERPRETED
        except ImportError as exc:
            interpreted = None
            reasons.append(f"not available ({type(exc).__name__}: {exc})")
        if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            reasons.append("CPU tensors need TRITON_INTERPRET=1 (the Triton interpreter)")
        elif device_type == "cpu" and interpreted is False:
            reasons.append("the kernels were compiled: TRITON_INTERPRET=1 must be set before "
                           "dlr_engine.kernels.melspec (and triton) are first imported")
        elif device_type not in ("cpu", "cuda"):
            reasons.append(f"runs on cuda (or cpu when interpreted), input is on {device_type}")
        if dtype not in TRITON_DTYPES:
            name_of_dtype = str(dtype).removeprefix("torch.")
            reasons.append(f"supports float32, float16; input is {name_of_dtype}")
        if filters_need_grad:
            reasons.append("differentiates the signal only, but the window or mel filters "
                           "require grad")
    elif name == "cpu" and device_type != "cpu":
        reasons.append(f"runs on cpu, input is on {device_type}")
    elif name not in MEL_BACKENDS:
        reasons.append(f"unknown mel backend; choose one of {', '.join(MEL_BACKENDS)}")
    return reasons


@torch.compiler.assume_constant_result
def select(device_type: str, dtype: torch.dtype, filters_need_grad: bool = False,
           requested: str | None = None) -> str:
    """Backend for an input: ``requested``, else ``$DLR_ENGINE_BACKEND`` when it names a mel
    backend, else triton on CUDA, cpu on CPU, torch elsewhere (the interpreter is never an
    automatic choice)."""
    if requested is None and os.environ.get(BACKEND_ENV) in MEL_BACKENDS:
        requested = os.environ[BACKEND_ENV]
    args = (device_type, dtype, filters_need_grad)
    if requested is None:
        for name in MEL_BACKENDS:
            if not (name == "triton" and device_type == "cpu") \
                    and not not_supported_reasons(name, *args):
                return name
    elif not not_supported_reasons(requested, *args):
        return requested
    lines = [f"  {name}: {'; '.join(not_supported_reasons(name, *args)) or 'usable'}"
             for name in MEL_BACKENDS]
    raise BackendUnavailable(f"mel backend {requested!r} cannot run this input ({dtype} on "
                             f"{device_type}):\n" + "\n".join(lines))


def mel_bands(mel_fb: Tensor, rows_per_band: int = MEL_BAND_ROWS) -> BandSpec:
    """``(row_start, row_stop, col_start, col_stop)`` per group of ``rows_per_band`` filters:
    the FFT bins outside ``[col_start, col_stop)`` have zero weight in those rows."""
    bands = []
    touched = (mel_fb != 0).cpu()
    for start in range(0, mel_fb.shape[0], rows_per_band):
        stop = min(start + rows_per_band, mel_fb.shape[0])
        cols = touched[start:stop].any(dim=0).nonzero().flatten().tolist()
        first, last = (cols[0], cols[-1] + 1) if cols else (0, 0)
        bands.append((start, stop, first, last))
    return tuple(bands)


@dataclass(frozen=True)
class CpuMelPlan:
    """The mel matrix ``(n_mels, n_freq)`` in the cpu backend's two forms: ``bands`` for the
    torch formulation, and per filter ``m`` the bins ``[starts[m], starts[m] + lengths[m])`` with
    their ``weights`` at ``offsets[m]`` (int64 / float32 tensors) for the C++ kernels."""
    bands: BandSpec
    starts: Tensor
    lengths: Tensor
    offsets: Tensor
    weights: Tensor


def cpu_mel_plan(mel_fb: Tensor) -> CpuMelPlan:
    """Both sparse forms of ``mel_fb`` (n_mels, n_freq); a filter's zeros inside its support
    are kept as weights, so any matrix is represented exactly."""
    fb = mel_fb.detach().to("cpu", torch.float32)
    nonzero = fb != 0
    any_nonzero = nonzero.any(dim=1)
    first = nonzero.int().argmax(dim=1)
    last = fb.shape[1] - 1 - nonzero.flip(1).int().argmax(dim=1)
    starts = torch.where(any_nonzero, first, 0).long()
    lengths = torch.where(any_nonzero, last - first + 1, 0).long()
    offsets = (lengths.cumsum(0) - lengths).contiguous()
    weights = torch.cat([fb[m, starts[m]:starts[m] + lengths[m]] for m in range(fb.shape[0])])
    return CpuMelPlan(mel_bands(fb), starts.contiguous(), lengths.contiguous(), offsets,
                      weights.contiguous())


def _padded(window: Tensor, n_fft: int) -> Tensor:
    return padded_window(window, window.shape[0], n_fft, dtype=window.dtype, device=window.device)


def _project(power: Tensor, mel_fb: Tensor, bands: BandSpec) -> Tensor:
    """power (batch, frames, n_freq) -> (batch, n_mels, frames), band by band (each a plain
    matrix product: batch and frames fold into one dimension)."""
    pieces = []
    for start, stop, first, last in bands:
        if first == last:
            pieces.append(power.new_zeros(*power.shape[:-1], stop - start))
        else:
            pieces.append(power[..., first:last] @ mel_fb[start:stop, first:last].T)
    return torch.cat(pieces, dim=-1).transpose(-1, -2)


def melspectrogram_cpu(x: Tensor, window: Tensor, mel_fb: Tensor, n_fft: int, hop_length: int,
                       center: bool = True, pad_mode: str = "constant", power: float = 2.0,
                       log_multiplier: float = 0.0, amin: float = 1e-10,
                       plan: CpuMelPlan | None = None) -> Tensor:
    """The cpu backend: same contract as ``melspectrogram`` but ``window`` is the unpadded
    ``(win_length,)`` window and ``x``, ``window``, ``mel_fb`` share a dtype. Differentiable
    (through the torch formulation) when a gradient is needed."""
    plan = cpu_mel_plan(mel_fb) if plan is None else plan
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, window, mel_fb))
    if spectral_cpu.available() and x.dtype == torch.float32 and not needs_grad:
        return melspec_cpu(x.contiguous(), window.contiguous(), plan.starts, plan.lengths,
                           plan.offsets, plan.weights, n_fft, hop_length, center, pad_mode,
                           float(power), float(log_multiplier), float(amin))
    mel = _melspectrogram_chunks(x, window, mel_fb, n_fft, hop_length, center, pad_mode, power,
                                 plan.bands)
    return log_scale(mel, log_multiplier, amin) if log_multiplier else mel


def _melspectrogram_chunks(x: Tensor, window: Tensor, mel_fb: Tensor, n_fft: int,
                           hop_length: int, center: bool, pad_mode: str, power: float,
                           bands: BandSpec) -> Tensor:
    """The cpu backend's torch formulation: mel power (batch, n_mels, frames), chunk by chunk."""
    padded = pad_for_frames(x, n_fft, center, pad_mode)
    window = _padded(window, n_fft)
    frames = padded.unfold(-1, n_fft, hop_length)  # (batch, frames, n_fft), a view
    n_frames = frames.shape[1]
    chunk_frames = CHUNK_FRAMES
    rows_per_chunk = max(1, chunk_frames // n_frames)
    rows = []
    for row in range(0, x.shape[0], rows_per_chunk):
        chunks = []
        for start in range(0, n_frames, chunk_frames):
            chunk = frames[row:row + rows_per_chunk, start:start + chunk_frames]
            power_spec = spectrum_power(torch.fft.rfft(chunk * window), power)
            chunks.append(_project(power_spec, mel_fb, bands))
        rows.append(torch.cat(chunks, dim=-1))
    return torch.cat(rows).contiguous()


@torch.library.custom_op("dlr_engine::melspec_cpu", mutates_args=())
def melspec_cpu(x: Tensor, window: Tensor, starts: Tensor, lengths: Tensor, offsets: Tensor,
                weights: Tensor, n_fft: int, hop_length: int, center: bool, pad_mode: str,
                power: float, log_multiplier: float, amin: float) -> Tensor:
    """The cpu backend's C++ path, float32, no gradient: x (batch, samples), window
    (win_length,), the filters of ``CpuMelPlan`` -> (batch, n_mels, frames)."""
    if center:
        check_padding(x.shape[1], n_fft, pad_mode)
    offset = (n_fft - window.shape[0]) // 2 - (n_fft // 2 if center else 0)
    n_frames = frame_count(x.shape[1], n_fft, hop_length, center)
    return spectral_cpu.melspectrogram(x, offset, n_frames, hop_length, window, n_fft, pad_mode,
                                       starts, lengths, offsets, weights, power, log_multiplier,
                                       amin)


@melspec_cpu.register_fake
def _melspec_cpu_fake(x, window, starts, lengths, offsets, weights, n_fft, hop_length, center,
                      pad_mode, power, log_multiplier, amin):
    return x.new_empty((x.shape[0], starts.shape[0],
                        frame_count(x.shape[1], n_fft, hop_length, center)))


@torch.library.custom_op("dlr_engine::melspec_fused", mutates_args=())
def melspec_fused(padded: Tensor, window: Tensor, mel_fb: Tensor, n_fft: int, hop_length: int,
                  frames: int, power: float, log_multiplier: float, amin: float) -> Tensor:
    """Fused Triton mel spectrogram of an already padded signal ``(batch, padded)``.

    Returns (batch, n_mels, frames) float32: mel power, or ``log_multiplier * log10(max(amin,
    mel))`` when ``log_multiplier`` is non-zero.
    """
    return _kernels().melspec_forward(padded.contiguous(), window,
                                      mel_fb.to(torch.float32).contiguous(), n_fft, hop_length,
                                      frames, power, log_multiplier, amin)


@melspec_fused.register_fake
def _melspec_fused_fake(padded, window, mel_fb, n_fft, hop_length, frames, power, log_multiplier,
                        amin):
    return padded.new_empty((padded.shape[0], mel_fb.shape[0], frames), dtype=torch.float32)


@torch.library.custom_op("dlr_engine::melspec_fused_backward", mutates_args=())
def melspec_fused_backward(grad_out: Tensor, padded: Tensor, window: Tensor, mel_fb: Tensor,
                           out: Tensor, n_fft: int, hop_length: int, power: float,
                           log_multiplier: float, amin: float) -> Tensor:
    """Gradient of ``melspec_fused`` w.r.t. ``padded`` (in its dtype), recomputing the spectrum."""
    kernels = _kernels()
    cos, sin, tap_offset = kernels.dft_basis(window, n_fft)
    grad = kernels.melspec_backward(grad_out.to(torch.float32).contiguous(), padded.contiguous(),
                                    cos, sin, mel_fb.to(torch.float32).contiguous(),
                                    out.contiguous(), hop_length, tap_offset, power,
                                    log_multiplier, amin)
    return grad.to(padded.dtype)


@melspec_fused_backward.register_fake
def _melspec_fused_backward_fake(grad_out, padded, window, mel_fb, out, n_fft, hop_length, power,
                                 log_multiplier, amin):
    return torch.empty_like(padded)


def _setup_context(ctx, inputs, output):
    padded, window, mel_fb, n_fft, hop_length, frames, power, log_multiplier, amin = inputs
    ctx.save_for_backward(padded, window, mel_fb, output)
    ctx.args = (n_fft, hop_length, power, log_multiplier, amin)


def _backward(ctx, grad_out):
    padded, window, mel_fb, out = ctx.saved_tensors
    grad = melspec_fused_backward(grad_out, padded, window, mel_fb, out, *ctx.args)
    return grad, None, None, None, None, None, None, None, None


melspec_fused.register_autograd(_backward, setup_context=_setup_context)


def melspectrogram(x: Tensor, window: Tensor, mel_fb: Tensor, n_fft: int, hop_length: int,
                   center: bool = True, pad_mode: str = "constant", power: float = 2.0,
                   log_multiplier: float = 0.0, amin: float = 1e-10,
                   plan: CpuMelPlan | None = None, backend: str | None = None) -> Tensor:
    """Mel spectrogram with librosa's conventions on the best available backend.

    x: (batch, samples); window: (win_length,) periodic window (``get_window``); mel_fb:
    (n_mels, 1 + n_fft // 2) (``mel_filterbank``). Returns (batch, n_mels, frames), frames as
    ``frame_count``: the mel power ``sum_f mel_fb[m, f] |X[t, f]| ** power``, or when
    ``log_multiplier`` is non-zero ``log_multiplier * log10(max(amin, mel))`` (finish with
    ``finish_db`` for ``ref`` / ``top_db``). Half-precision input is computed and returned in
    float32 (spectra of loud clips overflow float16). ``plan``: ``cpu_mel_plan(mel_fb)``
    precomputed for the cpu backend.
    """
    frames = check_spectrogram_args(x, n_fft, hop_length, center, power)
    if window.dim() != 1 or not 0 < window.shape[0] <= n_fft:
        raise ValueError(f"window must be (win_length,) with win_length <= n_fft={n_fft}, "
                         f"got shape {tuple(window.shape)}")
    if mel_fb.dim() != 2 or mel_fb.shape[1] != 1 + n_fft // 2:
        raise ValueError(f"mel_fb must be (n_mels, {1 + n_fft // 2}) for n_fft={n_fft}, got "
                         f"shape {tuple(mel_fb.shape)}")
    name = "torch" if torch.onnx.is_in_onnx_export() else select(  # ONNX: the plain ops
        x.device.type, x.dtype, window.requires_grad or mel_fb.requires_grad, backend)
    if name == "triton":
        padded = pad_for_frames(x, n_fft, center, pad_mode)
        return melspec_fused(padded, window.to(x.device), mel_fb.to(x.device), n_fft, hop_length,
                             frames, float(power), float(log_multiplier), float(amin))
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    window, mel_fb = window.to(x), mel_fb.to(x)
    if name == "cpu":
        return melspectrogram_cpu(x, window, mel_fb, n_fft, hop_length, center, pad_mode, power,
                                  log_multiplier, amin, plan)
    mel = melspectrogram_reference(x, _padded(window, n_fft), mel_fb, n_fft, hop_length, center,
                                   pad_mode, power)
    return log_scale(mel, log_multiplier, amin) if log_multiplier else mel
