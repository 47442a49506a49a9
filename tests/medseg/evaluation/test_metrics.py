import math

import numpy as np
import pytest
import sklearn.metrics as skm

from medseg.evaluation.metrics import bfscore, dice, evaluate_case, hd95, jaccard, matlab_tables, summarise

NAMES = {0: "background", 1: "a", 2: "b", 3: "c"}


def _cube(shape, start, size, value=1):
    out = np.zeros(shape, np.int64)
    out[tuple(slice(s, s + size) for s in start)] = value
    return out


def test_dice_and_jaccard_known_answers():
    ref = _cube((10, 10, 10), (2, 2, 2), 4)  # 64 voxels
    pred = _cube((10, 10, 10), (4, 2, 2), 4)  # shifted by 2: overlap 32
    assert dice(pred, ref) == {1: pytest.approx(2 * 32 / 128)}
    assert jaccard(pred, ref) == {1: pytest.approx(32 / 96)}
    assert math.isnan(dice(pred, ref, labels=[2])[2])


def test_bfscore_known_answers():
    ref = _cube((20, 20, 20), (5, 5, 5), 8)
    assert bfscore(ref, ref)[1] == 1.0
    far = _cube((20, 20, 20), (5, 5, 5), 8)
    far = np.roll(far, 6, axis=0)
    assert bfscore(far, ref, threshold=1.0)[1] < 0.5
    assert bfscore(far, ref, threshold=10.0)[1] == 1.0  # every boundary voxel within 10 voxels
    assert bfscore(np.zeros_like(ref), ref)[1] == 0.0
    assert math.isnan(bfscore(ref, ref, labels=[2])[2])


def test_hd95_in_millimetres():
    ref = _cube((30, 10, 10), (5, 2, 2), 6)
    pred = np.roll(ref, 3, axis=0)
    assert hd95(pred, ref, 1, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert math.isnan(hd95(np.zeros_like(ref), ref, 1, (1, 1, 1)))


def test_statuses_count_instead_of_dropping():
    ref = _cube((12, 12, 12), (1, 1, 1), 4, 1) + _cube((12, 12, 12), (7, 7, 7), 3, 2)
    pred = _cube((12, 12, 12), (1, 1, 1), 4, 1) + _cube((12, 12, 12), (7, 1, 1), 2, 3)  # b missed, c false positive
    result = evaluate_case("x", pred, ref, NAMES, (1.0, 1.0, 2.0))
    rows = {r["name"]: r for r in result.rows}
    assert rows["a"]["status"] == "ok" and rows["a"]["dice"] == 1.0 and rows["a"]["hd95_mm"] == 0.0
    assert rows["b"]["status"] == "missed" and rows["b"]["dice"] == 0.0 and rows["b"]["recall"] == 0.0
    assert rows["c"]["status"] == "false_positive" and rows["c"]["dice"] == 0.0  # MONAI's ignore_empty would give NaN
    assert rows["a"]["ref_ml"] == pytest.approx(64 * 2 / 1000)
    empty = evaluate_case("y", _cube((12, 12, 12), (1, 1, 1), 4, 1), _cube((12, 12, 12), (1, 1, 1), 4, 1), NAMES, (1, 1, 1))
    summary = summarise([result, empty], NAMES)
    assert summary["per_label"]["c"]["false_positive"] == 1 and summary["per_label"]["c"]["empty"] == 1
    assert summary["per_label"]["c"]["dice_n"] == 1 and summary["per_label"]["c"]["dice_mean"] == 0.0
    assert summary["counts"] == {"ok": 2, "missed": 1, "false_positive": 1, "empty": 2}


def test_matlab_tables_match_sklearn():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, (8, 8, 8))
    pred = np.where(rng.random((8, 8, 8)) < 0.7, ref, rng.integers(0, 4, (8, 8, 8)))
    result = evaluate_case("r", pred, ref, NAMES, (1, 1, 1))
    tables = matlab_tables([result], NAMES)
    t, p = ref.reshape(-1), pred.reshape(-1)
    assert tables["DataSetMetrics"]["GlobalAccuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert tables["DataSetMetrics"]["MeanAccuracy"] == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert tables["DataSetMetrics"]["MeanIoU"] == pytest.approx(skm.jaccard_score(t, p, average="macro"))
    assert tables["DataSetMetrics"]["WeightedIoU"] == pytest.approx(skm.jaccard_score(t, p, average="weighted"))
    np.testing.assert_allclose(np.asarray(tables["NormalizedConfusionMatrix"]).sum(axis=1), 1.0)
    assert [c["Class"] for c in tables["ClassMetrics"]] == ["background", "a", "b", "c"]


def test_unknown_predicted_label_is_an_error():
    with pytest.raises(ValueError, match=r"case9: prediction holds labels \[7\]"):
        evaluate_case("case9", np.full((4, 4, 4), 7), np.zeros((4, 4, 4), int), NAMES, (1, 1, 1))
