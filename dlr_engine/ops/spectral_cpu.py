"""Launchers of the fused C++ mel spectrogram, tempogram and real cepstrum
(``csrc/cpu/spectral_cpu_kernel.cpp``): tiles of 16 consecutive frames are framed, windowed and
transformed by a batched FFT with the frames in the vector lanes (``csrc/cpu/lane_fft.h``), then
projected onto the mel filters (or, for the tempogram, turned into autocorrelations by the
inverse FFT of their power; for the cepstrum, the inverse FFT of their log magnitude; or just
the log magnitude), all in the core's cache; only the output is written to memory.

Frames are global indices ``g = clip * n_frames + frame`` over the whole batch, so tiles stay
full however short the clips are. Each frame's non-zero window taps go to the start of its FFT
input, the rest of which is zero: a circular shift of the frame, which changes the DFT's phase
only (the power spectrum and a zero-padded autocorrelation are unchanged).
"""
from __future__ import annotations

import torch
from torch import Tensor

try:
    from .. import _dlr_cpu
except ImportError:  # extension not built: callers use their torch formulations
    _dlr_cpu = None

PAD_CODES = {"constant": 0, "reflect": 1, "edge": 2, "replicate": 2}
"""``pad_mode`` names (``melspec_reference.PAD_MODES``) -> the C++ kernels' ``PadMode``."""


def available() -> bool:
    """Whether the C++ kernels were built."""
    return _dlr_cpu is not None


def window_support(window: Tensor) -> tuple[int, int]:
    """(first, span): the window's non-zero taps are ``window[first:first + span]`` (span >= 1)."""
    nonzero = (window != 0).nonzero().flatten().tolist()
    return (nonzero[0], nonzero[-1] - nonzero[0] + 1) if nonzero else (0, 1)


def _framing(signal: Tensor, frame_offset: int, window: Tensor) -> tuple:
    """The launchers' framing arguments: the signal and the window's non-zero taps."""
    first_tap, span = window_support(window)
    taps = window[first_tap:first_tap + span].to(torch.float32).contiguous()
    return signal.contiguous(), frame_offset + first_tap, taps, span


def melspectrogram(signal: Tensor, frame_offset: int, n_frames: int, hop: int, window: Tensor,
                   n_fft: int, pad_mode: str, starts: Tensor, lengths: Tensor, offsets: Tensor,
                   weights: Tensor, power: float, log_multiplier: float, amin: float) -> Tensor:
    """(batch, n_mels, n_frames): ``log_multiplier * log10(max(amin, sum_f mel[m, f] |X[f]| **
    power))`` (no log when ``log_multiplier`` is 0), X the ``n_fft``-point DFT of frame ``t`` of
    clip ``b``: ``signal[b, frame_offset + t * hop + j] * window[j]`` for ``j < len(window)``,
    positions outside the clip padded by ``pad_mode`` (``PAD_CODES``) as
    ``melspec_reference.pad_for_frames`` would pad them.

    signal: (batch, length) float32; the filters as ``melspec.CpuMelPlan``.
    """
    signal, offset, taps, span = _framing(signal, frame_offset, window)
    out = torch.empty(signal.shape[0], starts.shape[0], n_frames)
    if out.numel():
        _dlr_cpu.melspectrogram(signal.data_ptr(), signal.shape[0], signal.shape[1], n_frames,
                                hop, offset, PAD_CODES[pad_mode], taps.data_ptr(), span, n_fft,
                                starts.shape[0], starts.data_ptr(), lengths.data_ptr(),
                                offsets.data_ptr(), weights.data_ptr(), power, log_multiplier,
                                amin, out.data_ptr(), torch.get_num_threads())
    return out


def tempogram(onsets: Tensor, n_frames: int, hop: int, window: Tensor, n_fft: int,
              normalize: bool) -> Tensor:
    """(batch, len(window), n_frames): autocorrelations ``sum_n z[n] z[n + lag]`` of frame ``t``
    of clip ``b``, ``z[j] = onsets[b, t * hop + j] * window[j]`` (zeros past the end), each
    frame divided by its lag-0 value when ``normalize`` (unless below float32's tiny).

    onsets: (batch, length) float32; ``n_fft``: even, at least ``2 * len(window) - 1``.
    """
    return _uncentred_pass(_dlr_cpu.tempogram, onsets, window.shape[0], n_frames, hop, window,
                           n_fft, window.shape[0], normalize)


def _uncentred_pass(kernel, signal: Tensor, channels: int, n_frames: int, hop: int,
                    window: Tensor, n_fft: int, *options) -> Tensor:
    """(batch, channels, n_frames) from ``kernel`` (a binding taking the framing, ``n_fft``,
    ``options``, the output and the thread count) on frames starting at ``t * hop``."""
    signal, offset, taps, span = _framing(signal, 0, window)
    out = torch.empty(signal.shape[0], channels, n_frames)
    if out.numel():
        kernel(signal.data_ptr(), signal.shape[0], signal.shape[1], n_frames, hop, offset,
               taps.data_ptr(), span, n_fft, *options, out.data_ptr(), torch.get_num_threads())
    return out


def log_magnitude(signal: Tensor, n_frames: int, hop: int, window: Tensor, n_fft: int,
                  floor: float) -> Tensor:
    """(batch, n_fft // 2 + 1, n_frames): ``log(|X[k]| + floor)``, X the ``n_fft``-point DFT of
    frame ``t`` of clip ``b``: ``signal[b, t * hop + j] * window[j]`` for ``j < len(window)``
    (every frame inside the clip).

    signal: (batch, length) float32; ``n_fft``: even, at least ``len(window)``.
    """
    return _uncentred_pass(_dlr_cpu.log_magnitude, signal, n_fft // 2 + 1, n_frames, hop, window,
                           n_fft, floor)


def real_cepstrum(signal: Tensor, n_frames: int, hop: int, window: Tensor, n_fft: int,
                  n_quefrencies: int, floor: float) -> Tensor:
    """(batch, n_quefrencies, n_frames): ``irfft(log(|X| + floor), n_fft)[q]``, X the
    ``n_fft``-point DFT of frame ``t`` of clip ``b``: ``signal[b, t * hop + j] * window[j]`` for
    ``j < len(window)`` (every frame inside the clip).

    signal: (batch, length) float32; ``n_fft``: even, at least ``len(window)``.
    """
    return _uncentred_pass(_dlr_cpu.real_cepstrum, signal, n_quefrencies, n_frames, hop, window,
                           n_fft, n_quefrencies, floor)


def ncms_modulation(spectra: Tensor, std_floor: float, out: Tensor | None = None) -> Tensor:
    """The NCMS after its half-segment DFTs (``ncms.ncms_fused``'s last steps in one pass per
    segment): spectra (batch, rows, segments + 1, 2 half) float32, the DFT bins f = 1..half of
    each half segment (real parts, then imaginary) -> (batch, segments, rows, half + 1): per
    segment the magnitudes of ``H0 + (-1)^f H1`` divided by their row's std (Parseval), z-scored
    over the rows, both stds floored at ``std_floor``; column 0 zero. ``out``: a contiguous
    float32 tensor of that shape to write into (default: a new one)."""
    spectra = spectra.contiguous()
    batch, rows, halves, bins = spectra.shape
    shape = (batch, max(halves - 1, 0), rows, bins // 2 + 1)
    if out is None:
        out = torch.empty(shape)
    elif tuple(out.shape) != shape or not out.is_contiguous() or out.dtype != torch.float32:
        raise ValueError(f"out must be a contiguous float32 tensor of shape {shape}")
    if out.numel():
        _dlr_cpu.ncms_modulation(spectra.data_ptr(), batch, rows, halves - 1, bins // 2, std_floor,
                                 out.data_ptr(), torch.get_num_threads())
    return out
