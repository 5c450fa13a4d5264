"""Onset strength and autocorrelation tempogram, batched torch on any device (librosa semantics).

``onset_strength_from_db`` is ``librosa.onset.onset_strength`` with its defaults (``lag=1``,
``max_size=1``, mean over mel bands, centring shift) given the dB mel spectrogram;
``tempogram_from_onsets`` is ``librosa.feature.tempogram`` given the onset envelope, plus
``frame_hop`` (the DLR code keeps every second autocorrelation frame: ``frame_hop=2`` equals
librosa's tempogram ``[..., ::2]``).

Shapes: onset envelopes ``(batch, onset_frames)``; tempograms ``(batch, win_length, frames)``
(row = lag in onset frames).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def autocorrelate(frames: torch.Tensor, max_lag: int) -> torch.Tensor:
    """``sum_n z[n] z[n + lag]`` for ``lag < max_lag`` along the last axis (FFT, zero padded)."""
    n_pad = 1 << (2 * frames.shape[-1] - 2).bit_length()  # a power of two >= 2 * size - 1
    spectrum = torch.fft.rfft(frames, n=n_pad, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.fft.irfft(power, n=n_pad, dim=-1)[..., :max_lag]


def normalize_frames(tempogram: torch.Tensor, norm: float | None) -> torch.Tensor:
    """Divide each frame (last axis) by its ``norm``-norm (``math.inf``: max abs), as
    ``librosa.util.normalize``: frames whose norm is below the dtype's ``tiny`` are left as is."""
    if norm is None:
        return tempogram
    if not norm > 0:
        raise ValueError(f"norm={norm} must be positive, math.inf, or None")
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
    frames = onsets.unfold(-1, win_length, frame_hop)  # (batch, frames, win_length)
    if center:
        frames = frames[..., :-(-n // frame_hop), :]  # the first ceil(n / frame_hop)
    weights = get_window(window, win_length, dtype=onsets.dtype, device=onsets.device)
    tempogram = normalize_frames(autocorrelate(frames * weights, win_length), norm)
    return tempogram.transpose(-1, -2)
