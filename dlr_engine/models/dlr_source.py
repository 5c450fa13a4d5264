"""The DLR paper's source-task model (DESIGN §4): DLR front-end -> five 2D conv blocks ->
mean over time -> style (genre) head and tempo-class head.

The back-end reads the DLR as an image ``(N, 1, H=frames, W=128 channels)``; each block is
Conv2d with TensorFlow "SAME" padding (no bias) -> BatchNorm (eps 1e-3) -> ReLU -> MaxPool.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DLR

CONV_CHANNELS = 32
CONV_KERNELS = ((4, 8), (3, 3), (3, 3), (3, 3), (3, 3))
CONV_POOLS = ((2, 2), (2, 2), (2, 2), (4, 4), None)
BATCH_NORM_EPS = 1e-3
"""TF's batch-norm epsilon; the published first block's variances are ~1e-5, so it matters."""


def same_padding(kernel_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """TF "SAME" padding at stride 1 as ``F.pad`` arguments (left, right, top, bottom):
    ``k - 1`` in total per axis, ``floor((k - 1) / 2)`` before and the rest after."""
    (rows, cols) = kernel_size
    return ((cols - 1) // 2, cols // 2, (rows - 1) // 2, rows // 2)


class ConvBlock(nn.Module):
    """Conv2d (TF "SAME", stride 1, no bias) -> BatchNorm2d -> ReLU -> optional MaxPool2d.

    forward(x: (N, in_channels, H, W)) -> (N, out_channels, H // pool_h, W // pool_w).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 pool: tuple[int, int] | None) -> None:
        super().__init__()
        self.padding = same_padding(kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)
        self.pool = nn.MaxPool2d(pool) if pool is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, self.padding))
        return self.pool(torch.relu(self.bn(x)))


def _pooled(size: int, axis: int) -> int:
    """``size`` after every block's max-pool along ``axis`` (0 = rows/time, 1 = cols)."""
    for pool in CONV_POOLS:
        if pool is not None:
            size //= pool[axis]
    return size


def conv_stack(in_channels: int = 1) -> nn.Sequential:
    """The five conv blocks of ``CONV_KERNELS`` / ``CONV_POOLS``:
    (N, in_channels, H, W) -> (N, 32, H // 32, W // 32)."""
    blocks = []
    for kernel_size, pool in zip(CONV_KERNELS, CONV_POOLS):
        blocks.append(ConvBlock(in_channels, CONV_CHANNELS, kernel_size, pool))
        in_channels = CONV_CHANNELS
    return nn.Sequential(*blocks)


def min_size(axis: int) -> int:
    """Smallest input size along ``axis`` (0 = time, 1 = DLR channels) that survives every
    max-pool of the conv blocks with at least one output."""
    size = 1
    for pool in CONV_POOLS:
        if pool is not None:
            size *= pool[axis]
    return size


class DLRSourceTaskNet(nn.Module):
    """DLR -> conv blocks -> time-mean -> 128-d embedding -> style and tempo-class logits.

    forward(x: (batch, samples) float at 8 kHz) returns a dict:
      ``dlr`` (batch, 128, frames), ``embedding`` (batch, 128),
      the style logits (batch, n_styles) under each key of ``style_keys``,
      ``tempo_logits`` (batch, n_tempo_classes).
    ``forward_dlr(dlr)`` runs the back-end alone on a given DLR.

    dlr: the front-end module (default: a new ``DLR`` with the paper's geometry).
    preprocess: the authors' per-clip ``|x / max|x||``, for the default front-end only (a given
      ``dlr`` module keeps its own ``preprocess`` setting).
    style_keys: output names of the style head's logits; the published DLR(13) model calls
      them ``genre_logits`` and also answers to ``style_logits``.
    """

    def __init__(self, n_styles: int = 13, n_tempo_classes: int = 4, dlr: DLR | None = None,
                 preprocess: bool = True, style_keys: tuple[str, ...] = ("style_logits",)) -> None:
        super().__init__()
        if not style_keys:
            raise ValueError("style_keys must name at least one output")
        self.dlr = dlr if dlr is not None else DLR(preprocess="peak_abs" if preprocess else None)
        self.style_keys = tuple(style_keys)
        self.blocks = conv_stack()
        self.min_frames = min_size(0)
        width = _pooled(self.dlr.config.out_channels, 1)
        if width < 1:
            raise ValueError(f"a DLR of {self.dlr.config.out_channels} channels is too narrow "
                             f"for the conv blocks (at least {min_size(1)} needed)")
        self.embedding_dim = CONV_CHANNELS * width
        self.style_head = nn.Linear(self.embedding_dim, n_styles)
        self.tempo_head = nn.Linear(self.embedding_dim, n_tempo_classes)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options; ``from_config`` rebuilds the same architecture."""
        dlr = self.dlr.config
        return {"n_styles": self.style_head.out_features,
                "n_tempo_classes": self.tempo_head.out_features,
                "style_keys": list(self.style_keys),
                "preprocess": self.dlr.preprocess == "peak_abs",
                "dlr": {"n_branches": dlr.n_branches, "channels": dlr.channels,
                        "kernel_size": dlr.kernel_size, "dilations": list(dlr.dilations),
                        "pool": dlr.pool}}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: str | None = None) -> DLRSourceTaskNet:
        preprocess = bool(config["preprocess"])
        dlr = DLR(**config["dlr"], preprocess="peak_abs" if preprocess else None, backend=backend)
        return cls(config["n_styles"], config["n_tempo_classes"], dlr=dlr,
                   style_keys=tuple(config["style_keys"]))

    def embed(self, dlr: torch.Tensor) -> torch.Tensor:
        """dlr: (N, channels, frames) -> embedding (N, embedding_dim), flattened ``w * 32 + c``
        as the authors' TF code (channels-last) does."""
        if dlr.dim() != 3 or dlr.shape[1] != self.dlr.config.out_channels:
            raise ValueError(f"expected a DLR of shape (batch, {self.dlr.config.out_channels}, "
                             f"frames), got {tuple(dlr.shape)}")
        if dlr.shape[2] < self.min_frames:
            raise ValueError(f"a DLR of {dlr.shape[2]} frames is too short for the conv blocks: "
                             f"they need at least {self.min_frames} frames "
                             f"({self.min_samples} samples of audio); use longer clips")
        image = dlr.transpose(1, 2).unsqueeze(1)            # (N, 1, H=frames, W=channels)
        features = self.blocks(image).mean(dim=2)           # (N, 32, W')
        return features.transpose(1, 2).flatten(1)          # (N, W' * 32)

    @property
    def min_samples(self) -> int:
        """Shortest audio clip giving ``min_frames`` DLR frames."""
        return self.dlr.receptive_field - 1 + self.min_frames * self.dlr.config.pool

    def forward_dlr(self, dlr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The back-end on a DLR (N, channels, frames): embedding and logits, no ``dlr`` key."""
        embedding = self.embed(dlr)
        style_logits = self.style_head(embedding)
        out = {"embedding": embedding}
        out.update({key: style_logits for key in self.style_keys})
        out["tempo_logits"] = self.tempo_head(embedding)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 2 and x.shape[1] < self.min_samples:
            raise ValueError(f"clip of {x.shape[1]} samples is too short for {type(self).__name__}:"
                             f" it needs at least {self.min_samples} samples "
                             f"({self.min_samples / self.dlr.config.sample_rate:.2f} s at "
                             f"{self.dlr.config.sample_rate} Hz) "
                             f"for {self.min_frames} DLR frames; use longer clips")
        dlr = self.dlr(x)
        return {"dlr": dlr, **self.forward_dlr(dlr)}
