"""Triton kernels of the fused mel spectrogram (issue 5), with their launchers.

One program owns ``BLOCK_T`` consecutive frames of one clip. The forward walks the frequency
bins in ``BLOCK_F`` chunks: for each chunk it cuts the frames straight out of the padded signal
(no framed copy in memory), multiplies them by the windowed DFT basis (``cos | sin``, the window
folded in, only the ``taps = win_length`` non-zero window samples) to get the real and imaginary
parts, squares them into power, and projects that chunk onto the mel filters, accumulating a
``(BLOCK_T, n_mels)`` tile; optionally ``multiplier * log10(max(amin, mel))`` before the store.
Neither the spectrum nor the power spectrogram ever reaches memory. ``ref`` and ``top_db`` need
the clip's maximum, so they are a second (torch) pass over the small mel output.

The backward recomputes the spectrum tile by tile from the signal (nothing but the output is
saved): ``g_power = g_mel @ mel_fb``, ``g_re = dP/dre * g_power`` (same for ``im``),
``g_frames = g_re @ cos^T + g_im @ sin^T``, overlap-added into the padded-signal gradient with
float32 atomics (frames overlap when ``hop < taps``).

Layouts, all contiguous: padded signal ``(batch, padded)``; ``cos``/``sin`` ``(taps, n_freq)``;
``mel_fb`` ``(n_mels, n_freq)``; output ``(batch, n_mels, frames)`` float32. Frame ``t`` reads
samples ``t * hop + tap_offset + k`` for ``k < taps``. Arithmetic is float32; dots use
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
def _mel_tile(x_row, cos_ptr, sin_ptr, mel_ptr, t, t_mask, m, m_mask, hop, tap_offset, taps,
              n_freq, POWER: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
              BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr):
    """Mel power ``(BLOCK_T, BLOCK_M)`` of frames ``t``: ``sum_f |X[t, f]|**POWER mel_fb[m, f]``."""
    acc = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for f0 in range(0, n_freq, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        f_mask = f < n_freq
        re, im = _spectrum_chunk(x_row, cos_ptr, sin_ptr, t, t_mask, f, f_mask, hop, tap_offset,
                                 taps, n_freq, BLOCK_T, BLOCK_K, BLOCK_F)
        power = re * re + im * im
        if POWER != 2.0:
            power = tl.where(power == 0, 0.0, tl.exp(0.5 * POWER * tl.log(  # NaN stays NaN
                tl.maximum(power, TINY, propagate_nan=tl.PropagateNan.ALL))))
        mel_t = tl.load(mel_ptr + m[None, :] * n_freq + f[:, None],
                        mask=f_mask[:, None] & m_mask[None, :], other=0.0)
        acc = tl.dot(power, mel_t, acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _tile_indices(frames, n_mels, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    """One program's tile: clip ``n`` (grid axis 1), frames ``t`` (axis 0) and mel bins ``m``,
    with their masks."""
    n = tl.program_id(1).to(tl.int64)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    m = tl.arange(0, BLOCK_M)
    return n, t, t < frames, m, m < n_mels


@triton.jit
def melspec_forward_kernel(x_ptr, cos_ptr, sin_ptr, mel_ptr, out_ptr,
                           padded, frames, hop, tap_offset, taps, n_freq, n_mels,
                           log_multiplier, amin,
                           POWER: tl.constexpr, LOG: tl.constexpr, BLOCK_T: tl.constexpr,
                           BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr):
    """``out[n, m, t] = sum_f |X_n[t, f]| ** POWER mel_fb[m, f]`` (then the log when ``LOG``)."""
    n, t, t_mask, m, m_mask = _tile_indices(frames, n_mels, BLOCK_T, BLOCK_M)
    mel = _mel_tile(x_ptr + n * padded, cos_ptr, sin_ptr, mel_ptr, t, t_mask, m, m_mask, hop,
                    tap_offset, taps, n_freq, POWER, BLOCK_T, BLOCK_K, BLOCK_F, BLOCK_M)
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


INTERPRETED = isinstance(melspec_forward_kernel, InterpretedFunction)
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


def melspec_forward(padded: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    mel_fb: torch.Tensor, hop: int, frames: int, tap_offset: int, power: float,
                    log_multiplier: float, amin: float) -> torch.Tensor:
    """Fused forward. padded: (batch, padded) float32/float16 signal already padded for framing;
    cos, sin: (taps, n_freq) from ``dft_basis``; mel_fb: (n_mels, n_freq) float32.

    Returns (batch, n_mels, frames) float32: mel power, or ``log_multiplier * log10(max(amin,
    mel))`` when ``log_multiplier`` is non-zero.
    """
    batch, length = padded.shape
    taps, n_freq = cos.shape
    n_mels = mel_fb.shape[0]
    out = torch.empty(batch, n_mels, frames, dtype=torch.float32, device=padded.device)
    grid = (triton.cdiv(frames, BLOCK_T), batch)
    torch.library.wrap_triton(melspec_forward_kernel)[grid](
        padded, cos, sin, mel_fb, out, length, frames, hop, tap_offset, taps, n_freq, n_mels,
        float(log_multiplier), float(amin), POWER=float(power), LOG=bool(log_multiplier),
        **_blocks(n_mels))
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
