"""Thin Ignite adapters around :mod:`shared.metrics`.

Counting is Ignite's ``ConfusionMatrix`` (it already accumulates ``(C, C)`` counts
across iterations and all-reduces them across processes); the numbers derived
from the counts are :mod:`shared.metrics`, so a handler and a report can never
disagree. Engine outputs may be MONAI-decollated (a list of per-sample dicts) or
batched dicts; :func:`batch_output` accepts both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import ConfusionMatrix, Loss, MetricsLambda
from monai.utils import CommonKeys

from shared import metrics as M

#: Where the engine keeps the network output and the label before postprocessing (see ``shared.engine``).
RAW_PRED_KEY = "pred_raw"
RAW_LABEL_KEY = "label_raw"


def _plain(value: Any) -> torch.Tensor:
    tensor = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)
    return tensor.detach()


def batch_output(output: Any, keys: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """Pull ``keys`` out of an engine output as batched plain tensors.

    Args:
        output: ``engine.state.output``: a dict of batched tensors, or a list of
            per-sample dicts (MONAI ``decollate=True``), which are stacked back.
        keys: e.g. ``("pred", "label")``.
    """
    if isinstance(output, dict):
        return tuple(_plain(output[k]) for k in keys)
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        return tuple(torch.stack([_plain(item[k]) for item in output]) for k in keys)
    raise TypeError(f"Engine output must be a dict or a list of dicts with keys {list(keys)}, got {type(output).__name__}.")


def scores_and_indices(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring ``(pred, label)`` to Ignite's classification form.

    Args:
        pred: ``(B, C, ...)`` scores, logits or one-hot predictions (C >= 2).
        label: ``(B, ...)`` class indices, ``(B, 1, ...)`` MONAI channel-first indices,
            or ``(B, C, ...)`` one-hot.

    Returns:
        ``(pred (B, C, ...) float, label (B, ...) int64)``.
    """
    if pred.ndim < 2 or pred.shape[1] < 2:
        raise ValueError(f"Predictions must be (B, C, ...) with C >= 2 class channels, got shape {tuple(pred.shape)}.")
    if label.ndim == pred.ndim:
        if label.shape[1] == 1:
            label = label[:, 0]
        elif label.shape[1] == pred.shape[1]:
            label = label.argmax(dim=1)
        else:
            raise ValueError(f"Label shape {tuple(label.shape)} fits neither indices nor one-hot for predictions {tuple(pred.shape)}.")
    if label.shape != pred.shape[:1] + pred.shape[2:]:
        raise ValueError(
            f"Label shape {tuple(label.shape)} does not match predictions {tuple(pred.shape)} (expected {(pred.shape[0], *pred.shape[2:])})."
        )
    return pred.float(), label.long()


def classification_output(pred_key: str = CommonKeys.PRED, label_key: str = CommonKeys.LABEL) -> Callable[[Any], tuple]:
    """Output transform for confusion-based metrics: engine output -> ``(scores, indices)``."""

    def transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return scores_and_indices(*batch_output(output, (pred_key, label_key)))

    return transform


def loss_output(label_key: str = CommonKeys.LABEL) -> Callable[[Any], tuple]:
    """Output transform for a validation loss: the network's raw output and label (before postprocessing)."""

    def transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        first = output if isinstance(output, dict) else output[0]
        pred_key = RAW_PRED_KEY if RAW_PRED_KEY in first else CommonKeys.PRED
        raw_label_key = RAW_LABEL_KEY if RAW_LABEL_KEY in first else label_key
        return batch_output(output, (pred_key, raw_label_key))

    return transform


def confusion_metric(
    stat: str,
    num_classes: int,
    average: str = "macro",
    output_transform: Callable[[Any], tuple] | None = None,
    zero_division: float = np.nan,
    device: str | torch.device = "cpu",
) -> MetricsLambda:
    """An Ignite metric computing ``stat`` (accuracy, precision, recall, f1, dice, iou) from confusion counts.

    Args:
        stat: the number to report (see :func:`shared.metrics.metric_from_confusion`).
        num_classes: C (background included for segmentation).
        average: ``"macro"``, ``"weighted"``, ``"micro"`` or ``"none"`` (per-class array).
        output_transform: engine output -> ``(scores (B, C, ...), indices (B, ...))``;
            default :func:`classification_output`.

    Example (bundle config):
        ``{"_target_": "shared.ignite_metrics.confusion_metric", "stat": "dice", "num_classes": 3}``
    """
    counts = ConfusionMatrix(num_classes, output_transform=output_transform or classification_output(), device=device)

    def compute(cm: torch.Tensor) -> float | np.ndarray:
        return M.metric_from_confusion(cm.cpu().numpy(), stat, average, zero_division)

    return MetricsLambda(compute, counts)


def loss_metric(loss_function: Callable, output_transform: Callable[[Any], tuple] | None = None) -> Loss:
    """Ignite ``Loss`` on the raw network output, for validation loss in the progress table and patience."""
    return Loss(loss_function, output_transform=output_transform or loss_output())
