"""Back-ends for variable-length input (Pons et al.'s review): summarise a front-end's
(batch, features, time) output over time, then one dense layer -> logits.

Poolings, selected by name (``POOLINGS``):

- ``mean``: average over time;  ``max``: maximum over time;
- ``attention``: a 1x1 conv scores each frame, softmax over time, weighted sum of the frames;
- ``rnn``: a GRU over the frames, its final hidden state.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

DEFAULT_RNN_UNITS = 128


class MeanPool(nn.Module):
    """(batch, features, time) -> (batch, features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2)


class MaxPool(nn.Module):
    """(batch, features, time) -> (batch, features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=2)


class AttentionPool(nn.Module):
    """(batch, features, time) -> (batch, features): softmax-over-time weighted sum of frames."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.score = nn.Conv1d(n_features, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=2)       # (N, 1, T)
        return (x * weights).sum(dim=2)


class RNNPool(nn.Module):
    """(batch, features, time) -> (batch, units): a GRU's final hidden state."""

    def __init__(self, n_features: int, units: int = DEFAULT_RNN_UNITS) -> None:
        super().__init__()
        self.out_features = units
        self.gru = nn.GRU(n_features, units, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(x.transpose(1, 2))
        return hidden[-1]


POOLINGS = ("mean", "max", "attention", "rnn")


class PooledClassifier(nn.Module):
    """forward(x: (batch, n_features, time) front-end features, time >= 1) -> (batch, n_classes)
    logits (softmax for classes, sigmoid for tags). The clips of a batch share one length.

    pooling: one of ``POOLINGS``; rnn_units: hidden units of the ``rnn`` pooling.
    """

    def __init__(self, n_features: int, n_classes: int, pooling: str = "mean",
                 rnn_units: int = DEFAULT_RNN_UNITS) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.options = {"n_features": n_features, "n_classes": n_classes, "pooling": pooling,
                        "rnn_units": rnn_units}
        pooled = n_features
        if pooling == "mean":
            self.pool: nn.Module = MeanPool()
        elif pooling == "max":
            self.pool = MaxPool()
        elif pooling == "attention":
            self.pool = AttentionPool(n_features)
        else:
            self.pool = RNNPool(n_features, rnn_units)
            pooled = rnn_units
        self.head = nn.Linear(pooled, n_classes)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.options["n_features"] or x.shape[2] < 1:
            raise ValueError(f"expected (batch, {self.options['n_features']}, time >= 1) features, "
                             f"got {tuple(x.shape)}")
        return self.head(self.pool(x))
