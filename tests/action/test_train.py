"""action.train: the options a user gives reach the engine unchanged; defaults apply only where nothing was given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from action.cli import main
from action.train import DataSource, train_model
from shared.options import TrainingOptions
from tests.action.sequences.test_dataset import make_sensor_data


@pytest.fixture(scope="module")
def sensor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = make_sensor_data(64, seed=3, length=12)
    path = tmp_path_factory.mktemp("sensors") / "train.npz"
    np.savez(path, X=x, y=y)
    return path


def _validated_iterations(trainer) -> list[int]:
    return [row["iteration"] for row in trainer.monitor.rows if "val_accuracy" in row]


def test_an_explicit_validation_frequency_of_50_is_kept(sensor_file: Path, tmp_path: Path) -> None:
    """50 is MATLAB's default, and a user who asks for it by name must get it (it was once replaced by once per epoch)."""
    options = {"max_epochs": 5, "mini_batch_size": 4, "validation_frequency": 50, "verbose": False, "plots": "none"}
    trainer = train_model(DataSource(sensor_file, val_fraction=0.25), tmp_path / "m", "gru", options, model_kwargs={"hidden": 8})
    assert trainer.options.validation_frequency == 50
    trainer.run()
    assert _validated_iterations(trainer) == [1, 50, 60]  # 12 batches x 5 epochs


def test_recordings_of_one_subject_stay_on_one_side_and_the_counts_are_printed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An .npz with ``groups`` (subjects): validation takes whole subjects; every run prints its counts."""
    x, y = make_sensor_data(40, seed=4, length=8)
    subjects = np.array([f"s{i % 5}" for i in range(40)])
    np.savez(tmp_path / "subjects.npz", X=x, y=y, groups=subjects)
    capsys.readouterr()
    options = {"max_epochs": 1, "mini_batch_size": 8, "verbose": False, "plots": "none"}
    trainer = train_model(
        DataSource(tmp_path / "subjects.npz", val_fraction=0.2), tmp_path / "m", "gru", options, model_kwargs={"hidden": 4}
    )
    out = capsys.readouterr().out
    assert "Data: 32 training and 8 validation recordings (asked 20%, held out 20%): whole groups" in out, out
    val_subjects = {line.split("whole groups ")[1].split(" (")[0] for line in out.splitlines() if "whole groups" in line}
    assert len(val_subjects) == 1 and len(trainer.evaluator.data_loader.dataset) == 8
    assert not set(trainer.data_loader.dataset.sequences.groups) & val_subjects  # no subject on both sides


def test_the_default_validates_at_each_epoch_end(sensor_file: Path, tmp_path: Path) -> None:
    options = {"max_epochs": 3, "mini_batch_size": 4, "verbose": False, "plots": "none"}
    trainer = train_model(DataSource(sensor_file, val_fraction=0.25), tmp_path / "m", "gru", options, model_kwargs={"hidden": 8})
    assert trainer.options.validation_frequency == "epoch"
    trainer.run()
    assert _validated_iterations(trainer) == [1, 12, 24, 36]


def test_an_options_file_changes_only_what_it_sets(sensor_file: Path, tmp_path: Path) -> None:
    """A file with MaxEpochs alone keeps the sequence defaults (rate 3e-3, validation per epoch); a file's 50 stays 50."""
    (tmp_path / "epochs.json").write_text(json.dumps({"MaxEpochs": 1}))
    (tmp_path / "fifty.yaml").write_text("ValidationFrequency: 50\nMaxEpochs: 1\n")
    for name, frequency in (("epochs.json", "epoch"), ("fifty.yaml", 50)):
        out = tmp_path / name.split(".")[0]
        code = main(
            ["train", "--data", str(sensor_file), "--model", "gru", "--out", str(out), "--options", str(tmp_path / name), "--quiet"]
        )
        assert code == 0
        saved = TrainingOptions.load(out / "training_options.json")
        assert (saved.validation_frequency, saved.initial_learn_rate, saved.max_epochs) == (frequency, 3e-3, 1)


def test_clip_training_resumes_exactly_after_a_mid_epoch_stop(tiny_videos: Path, tmp_path: Path) -> None:
    """Random windows, random crops, dropout and order: a run stopped at iteration 4 and resumed ends on the unbroken run's weights."""
    import torch
    from ignite.engine import Events

    from action.video.dataset import Sampling
    from shared.checkpoint import list_checkpoints

    sampling = Sampling(frames=8, size=(16, 16), decode_size=(20, 20), clip_duration=0.5)
    options = {
        "max_epochs": 2,
        "mini_batch_size": 3,  # 16 training videos (one of the two groups is validation): 6 iterations, the last one partial
        "verbose": False,
        "plots": "none",
        "seed": 3,
        "checkpoint_frequency": 4,
        "checkpoint_frequency_unit": "iteration",
    }
    model = {"hidden": 8, "dropout": 0.5}

    def trainer(out: Path, resume: bool = False):
        changes = {**options, "checkpoint_path": str(out / "checkpoints")}
        return train_model(tiny_videos, out, "c3d_gru", changes, inputs=sampling, model_kwargs=model, resume=resume)

    reference = trainer(tmp_path / "unbroken")
    reference.run()
    first = trainer(tmp_path / "broken")
    first.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 4 else None)
    first.run()
    assert next(it for it, _ in list_checkpoints(tmp_path / "broken" / "checkpoints")) == 4 and reference.state.epoch_length == 6
    second = trainer(tmp_path / "broken", resume=True)
    second.run()
    assert second.state.iteration == reference.state.iteration == 12
    for name, value in reference.network.state_dict().items():
        torch.testing.assert_close(second.network.state_dict()[name], value, rtol=0, atol=0, msg=name)
