"""Lee et al. 2017's sample-level CNN on raw waveforms, the 3^9 configuration.

Raw audio (59049 samples, 2.7 s at 22.05 kHz) -> strided conv (3 taps, stride 3, 128 channels,
BN, ReLU) -> nine blocks of [3-tap conv, BatchNorm, ReLU, max-pool 3] (channels 128, 128, 256,
256, 256, 256, 256, 256, 512) that bring 19683 steps down to 1 -> 1x1 conv (512), BN, ReLU ->
dropout 0.5 -> dense -> one logit per tag (apply a sigmoid for probabilities).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

PAPER_FIRST_CHANNELS = 128
PAPER_BLOCK_CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)
PAPER_TAGS = 50
SAMPLE_STRIDE = 3
"""Taps of every conv, stride of the first conv and size of every max-pool."""
DROPOUT = 0.5


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int,
                  stride: int = 1) -> list[nn.Module]:
    """Conv1d -> BatchNorm -> ReLU; "same" padding at stride 1, none when strided."""
    padding = kernel_size // 2 if stride == 1 else 0
    return [nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm1d(out_channels), nn.ReLU()]


class SampleCNN(nn.Module):
    """forward(x: (batch, samples) float waveform) -> (batch, n_tags) tag logits.

    samples must be at least ``input_samples = 3 ** (len(block_channels) + 1)`` (59049 for the
    paper's nine blocks); longer inputs leave more than one step after the last pool and are
    averaged over time.
    first_channels: channels of the strided first conv; block_channels: one entry per block.
    """

    def __init__(self, n_tags: int = PAPER_TAGS, first_channels: int = PAPER_FIRST_CHANNELS,
                 block_channels: tuple[int, ...] = PAPER_BLOCK_CHANNELS) -> None:
        super().__init__()
        self.options = {"n_tags": n_tags, "first_channels": first_channels,
                        "block_channels": list(block_channels)}
        self.input_samples = SAMPLE_STRIDE ** (len(block_channels) + 1)
        layers = _conv_bn_relu(1, first_channels, SAMPLE_STRIDE, stride=SAMPLE_STRIDE)
        in_channels = first_channels
        for out_channels in block_channels:
            layers += _conv_bn_relu(in_channels, out_channels, SAMPLE_STRIDE)
            layers.append(nn.MaxPool1d(SAMPLE_STRIDE))
            in_channels = out_channels
        layers += _conv_bn_relu(in_channels, in_channels, 1)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(in_channels, n_tags)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got {tuple(x.shape)}")
        if x.shape[1] < self.input_samples:
            raise ValueError(f"{x.shape[1]} samples are too few for the sample-level CNN: it needs "
                             f"{self.input_samples} (3^{len(self.options['block_channels']) + 1}); "
                             "pad or segment the audio")
        features = self.features(x.unsqueeze(1)).mean(dim=2)   # (N, channels)
        return self.head(self.dropout(features))
