"""Metric maths from confusion counts: no Ignite, no torch required.

One confusion matrix ``cm`` of shape ``(C, C)`` (rows = true class, columns =
predicted class, as scikit-learn and MATLAB ``confusionchart``) gives every
number both tasks report: per-class precision, recall, F1, IoU (Jaccard) and
Dice, accuracy, and their macro and weighted averages. For one class,
Dice == F1 == 2TP / (2TP + FP + FN) and IoU == TP / (TP + FP + FN).

Undefined ratios (0 / 0, e.g. the recall of a class absent from the reference)
are NaN, never a silent 0: averages skip them and report how many were skipped
(scikit-learn's ``zero_division=np.nan``; MATLAB's ``evaluateSemanticSegmentation``
also excludes them from its means). Pass ``zero_division=0.0`` for sklearn's default.

Example:
    >>> cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], num_classes=3)
    >>> round(average(f1_score(cm), cm, "macro"), 4)
    0.7778
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

AVERAGES = ("macro", "weighted", "micro", "none")


def _as_int_array(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if (
        array.size
        and not np.issubdtype(array.dtype, np.integer)
        and (not np.all(np.isfinite(array)) or not np.all(array == np.round(array)))
    ):
        raise ValueError(f"{what} must hold integer class indices, got non-integer values of dtype {array.dtype}.")
    return array.astype(np.int64).reshape(-1)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Count ``(true, predicted)`` pairs.

    Args:
        y_true: integer class indices (any shape: labels of N clips, or every voxel of a
            volume), numpy or torch.
        y_pred: predicted indices, same shape.
        num_classes: C; indices must lie in ``[0, C)``.

    Returns:
        ``(C, C)`` int64 counts, rows = true class, columns = predicted class.
    """
    true = _as_int_array(y_true, "y_true")
    pred = _as_int_array(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must have the same number of elements, got {true.size} and {pred.size}.")
    for what, arr in (("y_true", true), ("y_pred", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"{what} holds class indices outside [0, {num_classes}): found {sorted(set(arr[(arr < 0) | (arr >= num_classes)].tolist()))[:10]}."
            )
    flat = true * num_classes + pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _cm(cm: Any) -> np.ndarray:
    matrix = np.asarray(cm.detach().cpu().numpy() if hasattr(cm, "detach") else cm, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"A confusion matrix must be square (C, C), got shape {matrix.shape}.")
    return matrix


def class_counts(cm: Any) -> dict[str, np.ndarray]:
    """Per-class ``tp``, ``fp``, ``fn``, ``tn`` and ``support`` (true count), each of shape ``(C,)``."""
    matrix = _cm(cm)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    tn = matrix.sum() - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "support": tp + fn}


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[den == 0] = zero_division
    return out


def precision(cm: Any, zero_division: float = np.nan) -> np.ndarray:
    """Per-class TP / (TP + FP), shape ``(C,)``."""
    c = class_counts(cm)
    return _ratio(c["tp"], c["tp"] + c["fp"], zero_division)


def recall(cm: Any, zero_division: float = np.nan) -> np.ndarray:
    """Per-class TP / (TP + FN) (sensitivity; MATLAB's per-class "Accuracy"), shape ``(C,)``."""
    c = class_counts(cm)
    return _ratio(c["tp"], c["tp"] + c["fn"], zero_division)


def f1_score(cm: Any, zero_division: float = np.nan) -> np.ndarray:
    """Per-class 2TP / (2TP + FP + FN), shape ``(C,)``; equals the Dice coefficient."""
    c = class_counts(cm)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], zero_division)


dice = f1_score


def iou(cm: Any, zero_division: float = np.nan) -> np.ndarray:
    """Per-class TP / (TP + FP + FN) (Jaccard index), shape ``(C,)``."""
    c = class_counts(cm)
    return _ratio(c["tp"], c["tp"] + c["fp"] + c["fn"], zero_division)


def accuracy(cm: Any) -> float:
    """Fraction of all samples (or voxels) on the diagonal (MATLAB's GlobalAccuracy); NaN when empty."""
    matrix = _cm(cm)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def average(per_class: np.ndarray, cm: Any, method: str = "macro", stat: str | None = None) -> float | np.ndarray:
    """Average a per-class statistic.

    Args:
        per_class: values of shape ``(C,)`` (NaN where undefined).
        cm: the confusion matrix they came from (for weights and micro averaging).
        method: ``"macro"`` (unweighted mean of defined classes), ``"weighted"`` (by support),
            ``"micro"`` (pooled counts; needs ``stat``) or ``"none"`` (return ``per_class``).
        stat: for ``"micro"``: one of ``precision``, ``recall``, ``f1``, ``dice``, ``iou``.
    """
    values = np.asarray(per_class, dtype=np.float64)
    if method == "none":
        return values
    if method == "macro":
        defined = ~np.isnan(values)
        return float(values[defined].mean()) if defined.any() else float("nan")
    if method == "weighted":
        support = class_counts(cm)["support"]
        defined = ~np.isnan(values)
        weights = support * defined
        return float((np.where(defined, values, 0.0) * weights).sum() / weights.sum()) if weights.sum() else float("nan")
    if method == "micro":
        return _micro(cm, stat)
    raise ValueError(f"average method {method!r} is invalid; expected one of {AVERAGES}.")


def _micro(cm: Any, stat: str | None) -> float:
    c = {k: v.sum() for k, v in class_counts(cm).items()}
    num_den = {
        "precision": (c["tp"], c["tp"] + c["fp"]),
        "recall": (c["tp"], c["tp"] + c["fn"]),
        "f1": (2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "dice": (2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "iou": (c["tp"], c["tp"] + c["fp"] + c["fn"]),
    }
    if stat not in num_den:
        raise ValueError(f"micro averaging needs stat in {sorted(num_den)}, got {stat!r}.")
    num, den = num_den[stat]
    return float(num / den) if den else float("nan")


PER_CLASS = {"precision": precision, "recall": recall, "f1": f1_score, "dice": dice, "iou": iou}


def metric_from_confusion(cm: Any, stat: str, method: str = "macro", zero_division: float = np.nan) -> float | np.ndarray:
    """One named number from ``cm``: ``stat`` in accuracy/precision/recall/f1/dice/iou, averaged by ``method``."""
    if stat == "accuracy":
        return accuracy(cm)
    if stat not in PER_CLASS:
        raise ValueError(f"Unknown metric {stat!r}; expected 'accuracy' or one of {sorted(PER_CLASS)}.")
    if method == "micro":
        return _micro(cm, stat)
    return average(PER_CLASS[stat](cm, zero_division), cm, method)


def classification_report(cm: Any, class_names: Sequence[str] | None = None, zero_division: float = np.nan) -> dict[str, Any]:
    """Everything at once, JSON-ready: accuracy, mean class accuracy, macro/weighted averages, per-class rows.

    Returns:
        ``{"accuracy", "mean_class_accuracy", "<stat>_macro", "<stat>_weighted", "undefined": {stat: n},
        "per_class": [{"class", "support", "precision", "recall", "f1", "iou"}, ...]}``
    """
    matrix = _cm(cm)
    names = list(class_names) if class_names is not None else [str(i) for i in range(matrix.shape[0])]
    if len(names) != matrix.shape[0]:
        raise ValueError(f"class_names has {len(names)} entries but the confusion matrix has {matrix.shape[0]} classes.")
    stats = {name: fn(matrix, zero_division) for name, fn in PER_CLASS.items() if name != "dice"}
    report: dict[str, Any] = {"accuracy": accuracy(matrix), "mean_class_accuracy": average(stats["recall"], matrix, "macro")}
    for name, values in stats.items():
        report[f"{name}_macro"] = average(values, matrix, "macro")
        report[f"{name}_weighted"] = average(values, matrix, "weighted")
    report["undefined"] = {name: int(np.isnan(values).sum()) for name, values in stats.items()}
    support = class_counts(matrix)["support"]
    report["per_class"] = [
        {"class": names[i], "support": int(support[i]), **{name: float(values[i]) for name, values in stats.items()}}
        for i in range(matrix.shape[0])
    ]
    return report


def largest_drop_after(curve: Sequence[float], level: float = 0.5) -> float:
    """Largest fall of a validation ``curve`` below its running maximum once it first reached ``level``.

    0 when it never reached ``level`` or never fell. A healthy training curve may wobble; one that
    collapses (e.g. Dice 0.91 -> 0.00 -> 0.92, batch norm's running statistics) drops by far more
    than 0.2 after passing 0.5.
    """
    drop, best, reached = 0.0, -math.inf, False
    for value in curve:
        reached = reached or value >= level
        best = max(best, value)
        if reached:
            drop = max(drop, best - value)
    return drop
