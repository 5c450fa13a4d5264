"""Choi et al. 2017's convolutional recurrent network (CRNN) for music tagging.

Log-mel image -> four conv blocks (3x3 conv, BatchNorm, ELU, max-pool, dropout) that shrink the
mel axis to (nearly) one bin -> a two-layer GRU over the remaining frames -> last hidden state
-> one logit per tag (apply a sigmoid for probabilities). Paper input: 96 mel bins x 1366 frames
(29.1 s at 12 kHz, hop 256); pools (2,2), (3,3), (4,4), (4,4) turn that into 14 steps of 128
features; GRU 32 units x 2 layers (the ~0.4 M parameter configuration of the authors' Keras code).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

PAPER_CHANNELS = (64, 128, 128, 128)
PAPER_POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))
"""(mel, time) max-pool of each conv block."""
PAPER_MELS = 96
PAPER_FRAMES = 1366
PAPER_GRU_UNITS = 32
PAPER_GRU_LAYERS = 2
PAPER_TAGS = 50
CONV_DROPOUT = 0.1
GRU_DROPOUT = 0.3


class CRNN(nn.Module):
    """forward(x: (batch, n_mels, frames) log-mel in dB, any scale) -> (batch, n_tags) tag logits.

    n_mels: mel bins of the input (96 in the paper); the conv stack divides it by the product of
        the pools' mel sizes (96 -> 1); leftover bins are flattened into the GRU's features.
    channels / pools: per conv block, output channels and (mel, time) max-pool.
    gru_units / gru_layers: the recurrent part; its last layer's final hidden state is the
        clip embedding.
    frames must be at least the product of the pools' time sizes (96 in the paper setting).
    """

    def __init__(self, n_tags: int = PAPER_TAGS, n_mels: int = PAPER_MELS,
                 channels: tuple[int, ...] = PAPER_CHANNELS,
                 pools: tuple[tuple[int, int], ...] = PAPER_POOLS,
                 gru_units: int = PAPER_GRU_UNITS, gru_layers: int = PAPER_GRU_LAYERS) -> None:
        super().__init__()
        if len(channels) != len(pools):
            raise ValueError(f"got {len(channels)} channel counts for {len(pools)} pools; "
                             "give one (mel, time) pool per conv block")
        self.options = {"n_tags": n_tags, "n_mels": n_mels, "channels": list(channels),
                        "pools": [list(p) for p in pools], "gru_units": gru_units,
                        "gru_layers": gru_layers}
        mel_out = n_mels // math.prod(p[0] for p in pools)
        if mel_out < 1:
            raise ValueError(f"{n_mels} mel bins vanish under the mel pools {pools}; "
                             "use more bins or smaller pools")
        self.min_frames = math.prod(p[1] for p in pools)
        blocks: list[nn.Module] = [nn.BatchNorm2d(1)]  # the paper normalises the input image
        in_channels = 1
        for out_channels, pool in zip(channels, pools):
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                       nn.ELU(), nn.MaxPool2d(tuple(pool)), nn.Dropout(CONV_DROPOUT)]
            in_channels = out_channels
        self.conv = nn.Sequential(*blocks)
        self.gru = nn.GRU(in_channels * mel_out, gru_units, num_layers=gru_layers, batch_first=True,
                          dropout=GRU_DROPOUT if gru_layers > 1 else 0.0)
        self.dropout = nn.Dropout(GRU_DROPOUT)
        self.head = nn.Linear(gru_units, n_tags)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.options["n_mels"]:
            raise ValueError(f"expected a (batch, {self.options['n_mels']}, frames) log-mel, "
                             f"got {tuple(x.shape)}")
        if x.shape[2] < self.min_frames:
            raise ValueError(f"{x.shape[2]} frames are too few for the CRNN's pools: it needs at "
                             f"least {self.min_frames}; use longer clips")
        features = self.conv(x.unsqueeze(1))                  # (N, C, mel_out, steps)
        sequence = features.flatten(1, 2).transpose(1, 2)     # (N, steps, C * mel_out)
        _, hidden = self.gru(sequence)                        # (layers, N, units)
        return self.head(self.dropout(hidden[-1]))
