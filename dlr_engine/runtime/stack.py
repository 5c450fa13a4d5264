"""A stack of folded conv blocks, on the fused CPU kernel where it runs and in plain torch
elsewhere.

Each block writes its pooled output straight into the interior of the next block's zero-padded
input, so between blocks nothing is copied or padded; only the first block's input is padded
from the image once. The padded inputs are kept per thread and shape and reused by the next
call of that shape (their borders zeroed once): fresh buffers of this size cost more in page
faults than the kernels that fill them.
"""
from __future__ import annotations

import functools
import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.pretrained import float32_convolutions
from .conv_block import FoldedBlock, conv_block_cpu, conv_block_reference, cpu_kernel_reason

NO_PADDING = (0, 0, 0, 0)


def _padded_buffer(batch: int, rows: int, cols: int, channels: int,
                   padding: tuple[int, int, int, int], dtype: torch.dtype,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """A (batch, rows + top + bottom, cols + left + right, channels) buffer with zero borders
    and its unwritten interior (batch, rows, cols, channels)."""
    left, right, top, bottom = padding
    buffer = torch.empty(batch, rows + top + bottom, cols + left + right, channels, dtype=dtype,
                         device=device)
    buffer[:, :top].zero_()
    buffer[:, top + rows:].zero_()
    buffer[:, top:top + rows, :left].zero_()
    buffer[:, top:top + rows, left + cols:].zero_()
    return buffer, buffer[:, top:top + rows, left:left + cols]


class ConvStack:
    """forward(x (N, rows, cols, channels) float32, any strides) -> (N, rows', cols',
    channels') float32 (NHWC): the blocks in order. On the CPU each block runs on the fused
    kernel where it can (``backends``); on other devices the folded blocks run in torch
    (``torch_blocks``: NCHW, cuDNN on a GPU), the returned NHWC tensor a view of it.

    input_affine: (scale, shift) applied to x before the first block's zero padding (a batch
      norm of a one-channel input, as the CRNN's first layer).
    """

    def __init__(self, blocks: list[FoldedBlock],
                 input_affine: tuple[float, float] | None = None,
                 out_channels: int | None = None) -> None:
        if not blocks:
            raise ValueError("a ConvStack needs at least one block")
        self.out_channels = out_channels or blocks[-1].out_channels
        self.blocks = pad_channels(blocks, CHANNEL_BLOCK)
        self.input_affine = input_affine
        self.dims = 2  # the layers it was folded from: 2D, or 1D (one row of columns)
        self._workspace = threading.local()

    def __getstate__(self) -> dict:
        """Copies and pickles (``copy.deepcopy``, Ray actors) leave the buffers behind."""
        return {"blocks": self.blocks, "input_affine": self.input_affine, "dims": self.dims,
                "out_channels": self.out_channels}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["blocks"], state["input_affine"], state["out_channels"])
        self.dims = state["dims"]

    def _buffer(self, index: int, batch: int, rows: int, cols: int, channels: int,
                padding: tuple[int, int, int, int], dtype: torch.dtype,
                device: torch.device) -> tuple[Tensor, Tensor]:
        """The padded input buffer of block ``index`` (zero borders) and its interior, reused
        by the next call of this thread with the same shape (one kept per block: a batch of
        another size replaces it, so memory stays that of one call)."""
        cache = self._workspace.__dict__.setdefault("buffers", {})
        key = (batch, rows, cols, channels, padding, dtype, device)
        if index not in cache or cache[index][0] != key:
            cache[index] = (key, _padded_buffer(batch, rows, cols, channels, padding, dtype, device))
        return cache[index][1]

    def backends(self, x: Tensor, bfloat16: bool) -> list[str]:
        """Per block, what runs it for the input ``x``: ``cpu_bf16``, ``cpu`` or ``torch``. In
        bfloat16 a one-channel first block stays float32: it reads the front-end's features
        straight, and where its batch norm is sharp (the published DLR(13) model's variances
        are ~1e-5) bfloat16 rounding of its input is amplified by mean / std (white noise
        through the published model, its back-end alone in bfloat16: embedding error 1.4 %
        with this block in bfloat16, 0.9 % with it in float32)."""
        names, (batch, rows, cols, channels) = [], x.shape
        for block in self.blocks:
            left, right, top, bottom = block.padding
            shape = (batch, rows + top + bottom, cols + left + right, channels)
            if bfloat16 and channels > 1 and cpu_kernel_reason(block, shape, True, x.device) is None:
                names.append("cpu_bf16")
            elif cpu_kernel_reason(block, shape, False, x.device) is None:
                names.append("cpu")
            else:
                names.append("torch")
            rows, cols = block.out_size(shape[1], shape[2])
            channels = block.out_channels
        return names

    def __call__(self, x: Tensor, bfloat16: bool = False) -> Tensor:
        if self.input_affine is not None:
            scale, shift = self.input_affine
            x = x * scale + shift
        device = x.device
        if device.type != "cpu":  # one NCHW torch pass per block: cuDNN, no copies
            y = torch_blocks(x.permute(0, 3, 1, 2), self.blocks, bfloat16)
            return y.permute(0, 2, 3, 1)[..., :self.out_channels]
        backends = self.backends(x, bfloat16)
        dtypes = [torch.bfloat16 if name == "cpu_bf16" else torch.float32 for name in backends]
        batch, rows, cols, channels = x.shape
        image = x
        x, interior = self._buffer(0, batch, rows, cols, channels, self.blocks[0].padding,
                                   dtypes[0], device)
        interior.copy_(image)
        for i, (block, backend) in enumerate(zip(self.blocks, backends)):
            last = i + 1 == len(self.blocks)
            dtype = dtypes[i] if last else dtypes[i + 1]
            rows, cols = block.out_size(x.shape[1], x.shape[2])
            padding = NO_PADDING if last else self.blocks[i + 1].padding
            make = _padded_buffer if last else functools.partial(self._buffer, i + 1)
            out, interior = make(batch, rows, cols, block.out_channels, padding, dtype, device)
            if backend == "torch":
                y = conv_block_reference(x.permute(0, 3, 1, 2).float(), _unpadded(block))
                interior.copy_(y.permute(0, 2, 3, 1))
            elif dtype == dtypes[i] or _writes_bfloat16(block, x, dtype):
                conv_block_cpu(x, block, interior)
            else:  # the next block runs in another precision: through a staging buffer
                staging = self._buffer(-i - 1, *interior.shape, NO_PADDING, dtypes[i], device)[0]
                interior.copy_(conv_block_cpu(x, block, staging))
            x = out
        return x[..., :self.out_channels].float()


CHANNEL_BLOCK = 16
"""Output channels of every block are padded to a multiple of this (one AVX-512 vector: the
float32 kernel's narrow tile) so that any width runs on the fused kernel (bfloat16 blocks need
32: a block of 16 x odd channels runs in float32)."""


def pad_channels(blocks: list[FoldedBlock], multiple: int) -> list[FoldedBlock]:
    """``blocks`` with every block's output channels padded with zero kernels and zero bias up
    to a multiple of ``multiple``, and the next block's input channels with zero kernels. A
    padded channel is 0 after the activations here (relu, elu, identity) and max-pooling, so
    the true channels are unchanged; the caller drops the padded ones of the last block."""
    padded, extra_in = [], 0
    for block in blocks:
        extra_out = -block.out_channels % multiple
        weight = F.pad(block.weight, (0, 0, 0, 0, 0, extra_in, 0, extra_out))
        if extra_in or extra_out:
            block = FoldedBlock(weight, F.pad(block.bias, (0, extra_out)), block.padding,
                                block.pool, block.activation, block.stride)
        padded.append(block)
        extra_in = extra_out
    return padded


def torch_blocks(x: Tensor, blocks: list[FoldedBlock], bfloat16: bool) -> Tensor:
    """The blocks in plain torch (the stack's path off the CPU: cuDNN on a GPU): x (N, C, rows,
    cols) -> (N, C', rows', cols') float32 (a channels-last view where x is one). float32 runs
    without TF32 (torch's default lets cuDNN round to TF32: 6-7e-3 on the published model's
    logits on an H200); bfloat16 runs every block after a one-channel first one on bfloat16
    activations and weights (tensor cores, float32 sums), as ``backends`` does on the CPU."""
    with float32_convolutions(allow_tf32=False):
        for block in blocks:
            dtype = torch.bfloat16 if bfloat16 and x.shape[1] > 1 else torch.float32
            x = conv_block_reference(x.to(dtype), block)
    return x.float()


def _writes_bfloat16(block: FoldedBlock, x: Tensor, dtype: torch.dtype) -> bool:
    """Whether the kernel runs ``block`` on float32 ``x`` straight into a bfloat16 output."""
    return x.dtype == torch.float32 and dtype == torch.bfloat16 and \
        cpu_kernel_reason(block, tuple(x.shape), False, x.device, out_bfloat16=True) is None


def _unpadded(block: FoldedBlock) -> FoldedBlock:
    """``block`` on an input that is already padded."""
    return FoldedBlock(block.weight, block.bias, NO_PADDING, block.pool, block.activation,
                       block.stride, block._packed)
