"""Sankaran's whole-song summarisation: per-segment embeddings (29.1 s segments, from any
front-end + CNN) -> a sequence-to-one GRU over the song -> an MLP -> one logit per tag, trained
with binary cross-entropy (``nn.BCEWithLogitsLoss``) and scored by ROC-AUC per tag and MAP.

DESIGN fixes only that structure; the GRU width (128), the MLP (one hidden ReLU layer of 256,
dropout 0.5) are our reading. Cutting songs into segments is ``dlr_engine.audio.segment``'s job;
the segment embeddings come from ``extract`` or from an ``encoder`` trained jointly.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

SEGMENT_SECONDS = 29.1
DEFAULT_TAGS = 50
DEFAULT_RNN_UNITS = 128
DEFAULT_MLP_UNITS = 256
DROPOUT = 0.5


class SongSummariser(nn.Module):
    """forward(x) -> (batch, n_tags) tag logits for whole songs.

    Without ``encoder``: x is (batch, segments, embedding_dim), the segment embeddings in song
    order. With ``encoder`` (an ``nn.Module`` mapping (N, *segment_shape) -> (N, embedding_dim),
    e.g. a CNN on log-mel segments): x is (batch, segments, *segment_shape) and every segment goes
    through the encoder first. The songs of a batch share one segment count.
    ``config()`` holds the JSON options only: an encoder is rebuilt and passed by the caller.
    """

    def __init__(self, embedding_dim: int, n_tags: int = DEFAULT_TAGS,
                 rnn_units: int = DEFAULT_RNN_UNITS, mlp_units: int = DEFAULT_MLP_UNITS,
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.options = {"embedding_dim": embedding_dim, "n_tags": n_tags, "rnn_units": rnn_units,
                        "mlp_units": mlp_units}
        self.encoder = encoder
        self.rnn = nn.GRU(embedding_dim, rnn_units, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(rnn_units, mlp_units), nn.ReLU(), nn.Dropout(DROPOUT),
                                 nn.Linear(mlp_units, n_tags))

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options (without ``encoder``)."""
        return dict(self.options)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, segments, ...) -> (batch, segments, embedding_dim)."""
        if x.dim() < 3:
            raise ValueError(f"expected (batch, segments, ...) per-segment input, got {tuple(x.shape)}; "
                             "add a segments axis (size 1 for a single segment)")
        if self.encoder is not None:
            x = self.encoder(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if x.dim() != 3 or x.shape[2] != self.options["embedding_dim"]:
            raise ValueError(f"segment embeddings have shape {tuple(x.shape)}, expected (batch, "
                             f"segments, {self.options['embedding_dim']}); set embedding_dim to "
                             "the encoder's output width")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.rnn(self.embed(x))
        return self.mlp(hidden[-1])
