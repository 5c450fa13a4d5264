"""Training tasks: which model, which loss, which metrics.

- ``source-task`` (the DLR paper's source task): ``dlr_source`` model; loss = cross-entropy of
  the style head + cross-entropy of the tempo-class head (multi-task, equal weights).
- ``tagger`` (the target task): ``fcn`` model; loss = binary cross-entropy per tag.

Labels are the dicts of ``SynthRhythmDataset`` / ``LabelledFolder`` batched: ``style`` and
``tempo_class`` (batch,) int64, ``tags`` (batch, n_tags) float 0/1.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.synth import STYLE_NAMES, TAG_NAMES
from ..models.registry import tempo_class_names
from . import metrics


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
        """Sum of the heads' mean cross-entropies, and each one as a float."""
        parts = {label: F.cross_entropy(outputs[key].float(), labels[label]) for key, label in self.heads.items()}
        return sum(parts.values()), {f"{label}_loss": value.item() for label, value in parts.items()}

    def predictions(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per head, the logits (batch, classes) to accumulate for ``metrics``."""
        return {key: outputs[key].detach().float() for key in self.heads}

    def metrics(self, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, Any]:
        """``<label>_accuracy`` and ``<label>_confusion`` per head, and ``score``."""
        result: dict[str, Any] = {}
        for key, label in self.heads.items():
            predicted = predictions[key].argmax(axis=1)
            result[f"{label}_accuracy"] = metrics.accuracy(labels[label], predicted)
            result[f"{label}_confusion"] = metrics.confusion_matrix(labels[label], predicted,
                                                                    len(self.label_names[key]))
        result["score"] = float(np.mean([result[f"{label}_accuracy"] for label in self.heads.values()]))
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
