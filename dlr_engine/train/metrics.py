"""Evaluation metrics: accuracy and confusion matrix for classes; ROC-AUC and PR-AUC (average
precision) per tag, macro- and micro-averaged, computed with scikit-learn.

All inputs are numpy arrays; results are plain Python numbers and lists (JSON-able).
"""
from __future__ import annotations

import math

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of ``y_pred == y_true``; both (n,) int class indices."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"accuracy needs two non-empty arrays of one shape, got {y_true.shape} "
                         f"and {y_pred.shape}")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """(n_classes, n_classes) counts, row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(y_true, y_pred, labels=np.arange(n_classes)).tolist()


def _nan_mean(values: list[float]) -> float:
    defined = [value for value in values if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def tag_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float | list[float]]:
    """ROC-AUC and PR-AUC (average precision) of tag ``scores`` against 0/1 ``y_true``, both
    (n, tags): per tag (``roc_auc_per_tag``, ``pr_auc_per_tag``), their mean (``*_macro``) and
    over all (clip, tag) pairs pooled (``*_micro``).

    A tag whose column is all 0 or all 1 has no ROC-AUC (NaN; PR-AUC NaN too when it has no
    positive); macro averages skip NaN, as a tagging paper skips tags absent from its test set.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise ValueError(f"tag metrics need (clips, tags) labels and scores of one shape, got "
                         f"{y_true.shape} and {scores.shape}")
    roc, pr = [], []
    for tag in range(y_true.shape[1]):
        truth, score = y_true[:, tag], scores[:, tag]
        positives = int(truth.sum())
        two_classes = 0 < positives < len(truth)
        roc.append(float(roc_auc_score(truth, score)) if two_classes else math.nan)
        pr.append(float(average_precision_score(truth, score)) if positives else math.nan)
    flat_truth, flat_scores = y_true.ravel(), scores.ravel()
    pooled_positives = int(flat_truth.sum())
    return {
        "roc_auc_macro": _nan_mean(roc),
        "roc_auc_micro": float(roc_auc_score(flat_truth, flat_scores))
        if 0 < pooled_positives < flat_truth.size else math.nan,
        "pr_auc_macro": _nan_mean(pr),
        "pr_auc_micro": float(average_precision_score(flat_truth, flat_scores)) if pooled_positives else math.nan,
        "roc_auc_per_tag": roc,
        "pr_auc_per_tag": pr,
    }
