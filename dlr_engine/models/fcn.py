"""Choi et al. 2016's fully convolutional tagger (FCN), the DLR paper's target task (DESIGN §5).

Each input branch turns raw audio into a feature image ``(N, 1, H=frames, W=bins)`` and runs the
same five conv blocks as the source-task model (32 channels, 4x8 then 3x3 kernels, BatchNorm,
ReLU, max-pools (2,2), (2,2), (2,2), (4,4)); global average pooling over time and bins gives 32
features per branch. With ``input="mel+dlr"`` the two branches' features are concatenated before
the output layer. The output layer gives one logit per tag (apply a sigmoid for probabilities).
For the source task the embedding feeds ``style_logits`` / ``tempo_logits`` heads (options
``n_styles``, ``n_tempo_classes``, as the families in ``families``; ``n_tags=0`` drops the tags).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nn import DLR
from .dlr_source import CONV_CHANNELS, conv_stack, min_size
from .families import HEADS, checked_head_sizes

INPUT_KINDS = ("mel", "dlr", "tempogram")
"""Feature branches; an ``input`` joins one or two of them with ``+`` (e.g. ``"mel+dlr"``)."""
DEFAULT_TAGS = 50
HEAD_LAYERS = {"n_tags": "tag_head", "n_styles": "style_head", "n_tempo_classes": "tempo_head"}
"""head option (output key in ``families.HEADS``) -> layer attribute (None for a head of size 0)."""


def parse_input(input: str) -> tuple[str, ...]:
    """``"mel+dlr"`` -> ``("mel", "dlr")``, checking each kind against ``INPUT_KINDS``."""
    kinds = tuple(input.split("+"))
    unknown = [kind for kind in kinds if kind not in INPUT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"input {input!r} is not one of {', '.join(INPUT_KINDS)} or two of them "
                         f"joined by '+' (e.g. 'mel+dlr')")
    return kinds


def _front_end(kind: str, dlr: dict[str, Any], preprocess: bool, backend: str | None) -> nn.Module:
    if kind == "dlr":
        return DLR(**dlr, preprocess="peak_abs" if preprocess else None, backend=backend)
    from .. import spectral  # imported here: the spectral front-ends are optional for DLR users
    return spectral.from_name(kind)  # the DLR code's conventions: MelSpectrogram / Tempogram(preset="dlr")


class FCNTagger(nn.Module):
    """Raw audio -> feature branch(es) -> conv blocks -> global average pool -> logits per head.

    forward(x: (batch, samples) float at 8 kHz) returns a dict: each branch's features under its
    kind (``mel`` (batch, 128, frames), ``dlr`` (batch, 128, frames), ``tempogram``),
    ``embedding`` (batch, 32 * branches) and ``tag_logits`` (batch, n_tags) (``style_logits``
    (batch, n_styles), ``tempo_logits`` (batch, n_tempo_classes) when those are > 0; a head of
    size 0 is left out, at least one is needed).

    input: ``"mel"``, ``"dlr"``, ``"tempogram"`` or ``"mel+dlr"`` (any two joined by ``+``).
    dlr: geometry of the DLR branch (``DLR`` keyword arguments: ``channels``, ``dilations``, ...).
    preprocess: the authors' ``|x / max|x||`` per clip before the DLR branch.
    backend: a DLR op backend to force (default: automatic).
    """

    def __init__(self, n_tags: int = DEFAULT_TAGS, input: str = "mel", dlr: dict[str, Any] | None = None,
                 preprocess: bool = True, n_styles: int = 0, n_tempo_classes: int = 0,
                 backend: str | None = None) -> None:
        super().__init__()
        self.head_sizes = checked_head_sizes(n_tags, n_styles, n_tempo_classes)
        self.kinds = parse_input(input)
        self.input = input
        self.preprocess = preprocess
        self.front_ends = nn.ModuleDict({kind: _front_end(kind, dict(dlr or {}), preprocess, backend)
                                         for kind in self.kinds})
        self.branches = nn.ModuleDict({kind: conv_stack() for kind in self.kinds})
        self.min_frames = min_size(0)
        self.embedding_dim = CONV_CHANNELS * len(self.kinds)
        for option, layer in HEAD_LAYERS.items():
            size = self.head_sizes[option]
            setattr(self, layer, nn.Linear(self.embedding_dim, size) if size else None)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options (without ``backend``)."""
        config: dict[str, Any] = {**self.head_sizes, "input": self.input, "preprocess": self.preprocess}
        if "dlr" in self.kinds:
            dlr = self.front_ends["dlr"].config
            config["dlr"] = {"n_branches": dlr.n_branches, "channels": dlr.channels,
                             "kernel_size": dlr.kernel_size, "dilations": list(dlr.dilations),
                             "pool": dlr.pool}
        return config

    def branch(self, kind: str, features: torch.Tensor) -> torch.Tensor:
        """features (N, bins, frames) of branch ``kind`` -> (N, 32) pooled conv features."""
        if features.shape[-1] < self.min_frames:
            raise ValueError(f"{features.shape[-1]} {kind} frames are too few for the conv blocks: "
                             f"they need at least {self.min_frames}; use longer clips")
        image = features.transpose(1, 2).unsqueeze(1)          # (N, 1, H=frames, W=bins)
        return self.branches[kind](image).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        pooled = []
        for kind in self.kinds:
            out[kind] = self.front_ends[kind](x)
            pooled.append(self.branch(kind, out[kind]))
        out["embedding"] = torch.cat(pooled, dim=1)
        for option, layer in HEAD_LAYERS.items():
            head = getattr(self, layer)
            if head is not None:
                out[HEADS[option]] = head(out["embedding"])
        return out
