"""Triton kernels of the fused DLR op (DESIGN §3); launched by ``dlr_engine.ops.dlr_triton``.

Per branch the pre-activation is a small matmul, computed time-major: ``pre^T = X^T @ W^T +
b`` with ``X^T[t, k] = x[t + k * dilation]`` the im2col tile of ``x`` (``BLOCK_T`` steps x
taps, gathered by one strided 2-D load) and ``W^T`` the branch's ``(taps, channels)``
weights, fed to ``tl.dot`` (tensor cores, float32 accumulation). With time as the dot's M
dimension (>= 64) Hopper gets ``wgmma`` (m64n32k8 TF32, m64n32k16 bfloat16), not only
``mma.sync``. ReLU and the pooling sum happen on the dot's output in registers, so the
full-rate ``(batch, branches * channels, samples)`` map never reaches memory.

Forward and weight-gradient kernels run on the grid ``(frame_blocks, channel_blocks, batch *
branches)``: a program owns one clip, one branch, ``BLOCK_C`` channels of it (all 32 of the
published model) and a run of consecutive output frames, walked in ``BLOCK_T``-sample tiles of
each pool window (one flat loop over the program's tiles, so loads pipeline across frames).
The input-gradient kernel runs on ``(sample_blocks, batch)``: a program owns
``BLOCK_S`` samples of ``x`` and gathers every contribution they receive (each branch, tap and
channel), recomputing the pre-activations it needs, so it writes each sample once: no atomics,
deterministic.

``PRECISION`` (constexpr) selects the dot's inputs: ``ieee`` (exact float32 products), ``tf32``
(operands rounded to nearest even with 10 mantissa bits, TF32 tensor cores), ``bf16``
(operands rounded to bfloat16, bfloat16 tensor cores). ``EMULATED`` (Triton's interpreter,
which has no working bfloat16 or TF32 dot) rounds the operands to the same grid in float32 and
multiplies exactly: the product of two TF32 or bfloat16 values is exact in float32, so
interpreted tests see the rounding the tensor cores get.

Tensor layouts, all contiguous: ``x (batch, samples)``, ``weight (branches, channels, TAPS)``,
``bias (branches, channels)``, ``dilations (branches,) int32``, pooled map
``(batch, branches * channels, frames)``. Floating inputs of any width are loaded into float32,
sums are float32, and outputs are stored in their buffer's dtype. ReLU is
``where(pre < 0, 0, pre)``, which keeps NaN (as ``torch.relu``).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _round_mantissa(v, DROP_BITS: tl.constexpr):
    """float32 ``v`` rounded to nearest even with its ``DROP_BITS`` low mantissa bits cleared
    (16: bfloat16, 13: TF32); NaN stays NaN, overflow gives infinity."""
    bits = v.to(tl.uint32, bitcast=True)
    half = (1 << (DROP_BITS - 1)) - 1
    keep = (0xFFFFFFFF >> DROP_BITS) << DROP_BITS
    bits = (bits + half + ((bits >> DROP_BITS) & 1)) & keep
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, EMULATED: tl.constexpr):
    """``a @ b`` of float32 tiles with float32 accumulation, operands as ``PRECISION`` says:
    ``ieee`` exact; ``tf32`` / ``bf16`` rounded to nearest even on that grid, then multiplied
    by the tensor cores, or (``EMULATED``: Triton's interpreter, which has no working bfloat16
    or TF32 dot) exactly in float32, which gives the same products."""
    if PRECISION == "ieee":
        return tl.dot(a, b, input_precision="ieee")
    elif PRECISION == "tf32":
        a = _round_mantissa(a, 13)  # the tensor cores would truncate: round explicitly
        b = _round_mantissa(b, 13)
        if EMULATED:
            return tl.dot(a, b, input_precision="ieee")
        else:
            return tl.dot(a, b, input_precision="tf32")
    else:
        if EMULATED:
            return tl.dot(_round_mantissa(a, 16), _round_mantissa(b, 16), input_precision="ieee")
        else:
            return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)


@triton.jit
def _branch_tiles(w_ptr, b_ptr, branch, channels, c, c_mask,
                  TAPS: tl.constexpr, BLOCK_K: tl.constexpr):
    """The branch's weights transposed, a ``(BLOCK_K, BLOCK_C)`` float32 tile ``w_t[k, c]``
    (zero beyond ``TAPS`` and ``channels``), its biases ``(BLOCK_C,)`` and the tap indices
    ``(BLOCK_K,)`` with their mask."""
    taps = tl.arange(0, BLOCK_K)
    tap_mask = taps < TAPS
    rows = branch * channels + c
    w_t = tl.load(w_ptr + rows[None, :] * TAPS + taps[:, None],
                  mask=tap_mask[:, None] & c_mask[None, :], other=0.0).to(tl.float32)
    bias = tl.load(b_ptr + rows, mask=c_mask, other=0.0).to(tl.float32)
    return w_t, bias, taps, tap_mask


@triton.jit
def _preactivation(x_row, w_t, bias, taps, tap_mask, t, t_mask, dilation,
                   PRECISION: tl.constexpr, EMULATED: tl.constexpr):
    """``(pre_t, x_t)``: the ``(BLOCK_T, BLOCK_C)`` tile ``bias[c] + sum_k x[t + k * dilation]
    * w[c, k]`` and the ``(BLOCK_T, BLOCK_K)`` im2col tile ``x_t`` it was computed from (zero
    where ``t_mask`` or the tap mask is off). x_row: pointer to the clip's first sample."""
    x_t = tl.load(x_row + t[:, None] + taps[None, :] * dilation,
                  mask=t_mask[:, None] & tap_mask[None, :], other=0.0).to(tl.float32)
    return _dot(x_t, w_t, PRECISION, EMULATED) + bias[None, :], x_t


@triton.jit
def _tile_steps(tile, first, tiles_per_frame, pool, c, BLOCK_T: tl.constexpr):
    """Tile ``tile`` of a program's frames walked as one flat loop: its frame ``f``, the steps
    ``j`` of that frame's pool window (``(BLOCK_T,)``) with their mask, and whether it is the
    frame's last tile (as a vector shaped like the channels ``c``, for store masks)."""
    f = first + tile // tiles_per_frame
    within = tile % tiles_per_frame
    j = within * BLOCK_T + tl.arange(0, BLOCK_T)
    return f, j, j < pool, (tl.zeros_like(c) + within) == tiles_per_frame - 1


@triton.jit
def _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels, frames,
                   frames_per_program, TAPS: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """What one forward / weight-gradient program works on: grid axis 0 = frame block, 1 =
    channel block, 2 = clip * branches + branch. Returns the frame block, the dilation,
    channels ``c`` and their mask, the weight and bias tiles, taps and their mask, the clip's
    x row, offsets of the pooled rows ``(n, branch * channels + c, :)`` and frames
    ``[first, last)``."""
    frame_block = tl.program_id(0)
    n = tl.program_id(2) // branches
    branch = tl.program_id(2) % branches
    dilation = tl.load(dilations_ptr + branch)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < channels
    w_t, bias, taps, tap_mask = _branch_tiles(w_ptr, b_ptr, branch, channels, c, c_mask,
                                              TAPS, BLOCK_K)
    x_row = x_ptr + n.to(tl.int64) * samples
    pooled_rows = (n.to(tl.int64) * branches + branch) * channels * frames + c * frames
    first = frame_block * frames_per_program
    last = tl.minimum(first + frames_per_program, frames)
    return (frame_block, dilation, c, c_mask, w_t, bias, taps, tap_mask, x_row, pooled_rows,
            first, last)


@triton.jit
def dlr_forward_kernel(x_ptr, w_ptr, b_ptr, dilations_ptr, out_ptr,
                       samples, branches, channels, frames, pool, frames_per_program,
                       TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                       BLOCK_T: tl.constexpr, PRECISION: tl.constexpr,
                       EMULATED: tl.constexpr):
    """``out[n, branch * channels + c, f] = mean_{j < pool} relu(pre[c, f * pool + j])``."""
    (frame_block, dilation, c, c_mask, w_t, bias, taps, tap_mask, x_row, pooled_rows, first,
     last) = _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels,
                            frames, frames_per_program, TAPS, BLOCK_C, BLOCK_K)
    out_rows = out_ptr + pooled_rows
    tiles_per_frame = tl.cdiv(pool, BLOCK_T)
    pooled = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for tile in range((last - first) * tiles_per_frame):  # one flat loop: pipelined loads
        f, j, j_mask, frame_done = _tile_steps(tile, first, tiles_per_frame, pool, c,
                                                  BLOCK_T)
        pre_t, x_t = _preactivation(x_row, w_t, bias, taps, tap_mask, f * pool + j, j_mask,
                                    dilation, PRECISION, EMULATED)
        relu = tl.where(pre_t < 0.0, 0.0, pre_t)
        pooled += tl.sum(tl.where(j_mask[:, None], relu, 0.0), axis=0)
        tl.store(out_rows + f, (pooled / pool).to(out_ptr.dtype.element_ty),
                 mask=c_mask & frame_done)
        pooled = tl.where(frame_done, 0.0, pooled)


@triton.jit
def dlr_weight_grad_kernel(grad_out_ptr, x_ptr, w_ptr, b_ptr, dilations_ptr,
                           grad_w_partial_ptr, grad_b_partial_ptr,
                           samples, branches, channels, frames, pool, frames_per_program,
                           frame_blocks,
                           TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                           BLOCK_T: tl.constexpr, PRECISION: tl.constexpr,
                           EMULATED: tl.constexpr):
    """Weight and bias gradients through the ReLU mask recomputed from ``x`` (never stored).

    ``g[c, t] = grad_out[n, branch * channels + c, t // pool] / pool`` unless ``pre[c, t] <= 0``
    (a NaN ``pre`` passes, as in torch's ReLU backward) for ``t < frames * pool``;
    ``grad_w += g @ x_t`` (``tl.dot``) and ``grad_b += sum_t g`` over this program's frames,
    written to its own row of ``grad_w_partial (batch, frame_blocks, branches, channels,
    TAPS)`` and ``grad_b_partial (batch, frame_blocks, branches, channels)``, float32; the
    launcher reduces them with ``torch.sum`` (deterministic).
    """
    (frame_block, dilation, c, c_mask, w_t, bias, taps, tap_mask, x_row, pooled_rows, first,
     last) = _program_slice(x_ptr, w_ptr, b_ptr, dilations_ptr, samples, branches, channels,
                            frames, frames_per_program, TAPS, BLOCK_C, BLOCK_K)
    grad_out_rows = grad_out_ptr + pooled_rows
    grad_w = tl.zeros((BLOCK_C, BLOCK_K), dtype=tl.float32)
    grad_b = tl.zeros((BLOCK_C,), dtype=tl.float32)
    tiles_per_frame = tl.cdiv(pool, BLOCK_T)
    for tile in range((last - first) * tiles_per_frame):  # one flat loop: pipelined loads
        f, j, j_mask, frame_done = _tile_steps(tile, first, tiles_per_frame, pool, c,
                                                  BLOCK_T)
        grad_pooled = tl.load(grad_out_rows + f, mask=c_mask, other=0.0).to(tl.float32) / pool
        pre_t, x_t = _preactivation(x_row, w_t, bias, taps, tap_mask, f * pool + j, j_mask,
                                    dilation, PRECISION, EMULATED)
        g_t = tl.where((pre_t <= 0.0) | ~j_mask[:, None], 0.0,  # a NaN pre passes
                       grad_pooled[None, :])
        grad_b += tl.sum(g_t, axis=0)
        grad_w += _dot(tl.trans(g_t), x_t, PRECISION, EMULATED)

    partial_rows = (((tl.program_id(2) // branches).to(tl.int64) * frame_blocks + frame_block)
                    * branches + tl.program_id(2) % branches) * channels + c
    tl.store(grad_b_partial_ptr + partial_rows, grad_b, mask=c_mask)
    tl.store(grad_w_partial_ptr + partial_rows[:, None] * TAPS + taps[None, :], grad_w,
             mask=c_mask[:, None] & tap_mask[None, :])


@triton.jit
def dlr_input_grad_kernel(grad_out_ptr, x_ptr, w_ptr, b_ptr, dilations_ptr, grad_x_ptr,
                          samples, branches, channels, frames, pool,
                          TAPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_S: tl.constexpr, PRECISION: tl.constexpr,
                          EMULATED: tl.constexpr):
    """``grad_x[n, s] = sum_{branch, k, c} g_branch[c, s - k * dilation] * w[branch, c, k]``.

    Grid ``(cdiv(samples, BLOCK_S), batch)``: a program owns ``BLOCK_S`` samples and, per
    branch, tap and channel block, recomputes the pre-activation tile at the output steps
    ``t = s - k * dilation`` that read them (``TAPS`` dots per branch, so this costs about
    ``TAPS`` forwards) and gathers their gradients; every sample is written once, in a fixed
    order: deterministic, no atomics. ``grad_x (batch, samples)`` float32.
    """
    n = tl.program_id(1).to(tl.int64)
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    x_row = x_ptr + n * samples
    steps = frames * pool
    grad_x = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for branch in range(branches):
        dilation = tl.load(dilations_ptr + branch)
        for channel_start in range(0, channels, BLOCK_C):
            c = channel_start + tl.arange(0, BLOCK_C)
            c_mask = c < channels
            w_t, bias, taps, tap_mask = _branch_tiles(w_ptr, b_ptr, branch, channels, c,
                                                      c_mask, TAPS, BLOCK_K)
            grad_rows = grad_out_ptr + (n * branches + branch) * channels * frames + c * frames
            for k in range(TAPS):
                t = s - k * dilation
                t_mask = (t >= 0) & (t < steps)
                pre_t, x_t = _preactivation(x_row, w_t, bias, taps, tap_mask, t, t_mask,
                                            dilation, PRECISION, EMULATED)
                grad_pooled = tl.load(grad_rows[None, :] + t[:, None] // pool,
                                      mask=t_mask[:, None] & c_mask[None, :], other=0.0)
                g_t = tl.where((pre_t <= 0.0) | ~t_mask[:, None], 0.0,
                               grad_pooled.to(tl.float32))
                w_k = tl.sum(tl.where(taps[:, None] == k, w_t, 0.0), axis=0)
                grad_x += tl.sum(g_t * w_k[None, :], axis=1)
    tl.store(grad_x_ptr + n * samples + s, grad_x / pool, mask=s < samples)
