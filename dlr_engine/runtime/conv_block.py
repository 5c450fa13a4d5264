"""One inference conv block: ``max_pool(act(conv2d(x, w) + bias))`` with eval batch norm folded
into ``w`` and ``bias``: the folded parameters (``FoldedBlock``), the plain-torch reference
(``conv_block_reference``) and the fused C++ CPU kernel (``conv_block_cpu``, csrc/cpu/
conv_block_kernel.cpp) that never writes the conv output.

The kernel has three algorithms (``ALGORITHMS``): ``direct`` (any kernel), ``winograd``
(F(2x2, 3x3): 3x3 kernels at stride 1 with even pools, 16 multiplies per 2x2 outputs instead
of 36; csrc/cpu/conv_block_winograd.h) and ``fft`` (float32: a long 1 x K kernel on one input
channel, each row through a real FFT; csrc/cpu/conv_block_fft.h). ``conv_block_cpu`` takes
Winograd where it runs, else the FFT where it runs and pays (``fft_pays``), else direct.

Layout of the kernel's activations: channels innermost, ``(batch, rows, cols, channels)``
("NHWC"; ``t.permute(0, 3, 1, 2)`` is the same memory as a channels-last NCHW tensor).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"identity": 0, "relu": 1, "elu": 2}
"""Activations of a block (all non-decreasing: pooling before them is exact) -> kernel code."""
BF16_CHANNEL_BLOCK = 32
"""Output channels per packed block of the bfloat16 kernel (2 AVX-512 vectors)."""
ALGORITHMS = {"direct": 0, "winograd": 1, "fft": 2}
"""Algorithms of the fused kernel -> kernel code."""
WINOGRAD_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
                          dtype=torch.float64)
"""G of Winograd F(2, 3): a 3-tap kernel g -> its 4 transformed values G g."""
FFT_LANES = 16
"""Clips the FFT algorithm transforms together (one per vector lane, conv_block_fft.h)."""
FFT_FLOP_PER_POINT_AND_LEVEL = 5
"""The FFT algorithm's cost model (``fft_pays``): an M-point row transform costs about
5 log2(M) flops per point, the direct kernel 2 x taps per output."""


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

    def packed(self, bfloat16: bool, channel_block: int, algorithm: str = "direct",
               fft_size: int = 0) -> Tensor:
        """The weights in the kernel's layout, made once per (precision, channel block,
        algorithm, FFT size): float32 (out / block, kernel_rows, kernel_cols * in, block);
        bfloat16 pairs of consecutive reduction values in one int32 (out / 32, kernel_rows,
        run / 2, 32). Winograd: the same of the transformed kernels, 16 "rows" of one column
        each. FFT: ``fft_kernels(weight, fft_size)``."""
        key = (bfloat16, channel_block, algorithm, fft_size)
        if key not in self._packed:
            if algorithm == "fft":
                self._packed[key] = fft_kernels(self.weight, fft_size)
            else:
                weight = winograd_kernels(self.weight) if algorithm == "winograd" else self.weight
                self._packed[key] = _pack(weight, bfloat16, channel_block)
        return self._packed[key]


def winograd_kernels(weight: Tensor) -> Tensor:
    """U = G g G^T of each 3x3 kernel g of ``weight`` (out, in, 3, 3), as (out, in, 16, 1)
    (the 4 x 4 points row-major), computed in float64 and returned in ``weight``'s dtype."""
    g = WINOGRAD_G.to(weight.device)
    transformed = g @ weight.double() @ g.T
    return transformed.flatten(2).unsqueeze(3).to(weight.dtype)


def fft_kernels(weight: Tensor, size: int) -> Tensor:
    """conj(DFT_size(k)) / size of each kernel row k of ``weight`` (out, 1, 1, taps), computed
    in float64: (out, size // 2 + 1, 2) float32 (real, imaginary), the FFT algorithm's packed
    weights (a correlation is the inverse DFT of X conj(K))."""
    spectrum = torch.fft.rfft(weight.double()[:, 0, 0], n=size).conj() / size
    return torch.view_as_real(spectrum).float().contiguous()


def fft_pays(block: FoldedBlock, in_shape: tuple[int, ...]) -> bool:
    """Whether the FFT algorithm is taken for ``block`` on a padded input of ``in_shape``
    (batch, rows, cols, channels): when a row's inverse transform, ~5 log2(M) flops for each of
    its M points, costs less per valid output than the direct kernel's 2 x taps, counting the
    idle lanes of a batch that does not fill groups of 16 clips. ``pons``'s 1 x 60 kernel on 250
    frames: 54 against 120, so 2.2x at 16 clips (measured 2.0x), 1.7x at 24 (1.6x), 1.1x at 8
    (1.05x), 0.4x at 3 (0.6x: direct); ``mcclstm``'s on 80-frame chunks, 21 outputs per row:
    213 against 120 (0.6-0.7x: direct)."""
    batch, _, cols = in_shape[:3]
    taps = block.weight.shape[3]
    outputs = cols - taps + 1
    if outputs < 1 or batch < 1 or _extension() is None:
        return False
    points = _extension().conv_block_fft_size(cols)
    lanes = -(-batch // FFT_LANES) * FFT_LANES
    fft_cost = FFT_FLOP_PER_POINT_AND_LEVEL * math.log2(points) * points * lanes
    return 2 * taps * outputs * batch > fft_cost


def _pack(weight: Tensor, bfloat16: bool, channel_block: int) -> Tensor:
    """(out, in, kernel_rows, kernel_cols) float32 -> the kernel's packed layout (see
    ``FoldedBlock.packed``)."""
    out_channels, _, kernel_rows, _ = weight.shape
    rows = weight.permute(2, 3, 1, 0).reshape(kernel_rows, -1, out_channels)
    if bfloat16:
        pairs = rows.to(torch.bfloat16).unflatten(1, (-1, 2))       # (kr, run/2, 2, out)
        pairs = pairs.unflatten(3, (-1, channel_block)).permute(3, 0, 1, 4, 2)
        return pairs.contiguous().view(torch.int32)[..., 0]
    return rows.unflatten(2, (-1, channel_block)).permute(2, 0, 1, 3).contiguous()


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


def _precision(bfloat16: bool, out_bfloat16: bool | None) -> int:
    """The kernel's precision code: 0 float32, 1 bfloat16, 2 float32 in and bfloat16 out."""
    out_bfloat16 = bfloat16 if out_bfloat16 is None else out_bfloat16
    if bfloat16 and not out_bfloat16:
        raise ValueError("a bfloat16 input needs a bfloat16 output")
    return 1 if bfloat16 else 2 if out_bfloat16 else 0


def _channel_block(precision: int, out_channels: int) -> int:
    """Output channels per packed block for a precision code and channel count: bfloat16
    output 32; float32 the active ISA's two vectors, or one vector (the narrow tile) where
    ``out_channels`` is an odd multiple of it."""
    if precision != 0:
        return BF16_CHANNEL_BLOCK
    wide = _extension().conv_block_channel_multiple()
    return wide if out_channels % wide == 0 else wide // 2


def cpu_kernel_reason(block: FoldedBlock, in_shape: tuple[int, ...], bfloat16: bool,
                      device: torch.device | str = "cpu", algorithm: str = "direct",
                      out_bfloat16: bool | None = None) -> str | None:
    """Why ``conv_block_cpu`` cannot run ``block`` with ``algorithm`` on a padded NHWC input of
    ``in_shape`` (batch, rows, cols, in_channels) on ``device`` (None: it can); ``bfloat16``
    the input's precision, ``out_bfloat16`` the output's (None: the input's)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    precision = _precision(bfloat16, out_bfloat16)
    ext = _extension()
    if ext is None:
        return "the C++ extension dlr_engine._dlr_cpu was not built (or predates the conv block)"
    if torch.device(device).type != "cpu":
        return f"the input is on {device}, the kernel runs on the CPU"
    multiple = _channel_block(precision, block.out_channels)
    if block.out_channels % multiple:
        return f"{block.out_channels} output channels are not a multiple of {multiple}"
    if in_shape[3] != block.weight.shape[1]:
        return f"the input has {in_shape[3]} channels, the block takes {block.weight.shape[1]}"
    run = block.weight.shape[3] * in_shape[3]
    if precision == 1 and algorithm == "direct" and run % 2:
        return (f"kernel_cols x in_channels = {run} is odd: the bfloat16 kernel multiplies pairs "
                "of them")
    geometry = _geometry(tuple(in_shape), (0, 0), block, (0, 0, 0))
    if not ext.conv_block_supports(geometry, ACTIVATIONS[block.activation], ALGORITHMS[algorithm],
                                   precision):
        if algorithm == "winograd":
            return ("Winograd F(2x2, 3x3) needs a 3x3 kernel at stride 1, even pool sizes and "
                    "input channels a multiple of the vector width (or no AVX512_BF16)")
        if algorithm == "fft":
            return ("the FFT algorithm needs float32, one input channel, a one-row kernel at "
                    "column stride 1 and rows of at most 4096 columns")
        return ("the kernel does not cover this geometry (pool width, no AVX512_BF16, or an "
                "empty output)")
    return None


def best_algorithm(block: FoldedBlock, in_shape: tuple[int, ...], bfloat16: bool,
                   out_bfloat16: bool | None = None) -> str:
    """``winograd`` where it runs ``block`` on a padded CPU input of ``in_shape``, else ``fft``
    where it runs and pays (``fft_pays``), else ``direct``."""
    if cpu_kernel_reason(block, in_shape, bfloat16, "cpu", "winograd", out_bfloat16) is None:
        return "winograd"
    if fft_pays(block, in_shape) and \
            cpu_kernel_reason(block, in_shape, bfloat16, "cpu", "fft", out_bfloat16) is None:
        return "fft"
    return "direct"


def _run_kernel(x: Tensor, packed: Tensor, bias: Tensor, out: Tensor, geometry: list[int],
                activation: int, algorithm: int, precision: int) -> None:
    _extension().conv_block(x.data_ptr(), packed.data_ptr(), bias.data_ptr(), out.data_ptr(),
                            geometry, activation, algorithm, torch.get_num_threads(), precision)


@torch.library.custom_op("dlr_engine::conv_block_cpu", mutates_args=("out",))
def _conv_block_op(x: Tensor, packed: Tensor, bias: Tensor, out: Tensor, geometry: list[int],
                   activation: int, algorithm: int, precision: int) -> None:
    _run_kernel(x, packed, bias, out, geometry, activation, algorithm, precision)


@_conv_block_op.register_fake
def _conv_block_fake(x, packed, bias, out, geometry, activation, algorithm, precision) -> None:
    return None


def conv_block_cpu(x: Tensor, block: FoldedBlock, out: Tensor, algorithm: str | None = None) -> Tensor:
    """The fused kernel: x (N, rows, cols, in_channels) padded, channels innermost, float32 or
    bfloat16 -> writes ``out`` (N, rows', cols', out_channels) of x's dtype, or bfloat16 from a
    float32 x (any row / column / clip strides, channels innermost; e.g. the interior of the
    next block's padded input). The conv output is never stored: per (clip, pooled row) one
    pooled row of float32 maxima. ``algorithm``: ``direct``, ``winograd``, or None for
    ``best_algorithm`` (direct instead of the FFT when x holds a NaN or an infinity: a
    transform spreads it over the whole row)."""
    bfloat16, out_bfloat16 = x.dtype == torch.bfloat16, out.dtype == torch.bfloat16
    if bfloat16 and not out_bfloat16:
        raise ValueError(f"conv_block_cpu cannot run: a bfloat16 x needs a bfloat16 out, got {out.dtype}")
    if algorithm is None and x.device.type == "cpu" and _extension() is not None:
        algorithm = best_algorithm(block, tuple(x.shape), bfloat16, out_bfloat16)
        if algorithm == "fft" and not bool(torch.isfinite(x.sum())):  # a NaN or infinity in x
            algorithm = "direct"  # (or a sum past float32's range: direct is exact there too)
    algorithm = algorithm or "direct"
    reason = cpu_kernel_reason(block, tuple(x.shape), bfloat16, x.device, algorithm, out_bfloat16)
    if reason is None and not _channels_innermost(x):
        reason = "x must have channels innermost and columns in_channels apart"
    if reason is None and (out.dtype not in (x.dtype, torch.bfloat16) or out.stride(3) != 1
                           or tuple(out.shape) != (x.shape[0], *block.out_size(x.shape[1], x.shape[2]),
                                                   block.out_channels)):
        reason = f"out {tuple(out.shape)} {out.dtype} does not match the block's output"
    if reason is not None:
        raise ValueError(f"conv_block_cpu cannot run: {reason}")
    precision = _precision(bfloat16, out_bfloat16)
    fft_size = _extension().conv_block_fft_size(x.shape[2]) if algorithm == "fft" else 0
    # the registered op where torch.compile traces; else its body, without the dispatcher's
    # ~40 us per call (pons at batch 1: 2 blocks in a ~1.4 ms forward)
    run = _conv_block_op if torch.compiler.is_compiling() else _run_kernel
    run(x, block.packed(bfloat16, _channel_block(precision, block.out_channels), algorithm, fft_size),
        block.bias, out, _geometry(tuple(x.shape), x.stride(), block, out.stride()),
        ACTIVATIONS[block.activation], ALGORITHMS[algorithm], precision)
    return out
