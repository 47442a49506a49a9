import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from shared import metrics as M


def _labels(seed, n=400, classes=5):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes - 1, n)  # the last class never occurs in the reference
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, classes, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred = _labels(seed)
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred, 5), skm.confusion_matrix(y_true, y_pred, labels=range(5)))
    # torch input and any shape (a volume of voxels)
    cm = M.confusion_matrix(torch.as_tensor(y_true).reshape(4, 10, 10), torch.as_tensor(y_pred).reshape(4, 10, 10), 5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(5)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("zero_division", [np.nan, 0.0])
@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_precision_recall_f1_iou_match_sklearn(seed, zero_division, average):
    y_true, y_pred = _labels(seed)
    cm = M.confusion_matrix(y_true, y_pred, 5)
    labels = list(range(5))
    for stat, ref in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
        ("iou", skm.jaccard_score),
    ]:
        # jaccard_score refuses zero_division=nan; no class here has TP+FP+FN=0, so 0 gives the same IoU
        zd = 0.0 if stat == "iou" else zero_division
        expected = ref(y_true, y_pred, labels=labels, average=average, zero_division=zd)
        got = M.metric_from_confusion(cm, stat, average, zero_division)
        assert got == pytest.approx(expected), (stat, average)
    assert M.accuracy(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert not np.isnan(M.iou(cm)).any()


def test_per_class_values_and_undefined_classes():
    y_true, y_pred = _labels(3)
    cm = M.confusion_matrix(y_true, y_pred, 5)
    np.testing.assert_allclose(M.precision(cm), skm.precision_score(y_true, y_pred, labels=range(5), average=None, zero_division=np.nan))
    recall = M.recall(cm)
    assert np.isnan(recall[4])  # class 4 absent from the reference: undefined, not 0
    np.testing.assert_allclose(M.dice(cm), M.f1_score(cm))


def test_dice_and_iou_known_answer():
    # 1-D "masks": reference has 4 foreground voxels, prediction 4, overlap 2
    ref = np.array([0, 1, 1, 1, 1, 0, 0, 0])
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    cm = M.confusion_matrix(ref, pred, 2)
    assert M.dice(cm)[1] == pytest.approx(2 * 2 / (4 + 4))
    assert M.iou(cm)[1] == pytest.approx(2 / 6)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_report_is_complete_and_counts_undefined():
    y_true, y_pred = _labels(4)
    report = M.classification_report(M.confusion_matrix(y_true, y_pred, 5), ["a", "b", "c", "d", "e"])
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert report["f1_weighted"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", labels=range(5), zero_division=np.nan))
    assert report["undefined"]["recall"] == 1
    assert [row["class"] for row in report["per_class"]] == ["a", "b", "c", "d", "e"]
    assert sum(row["support"] for row in report["per_class"]) == len(y_true)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.confusion_matrix([0, 1], [0, 1, 1], 2), "same number of elements"),
        (lambda: M.confusion_matrix([0, 3], [0, 1], 2), r"y_true holds class indices outside \[0, 2\): found \[3\]"),
        (lambda: M.confusion_matrix([0.5, 1], [0, 1], 2), "integer class indices"),
        (lambda: M.accuracy(np.zeros((2, 3))), "must be square"),
        (lambda: M.metric_from_confusion(np.eye(2), "auc"), "Unknown metric 'auc'"),
        (lambda: M.average(np.ones(2), np.eye(2), "median"), "average method 'median' is invalid"),
        (lambda: M.classification_report(np.eye(2), ["only-one"]), "class_names has 1 entries"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_largest_drop_after_a_level():
    from shared.metrics import largest_drop_after

    assert largest_drop_after([0.1, 0.6, 0.7, 0.65, 0.9]) == pytest.approx(0.05)
    assert largest_drop_after([0.82, 0.86, 0.91, 0.0, 0.92, 0.0, 0.85]) == pytest.approx(0.92)  # the collapse issue 14 saw
    assert largest_drop_after([0.3, 0.1, 0.45]) == 0.0  # never reached 0.5: drops before it do not count
