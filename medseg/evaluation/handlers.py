"""Validation Dice during training, counted as ``medseg evaluate`` counts it: a structure predicted where the
reference has none scores 0.

MONAI's ``DiceMetric`` (and so the ``MeanDice`` handler) skips every case whose reference lacks a structure
(``ignore_empty=True``; the handler does not expose the switch), so a false tumour in a tumour-free validation case
leaves the validation Dice unchanged, and "best-validation" model selection cannot see it. With
``ignore_empty=False`` MONAI counts such a case 0 but also counts a structure absent from both 1, which inflates the
validation Dice beside the test report's. :class:`CountedDiceMetric` keeps MONAI's computation and takes the test
report's rule (:mod:`medseg.evaluation.metrics`): absent from both -> not counted (NaN), predicted but absent -> 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric


class CountedDiceMetric(DiceMetric):
    """MONAI's ``DiceMetric`` on one-hot ``(B, C, *spatial)`` predictions and references, ``ignore_empty=False``,
    except that a structure absent from both the reference and the prediction gives NaN (not counted) rather than 1.
    Result ``(B, C)`` (``C - 1`` without the background), reduced over the counted values by ``reduction``."""

    def __init__(self, include_background: bool = True, reduction: str = "mean", num_classes: int | None = None) -> None:
        super().__init__(include_background=include_background, reduction=reduction, num_classes=num_classes, ignore_empty=False)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dice = super()._compute_tensor(y_pred, y)
        first = 0 if self.include_background else 1
        in_ref = y[:, first:].flatten(2).sum(-1) > 0
        in_pred = y_pred[:, first:].flatten(2).sum(-1) > 0
        return torch.where(in_ref | in_pred, dice, torch.full_like(dice, float("nan")))


class CountedMeanDice(IgniteMetricHandler):
    """The ``MeanDice`` handler with :class:`CountedDiceMetric`: the bundle's validation key metric.

    Args:
        include_background: whether channel 0 is scored.
        reduction: MONAI's reduction over the counted ``(B, C)`` values.
        num_classes: classes including the background (``None``: the prediction's channels).
        output_transform: ``engine.state.output`` -> ``(y_pred, y)``, as for MONAI's handlers.
        save_details: keep the per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: str = "mean",
        num_classes: int | None = None,
        output_transform: Callable[[Any], Any] = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric = CountedDiceMetric(include_background=include_background, reduction=reduction, num_classes=num_classes)
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=save_details)
