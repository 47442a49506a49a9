"""Validation Dice counted as the test report counts it: a false structure in a case without one scores 0."""

import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MeanDice

from medseg.evaluation.handlers import CountedDiceMetric, CountedMeanDice


def _onehot(labels: list[list[int]], classes: int = 3) -> torch.Tensor:
    """``(B, N)`` class indices -> one-hot ``(B, classes, N)`` float."""
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).permute(0, 2, 1).float()


# case 0: liver right, no tumour in either; case 1: liver right and a false tumour where the reference has none
REFERENCE = _onehot([[0, 1, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0, 0, 0]])
PREDICTION = _onehot([[0, 1, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 0, 2, 2, 0]])


def test_a_false_structure_scores_zero_and_one_absent_from_both_is_not_counted():
    metric = CountedDiceMetric(include_background=False)
    metric(PREDICTION, REFERENCE)
    per_case = metric.get_buffer()
    assert per_case[:, 0].tolist() == [1.0, 1.0]
    assert math.isnan(per_case[0, 1]) and per_case[1, 1] == 0.0  # absent from both: not counted; false tumour: 0
    assert float(metric.aggregate()) == pytest.approx((1.0 + (1.0 + 0.0) / 2) / 2)


def test_a_partial_overlap_is_monais_dice():
    reference, prediction = _onehot([[0, 1, 1, 1, 2, 2, 0, 0]]), _onehot([[0, 1, 1, 0, 2, 2, 2, 0]])
    metric = CountedDiceMetric(include_background=False)
    metric(prediction, reference)
    assert metric.get_buffer()[0].tolist() == pytest.approx([2 * 2 / (3 + 2), 2 * 2 / (2 + 3)])


def _validation_dice(handler) -> float:
    engine = Engine(lambda _engine, batch: batch)
    handler.attach(engine, "dice")
    return engine.run([(PREDICTION, REFERENCE)]).metrics["dice"]


def test_the_handler_sees_the_false_tumour_that_monais_mean_dice_skips():
    ours = _validation_dice(CountedMeanDice(include_background=False))
    monai = _validation_dice(MeanDice(include_background=False))
    assert monai == pytest.approx(1.0)  # MONAI: the tumour-free case's false tumour is skipped
    assert ours == pytest.approx(0.75)  # counted: case 1 scores (liver 1 + tumour 0) / 2
