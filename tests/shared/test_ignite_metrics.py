import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from ignite.engine import Engine

from shared.ignite_metrics import batch_output, confusion_metric, loss_metric, scores_and_indices


def _run(outputs, metric_map):
    engine = Engine(lambda eng, batch: batch)
    for name, metric in metric_map.items():
        metric.attach(engine, name)
    engine.run(outputs, max_epochs=1)
    return engine.state.metrics


def _classification_batches(seed, decollate):
    gen = torch.Generator().manual_seed(seed)
    batches, truth, preds = [], [], []
    for _ in range(5):
        logits = torch.randn(8, 4, generator=gen)
        label = torch.randint(0, 4, (8,), generator=gen)
        truth.append(label)
        preds.append(logits.argmax(1))
        out = {"pred": logits, "label": label}
        batches.append([{"pred": logits[i], "label": label[i]} for i in range(8)] if decollate else out)
    return batches, torch.cat(truth).numpy(), torch.cat(preds).numpy()


@pytest.mark.parametrize("decollate", [False, True])
def test_classification_metrics_match_sklearn_over_an_epoch(decollate):
    batches, y_true, y_pred = _classification_batches(0, decollate)
    metrics = _run(
        batches,
        {
            "accuracy": confusion_metric("accuracy", 4),
            "f1": confusion_metric("f1", 4),
            "precision_w": confusion_metric("precision", 4, average="weighted"),
        },
    )
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert metrics["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=np.nan))
    assert metrics["precision_w"] == pytest.approx(skm.precision_score(y_true, y_pred, average="weighted", zero_division=np.nan))


def test_segmentation_dice_from_channel_first_labels():
    # two 4x4x4 volumes, 3 classes; the prediction is the label with one slab changed
    label = torch.zeros(2, 1, 4, 4, 4, dtype=torch.long)
    label[:, :, :2] = 1
    label[:, :, 3] = 2
    pred_idx = label[:, 0].clone()
    pred_idx[:, 1] = 2  # slab of class 1 predicted as class 2
    onehot = torch.nn.functional.one_hot(pred_idx, 3).permute(0, 4, 1, 2, 3).float()
    metrics = _run([{"pred": onehot, "label": label}], {"dice": confusion_metric("dice", 3, average="none")})
    truth, guess = label.reshape(-1).numpy(), pred_idx.reshape(-1).numpy()
    np.testing.assert_allclose(metrics["dice"], skm.f1_score(truth, guess, average=None))


def test_one_hot_labels_are_accepted():
    label = torch.tensor([0, 2, 1])
    pred, idx = scores_and_indices(torch.eye(3)[[0, 2, 2]], torch.eye(3)[label])
    assert idx.tolist() == [0, 2, 1] and pred.shape == (3, 3)


def test_loss_metric_uses_the_raw_output_when_postprocessing_replaced_pred():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    label = torch.tensor([0, 1])
    out = [{"pred": torch.tensor([1.0, 0.0]), "pred_raw": logits[i], "label": label[i]} for i in range(2)]
    metrics = _run([out], {"loss": loss_metric(torch.nn.CrossEntropyLoss())})
    assert metrics["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, label)))


@pytest.mark.parametrize(
    ("pred", "label", "match"),
    [
        (torch.zeros(2, 1, 4), torch.zeros(2, 4), r"C >= 2 class channels"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 2, 4), "fits neither indices nor one-hot"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 5), r"does not match predictions"),
    ],
)
def test_shape_errors(pred, label, match):
    with pytest.raises(ValueError, match=match):
        scores_and_indices(pred, label)


def test_batch_output_rejects_other_types():
    with pytest.raises(TypeError, match="must be a dict or a list of dicts"):
        batch_output(torch.zeros(2), ("pred",))
