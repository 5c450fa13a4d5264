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
constant row (silence) never becomes NaN; in float32 its rounding noise (the mean of equal values
is not always that value) can come out scaled up, finite (``ncms_fused`` returns exact zeros).

``ncms`` computes these equations as written (the reference); ``ncms_fused`` gives the same
values faster (inference forms use it, as ``spectral_frames_fused`` for the spectral DNN's
input), by three identities:

- The cepstra come from one fused C++ pass per tile of frames (framing, FFT, ``log(|X| + eps)``,
  inverse FFT: ``spectral_cpu.real_cepstrum``) on CPUs where the extension is built; there the
  steps after the DFT matmul (magnitudes, both z-scores) are one C++ pass per segment too
  (``spectral_cpu.ncms_modulation``), float32.
- Segments overlap by half, so each segment's DFT is the sum of the 214-point DFTs of its two
  halves, the second times ``(-1)^f``: one DFT (a matmul) per 107-frame half instead of per
  segment.
- The z-score of step 4 only scales the DFT bins ``f >= 1`` by ``1 / std``, and by Parseval
  ``std = sqrt(2 sum_{f=1}^{106} |R_f|^2 + |R_107|^2) / 214`` from the same bins: no pass over
  the segments' frames.
"""
from __future__ import annotations

import math

import torch

from . import spectral_cpu

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
CHUNK_SEGMENTS = 8
"""Segments per DFT matmul on the CPU path of ``ncms_fused``: their spectra (~4 MB) stay in
cache for the modulation pass, and the matmul runs ~2x faster than on a whole batch's (a
(49248, 107) @ (107, 214) product at 8 x 30 s: 34.7 ms; in 4096-row pieces: 17.6 ms).
Against one product per clip (medians of 2 series): 2 x 200 s 119-134 -> 90-92 ms; at 8 x 30 s
(11 segments a clip) the two are within noise, 32-46 against 34-39 ms."""
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


def segment_count(frames: int) -> int:
    """Segments of 214 frames every 107 in ``frames`` STFT frames; raises when there is none."""
    if frames < SEGMENT_FRAMES:
        raise ValueError(f"{frames} STFT frames are fewer than one NCMS segment of "
                         f"{SEGMENT_FRAMES}; clips need at least {MIN_SAMPLES} samples "
                         f"({MIN_SAMPLES / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz): pad or skip them")
    return 1 + (frames - SEGMENT_FRAMES) // SEGMENT_HOP


def segment(frames: torch.Tensor) -> torch.Tensor:
    """(batch, frames, features) -> (batch, segments, 214, features): windows of 214 frames, hop 107."""
    segment_count(frames.shape[1])
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


def _cpp_framing(x: torch.Tensor) -> tuple[int, torch.Tensor] | None:
    """(frames, window) for the fused C++ passes (float32 CPU clips of at least one frame, the
    extension built; no autograd), else None."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and spectral_cpu.available() \
            and x.dim() == 2 and x.shape[1] >= N_FFT:
        return 1 + (x.shape[1] - N_FFT) // HOP_LENGTH, torch.hann_window(N_FFT, periodic=True)
    return None


def cepstra_by_quefrency(x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) at 22.05 kHz -> (batch, 513, frames) real cepstra (``real_cepstrum``
    of ``log_magnitude``, quefrency-major): one fused C++ pass where ``_cpp_framing`` allows."""
    if framing := _cpp_framing(x):
        return spectral_cpu.real_cepstrum(x, framing[0], HOP_LENGTH, framing[1], N_FFT,
                                          N_QUEFRENCIES, LOG_FLOOR)
    return real_cepstrum(log_magnitude(x)).transpose(1, 2)


def log_magnitude_by_bin(x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) at 22.05 kHz -> (batch, 513, frames) ``log_magnitude``, bin-major:
    one fused C++ pass where ``_cpp_framing`` allows."""
    if framing := _cpp_framing(x):
        return spectral_cpu.log_magnitude(x, framing[0], HOP_LENGTH, framing[1], N_FFT, LOG_FLOOR)
    return log_magnitude(x).transpose(1, 2)


def _no_gradient(x: torch.Tensor, name: str) -> None:
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{name}_fused has no gradient; use {name} (the reference) to train")


def spectral_frames_fused(x: torch.Tensor) -> torch.Tensor:
    """``spectral_frames(x)`` for inference (no autograd), contiguous: the log magnitudes from
    one C++ pass, each segment's mean and std combined from those of its two halves (Chan et
    al.'s pairwise update), one pass writing the z-scores. Each bin's first frame is subtracted
    first (a z-score does not see it), so silence gives exact zeros."""
    _no_gradient(x, "spectral_frames")
    spectra = log_magnitude_by_bin(x)                                  # (B, K, frames)
    segments = segment_count(spectra.shape[2])
    spectra = spectra - spectra[:, :, :1]
    halves = spectra[:, :, :(segments + 1) * SEGMENT_HOP].unflatten(2, (segments + 1, SEGMENT_HOP))
    half_var, half_mean = torch.var_mean(halves, dim=3, correction=0)  # (B, K, S + 1)
    mean = (half_mean[..., :-1] + half_mean[..., 1:]) / 2
    delta = half_mean[..., 1:] - half_mean[..., :-1]
    variance = (half_var[..., :-1] + half_var[..., 1:]) / 2 + delta.square() / 4
    scale = variance.sqrt_().clamp_min_(STD_FLOOR).reciprocal_().unsqueeze(-1)
    batch, bins = spectra.shape[:2]
    out = spectra.new_empty(batch, segments, SEGMENT_FRAMES, bins)
    torch.addcmul(-mean.unsqueeze(-1) * scale, spectra.unfold(2, SEGMENT_FRAMES, SEGMENT_HOP),
                  scale, out=out.permute(0, 3, 1, 2))
    return out


def half_segment_dft(dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(107 frames, 214): columns 0..106 the cosines, 107..213 the negated sines of the 214-point
    DFT bins f = 1..107 of one half segment (frames t = 0..106, zero-padded to 214)."""
    f = torch.arange(1, N_MODULATION, dtype=torch.float64)
    t = torch.arange(SEGMENT_HOP, dtype=torch.float64)
    angle = 2 * math.pi * t[:, None] * f[None, :] / SEGMENT_FRAMES
    return torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1).to(dtype=dtype, device=device)


def ncms_fused(x: torch.Tensor) -> torch.Tensor:
    """``ncms(x)`` by the identities in the module docstring, for inference (no autograd: use
    ``ncms`` for gradients): x (batch, samples) float at 22.05 kHz -> (batch, segments, 513,
    108), contiguous."""
    _no_gradient(x, "ncms")
    cepstra = cepstra_by_quefrency(x)                                  # (B, Q, frames)
    batch, quefrencies, frames = cepstra.shape
    segments = segment_count(frames)
    # minus each row's first frame: the bins f >= 1 are unchanged, a constant row (silence) gives
    # exact zeros instead of rounding noise divided by STD_FLOOR
    halves = (cepstra[:, :, :(segments + 1) * SEGMENT_HOP] - cepstra[:, :, :1]).reshape(
        batch, quefrencies, segments + 1, SEGMENT_HOP)
    dft = half_segment_dft(cepstra.dtype, cepstra.device)
    if cepstra.device.type == "cpu" and cepstra.dtype == torch.float32 and spectral_cpu.available():
        out = cepstra.new_empty(batch, segments, quefrencies, N_MODULATION)
        for clip in range(batch):  # spectra of CHUNK_SEGMENTS segments at a time stay in cache
            for s in range(0, segments, CHUNK_SEGMENTS):
                n = min(CHUNK_SEGMENTS, segments - s)
                rows = halves[clip, :, s:s + n + 1].reshape(-1, SEGMENT_HOP)  # one 2D product
                spectra = (rows @ dft).view(1, quefrencies, n + 1, 2 * SEGMENT_HOP)
                spectral_cpu.ncms_modulation(spectra, STD_FLOOR, out[clip:clip + 1, s:s + n])
        return out
    spectra = halves @ dft                                             # (B, Q, S + 1, 214)
    odd = torch.ones(N_MODULATION - 1, dtype=cepstra.dtype, device=cepstra.device)
    odd[::2] = -1                                                      # (-1)^f, f = 1..107
    bins = torch.addcmul(spectra[:, :, :-1], spectra[:, :, 1:], odd.repeat(2))
    power = bins[..., :SEGMENT_HOP].square().addcmul_(bins[..., SEGMENT_HOP:], bins[..., SEGMENT_HOP:])
    std = (2 * power[..., :-1].sum(dim=-1) + power[..., -1]).sqrt_() / SEGMENT_FRAMES
    modulation = power.sqrt_().div_(std.clamp_min_(STD_FLOOR).unsqueeze(-1))  # (B, Q, S, F - 1)
    variance, mean = torch.var_mean(modulation, dim=1, correction=0, keepdim=True)
    scale = variance.sqrt_().clamp_min_(STD_FLOOR).reciprocal_()
    out = modulation.new_zeros(batch, segments, quefrencies, N_MODULATION)
    torch.addcmul(-mean * scale, modulation, scale, out=out[..., 1:].transpose(1, 2))  # z-score over Q
    return out
