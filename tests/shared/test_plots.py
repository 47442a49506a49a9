import math

import numpy as np

from shared.plots import save_figure, smooth, training_progress_figure


def test_smooth_known_answers():
    np.testing.assert_allclose(smooth([2.0] * 5), [2.0] * 5)  # bias-corrected: no ramp-up from 0
    np.testing.assert_allclose(smooth([1.0, 3.0], factor=0.0), [1.0, 3.0])
    out = smooth([1.0, float("nan"), 3.0], factor=0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == (0.25 * 1 + 0.5 * 3) / 0.75


def test_progress_figure_has_metric_and_loss_panels(tmp_path):
    rows = [
        {
            "epoch": 1 + i // 5,
            "iteration": i + 1,
            "train_loss": 1 / (i + 1),
            "train_dice": i / 10,
            "val_loss": 1 / (i + 1) if i % 3 == 0 else None,
            "val_dice": i / 10 if i % 3 == 0 else None,
        }
        for i in range(10)
    ]
    fig = training_progress_figure(rows, "dice", {"Epoch": "2 of 2"})
    axes = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in axes] == ["dice", "Loss"]
    curves = [line for line in axes[1].get_lines() if not line.get_label().startswith("_")]  # "_child": epoch markers
    assert [line.get_label() for line in curves] == ["Training", "Training (smoothed)", "Validation"]
    assert len(axes[1].get_lines()) - len(curves) == 1  # one epoch boundary between iterations 5 and 6
    val_line = curves[2]
    assert list(val_line.get_xdata()) == [1, 4, 7, 10]
    path = save_figure(fig, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_loss_only_figure_without_validation():
    fig = training_progress_figure([{"epoch": 1, "iteration": 1, "train_loss": 0.5}], None)
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["Loss"]


def test_epoch_lines_only_while_they_do_not_hide_the_curves():
    from shared.plots import MAX_EPOCH_LINES, training_progress_figure

    def lines(epochs: int) -> int:
        rows = [{"epoch": e, "iteration": e, "train_loss": 1.0 / e} for e in range(1, epochs + 1)]
        figure = training_progress_figure(rows, None)
        return sum(
            len([line for line in ax.get_lines() if list(line.get_xdata()) == [e + 0.5, e + 0.5]])
            for ax in figure.axes
            for e in range(1, epochs)
        )

    assert lines(10) == 9  # one per epoch boundary, in the loss panel
    assert lines(MAX_EPOCH_LINES + 5) == 0
