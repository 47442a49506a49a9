import csv
import json
import math
import re

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines import IterationEvents

from shared.checkpoint import CheckpointError, list_checkpoints
from shared.engine import build_optimizer, build_trainer
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions
from tests.shared.conftest import ConstantNet, TinyNet


def _metrics():
    return {"accuracy": confusion_metric("accuracy", 3), "f1": confusion_metric("f1", 3)}


def _options(**changes):
    base = dict(max_epochs=2, mini_batch_size=16, validation_frequency=3, verbose_frequency=2, initial_learn_rate=0.01)
    return TrainingOptions(**{**base, **changes})


def test_two_epochs_write_history_figure_table_and_model(tmp_path, train_data, val_data, capsys):
    trainer = build_trainer(
        TinyNet(),
        torch.nn.CrossEntropyLoss(),
        _options(plots="training-progress"),
        train_data,
        val_data,
        metrics=_metrics(),
        key_metric="accuracy",
        output_dir=tmp_path,
    )
    trainer.run()
    assert trainer.state.iteration == 8  # 64 samples / 16 per batch x 2 epochs
    rows = list(csv.DictReader((tmp_path / "history.csv").read_text(encoding="utf-8").splitlines()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 9))
    assert {
        "epoch",
        "iteration",
        "time_elapsed_s",
        "learn_rate",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_f1",
    } <= set(rows[0])
    validated = [int(r["iteration"]) for r in rows if r["val_loss"]]
    assert validated == [1, 3, 6, 8]  # MATLAB cadence: first, every 3rd, last
    history = json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))
    assert history["stop_reason"] == "Max epochs completed" and len(history["rows"]) == 8
    png = (tmp_path / "training_progress.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert TrainingOptions.load(tmp_path / "training_options.json") == _options(plots="training-progress")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.testing.assert_close(state["head.weight"], trainer.network.head.weight)
    out = capsys.readouterr().out
    for column in (
        "Epoch",
        "Iteration",
        "Time Elapsed",
        "Mini-batch",
        "Validation",
        "Base Learning",
        "(hh:mm:ss)",
        "Accuracy",
        "Loss",
        "Rate",
    ):
        assert column in out
    table_rows = [line for line in out.splitlines() if re.match(r"^\|\s+\d+ \|", line)]
    assert [int(line.split("|")[2]) for line in table_rows] == [1, 2, 3, 4, 6, 8]  # every 2nd + validations + last
    assert re.search(r"\|\s+\d+\.\d\d% \|\s+\d+\.\d\d% \|\s+\d\.\d{4} \|\s+\d\.\d{4} \|\s+0\.0100 \|$", table_rows[0])
    assert "Training finished: Max epochs completed." in out


def test_validation_patience_stops_training(tmp_path, train_data, val_data, capsys):
    options = _options(max_epochs=10, validation_frequency=2, validation_patience=3, verbose=False)
    trainer = build_trainer(
        ConstantNet(),
        torch.nn.CrossEntropyLoss(),
        options,
        train_data,
        val_data,
        metrics=_metrics(),
        key_metric="accuracy",
        output_dir=tmp_path,
    )
    trainer.run()
    # validations at 1, 2, 4, 6: the loss never improves on the first, so the 3rd stall (iteration 6) stops it
    assert trainer.state.iteration == 6
    assert trainer.monitor.stop_reason == "Stopped early"
    assert json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))["stop_reason"] == "Stopped early"
    assert capsys.readouterr().out == ""  # verbose=False prints nothing


def test_objective_metric_can_be_the_key_metric(train_data, val_data):
    options = _options(max_epochs=10, validation_frequency=2, validation_patience=2, objective_metric_name="accuracy", verbose=False)
    trainer = build_trainer(
        ConstantNet(), torch.nn.CrossEntropyLoss(), options, train_data, val_data, metrics=_metrics(), key_metric="accuracy"
    )
    trainer.run()
    assert trainer.state.iteration == 4


def test_best_validation_output_network_restores_best_weights(train_data, val_data):
    options = _options(max_epochs=3, validation_frequency=1, output_network="best-validation", verbose=False, initial_learn_rate=0.5)
    trainer = build_trainer(
        TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, val_data, metrics=_metrics(), key_metric="accuracy"
    )
    losses = {}
    trainer.evaluator.add_event_handler(Events.COMPLETED, lambda ev: losses.__setitem__(trainer.state.iteration, ev.state.metrics["loss"]))
    trainer.run()
    best_iteration = min(losses, key=losses.get)
    assert f"best validation (iteration {best_iteration})" in trainer.monitor.stop_reason
    evaluator = trainer.evaluator
    evaluator.run()
    assert evaluator.state.metrics["loss"] == pytest.approx(losses[best_iteration], rel=1e-5)


def test_piecewise_schedule_and_l2_groups(train_data):
    options = _options(max_epochs=5, learn_rate_schedule="piecewise", learn_rate_drop_period=2, learn_rate_drop_factor=0.5, verbose=False)
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    trainer.run()
    lrs = {row["epoch"]: row["learn_rate"] for row in trainer.monitor.rows}
    assert lrs == pytest.approx({1: 0.01, 2: 0.01, 3: 0.005, 4: 0.005, 5: 0.0025})
    groups = build_optimizer(
        torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)), TrainingOptions(l2_regularization=0.3)
    ).param_groups
    # Linear weight + BN weight + BN bias decay (MATLAB L2 factors 1); the Linear bias does not (BiasL2Factor 0)
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(3, 0.3), (1, 0.0)]
    # and the option's documentation says the same (it once said normalisation parameters get none)
    documented = " ".join(TrainingOptions.__doc__.split("l2_regularization:")[1].split("gradient_threshold:")[0].split())
    assert "on weights and on normalisation scale and offset" in documented and "BiasL2Factor = 0" in documented


def test_polynomial_schedule_decays_every_iteration_to_zero_and_resumes(tmp_path, train_data):
    options = _options(
        max_epochs=3,
        learn_rate_schedule="polynomial",
        verbose=False,
        checkpoint_path=str(tmp_path / "ck"),
        checkpoint_frequency=1,
        checkpoint_frequency_unit="iteration",
    )
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    trainer.run()
    total = 12  # 64 samples / 16 per batch x 3 epochs
    lrs = [row["learn_rate"] for row in trainer.monitor.rows]  # the rate each iteration trained with
    assert lrs == pytest.approx([0.01 * (1 - t / total) ** 0.9 for t in range(total)])
    # resumed from the checkpoint of iteration 11 (the final one removed), the schedule continues where it was
    (tmp_path / "ck" / "checkpoint_12.pt").unlink()
    resumed = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, resume=True)
    assert resumed.state.iteration == 11
    resumed.run()
    assert [row["learn_rate"] for row in resumed.monitor.rows] == pytest.approx(lrs)


@pytest.mark.parametrize("schedule", ["polynomial", "cosine", "piecewise"])
def test_extending_a_finished_run_recomputes_the_schedule_for_the_new_length(tmp_path, train_data, schedule):
    """``--resume --epochs 4`` after a finished 2-epoch run: the rate goes on along the 4-epoch schedule, not at 0."""
    options = _options(
        max_epochs=2, learn_rate_schedule=schedule, learn_rate_drop_period=1, verbose=False, checkpoint_path=str(tmp_path / "ck")
    )
    build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data).run()  # 8 iterations, ends at rate 0 (polynomial, cosine)
    longer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options.replace(max_epochs=4), train_data, resume=True)
    longer.run()
    rates = {row["iteration"]: row["learn_rate"] for row in longer.monitor.rows}
    assert longer.state.iteration == 16 and rates[9] > 0
    expected = {
        "polynomial": [0.01 * (1 - t / 16) ** 0.9 for t in range(8, 16)],  # per iteration, over the new 16
        "cosine": [0.01 * (1 + math.cos(math.pi * (t // 4) / 4)) / 2 for t in range(8, 16)],  # per epoch, over the new 4
        "piecewise": [0.01 * 0.1 ** (t // 4) for t in range(8, 16)],  # x0.1 every epoch, whatever the length
    }[schedule]
    assert [rates[t] for t in range(9, 17)] == pytest.approx(expected)


@pytest.mark.parametrize("method", ["l2norm", "global-l2norm", "absolute-value"])
def test_gradient_clipping(train_data, method):
    options = _options(max_epochs=1, gradient_threshold=1e-3, gradient_threshold_method=method, verbose=False, solver="sgdm", momentum=0)
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    seen = []

    def record(engine):
        grads = [p.grad for p in engine.network.parameters() if p.grad is not None]
        if method == "l2norm":
            seen.append(max(float(g.norm()) for g in grads))
        elif method == "global-l2norm":
            seen.append(float(torch.cat([g.reshape(-1) for g in grads]).norm()))
        else:
            seen.append(max(float(g.abs().max()) for g in grads))

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)  # after the clipping handler
    trainer.run()
    assert len(seen) == 4 and max(seen) <= 1e-3 * (1 + 1e-4)


def test_exact_resume_after_a_mid_epoch_stop(tmp_path, train_data, val_data):
    options = _options(
        max_epochs=4,
        shuffle="every-epoch",
        checkpoint_path=str(tmp_path / "ck"),
        checkpoint_frequency=3,
        checkpoint_frequency_unit="iteration",
        verbose=False,
        learn_rate_schedule="piecewise",
        learn_rate_drop_period=1,
    )
    torch.manual_seed(0)
    reference = build_trainer(
        TinyNet(), torch.nn.CrossEntropyLoss(), options.replace(checkpoint_path=None), train_data, val_data, metrics=_metrics()
    )
    reference.run()

    torch.manual_seed(0)  # same initial weights as the reference
    first = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, val_data, metrics=_metrics())
    first.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 7 else None)
    first.run()
    assert [it for it, _ in list_checkpoints(tmp_path / "ck")] == [7, 6]

    torch.manual_seed(99)  # different initial weights: everything must come from the checkpoint
    second = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, val_data, metrics=_metrics(), resume=True)
    second.run()
    assert second.state.iteration == reference.state.iteration == 16
    for name, value in reference.network.state_dict().items():
        torch.testing.assert_close(second.network.state_dict()[name], value, rtol=0, atol=0)
    assert [r["iteration"] for r in second.monitor.rows] == list(range(1, 17))
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(reference.optimizer.param_groups[0]["lr"])


def test_mid_epoch_checkpoint_with_another_epoch_length_is_refused(tmp_path, train_data):
    options = _options(
        max_epochs=2, checkpoint_path=str(tmp_path / "ck"), checkpoint_frequency=3, checkpoint_frequency_unit="iteration", verbose=False
    )
    first = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    first.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 3 else None)
    first.run()  # stopped mid-epoch at iteration 3
    with pytest.raises(CheckpointError, match="saved mid-epoch by a run with .* iterations per epoch"):
        build_trainer(
            TinyNet(), torch.nn.CrossEntropyLoss(), options.replace(mini_batch_size=options.mini_batch_size * 2), train_data, resume=True
        )


def test_resume_without_checkpoint_is_an_error(tmp_path, train_data):
    options = _options(checkpoint_path=str(tmp_path / "empty"), verbose=False)
    with pytest.raises(CheckpointError, match=r"Cannot resume: no checkpoint_<iteration>\.pt in .*empty"):
        build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, resume=True)
    with pytest.raises(CheckpointError, match="resume=True needs options.checkpoint_path"):
        build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), _options(verbose=False), train_data, resume=True)


def test_fresh_run_refuses_an_old_runs_checkpoints(tmp_path, train_data):
    options = _options(checkpoint_path=str(tmp_path / "ck"), verbose=False)
    build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data).run()
    before = sorted(p.name for p in (tmp_path / "ck").iterdir())
    with pytest.raises(
        CheckpointError,
        match=r"already holds 2 checkpoint\(s\) of another run .* Continue that run with --resume \(resume=True in Python\)",
    ):
        build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == before


def test_resuming_a_finished_run_does_not_restart_it(tmp_path, train_data):
    options = _options(checkpoint_path=str(tmp_path / "ck"), verbose=False)
    first = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data)
    first.run()
    again = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, resume=True)
    again.run()
    assert again.state.iteration == 8
    torch.testing.assert_close(again.network.head.weight, first.network.head.weight)
    longer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options.replace(max_epochs=3), train_data, resume=True)
    longer.run()  # raising max_epochs continues the run
    assert longer.state.iteration == 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key_metric": "dice"}, r"key_metric='dice' is not one of the metrics given: \['accuracy', 'f1'\]"),
        ({"options": _options(objective_metric_name="iou")}, r"objective_metric_name='iou' is not a validation metric"),
        ({"options": _options(output_network="best-validation"), "val_data": None}, "needs validation data"),
    ],
)
def test_configuration_errors(train_data, val_data, kwargs, match):
    args = {"options": _options(), "val_data": val_data, "metrics": _metrics(), "key_metric": "accuracy", **kwargs}
    with pytest.raises(ValueError, match=match):
        build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), train_data=train_data, **args)


def test_factory_from_a_monai_bundle_config(tmp_path):
    config = {
        "output_dir": str(tmp_path),
        "network": {"_target_": "tests.shared.conftest.TinyNet"},
        "options": {
            "_target_": "shared.TrainingOptions",
            "max_epochs": 1,
            "mini_batch_size": 16,
            "verbose": False,
            "plots": "training-progress",
        },
        "train_data": {"_target_": "tests.shared.conftest.blobs", "n": 32, "seed": 1},
        "val_data": {"_target_": "tests.shared.conftest.blobs", "n": 16, "seed": 2},
        "metrics": {"accuracy": {"_target_": "shared.ignite_metrics.confusion_metric", "stat": "accuracy", "num_classes": 3}},
        "trainer": {
            "_target_": "shared.engine.build_trainer",
            "network": "@network",
            "loss_function": {"_target_": "torch.nn.CrossEntropyLoss"},
            "options": "@options",
            "train_data": "@train_data",
            "val_data": "@val_data",
            "metrics": "@metrics",
            "key_metric": "accuracy",
            "output_dir": "@output_dir",
        },
        "run": ["$@trainer.run()"],
    }
    parser = ConfigParser(config)
    parser.get_parsed_content("run")
    assert (tmp_path / "training_progress.png").is_file() and (tmp_path / "model.pt").is_file()
    assert len(json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))["rows"]) == 2


def test_factory_through_monais_own_cli(tmp_path):
    """``python -m monai.bundle run`` (real subprocess, offline) builds and runs the shared trainer."""
    import subprocess
    import sys
    from pathlib import Path

    config = {
        "output_dir": str(tmp_path / "out"),
        "trainer": {
            "_target_": "shared.engine.build_trainer",
            "network": {"_target_": "tests.shared.conftest.TinyNet"},
            "loss_function": {"_target_": "torch.nn.CrossEntropyLoss"},
            "options": {"_target_": "shared.TrainingOptions", "max_epochs": 1, "mini_batch_size": 8, "verbose": True},
            "train_data": {"_target_": "tests.shared.conftest.blobs", "n": 16, "seed": 1},
            "output_dir": "@output_dir",
        },
        "run": ["$@trainer.run()"],
    }
    (tmp_path / "train.json").write_text(json.dumps(config))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(tmp_path / "train.json")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Training finished: Max epochs completed." in done.stdout
    assert (tmp_path / "out" / "model.pt").is_file()


def test_history_is_appended_and_checkpoints_stay_bounded(tmp_path, train_data, val_data):
    """history.csv grows by its new rows (same file, not rewritten), history.json comes at the end, and a checkpoint
    holds a row count, not the rows: its size does not grow with the run (it once held every row)."""
    import os

    options = _options(
        max_epochs=6, verbose_frequency=1, validation_frequency=1, checkpoint_path=str(tmp_path / "ck"), checkpoint_frequency=1
    )
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, val_data, metrics=_metrics(), output_dir=tmp_path)
    inodes, sizes = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _look(engine):
        inodes.append(os.stat(tmp_path / "history.csv").st_ino)

    @trainer.on(Events.EPOCH_COMPLETED)  # after the epoch's checkpoint
    def _size(engine):
        sizes.append(os.path.getsize(list_checkpoints(tmp_path / "ck")[0][1]))

    trainer.run()
    assert len(set(inodes[1:])) == 1  # appended in place after the first row's header
    assert len((tmp_path / "history.csv").read_text(encoding="utf-8").splitlines()) == 1 + 24
    assert len(json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))["rows"]) == 24
    state = torch.load(list_checkpoints(tmp_path / "ck")[0][1], weights_only=True)
    assert "rows" not in state["history"] and state["history"]["row_count"] == 24
    assert max(sizes) - min(sizes) < 200, sizes  # bytes: the same tensors, a different count
