"""Chen & Wang 2017's multi-channel CNN + LSTM (MCCLSTM) over a track's log-mel chunks.

Input: a 40-band log-mel of a whole track (44.1 kHz, Blackman-Harris 2048, hop 1024; produce it
with ``dlr_engine.spectral.MelSpectrogram``), cut into non-overlapping 40 x 80 chunks (a tail
shorter than 80 frames is dropped). Per chunk, three conv channels in parallel (each conv ->
BatchNorm -> ReLU -> max-pool, ``pons.ConvPoolBranch``):

- pitch: 32 x 1 conv, (1, 80) max-pool  -> (9 x 1) per filter
- tempo: 1 x 60 conv, (40, 1) max-pool  -> (1 x 21) per filter
- bass:  13 x 9 conv, (4, 4) max-pool   -> (7 x 18) per filter

concatenated -> FC 400 (ReLU) -> LSTM 200 over the chunk sequence -> last hidden state -> class
logits (softmax).

Variants R0-R4. DESIGN names them but does not define them; our reading, as ablations:
R0 the full model; R1 without pitch; R2 without tempo; R3 without bass; R4 all three channels
with the LSTM replaced by the mean of the chunks' FC outputs. The filters per channel (32) and
the BatchNorm are our choice too.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .pons import ConvPoolBranch

CHUNK_MELS = 40
CHUNK_FRAMES = 80
CHANNELS = {
    "pitch": ((32, 1), (1, 80)),
    "tempo": ((1, 60), (40, 1)),
    "bass": ((13, 9), (4, 4)),
}
"""channel name -> (conv kernel, max-pool), both (mel, frames)."""
VARIANTS = {
    "R0": (("pitch", "tempo", "bass"), "lstm"),
    "R1": (("tempo", "bass"), "lstm"),
    "R2": (("pitch", "bass"), "lstm"),
    "R3": (("pitch", "tempo"), "lstm"),
    "R4": (("pitch", "tempo", "bass"), "mean"),
}
"""variant -> (conv channels used, how chunks are summarised)."""
FC_UNITS = 400
LSTM_UNITS = 200
DEFAULT_FILTERS = 32
DEFAULT_CLASSES = 10


class MCCLSTM(nn.Module):
    """forward(x: (batch, 40, frames) log-mel of whole tracks, frames >= 80) -> (batch, n_classes)
    class logits; the tracks of a batch share one length (pad or crop them to it).

    variant: one of ``VARIANTS`` (R0 = full model). filters: conv filters per channel.
    """

    def __init__(self, n_classes: int = DEFAULT_CLASSES, variant: str = "R0",
                 filters: int = DEFAULT_FILTERS, fc_units: int = FC_UNITS,
                 lstm_units: int = LSTM_UNITS) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MCCLSTM variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.options = {"n_classes": n_classes, "variant": variant, "filters": filters,
                        "fc_units": fc_units, "lstm_units": lstm_units}
        channels, self.summary = VARIANTS[variant]
        chunk = (CHUNK_MELS, CHUNK_FRAMES)
        self.channels = nn.ModuleDict({name: ConvPoolBranch(chunk, filters, *CHANNELS[name])
                                       for name in channels})
        width = sum(branch.out_features for branch in self.channels.values())
        self.fc = nn.Sequential(nn.Linear(width, fc_units), nn.ReLU())
        self.lstm = nn.LSTM(fc_units, lstm_units, batch_first=True) if self.summary == "lstm" else None
        self.head = nn.Linear(lstm_units if self.lstm is not None else fc_units, n_classes)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def chunks(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 40, frames) -> (batch, frames // 80, 40, 80) non-overlapping chunks."""
        if x.dim() != 3 or x.shape[1] != CHUNK_MELS:
            raise ValueError(f"expected a (batch, {CHUNK_MELS}, frames) log-mel, got {tuple(x.shape)}")
        count = x.shape[2] // CHUNK_FRAMES
        if count == 0:
            raise ValueError(f"{x.shape[2]} frames make no {CHUNK_FRAMES}-frame chunk; MCCLSTM needs "
                             f"at least {CHUNK_FRAMES} frames (~1.9 s at hop 1024, 44.1 kHz)")
        trimmed = x[:, :, :count * CHUNK_FRAMES]
        return trimmed.unflatten(2, (count, CHUNK_FRAMES)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = self.chunks(x)                                   # (N, C, 40, 80)
        images = chunks.flatten(0, 1).unsqueeze(1)                # (N * C, 1, 40, 80)
        features = torch.cat([branch(images) for branch in self.channels.values()], dim=1)
        sequence = self.fc(features).unflatten(0, chunks.shape[:2])   # (N, C, fc_units)
        if self.lstm is None:
            return self.head(sequence.mean(dim=1))
        _, (hidden, _) = self.lstm(sequence)
        return self.head(hidden[-1])
