"""The chunk loop shared by the cpu backends of the mel spectrogram and the tempogram: frames of
a signal, windowed by the C++ kernels (``csrc/cpu/spectral_cpu_kernel.cpp``) into rows of an FFT
buffer, transformed by torch's FFT, handed to the caller chunk by chunk; and the launchers of
the C++ passes the callers run on each chunk (``project_mel``, ``power_in_place``,
``store_lags``).

Rows are global frame indices ``g = clip * n_frames + frame`` over the whole batch, so chunks
stay full (and in cache) however short the clips are. Each frame's non-zero window taps go to
the start of its ``n_fft`` row, the rest of which stays zero: a circular shift of the frame,
which changes the DFT's phase only (the power spectrum and a zero-padded autocorrelation are
unchanged).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

try:
    from .. import _dlr_cpu
except ImportError:  # extension not built: callers use their torch formulations
    _dlr_cpu = None

PAD_CODES = {"constant": 0, "reflect": 1, "edge": 2, "replicate": 2}
"""``pad_mode`` names (``melspec_reference.PAD_MODES``) -> the C++ kernels' ``PadMode``."""
CHUNK_FRAMES = 512
"""Frames per chunk: the windowed frames and their spectrum (2 x 2 MB at n_fft 1024) stay in
cache; measured best of 128 .. 2048 for the mel spectrogram."""


def chunk_rows(total: int) -> int:
    """Rows per chunk for ``total`` frames."""
    return min(CHUNK_FRAMES, total)


def available() -> bool:
    """Whether the C++ kernels were built."""
    return _dlr_cpu is not None


def window_support(window: Tensor) -> tuple[int, int]:
    """(first, span): the window's non-zero taps are ``window[first:first + span]`` (span >= 1)."""
    nonzero = (window != 0).nonzero().flatten().tolist()
    return (nonzero[0], nonzero[-1] - nonzero[0] + 1) if nonzero else (0, 1)


def windowed_spectra(signal: Tensor, frame_offset: int, n_frames: int, hop: int, window: Tensor,
                     n_fft: int, pad_mode: str = "constant") -> Iterator[tuple[int, Tensor]]:
    """Yield ``(first, spectra)`` per chunk: ``spectra`` (rows, n_fft // 2 + 1) complex64 is the
    rfft of frames ``first .. first + rows`` (global indices), frame ``t`` of clip ``b`` being
    ``signal[b, frame_offset + t * hop + j] * window[j]`` for ``j < len(window)``.

    signal: (batch, length) float32; window: float32. Positions outside a clip (a negative
    ``frame_offset``, frames past the end) are padded by ``pad_mode`` (``PAD_CODES``), as
    ``melspec_reference.pad_for_frames`` would pad them. The yielded buffer is reused by the
    next chunk; chunks have ``chunk_rows(batch * n_frames)`` rows.
    """
    signal = signal.contiguous()
    batch, length = signal.shape
    first_tap, span = window_support(window)
    taps = window[first_tap:first_tap + span].to(torch.float32).contiguous()
    total = batch * n_frames
    chunk = chunk_rows(total)
    frames = torch.zeros(chunk, n_fft)
    spectra = torch.empty(chunk, n_fft // 2 + 1, dtype=torch.complex64)
    threads = torch.get_num_threads()
    for first in range(0, total, chunk):
        rows = min(chunk, total - first)
        _dlr_cpu.frame_window(signal.data_ptr(), length, n_frames, hop, frame_offset + first_tap,
                              PAD_CODES[pad_mode], first, rows, taps.data_ptr(), span,
                              frames.data_ptr(), n_fft, threads)
        torch.fft.rfft(frames[:rows], out=spectra[:rows])
        yield first, spectra[:rows]


def project_mel(spectra: Tensor, first: int, starts: Tensor, lengths: Tensor, offsets: Tensor,
                weights: Tensor, power: float, log_multiplier: float, amin: float,
                out: Tensor) -> None:
    """out (batch, n_mels, n_frames)[frames first .. first + rows] <- ``log_multiplier *
    log10(max(amin, sum_f mel[m, f] |spectra[r, f]| ** power))`` (no log when
    ``log_multiplier`` is 0); the filters as ``melspec.CpuMelPlan``."""
    _dlr_cpu.mel_project(spectra.data_ptr(), spectra.shape[0], spectra.shape[1], first,
                         out.shape[2], starts.shape[0], starts.data_ptr(), lengths.data_ptr(),
                         offsets.data_ptr(), weights.data_ptr(), power, log_multiplier, amin,
                         out.data_ptr(), torch.get_num_threads())


def power_in_place(spectra: Tensor) -> None:
    """spectra (rows, n_freq) complex64 <- ``|spectra| ** 2`` (imaginary parts 0)."""
    _dlr_cpu.power_in_place(spectra.data_ptr(), spectra.shape[0], spectra.shape[1],
                            torch.get_num_threads())


def store_lags(lags: Tensor, first: int, normalize: bool, out: Tensor) -> None:
    """out (batch, max_lag, n_frames)[frames first .. first + rows] <- ``lags[r, :max_lag]``
    (rows, n_fft) float32, divided by ``lags[r, 0]`` when ``normalize``."""
    _dlr_cpu.lag_store(lags.data_ptr(), lags.shape[0], lags.stride(0), first, out.shape[2],
                       out.shape[1], normalize, out.data_ptr(), torch.get_num_threads())
