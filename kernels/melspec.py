"""Triton kernels of the fused mel spectrogram (issues 5 and 14), with their launchers.

Forward: the spectrum comes from cuFFT (``torch.fft.rfft`` of the windowed frames, cut from the
padded signal by a strided view), then ONE Triton kernel reads it once and writes only the mel
output: power ``|X| ** power``, the projection onto the mel filters over each block of filters'
non-zero bins only (a band table of ``[first, last)`` bins per ``BLOCK_M`` filters), and
optionally ``multiplier * log10(max(amin, mel))``. ``ref`` and ``top_db`` need the clip's
maximum, so they are a second (torch) pass over the small mel output.

The backward recomputes the spectrum tile by tile from the signal as a DFT matmul (nothing but
the output is saved): ``g_power = g_mel @ mel_fb``, ``g_re = dP/dre * g_power`` (same for
``im``), ``g_frames = g_re @ cos^T + g_im @ sin^T``, overlap-added into the padded-signal
gradient with float32 atomics (frames overlap when ``hop < taps``).

Layouts, all contiguous: padded signal ``(batch, padded)``; spectrum ``(batch, frames,
n_freq, 2)`` float32 (real, imaginary); ``cos``/``sin`` ``(taps, n_freq)``; ``mel_fb``
``(n_mels, n_freq)``; output ``(batch, n_mels, frames)`` float32. Frame ``t`` reads samples
``t * hop + tap_offset + k`` for ``k < taps``. Arithmetic is float32; dots use
``DOT_PRECISION`` ("ieee": no TF32, which would cost about 1e-3 relative error).

Launches go through ``torch.library.wrap_triton`` so a ``triton_op`` can trace them.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

DOT_PRECISION: tl.constexpr = tl.constexpr("ieee")
BLOCK_T = 32
"""Frames per program."""
BLOCK_K = 32
"""Window taps per step of the DFT dot."""
BLOCK_F = 32
"""Frequency bins per chunk of the spectrum."""
MEL_BLOCK = 32
"""Mel filters per forward program: the band table gives each block of 32 filters its own bin
range (the 128 filters of the dlr preset span 4 ranges of ~1/8 to ~1/2 of the spectrum)."""
MIN_DOT = 16
"""tl.dot needs every block dimension >= 16."""
TINY: tl.constexpr = tl.constexpr(1e-38)
"""Power below which ``log`` is not evaluated (``|X| ** power`` is taken as 0 there)."""


@triton.jit
def _spectrum_chunk(x_row, cos_ptr, sin_ptr, t, t_mask, f, f_mask, hop, tap_offset, taps, n_freq,
                    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr):
    """Real and imaginary parts ``(BLOCK_T, BLOCK_F)`` of frames ``t`` at bins ``f``."""
    re = tl.zeros((BLOCK_T, BLOCK_F), dtype=tl.float32)
    im = tl.zeros((BLOCK_T, BLOCK_F), dtype=tl.float32)
    for k0 in range(0, taps, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < taps
        frames = tl.load(x_row + t[:, None] * hop + tap_offset + k[None, :],
                         mask=t_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        basis_offsets = k[:, None] * n_freq + f[None, :]
        basis_mask = k_mask[:, None] & f_mask[None, :]
        cos = tl.load(cos_ptr + basis_offsets, mask=basis_mask, other=0.0)
        sin = tl.load(sin_ptr + basis_offsets, mask=basis_mask, other=0.0)
        re = tl.dot(frames, cos, re, input_precision=DOT_PRECISION)
        im = tl.dot(frames, sin, im, input_precision=DOT_PRECISION)
    return re, im


@triton.jit
def _power(re, im, POWER: tl.constexpr):
    """``|re + i im| ** POWER`` (NaN stays NaN; 0 stays 0)."""
    power = re * re + im * im
    if POWER != 2.0:
        power = tl.where(power == 0, 0.0, tl.exp(0.5 * POWER * tl.log(
            tl.maximum(power, TINY, propagate_nan=tl.PropagateNan.ALL))))
    return power


@triton.jit
def _tile_indices(frames, n_mels, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    """One program's tile: clip ``n`` (grid axis 1), frames ``t`` (axis 0) and mel bins ``m``,
    with their masks."""
    n = tl.program_id(1).to(tl.int64)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    m = tl.arange(0, BLOCK_M)
    return n, t, t < frames, m, m < n_mels


@triton.jit
def mel_from_spectrum_kernel(spec_ptr, mel_ptr, bands_ptr, out_ptr, frames, n_freq, n_mels,
                             log_multiplier, amin,
                             POWER: tl.constexpr, LOG: tl.constexpr, BLOCK_T: tl.constexpr,
                             BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr):
    """``out[n, m, t] = sum_f |X_n[t, f]| ** POWER mel_fb[m, f]`` (then the log when ``LOG``)
    for the ``BLOCK_M`` filters of grid axis 2, summed over their non-zero bins
    ``[bands[2 b], bands[2 b + 1])`` only. Grid: (frame blocks, clips, filter blocks)."""
    n, t, t_mask, m, m_mask = _tile_indices(frames, n_mels, BLOCK_T, BLOCK_M)
    band = tl.program_id(2)
    m = band * BLOCK_M + m
    m_mask = m < n_mels
    first = tl.load(bands_ptr + 2 * band)
    last = tl.load(bands_ptr + 2 * band + 1)
    spec_row = spec_ptr + n * frames * n_freq * 2
    mel = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for f0 in range(first, last, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        f_mask = f < last
        offsets = (t[:, None] * n_freq + f[None, :]) * 2
        tile_mask = t_mask[:, None] & f_mask[None, :]
        re = tl.load(spec_row + offsets, mask=tile_mask, other=0.0)
        im = tl.load(spec_row + offsets + 1, mask=tile_mask, other=0.0)
        mel_t = tl.load(mel_ptr + m[None, :] * n_freq + f[:, None],
                        mask=f_mask[:, None] & m_mask[None, :], other=0.0)
        mel = tl.dot(_power(re, im, POWER), mel_t, mel, input_precision=DOT_PRECISION)
    if LOG:
        mel = tl.log(tl.maximum(mel, amin, propagate_nan=tl.PropagateNan.ALL)) * (
            log_multiplier / 2.302585092994046)
    tl.store(out_ptr + n * n_mels * frames + m[None, :] * frames + t[:, None], mel,
             mask=t_mask[:, None] & m_mask[None, :])


@triton.jit
def melspec_backward_kernel(grad_ptr, x_ptr, cos_ptr, sin_ptr, mel_ptr, out_ptr, grad_x_ptr,
                            padded, frames, hop, tap_offset, taps, n_freq, n_mels,
                            log_multiplier, amin,
                            POWER: tl.constexpr, LOG: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr):
    """Accumulate ``d loss / d padded_signal`` of one frame tile into ``grad_x`` (float32)."""
    n, t, t_mask, m, m_mask = _tile_indices(frames, n_mels, BLOCK_T, BLOCK_M)
    tile = n * n_mels * frames + m[None, :] * frames + t[:, None]
    tile_mask = t_mask[:, None] & m_mask[None, :]
    grad_mel = tl.load(grad_ptr + tile, mask=tile_mask, other=0.0).to(tl.float32)
    x_row = x_ptr + n * padded
    if LOG:
        # d/dmel of multiplier * log10(max(amin, mel)): the mel power comes from the saved
        # output (10 ** (out / multiplier)); zero where the amin floor was taken.
        out = tl.load(out_ptr + tile, mask=tile_mask, other=0.0)
        mel = tl.exp(out * (2.302585092994046 / log_multiplier))
        floor = tl.log(amin) * (log_multiplier / 2.302585092994046)
        grad_mel = tl.where(out > floor, grad_mel * (log_multiplier / 2.302585092994046) / mel,
                            0.0)
    grad_row = grad_x_ptr + n * padded
    for f0 in range(0, n_freq, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        f_mask = f < n_freq
        mel_fb = tl.load(mel_ptr + m[:, None] * n_freq + f[None, :],
                         mask=m_mask[:, None] & f_mask[None, :], other=0.0)
        grad_power = tl.dot(grad_mel, mel_fb, input_precision=DOT_PRECISION)
        re, im = _spectrum_chunk(x_row, cos_ptr, sin_ptr, t, t_mask, f, f_mask, hop, tap_offset,
                                 taps, n_freq, BLOCK_T, BLOCK_K, BLOCK_F)
        if POWER == 2.0:
            scale = 2.0 * grad_power
        else:
            power2 = re * re + im * im
            scale = tl.where(power2 > 0, POWER * grad_power
                             * tl.exp((0.5 * POWER - 1.0) * tl.log(tl.maximum(power2, TINY))), 0.0)
        grad_re = scale * re
        grad_im = scale * im
        for k0 in range(0, taps, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_mask = k < taps
            basis_offsets = f[:, None] + k[None, :] * n_freq  # (BLOCK_F, BLOCK_K): basis^T
            basis_mask = f_mask[:, None] & k_mask[None, :]
            cos_t = tl.load(cos_ptr + basis_offsets, mask=basis_mask, other=0.0)
            sin_t = tl.load(sin_ptr + basis_offsets, mask=basis_mask, other=0.0)
            grad_frames = tl.dot(grad_re, cos_t, input_precision=DOT_PRECISION)
            grad_frames = tl.dot(grad_im, sin_t, grad_frames, input_precision=DOT_PRECISION)
            tl.atomic_add(grad_row + t[:, None] * hop + tap_offset + k[None, :], grad_frames,
                          mask=t_mask[:, None] & k_mask[None, :])


INTERPRETED = isinstance(mel_from_spectrum_kernel, InterpretedFunction)
"""True when ``TRITON_INTERPRET=1`` was set before this module was imported: the kernels run in
Triton's interpreter on CPU tensors; otherwise they are compiled for the GPU."""


def dft_basis(window: torch.Tensor, n_fft: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Windowed DFT basis of the non-zero taps: ``(cos, sin, tap_offset)``.

    window: (win_length,) on the target device. ``cos[k, f] = w[k] cos(2 pi f (k + off) / n_fft)``
    and ``sin[k, f] = -w[k] sin(...)``, both ``(win_length, 1 + n_fft // 2)`` float32, computed
    in float64 with the phase reduced modulo ``n_fft`` exactly (integers).
    """
    win_length = window.shape[0]
    tap_offset = (n_fft - win_length) // 2
    taps = torch.arange(win_length, device=window.device, dtype=torch.int64) + tap_offset
    bins = torch.arange(1 + n_fft // 2, device=window.device, dtype=torch.int64)
    phase = (taps[:, None] * bins[None, :]) % n_fft * (2 * math.pi / n_fft)
    weights = window.to(torch.float64)[:, None]
    cos = (weights * torch.cos(phase)).to(torch.float32).contiguous()
    sin = (-weights * torch.sin(phase)).to(torch.float32).contiguous()
    return cos, sin, tap_offset


def _blocks(n_mels: int) -> dict[str, int]:
    return dict(BLOCK_T=BLOCK_T, BLOCK_K=BLOCK_K, BLOCK_F=BLOCK_F,
                BLOCK_M=max(MIN_DOT, triton.next_power_of_2(n_mels)))


def filter_bands(mel_fb: torch.Tensor, block: int) -> torch.Tensor:
    """``(blocks, 2)`` int32 ``[first, last)`` of the bins where any of each ``block``
    consecutive filters of ``mel_fb (n_mels, n_freq)`` is non-zero (``[0, 0)`` for an all-zero
    block); computed on mel_fb's device, without a host sync."""
    n_mels, n_freq = mel_fb.shape
    blocks = triton.cdiv(n_mels, block)
    touched = torch.zeros(blocks * block, n_freq, dtype=torch.bool, device=mel_fb.device)
    touched[:n_mels] = mel_fb != 0
    touched = touched.view(blocks, block, n_freq).any(dim=1)
    bins = torch.arange(n_freq, device=mel_fb.device)
    first = torch.where(touched, bins, n_freq).amin(dim=1)
    last = torch.where(touched, bins + 1, 0).amax(dim=1)
    return torch.stack([torch.minimum(first, last), last], dim=1).to(torch.int32).contiguous()


def spectrum(padded: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int,
             frames: int) -> torch.Tensor:
    """cuFFT (or the CPU FFT) of the windowed frames: ``(batch, frames, 1 + n_fft // 2, 2)``
    float32 (real, imaginary). Frame ``t`` is ``padded[:, t * hop : t * hop + n_fft]`` (a
    strided view) times the window centred in ``n_fft`` samples, as ``torch.stft``."""
    padded = padded.to(torch.float32)
    batch, length = padded.shape
    framed = padded.as_strided((batch, frames, n_fft), (length, hop, 1))
    offset = (n_fft - window.shape[0]) // 2
    centred = torch.nn.functional.pad(window.to(torch.float32),
                                      (offset, n_fft - window.shape[0] - offset))
    return torch.view_as_real(torch.fft.rfft(framed * centred, n=n_fft))


def melspec_forward(padded: torch.Tensor, window: torch.Tensor, mel_fb: torch.Tensor, n_fft: int,
                    hop: int, frames: int, power: float, log_multiplier: float,
                    amin: float) -> torch.Tensor:
    """Forward. padded: (batch, padded) float32/float16 signal already padded for framing;
    window: (win_length,); mel_fb: (n_mels, 1 + n_fft // 2) float32.

    Returns (batch, n_mels, frames) float32: mel power, or ``log_multiplier * log10(max(amin,
    mel))`` when ``log_multiplier`` is non-zero. Memory traffic: the windowed frames and the
    spectrum (written by the FFT, read once by `mel_from_spectrum_kernel`) and the output.
    """
    batch = padded.shape[0]
    n_mels, n_freq = mel_fb.shape
    spec = spectrum(padded, window, n_fft, hop, frames)
    blocks = _blocks(n_mels)
    block_m = min(blocks["BLOCK_M"], MEL_BLOCK)
    out = torch.empty(batch, n_mels, frames, dtype=torch.float32, device=padded.device)
    grid = (triton.cdiv(frames, BLOCK_T), batch, triton.cdiv(n_mels, block_m))
    torch.library.wrap_triton(mel_from_spectrum_kernel)[grid](
        spec, mel_fb, filter_bands(mel_fb, block_m), out, frames, n_freq, n_mels,
        float(log_multiplier), float(amin), POWER=float(power), LOG=bool(log_multiplier),
        BLOCK_T=BLOCK_T, BLOCK_F=BLOCK_F, BLOCK_M=block_m)
    return out


def melspec_backward(grad_out: torch.Tensor, padded: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor, mel_fb: torch.Tensor, out: torch.Tensor, hop: int,
                     tap_offset: int, power: float, log_multiplier: float,
                     amin: float) -> torch.Tensor:
    """Gradient of ``melspec_forward`` w.r.t. ``padded``: (batch, padded) float32.

    grad_out, out: (batch, n_mels, frames) float32 (``out`` is read only when the log is fused).
    """
    batch, length = padded.shape
    taps, n_freq = cos.shape
    n_mels, frames = out.shape[1], out.shape[2]
    grad_x = torch.zeros(batch, length, dtype=torch.float32, device=padded.device)
    grid = (triton.cdiv(frames, BLOCK_T), batch)
    torch.library.wrap_triton(melspec_backward_kernel)[grid](
        grad_out, padded, cos, sin, mel_fb, out, grad_x, length, frames, hop, tap_offset, taps,
        n_freq, n_mels, float(log_multiplier), float(amin), POWER=float(power),
        LOG=bool(log_multiplier), **_blocks(n_mels))
    return grad_x
