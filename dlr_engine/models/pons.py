"""Pons, Lidy & Serra 2016's musically motivated CNN ("Time-Frequency" architecture).

Two parallel single-layer branches on a log-mel patch, each conv -> BatchNorm -> ReLU -> max-pool:

- timbre / frequency branch: vertical ``m x 1`` filters (m = 32 mel bins, one frame), max-pooled
  over all frames -> a frequency profile of ``n_mels - m + 1`` values per filter;
- temporal branch: horizontal ``1 x n`` filters (n = 60 frames, one bin), max-pooled over all
  bins -> a time profile of ``frames - n + 1`` values per filter;

flattened, concatenated, dropout, dense -> one logit per class (softmax). Paper input: 40 mel
bins x 250 frames (Ballroom, 8 classes). DESIGN fixes only the filter shapes; the filter count
(15 per branch), the BatchNorm and the dropout (0.5) are our reading of the paper.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

PAPER_MELS = 40
PAPER_FRAMES = 250
PAPER_CLASSES = 8
PAPER_FILTERS = 15
TIMBRE_KERNEL_BINS = 32
TEMPORAL_KERNEL_FRAMES = 60
DROPOUT = 0.5


class ConvPoolBranch(nn.Module):
    """Conv2d (no padding) -> BatchNorm -> ReLU -> MaxPool2d -> flatten, on a fixed input size.

    forward(x: (N, 1, rows, cols)) -> (N, out_features); ``out_features`` is
    ``filters * ((rows - kh + 1) // ph) * ((cols - kw + 1) // pw)``.
    """

    def __init__(self, input_size: tuple[int, int], filters: int, kernel_size: tuple[int, int],
                 pool: tuple[int, int]) -> None:
        super().__init__()
        conv_rows, conv_cols = (size - kernel + 1 for size, kernel in zip(input_size, kernel_size))
        pooled = (conv_rows // pool[0], conv_cols // pool[1])
        if min(pooled) < 1:
            raise ValueError(f"a {input_size[0]}x{input_size[1]} input is too small for a "
                             f"{kernel_size[0]}x{kernel_size[1]} conv and a {pool[0]}x{pool[1]} "
                             "max-pool; use a larger input or smaller kernels")
        self.out_features = filters * pooled[0] * pooled[1]
        self.layers = nn.Sequential(nn.Conv2d(1, filters, kernel_size), nn.BatchNorm2d(filters),
                                    nn.ReLU(), nn.MaxPool2d(pool), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PonsCNN(nn.Module):
    """forward(x: (batch, n_mels, frames) log-mel) -> (batch, n_classes) class logits.

    n_mels / frames: the fixed patch size (the dense layer's input depends on it).
    filters: filters per branch; timbre_bins (m) and temporal_frames (n): the filter shapes.
    """

    def __init__(self, n_classes: int = PAPER_CLASSES, n_mels: int = PAPER_MELS,
                 frames: int = PAPER_FRAMES, filters: int = PAPER_FILTERS,
                 timbre_bins: int = TIMBRE_KERNEL_BINS,
                 temporal_frames: int = TEMPORAL_KERNEL_FRAMES) -> None:
        super().__init__()
        self.options = {"n_classes": n_classes, "n_mels": n_mels, "frames": frames,
                        "filters": filters, "timbre_bins": timbre_bins,
                        "temporal_frames": temporal_frames}
        size = (n_mels, frames)
        self.timbre = ConvPoolBranch(size, filters, (timbre_bins, 1), (1, frames))
        self.temporal = ConvPoolBranch(size, filters, (1, temporal_frames), (n_mels, 1))
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(self.timbre.out_features + self.temporal.out_features, n_classes)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.options["n_mels"], self.options["frames"])
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected (batch, {expected[0]}, {expected[1]}) log-mel patches, got "
                             f"{tuple(x.shape)}; cut the spectrogram into patches of that size or "
                             "build the model with n_mels/frames of your input")
        image = x.unsqueeze(1)
        return self.head(self.dropout(torch.cat([self.timbre(image), self.temporal(image)], dim=1)))
