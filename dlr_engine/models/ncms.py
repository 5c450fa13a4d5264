"""Jeong & Lee 2016's learned temporal (and spectral) features with a random forest per 5 s segment.

- Temporal DNN 108-50-50-50-G: applied to each quefrency's 108-bin modulation spectrum of the
  NCMS (``dlr_engine.ops.ncms``), trained to predict the clip's genre; its last hidden layer (50)
  is the learned temporal feature, aggregated per segment by mean and variance over the 513
  quefrencies -> 100 values.
- Spectral DNN 513-50-50-50-G: applied to each STFT frame (``ncms.spectral_frames``: log
  magnitude z-scored per bin within the segment); its last hidden layer is aggregated by mean and
  variance over the segment's 214 frames -> 100 values.
- ``NCMSForestClassifier``: a random forest (500 trees) on the segment features of the
  ``"temporal"``, ``"spectral"`` or ``"combined"`` (concatenated, 200 values) variant; a clip's
  label is the majority vote of its segments.

Our readings where the paper leaves room: ReLU hidden units; variance is the population
variance; a vote tie goes to the tied class the forest lists first (sorted labels).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from ..ops import ncms as ncms_op

HIDDEN_UNITS = (50, 50, 50)
DEFAULT_GENRES = 10
DEFAULT_TREES = 500
VARIANTS = ("temporal", "spectral", "combined")


class FeatureDNN(nn.Module):
    """forward(x: (..., in_features)) -> (..., n_classes) logits; ``features(x)`` -> (..., 50)
    the last hidden layer (the learned feature)."""

    def __init__(self, in_features: int, n_classes: int = DEFAULT_GENRES,
                 hidden: Sequence[int] = HIDDEN_UNITS) -> None:
        super().__init__()
        self.options = {"in_features": in_features, "n_classes": n_classes, "hidden": list(hidden)}
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options."""
        return dict(self.options)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.options["in_features"]:
            raise ValueError(f"expected inputs of {self.options['in_features']} values on the last "
                             f"axis, got shape {tuple(x.shape)}")
        return self.hidden(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def temporal_dnn(n_genres: int = DEFAULT_GENRES) -> FeatureDNN:
    """The paper's temporal DNN 108-50-50-50-G."""
    return FeatureDNN(ncms_op.N_MODULATION, n_genres)


def spectral_dnn(n_genres: int = DEFAULT_GENRES) -> FeatureDNN:
    """The paper's spectral DNN 513-50-50-50-G."""
    return FeatureDNN(ncms_op.N_QUEFRENCIES, n_genres)


def mean_and_variance(hidden: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., n, ..., units) -> (..., 2 units): mean then population variance over ``dim``."""
    return torch.cat([hidden.mean(dim=dim), hidden.var(dim=dim, correction=0)], dim=-1)


@torch.no_grad()
def temporal_features(dnn: FeatureDNN, x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) at 22.05 kHz -> (batch, segments, 100) per-segment temporal features."""
    return mean_and_variance(dnn.eval().features(ncms_op.ncms(x)), dim=2)


@torch.no_grad()
def spectral_features(dnn: FeatureDNN, x: torch.Tensor) -> torch.Tensor:
    """x: (batch, samples) at 22.05 kHz -> (batch, segments, 100) per-segment spectral features."""
    return mean_and_variance(dnn.eval().features(ncms_op.spectral_frames(x)), dim=2)


def majority_vote(segment_labels: np.ndarray, classes: np.ndarray) -> Any:
    """The most frequent of ``segment_labels``; a tie goes to the tied label first in ``classes``."""
    counts = [(segment_labels == label).sum() for label in classes]
    return classes[int(np.argmax(counts))]


class NCMSForestClassifier:
    """Random forest on 5 s segment features, majority vote per clip.

    variant: ``"temporal"`` (needs ``temporal``), ``"spectral"`` (needs ``spectral``) or
    ``"combined"`` (both, features concatenated); the DNNs are used frozen (train them first).
    ``fit``/``predict`` take clips (1-D audio at 22.05 kHz, at least ``ncms.MIN_SAMPLES``
    samples); ``fit_features``/``predict_features`` take per-clip (segments, features) arrays.
    """

    def __init__(self, variant: str = "temporal", temporal: FeatureDNN | None = None,
                 spectral: FeatureDNN | None = None, n_estimators: int = DEFAULT_TREES,
                 **forest_options: Any) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown NCMS variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        needed = {"temporal": (temporal,), "spectral": (spectral,), "combined": (temporal, spectral)}
        if any(dnn is None for dnn in needed[variant]):
            raise ValueError(f"the {variant!r} variant needs its DNN(s): pass "
                             f"{'temporal= and spectral=' if variant == 'combined' else variant + '='}")
        self.variant = variant
        self.temporal = temporal
        self.spectral = spectral
        self.forest = RandomForestClassifier(n_estimators=n_estimators, **forest_options)

    def segment_features(self, clip: np.ndarray | torch.Tensor) -> np.ndarray:
        """clip: (samples,) at 22.05 kHz -> (segments, 100 or 200) features of the variant."""
        x = torch.as_tensor(clip, dtype=torch.float32).reshape(1, -1)
        parts = []
        if self.variant in ("temporal", "combined"):
            parts.append(temporal_features(self.temporal, x))
        if self.variant in ("spectral", "combined"):
            parts.append(spectral_features(self.spectral, x))
        return torch.cat(parts, dim=-1)[0].numpy()

    def fit_features(self, clips: Sequence[np.ndarray], labels: Sequence[Any]) -> NCMSForestClassifier:
        """clips: per clip a (segments, features) array; every segment gets its clip's label."""
        if len(clips) != len(labels):
            raise ValueError(f"got {len(clips)} clips but {len(labels)} labels")
        segment_labels = np.concatenate([np.full(len(c), label) for c, label in zip(clips, labels)])
        self.forest.fit(np.concatenate(clips), segment_labels)
        return self

    def predict_features(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """clips: per clip a (segments, features) array -> (clips,) majority-voted labels."""
        return np.array([majority_vote(self.forest.predict(c), self.forest.classes_) for c in clips])

    def fit(self, clips: Sequence[np.ndarray | torch.Tensor], labels: Sequence[Any]) -> NCMSForestClassifier:
        return self.fit_features([self.segment_features(c) for c in clips], labels)

    def predict(self, clips: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray:
        return self.predict_features([self.segment_features(c) for c in clips])
