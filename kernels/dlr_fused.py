"""Triton kernels of the fused DLR op (DESIGN §3); launched by ``dlr_engine.ops.dlr_triton``.

Both kernels run on the grid ``(frame_blocks, channel_blocks, batch * branches)``: a program owns
one clip ``n``, one branch, ``BLOCK_C`` channels of that branch and a run of consecutive output
frames. It walks each frame's pool window in ``BLOCK_T``-sample tiles and rebuilds the
pre-activation tile ``bias[c] + sum_k w[c, k] * x[t + k * dilation]`` from ``x`` by looping over
the taps, so the full-rate ``(batch, branches * channels, samples)`` map never reaches memory.

Tensor layouts, all contiguous: ``x (batch, samples)``, ``weight (branches, channels, TAPS)``,
``bias (branches, channels)``, ``dilations (branches,) int32``, pooled map
``(batch, branches * channels, frames)``. Floating inputs of any width are loaded into float32,
all arithmetic is float32, and outputs are stored in their buffer's dtype.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _preactivation(x_row, w_rows, bias, c_mask, t, t_mask, dilation,
                   TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """(BLOCK_C, BLOCK_T) tile ``bias[c] + sum_k w[c, k] * x[t + k * dilation]`` (VALID, no flip).

    x_row: pointer to the clip's first sample; w_rows: (BLOCK_C,) pointers to ``weight[branch, c, 0]``;
    t: (BLOCK_T,) sample offsets, loaded where ``t_mask``.
    """
    acc = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32) + bias[:, None]
    for k in tl.static_range(TAPS):
        w_k = tl.load(w_rows + k, mask=c_mask, other=0.0).to(tl.float32)
        x_k = tl.load(x_row + t + k * dilation, mask=t_mask, other=0.0).to(tl.float32)
        acc += w_k[:, None] * x_k[None, :]
    return acc


@triton.jit
def _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels, frames,
                   frames_per_program, TAPS: tl.constexpr, BLOCK_C: tl.constexpr):
    """What one program of either kernel works on: grid axis 0 = frame block, 1 = channel
    block, 2 = clip * branches + branch. Returns the frame block, clip ``n``, ``branch``, its
    dilation, channels ``c`` and their mask, weight-row pointers, biases (float32), the clip's
    x row, offsets of the pooled rows ``(n, branch * channels + c, :)`` and frames
    ``[first, last)``."""
    frame_block = tl.program_id(0)
    channel_block = tl.program_id(1)
    n = tl.program_id(2) // branches
    branch = tl.program_id(2) % branches
    dilation = tl.load(dilations_ptr + branch)
    c = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < channels
    w_rows = w_ptr + (branch * channels + c) * TAPS
    bias = tl.load(b_ptr + branch * channels + c, mask=c_mask, other=0.0).to(tl.float32)
    x_row = x_ptr + n.to(tl.int64) * samples
    pooled_rows = (n.to(tl.int64) * branches + branch) * channels * frames + c * frames
    first = frame_block * frames_per_program
    last = tl.minimum(first + frames_per_program, frames)
    return (frame_block, n, branch, dilation, c, c_mask, w_rows, bias, x_row, pooled_rows, first,
            last)


@triton.jit
def dlr_forward_kernel(x_ptr, w_ptr, b_ptr, dilations_ptr, out_ptr,
                       samples, branches, channels, frames, pool, frames_per_program,
                       TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """``out[n, branch * channels + c, f] = mean_{j < pool} relu(pre[c, f * pool + j])``."""
    (frame_block, n, branch, dilation, c, c_mask, w_rows, bias, x_row, pooled_rows, first,
     last) = _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels,
                            frames, frames_per_program, TAPS, BLOCK_C)
    out_rows = out_ptr + pooled_rows
    for f in range(first, last):
        pooled = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for start in range(0, pool, BLOCK_T):
            j = start + tl.arange(0, BLOCK_T)
            j_mask = j < pool
            pre = _preactivation(x_row, w_rows, bias, c_mask, f * pool + j, j_mask, dilation,
                                 TAPS, BLOCK_C, BLOCK_T)
            pooled += tl.sum(tl.where(j_mask[None, :], tl.maximum(pre, 0.0), 0.0), axis=1)
        tl.store(out_rows + f, (pooled / pool).to(out_ptr.dtype.element_ty), mask=c_mask)


@triton.jit
def dlr_backward_kernel(grad_out_ptr, x_ptr, w_ptr, b_ptr, dilations_ptr,
                        grad_x_ptr, grad_w_partial_ptr, grad_b_partial_ptr,
                        samples, branches, channels, frames, pool, frames_per_program, frame_blocks,
                        TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
                        BLOCK_K: tl.constexpr, NEED_X_GRAD: tl.constexpr):
    """Gradients of the forward through the ReLU mask, recomputed from ``x`` (never stored).

    ``g[c, t] = (pre[c, t] > 0) * grad_out[n, branch * channels + c, t // pool] / pool`` for
    ``t < frames * pool``. Weight and bias gradients are summed over this program's frames and
    written to its own row of ``grad_w_partial (batch, frame_blocks, branches, channels, TAPS)``
    and ``grad_b_partial (batch, frame_blocks, branches, channels)``, both float32: the launcher
    reduces them with ``torch.sum``, so they are deterministic. ``grad_x (batch, samples)``
    float32, zero-filled by the launcher, receives ``sum_c g[c, t] * w[c, k]`` at ``t + k * dilation`` through
    ``tl.atomic_add`` (programs of neighbouring frames, other channel blocks and other branches
    hit the same samples), so its float rounding order is not deterministic on a GPU.
    """
    (frame_block, n, branch, dilation, c, c_mask, w_rows, bias, x_row, pooled_rows, first,
     last) = _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels,
                            frames, frames_per_program, TAPS, BLOCK_C)
    taps = tl.arange(0, BLOCK_K)
    grad_x_row = grad_x_ptr + n.to(tl.int64) * samples
    grad_out_rows = grad_out_ptr + pooled_rows

    grad_w = tl.zeros((BLOCK_C, BLOCK_K), dtype=tl.float32)
    grad_b = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for f in range(first, last):
        grad_pooled = tl.load(grad_out_rows + f, mask=c_mask, other=0.0).to(tl.float32) / pool
        for start in range(0, pool, BLOCK_T):
            j = start + tl.arange(0, BLOCK_T)
            j_mask = j < pool
            t = f * pool + j
            pre = _preactivation(x_row, w_rows, bias, c_mask, t, j_mask, dilation,
                                 TAPS, BLOCK_C, BLOCK_T)
            g = tl.where((pre > 0.0) & j_mask[None, :], grad_pooled[:, None], 0.0)
            grad_b += tl.sum(g, axis=1)
            for k in tl.static_range(TAPS):
                x_k = tl.load(x_row + t + k * dilation, mask=j_mask, other=0.0).to(tl.float32)
                grad_w_k = tl.sum(g * x_k[None, :], axis=1)
                grad_w += tl.where(taps[None, :] == k, grad_w_k[:, None], 0.0)
                if NEED_X_GRAD:
                    w_k = tl.load(w_rows + k, mask=c_mask, other=0.0).to(tl.float32)
                    tl.atomic_add(grad_x_row + t + k * dilation, tl.sum(g * w_k[:, None], axis=0),
                                  mask=j_mask, sem="relaxed")

    partial_rows = ((n.to(tl.int64) * frame_blocks + frame_block) * branches + branch) * channels + c
    tl.store(grad_b_partial_ptr + partial_rows, grad_b, mask=c_mask)
    tl.store(grad_w_partial_ptr + partial_rows[:, None] * TAPS + taps[None, :], grad_w,
             mask=c_mask[:, None] & (taps[None, :] < TAPS))
