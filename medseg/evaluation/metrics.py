"""Segmentation metrics per case and class, with empty structures counted rather than hidden.

Overlap numbers come from :mod:`shared.metrics` (one confusion matrix per case); the
Hausdorff distance from MONAI. What this module adds is the bookkeeping MONAI's
``ignore_empty`` skips: a structure absent from the reference but predicted is a false
positive with Dice 0, not a NaN dropped from the mean; absent from both is "empty" and
excluded; present but not predicted is "missed" with Dice 0.

MATLAB parity: :func:`dice`, :func:`jaccard`, :func:`bfscore` take two label arrays and
return one value per label, as MATLAB's functions do for categorical inputs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from shared import metrics as M

STATUSES = ("ok", "missed", "false_positive", "empty")


def _labels(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    if np.asarray(pred).shape != np.asarray(ref).shape:
        raise ValueError(f"Prediction shape {np.asarray(pred).shape} differs from reference shape {np.asarray(ref).shape}.")
    return list(labels) if labels is not None else sorted((set(np.unique(ref).tolist()) | set(np.unique(pred).tolist())) - {0})


def dice(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int] | None = None) -> dict[int, float]:
    """Per-label Dice 2|A∩B|/(|A|+|B|) (MATLAB ``dice``); NaN where both are empty."""
    labels = _labels(pred, ref, labels)
    out = {}
    for label in labels:
        a, b = pred == label, ref == label
        total = a.sum() + b.sum()
        out[label] = float(2 * np.logical_and(a, b).sum() / total) if total else float("nan")
    return out


def jaccard(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int] | None = None) -> dict[int, float]:
    """Per-label Jaccard |A∩B|/|A∪B| (MATLAB ``jaccard``); NaN where both are empty."""
    labels = _labels(pred, ref, labels)
    out = {}
    for label in labels:
        a, b = pred == label, ref == label
        union = np.logical_or(a, b).sum()
        out[label] = float(np.logical_and(a, b).sum() / union) if union else float("nan")
    return out


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def bfscore(
    pred: np.ndarray,
    ref: np.ndarray,
    labels: Sequence[int] | None = None,
    threshold: float | None = None,
    spacing: Sequence[float] | None = None,
) -> dict[int, float]:
    """Per-label boundary F1 score (MATLAB ``bfscore``), in 2D or 3D.

    A predicted boundary voxel counts as correct when it lies within ``threshold`` of the
    reference boundary (and vice versa for recall). Distances are in ``spacing`` units (mm);
    the default threshold is MATLAB's: 0.75% of the image diagonal. NaN when both are empty,
    0 when only one is.
    """
    labels = _labels(pred, ref, labels)
    spacing = np.ones(np.ndim(ref)) if spacing is None else np.asarray(spacing, dtype=float)
    if threshold is None:
        threshold = 0.0075 * float(np.linalg.norm(np.asarray(np.shape(ref)) * spacing))
    out = {}
    for label in labels:
        a, b = _boundary(pred == label), _boundary(ref == label)
        if not a.any() and not b.any():
            out[label] = float("nan")
            continue
        if not a.any() or not b.any():
            out[label] = 0.0
            continue
        to_b = ndimage.distance_transform_edt(~b, sampling=spacing)
        to_a = ndimage.distance_transform_edt(~a, sampling=spacing)
        precision = float((to_b[a] <= threshold).mean())
        recall = float((to_a[b] <= threshold).mean())
        out[label] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return out


def hd95(pred: np.ndarray, ref: np.ndarray, label: int, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance of one label, mm (MONAI); NaN if either side is empty."""
    a, b = pred == label, ref == label
    if not a.any() or not b.any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_hausdorff_distance(
            torch.as_tensor(a[None, None]), torch.as_tensor(b[None, None]), include_background=True, percentile=95, spacing=list(spacing)
        )
    return float(value.reshape(-1)[0])


@dataclasses.dataclass
class CaseResult:
    """One case: its confusion matrix over all labels and per-label rows."""

    case: str
    confusion: np.ndarray
    rows: list[dict]
    bf: dict[int, float]


def evaluate_case(case: str, pred: np.ndarray, ref: np.ndarray, names: Mapping[int, str], spacing: Sequence[float]) -> CaseResult:
    """Per-label Dice, IoU, recall, precision, F1, HD95 (mm), volumes (mL) and status for one case.

    Args:
        pred: predicted integer label array (``[i, j, k]``).
        ref: reference integer label array on the same grid.
        names: label value -> name for every label of the model (0 = background).
        spacing: voxel size in mm.
    """
    num = max(names) + 1
    unknown = sorted(set(np.unique(pred).tolist()) - set(names))
    if unknown:
        raise ValueError(f"{case}: prediction holds labels {unknown} that the model does not define ({sorted(names)}).")
    cm = M.confusion_matrix(ref.reshape(-1), pred.reshape(-1), num)
    counts = M.class_counts(cm)
    stats = {"dice": M.dice(cm), "iou": M.iou(cm), "recall": M.recall(cm), "precision": M.precision(cm)}
    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for label in sorted(v for v in names if v != 0):
        in_ref, in_pred = counts["support"][label] > 0, counts["tp"][label] + counts["fp"][label] > 0
        status = "ok" if in_ref and in_pred else "missed" if in_ref else "false_positive" if in_pred else "empty"
        row = {"case": case, "label": label, "name": names[label], "status": status}
        for key, values in stats.items():
            row[key] = float(values[label])
        if status in ("missed", "false_positive"):  # defined as 0 (not NaN): a wrong answer, not a missing one
            row.update(dice=0.0, iou=0.0, recall=0.0 if in_ref else float("nan"), precision=0.0 if in_pred else float("nan"))
        row["f1"] = row["dice"]
        row["hd95_mm"] = hd95(pred, ref, label, spacing)
        row["ref_ml"] = float(counts["support"][label]) * voxel_ml
        row["pred_ml"] = float(counts["tp"][label] + counts["fp"][label]) * voxel_ml
        rows.append(row)
    return CaseResult(case, cm, rows, bfscore(pred, ref, sorted(names), spacing=spacing))


def summarise(results: Sequence[CaseResult], names: Mapping[int, str]) -> dict:
    """Per-label means/std over cases (NaN-free by construction), plus counts of each status."""
    summary: dict = {"cases": len(results), "per_label": {}}
    for label in sorted(v for v in names if v != 0):
        rows = [r for res in results for r in res.rows if r["label"] == label]
        entry: dict = {"name": names[label], **{s: sum(r["status"] == s for r in rows) for s in STATUSES}}
        for key in ("dice", "iou", "recall", "precision", "f1", "hd95_mm"):
            values = np.array([r[key] for r in rows], dtype=float)
            defined = values[np.isfinite(values)]
            entry[f"{key}_mean"] = float(defined.mean()) if defined.size else float("nan")
            entry[f"{key}_std"] = float(defined.std()) if defined.size else float("nan")
            entry[f"{key}_n"] = int(defined.size)
        summary["per_label"][names[label]] = entry
    dice_means = [e["dice_mean"] for e in summary["per_label"].values() if np.isfinite(e["dice_mean"])]
    summary["mean_dice"] = float(np.mean(dice_means)) if dice_means else float("nan")
    summary["counts"] = {s: sum(e[s] for e in summary["per_label"].values()) for s in STATUSES}
    return summary


def matlab_tables(results: Sequence[CaseResult], names: Mapping[int, str]) -> dict:
    """MATLAB ``evaluateSemanticSegmentation`` outputs: DataSetMetrics, ClassMetrics, ImageMetrics, confusion matrices.

    Background is a class, as in MATLAB. Means skip NaN (classes absent from an image).
    """
    labels = sorted(names)
    total = sum(r.confusion for r in results)
    support = M.class_counts(total)["support"]
    class_iou = M.iou(total)
    class_acc = M.recall(total)
    class_bf = {n: _nanmean([r.bf.get(n, np.nan) for r in results]) for n in labels}
    dataset = {
        "GlobalAccuracy": M.accuracy(total),
        "MeanAccuracy": _nanmean(class_acc),
        "MeanIoU": _nanmean(class_iou),
        "WeightedIoU": M.average(class_iou, total, "weighted"),
        "MeanBFScore": _nanmean([_nanmean(list(r.bf.values())) for r in results]),
    }
    classes = [
        {
            "Class": names[n],
            "Accuracy": float(class_acc[n]),
            "IoU": float(class_iou[n]),
            "MeanBFScore": class_bf[n],
            "Voxels": int(support[n]),
        }
        for n in labels
    ]
    images = []
    for r in results:
        iou = M.iou(r.confusion)
        images.append(
            {
                "Case": r.case,
                "GlobalAccuracy": M.accuracy(r.confusion),
                "MeanAccuracy": _nanmean(M.recall(r.confusion)),
                "MeanIoU": _nanmean(iou),
                "WeightedIoU": M.average(iou, r.confusion, "weighted"),
                "MeanBFScore": _nanmean(list(r.bf.values())),
            }
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = total / total.sum(axis=1, keepdims=True)
    return {
        "DataSetMetrics": dataset,
        "ClassMetrics": classes,
        "ImageMetrics": images,
        "ConfusionMatrix": total.astype(int).tolist(),
        "NormalizedConfusionMatrix": np.nan_to_num(normalized).tolist(),
    }


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")
