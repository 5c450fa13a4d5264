"""One inference conv block: ``max_pool(act(conv2d(x, w) + bias))`` with eval batch norm folded
into ``w`` and ``bias``: the folded parameters (``FoldedBlock``), the plain-torch reference
(``conv_block_reference``) and the fused C++ CPU kernel (``conv_block_cpu``, csrc/cpu/
conv_block_kernel.cpp) that never writes the conv output.

Layout of the kernel's activations: channels innermost, ``(batch, rows, cols, channels)``
("NHWC"; ``t.permute(0, 3, 1, 2)`` is the same memory as a channels-last NCHW tensor).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"identity": 0, "relu": 1, "elu": 2}
"""Activations of a block (all non-decreasing: pooling before them is exact) -> kernel code."""
BF16_CHANNEL_BLOCK = 32
"""Output channels per packed block of the bfloat16 kernel (2 AVX-512 vectors)."""


def _extension():
    """The compiled module, or None when it was not built."""
    try:
        from .. import _dlr_cpu
    except ImportError:
        return None
    return _dlr_cpu if hasattr(_dlr_cpu, "conv_block") else None


@dataclass
class FoldedBlock:
    """A conv block for inference: VALID conv (column stride ``stride``) on an input padded by
    ``padding`` (left, right, top, bottom), then ``+ bias``, ``activation``, max-pool ``pool``
    (rows, cols; (1, 1): none).

    weight: (out_channels, in_channels, kernel_rows, kernel_cols) float32, batch norm folded in
      (a Conv1d is one kernel row over the columns).
    bias: (out_channels,) float32.
    """

    weight: Tensor
    bias: Tensor
    padding: tuple[int, int, int, int]
    pool: tuple[int, int]
    activation: str
    stride: int = 1
    _packed: dict = field(default_factory=dict, repr=False)

    @classmethod
    def fold(cls, conv: nn.Conv1d | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d | None,
             padding: tuple[int, int, int, int], pool: tuple[int, int] | None,
             activation: str) -> FoldedBlock:
        """``conv`` (no dilation or groups; a Conv2d of row stride 1; its own zero padding is
        added to ``padding``) followed by eval ``bn`` (running statistics), as one block."""
        one_d = isinstance(conv, nn.Conv1d)
        stride = (1, *conv.stride) if one_d else conv.stride
        if stride[0] != 1 or set(conv.dilation) != {1} or conv.groups != 1 \
                or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{conv} cannot be folded: the inference block needs row stride 1, "
                             "dilation 1, groups 1 and numeric zero padding")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        weight = conv.weight.detach().float()
        weight = weight.unsqueeze(2) if one_d else weight
        bias = conv.bias.detach().float() if conv.bias is not None else weight.new_zeros(weight.shape[0])
        if bn is not None:
            scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
            weight = weight * scale[:, None, None, None]
            bias = (bias - bn.running_mean.float()) * scale + bn.bias.detach().float()
        rows, cols = (0, *conv.padding) if one_d else conv.padding
        left, right, top, bottom = padding
        return cls(weight.contiguous(), bias.contiguous(),
                   (left + cols, right + cols, top + rows, bottom + rows),
                   tuple(pool) if pool is not None else (1, 1), activation, stride[1])

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def out_size(self, padded_rows: int, padded_cols: int) -> tuple[int, int]:
        """Pooled output (rows, cols) of an input already padded to (padded_rows, padded_cols)."""
        kernel_rows, kernel_cols = self.weight.shape[2:]
        return ((padded_rows - kernel_rows + 1) // self.pool[0],
                ((padded_cols - kernel_cols) // self.stride + 1) // self.pool[1])

    def packed(self, bfloat16: bool, channel_block: int) -> Tensor:
        """The weights in the kernel's layout, made once per (precision, channel block):
        float32 (out / block, kernel_rows, kernel_cols * in, block); bfloat16 pairs of
        consecutive reduction values in one int32 (out / 32, kernel_rows, run / 2, 32)."""
        key = (bfloat16, channel_block)
        if key not in self._packed:
            out_channels, _, kernel_rows, _ = self.weight.shape
            rows = self.weight.permute(2, 3, 1, 0).reshape(kernel_rows, -1, out_channels)
            if bfloat16:
                pairs = rows.to(torch.bfloat16).unflatten(1, (-1, 2))       # (kr, run/2, 2, out)
                pairs = pairs.unflatten(3, (-1, channel_block)).permute(3, 0, 1, 4, 2)
                self._packed[key] = pairs.contiguous().view(torch.int32)[..., 0]
            else:
                blocks = rows.unflatten(2, (-1, channel_block)).permute(2, 0, 1, 3)
                self._packed[key] = blocks.contiguous()
        return self._packed[key]


def activate(x: Tensor, activation: str) -> Tensor:
    if activation == "relu":
        return torch.relu(x)
    if activation == "elu":
        return F.elu(x)
    return x


def conv_block_reference(x: Tensor, block: FoldedBlock) -> Tensor:
    """The plain-torch block (the specification): x (N, in_channels, rows, cols) unpadded ->
    (N, out_channels, rows', cols') in x's dtype (pooling drops a tail as ``max_pool2d``)."""
    y = F.conv2d(F.pad(x, block.padding), block.weight.to(x.dtype), block.bias.to(x.dtype),
                 stride=(1, block.stride))
    y = activate(y, block.activation)
    return F.max_pool2d(y, block.pool) if block.pool != (1, 1) else y


def _geometry(in_shape: tuple[int, ...], in_strides: tuple[int, ...], block: FoldedBlock,
              out_strides: tuple[int, ...]) -> list[int]:
    """The kernel's 15 sizes and strides (csrc/cpu/conv_block_cpu.h, ConvBlockGeometry)."""
    _, _, kernel_rows, kernel_cols = block.weight.shape
    return [*in_shape, *in_strides[:2], kernel_rows, kernel_cols, block.out_channels,
            block.pool[0], block.pool[1], *out_strides[:3], block.stride]


def _channels_innermost(x: Tensor) -> bool:
    """Channels at stride 1 and columns in_channels apart (the stride of a size-1 dim is moot)."""
    return (x.shape[3] == 1 or x.stride(3) == 1) and (x.shape[2] == 1 or x.stride(2) == x.shape[3])


def cpu_kernel_reason(block: FoldedBlock, in_shape: tuple[int, ...], bfloat16: bool,
                      device: torch.device | str = "cpu") -> str | None:
    """Why ``conv_block_cpu`` cannot run ``block`` on a padded NHWC input of ``in_shape``
    (batch, rows, cols, in_channels) on ``device`` (None: it can)."""
    ext = _extension()
    if ext is None:
        return "the C++ extension dlr_engine._dlr_cpu was not built (or predates the conv block)"
    if torch.device(device).type != "cpu":
        return f"the input is on {device}, the kernel runs on the CPU"
    multiple = BF16_CHANNEL_BLOCK if bfloat16 else ext.conv_block_channel_multiple()
    if block.out_channels % multiple:
        return f"{block.out_channels} output channels are not a multiple of {multiple}"
    if in_shape[3] != block.weight.shape[1]:
        return f"the input has {in_shape[3]} channels, the block takes {block.weight.shape[1]}"
    geometry = _geometry(tuple(in_shape), (0, 0), block, (0, 0, 0))
    if not ext.conv_block_supports(geometry, ACTIVATIONS[block.activation], bfloat16):
        return ("the kernel does not cover this geometry (pool width, an odd kernel_cols x "
                "in_channels in bfloat16, no AVX512_BF16, or an empty output)")
    return None


@torch.library.custom_op("dlr_engine::conv_block_cpu", mutates_args=("out",))
def _conv_block_op(x: Tensor, packed: Tensor, bias: Tensor, out: Tensor, geometry: list[int],
                   activation: int, bfloat16: bool) -> None:
    _extension().conv_block(x.data_ptr(), packed.data_ptr(), bias.data_ptr(), out.data_ptr(),
                            geometry, activation, torch.get_num_threads(), bfloat16)


@_conv_block_op.register_fake
def _conv_block_fake(x, packed, bias, out, geometry, activation, bfloat16) -> None:
    return None


def conv_block_cpu(x: Tensor, block: FoldedBlock, out: Tensor) -> Tensor:
    """The fused kernel: x (N, rows, cols, in_channels) padded, channels innermost, float32 or
    bfloat16 -> writes ``out`` (N, rows', cols', out_channels) of x's dtype (any row / column /
    clip strides, channels innermost; e.g. the interior of the next block's padded input).
    The conv output is never stored: per (clip, pooled row) one pooled row of float32 maxima."""
    bfloat16 = x.dtype == torch.bfloat16
    reason = cpu_kernel_reason(block, tuple(x.shape), bfloat16, x.device)
    if reason is None and not _channels_innermost(x):
        reason = "x must have channels innermost and columns in_channels apart"
    if reason is None and (out.dtype != x.dtype or out.stride(3) != 1
                           or tuple(out.shape) != (x.shape[0], *block.out_size(x.shape[1], x.shape[2]),
                                                   block.out_channels)):
        reason = f"out {tuple(out.shape)} {out.dtype} does not match the block's output"
    if reason is not None:
        raise ValueError(f"conv_block_cpu cannot run: {reason}")
    multiple = BF16_CHANNEL_BLOCK if bfloat16 else _extension().conv_block_channel_multiple()
    _conv_block_op(x, block.packed(bfloat16, multiple), block.bias, out,
                   _geometry(tuple(x.shape), x.stride(), block, out.stride()),
                   ACTIVATIONS[block.activation], bfloat16)
    return out
