"""Normalised cepstral modulation spectrum (NCMS, Jeong & Lee 2016), batched torch on any device.

The paper's equations (1)-(6), as computed here for a clip ``x`` at 22.05 kHz:

1. STFT ``X(t, k)``: periodic Hann window of 1024 samples, hop 512, no centring padding (frame
   ``t`` covers samples ``512 t .. 512 t + 1023``), bins ``k = 0..512``.
2. Real cepstrum ``C(t, q) = irfft(log(|X(t, k)| + 1e-4))[q]``: the inverse DFT of the 1024-point
   log-magnitude spectrum is real and symmetric (``C[q] = C[1024 - q]``), so only the quefrencies
   ``q = 0..512`` (513 values) are kept.
3. Segments of ``T = 214`` frames (~4.97 s), hop 107 frames (50 % overlap); a clip needs at least
   one full segment (``MIN_SAMPLES``); a tail shorter than a segment hop is dropped.
4. ``Ĉ``: z-score of ``C`` per quefrency over the 214 frames of each segment.
5. Modulation spectrum ``M(f, q) = |sum_t Ĉ(t, q) exp(-2 pi i f t / T)|``, ``f = 0..107``
   (108 bins, ``rfft`` over the segment's frames).
6. ``M̂``: z-score of ``M`` per modulation bin ``f`` over the 513 quefrencies of the segment.
   The DC bin ``M(0, q) = |sum_t Ĉ(t, q)|`` is zero by construction (``Ĉ`` has zero mean over
   ``t``); it is returned as exact zeros, because z-scoring its rounding noise (~1e-6 in float32)
   across quefrencies would blow that noise up to unit variance.

Z-scores use the population standard deviation (``ddof=0``) floored at ``STD_FLOOR``, so a
constant row (silence) becomes zeros, never NaN.
"""
from __future__ import annotations

import torch

SAMPLE_RATE = 22050
N_FFT = 1024
HOP_LENGTH = 512
LOG_FLOOR = 1e-4
"""added to |X| before the log (the paper's epsilon)."""
N_QUEFRENCIES = N_FFT // 2 + 1
SEGMENT_FRAMES = 214
SEGMENT_HOP = 107
N_MODULATION = SEGMENT_FRAMES // 2 + 1
STD_FLOOR = 1e-8
MIN_SAMPLES = N_FFT + (SEGMENT_FRAMES - 1) * HOP_LENGTH


def zscore(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``(x - mean) / max(std, STD_FLOOR)`` along ``dim`` (population std)."""
    mean = x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, correction=0, keepdim=True).clamp_min(STD_FLOOR)
    return (x - mean) / std


def log_magnitude(x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) at 22.05 kHz -> (batch, frames, 513) ``log(|X| + 1e-4)``, frames =
    ``1 + (samples - 1024) // 512``."""
    if x.dim() != 2:
        raise ValueError(f"expected (batch, samples) audio, got shape {tuple(x.shape)}")
    if x.shape[1] < N_FFT:
        raise ValueError(f"a clip of {x.shape[1]} samples is shorter than one {N_FFT}-sample STFT frame")
    window = torch.hann_window(N_FFT, periodic=True, dtype=x.dtype, device=x.device)
    spectrum = torch.stft(x, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    return torch.log(spectrum.abs() + LOG_FLOOR).transpose(1, 2)


def real_cepstrum(log_mag: torch.Tensor) -> torch.Tensor:
    """(..., 513) log-magnitude spectra -> (..., 513) real cepstra, quefrencies 0..512."""
    return torch.fft.irfft(log_mag, n=N_FFT, dim=-1)[..., :N_QUEFRENCIES]


def segment(frames: torch.Tensor) -> torch.Tensor:
    """(batch, frames, features) -> (batch, segments, 214, features): windows of 214 frames, hop 107."""
    if frames.shape[1] < SEGMENT_FRAMES:
        raise ValueError(f"{frames.shape[1]} STFT frames are fewer than one NCMS segment of "
                         f"{SEGMENT_FRAMES}; clips need at least {MIN_SAMPLES} samples "
                         f"({MIN_SAMPLES / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz): pad or skip them")
    return frames.unfold(1, SEGMENT_FRAMES, SEGMENT_HOP).transpose(2, 3)


def n_segments(samples: int) -> int:
    """Segments ``ncms`` returns for a clip of ``samples`` samples (0 when too short)."""
    if samples < MIN_SAMPLES:
        return 0
    return 1 + (1 + (samples - N_FFT) // HOP_LENGTH - SEGMENT_FRAMES) // SEGMENT_HOP


def ncms(x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) float at 22.05 kHz, samples >= ``MIN_SAMPLES`` -> (batch, segments,
    513 quefrencies, 108 modulation bins) normalised cepstral modulation spectrum, same dtype."""
    cepstra = segment(real_cepstrum(log_magnitude(x)))             # (B, S, T, Q)
    modulation = torch.fft.rfft(zscore(cepstra, dim=2), dim=2)[:, :, 1:].abs()  # (B, S, F - 1, Q)
    zero_dc = modulation.new_zeros(modulation.shape[:2] + (1, modulation.shape[3]))
    return torch.cat([zero_dc, zscore(modulation, dim=3)], dim=2).transpose(2, 3)


def spectral_frames(x: torch.Tensor) -> torch.Tensor:
    """The spectral DNN's input: x (batch, samples) at 22.05 kHz -> (batch, segments, 214 frames,
    513 bins) log-magnitude spectra z-scored per bin over the frames of each segment."""
    return zscore(segment(log_magnitude(x)), dim=2)
