"""Onset strength and autocorrelation tempogram, batched torch on any device (librosa semantics).

``onset_strength_from_db`` is ``librosa.onset.onset_strength`` with its defaults (``lag=1``,
``max_size=1``, mean over mel bands, centring shift) given the dB mel spectrogram;
``tempogram_from_onsets`` is ``librosa.feature.tempogram`` given the onset envelope, plus
``frame_hop`` (the DLR code keeps every second autocorrelation frame: ``frame_hop=2`` equals
librosa's tempogram ``[..., ::2]``).

Shapes: onset envelopes ``(batch, onset_frames)``; tempograms ``(batch, win_length, frames)``
(row = lag in onset frames).

On CPU, float32 without a gradient and with ``norm`` ``math.inf`` or None, the autocorrelation
runs as the custom op ``dlr_engine::tempogram_cpu``: the fused C++ kernel (framing, FFT, power,
inverse FFT and normalisation per tile of frames, straight into the output layout;
``ops/spectral_cpu.py``); elsewhere as batched torch ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import spectral_cpu
from .melspec_reference import get_window


def onset_strength_from_db(mel_db: torch.Tensor, n_fft: int, hop_length: int, lag: int = 1,
                           center: bool = True) -> torch.Tensor:
    """Spectral flux ``mean_m max(0, S[m, t] - S[m, t - lag])`` of a dB mel spectrogram.

    mel_db: (batch, n_mels, frames) from ``power_to_db`` of the mel power (STFT of ``n_fft``,
    ``hop_length``). Returns (batch, frames) (``center=True``: shifted right by ``lag + n_fft //
    (2 * hop_length)`` frames with zeros, as librosa compensates for centred framing).
    """
    if lag < 1:
        raise ValueError(f"lag={lag} must be a positive integer")
    frames = mel_db.shape[-1]
    flux = (mel_db[..., lag:] - mel_db[..., :-lag]).clamp_min(0.0).mean(dim=-2)
    shift = lag + (n_fft // (2 * hop_length) if center else 0)
    onsets = F.pad(flux, (shift, 0))
    return onsets[..., :frames] if center else onsets


def linear_ramp_pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """``numpy.pad(x, width, mode="linear_ramp", end_values=0)`` along the last axis."""
    ramp = torch.arange(width, dtype=x.dtype, device=x.device) / width
    return torch.cat([x[..., :1] * ramp, x, x[..., -1:] * ramp.flip(0)], dim=-1)


def fft_size(size: int) -> int:
    """The smallest even ``2^a 3^b 5^c >= 2 * size - 1``: zero padding for a linear (not
    circular) autocorrelation of ``size`` points that the FFTs handle fast (768 for 384, not
    1024; even for the C++ kernel's half-length real FFT)."""
    n = max(2 * size - 1, 2)
    n += n % 2
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def lag_cosines(n_fft: int, max_lag: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n_fft // 2 + 1, max_lag): ``power @ lag_cosines`` is ``irfft(power, n_fft)[..., :max_lag]``
    for a real power spectrum (a GEMM: faster than the inverse FFT on CPU, and only the kept
    lags)."""
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device)
    lags = torch.arange(max_lag, dtype=torch.float64, device=device)
    weights = torch.full_like(bins, 2.0 / n_fft)
    weights[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weights[-1] = 1.0 / n_fft
    return (torch.cos(2 * math.pi / n_fft * torch.outer(bins, lags)) * weights[:, None]).to(dtype)


def autocorrelate(frames: torch.Tensor, max_lag: int) -> torch.Tensor:
    """``sum_n z[n] z[n + lag]`` for ``lag < max_lag`` along the last axis (FFT, zero padded)."""
    n_fft = fft_size(frames.shape[-1])
    spectrum = torch.view_as_real(torch.fft.rfft(frames, n=n_fft, dim=-1))
    power = spectrum[..., 0].square().add_(spectrum[..., 1].square())
    return power @ lag_cosines(n_fft, max_lag, power.dtype, power.device)


def normalize_frames(tempogram: torch.Tensor, norm: float | None) -> torch.Tensor:
    """Divide each frame (last axis) of autocorrelations by its ``norm``-norm (``math.inf``: max
    abs, which is lag 0), as ``librosa.util.normalize``: frames whose norm is below the dtype's
    ``tiny`` are left as is."""
    if norm is None:
        return tempogram
    if not norm > 0:
        raise ValueError(f"norm={norm} must be positive, math.inf, or None")
    if norm == math.inf:  # |sum z[n] z[n + lag]| <= sum z[n]^2 (Cauchy-Schwarz)
        length = tempogram[..., :1]
    else:
        length = torch.linalg.vector_norm(tempogram, ord=norm, dim=-1, keepdim=True)
    tiny = torch.finfo(tempogram.dtype).tiny
    return tempogram / torch.where(length < tiny, torch.ones_like(length), length)


def tempogram_from_onsets(onsets: torch.Tensor, win_length: int, center: bool = True,
                          window: str | torch.Tensor = "hann", norm: float | None = math.inf,
                          frame_hop: int = 1) -> torch.Tensor:
    """Windowed autocorrelation of the onset envelope.

    onsets: (batch, n). Frame ``j`` covers onsets ``[j * frame_hop - win_length // 2, ...)``
    (``center=True``, the envelope extended by a linear ramp to zero on both sides) or
    ``[j * frame_hop, j * frame_hop + win_length)``. Returns (batch, win_length, frames) with
    ``frames = ceil(n / frame_hop)`` (centred) or ``1 + (n - win_length) // frame_hop``.
    """
    if win_length < 1 or frame_hop < 1:
        raise ValueError(f"win_length={win_length} and frame_hop={frame_hop} must be positive")
    n = onsets.shape[-1]
    if center:
        onsets = linear_ramp_pad(onsets, win_length // 2)
    elif n < win_length:
        raise ValueError(f"an onset envelope of {n} frames is shorter than win_length="
                         f"{win_length}; use center=True or a longer clip")
    n_frames = -(-n // frame_hop) if center else 1 + (n - win_length) // frame_hop
    weights = get_window(window, win_length, dtype=onsets.dtype, device=onsets.device)
    needs_grad = torch.is_grad_enabled() and (onsets.requires_grad or weights.requires_grad)
    if (spectral_cpu.available() and not torch.onnx.is_in_onnx_export()
            and onsets.device.type == "cpu" and onsets.dim() == 2
            and onsets.dtype == torch.float32 and not needs_grad and norm in (math.inf, None)):
        return tempogram_cpu(onsets, weights, n_frames, frame_hop, norm is not None)
    frames = onsets.unfold(-1, win_length, frame_hop)[..., :n_frames, :]
    tempogram = normalize_frames(autocorrelate(frames * weights, win_length), norm)
    return tempogram.transpose(-1, -2)


@torch.library.custom_op("dlr_engine::tempogram_cpu", mutates_args=())
def tempogram_cpu(onsets: torch.Tensor, window: torch.Tensor, n_frames: int, frame_hop: int,
                  normalize: bool) -> torch.Tensor:
    """Autocorrelation tempogram on CPU in float32: frame ``j`` of ``onsets`` (batch, n) is
    ``onsets[:, j * frame_hop:][:, :win_length] * window``; returns (batch, win_length,
    n_frames), each frame divided by its lag-0 value when ``normalize``."""
    return spectral_cpu.tempogram(onsets, n_frames, frame_hop, window, fft_size(window.shape[0]),
                                  normalize)


@tempogram_cpu.register_fake
def _tempogram_cpu_fake(onsets, window, n_frames, frame_hop, normalize):
    return onsets.new_empty((onsets.shape[0], window.shape[0], n_frames))
