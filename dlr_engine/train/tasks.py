"""Training tasks: which model, which loss, which metrics.

- ``source-task`` (the DLR paper's source task): ``dlr_source`` model; loss = cross-entropy of
  the style head + cross-entropy of the tempo-class head (multi-task, equal weights). Clips
  labelled ``NO_STYLE`` (-1: the SoundFont drum grooves) train the tempo head only and are left
  out of the style metrics. Where the labels carry the ``bpm``, the tempo head's target is soft
  near a class boundary (``tempo_targets``): a clip at 111 BPM is trained as about 2/3 <112 and
  1/3 112-149.
- ``tagger`` (the target task): ``fcn`` model; loss = binary cross-entropy per tag.

Labels are the dicts of ``SynthRhythmDataset`` / ``LabelledFolder`` batched: ``style`` and
``tempo_class`` (batch,) int64, ``tags`` (batch, n_tags) float 0/1.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TEMPO_CLASS_BOUNDARIES_BPM
from ..data.drums import NO_STYLE
from ..data.synth import STYLE_NAMES, TAG_NAMES
from ..models.registry import tempo_class_names
from . import metrics


TEMPO_LABEL_SIGMA = 0.02
"""Spread of a clip's tempo (standard deviation of its natural log BPM) in ``tempo_targets``:
about the tempo drift and timing error of a performance."""


def tempo_targets(bpm: torch.Tensor, sigma: float = TEMPO_LABEL_SIGMA) -> torch.Tensor:
    """bpm: (batch,) -> (batch, classes) float32: the probability that a tempo with log-normal
    spread ``sigma`` around ``bpm`` falls in each tempo class (one-hot far from a boundary,
    0.5 / 0.5 on one)."""
    edges = torch.log(torch.tensor(TEMPO_CLASS_BOUNDARIES_BPM, dtype=torch.float64, device=bpm.device))
    below = torch.special.ndtr((edges - torch.log(bpm.double())[:, None]) / sigma)  # P(tempo < edge)
    return F.pad(below, (1, 0), value=0.0).diff(dim=1, append=torch.ones_like(below[:, :1])).float()


class SourceTask:
    """Style + tempo-class classification; ``score`` (for early stopping) is the mean accuracy."""

    name = "source-task"
    model_name = "dlr_source"
    heads = {"style_logits": "style", "tempo_logits": "tempo_class"}
    """output key -> label key."""

    def __init__(self, style_names: tuple[str, ...] = STYLE_NAMES) -> None:
        self.label_names = {"style_logits": list(style_names), "tempo_logits": tempo_class_names()}

    def model_options(self) -> dict[str, Any]:
        return {"n_styles": len(self.label_names["style_logits"]),
                "n_tempo_classes": len(self.label_names["tempo_logits"])}

    def loss(self, outputs: dict[str, torch.Tensor],
             labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of the heads' cross-entropies, each the mean over the clips that have the label
        (not ``NO_STYLE``; 0 if none has it), and each one as a float. The tempo head's target
        is ``tempo_targets(labels["bpm"])`` where the labels have a ``bpm``, else its class."""
        parts = {}
        for key, label in self.heads.items():
            target = labels[label]
            if label == "tempo_class" and "bpm" in labels:
                parts[label] = F.cross_entropy(outputs[key].float(), tempo_targets(labels["bpm"]))
                continue
            total = F.cross_entropy(outputs[key].float(), target, ignore_index=NO_STYLE, reduction="sum")
            parts[label] = total / (target != NO_STYLE).sum().clamp(min=1)
        return sum(parts.values()), {f"{label}_loss": value.item() for label, value in parts.items()}

    def predictions(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per head, the logits (batch, classes) to accumulate for ``metrics``."""
        return {key: outputs[key].detach().float() for key in self.heads}

    def metrics(self, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, Any]:
        """``<label>_accuracy`` and ``<label>_confusion`` per head over the clips that have the
        label (a head whose clips all lack it is left out), and ``score``, their mean."""
        result: dict[str, Any] = {}
        for key, label in self.heads.items():
            has = labels[label] != NO_STYLE
            if not has.any():
                continue
            truth, predicted = labels[label][has], predictions[key][has].argmax(axis=1)
            result[f"{label}_accuracy"] = metrics.accuracy(truth, predicted)
            result[f"{label}_confusion"] = metrics.confusion_matrix(truth, predicted, len(self.label_names[key]))
        result["score"] = float(np.mean([result[f"{label}_accuracy"] for label in self.heads.values()
                                         if f"{label}_accuracy" in result]))
        return result


class TaggerTask:
    """Multi-label tagging; ``score`` is the macro ROC-AUC."""

    name = "tagger"
    model_name = "fcn"

    def __init__(self, tag_names: tuple[str, ...] = TAG_NAMES) -> None:
        self.label_names = {"tag_logits": list(tag_names)}

    def model_options(self) -> dict[str, Any]:
        return {"n_tags": len(self.label_names["tag_logits"])}

    def loss(self, outputs: dict[str, torch.Tensor],
             labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.binary_cross_entropy_with_logits(outputs["tag_logits"].float(), labels["tags"].float())
        return loss, {"tags_loss": loss.item()}

    def predictions(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"tag_logits": outputs["tag_logits"].detach().float()}

    def metrics(self, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, Any]:
        """``tag_metrics`` of the sigmoid scores, and ``score``."""
        result: dict[str, Any] = metrics.tag_metrics(labels["tags"], 1.0 / (1.0 + np.exp(-predictions["tag_logits"])))
        result["score"] = result["roc_auc_macro"]
        return result


TASKS = {task.name: task for task in (SourceTask, TaggerTask)}
