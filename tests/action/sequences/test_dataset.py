"""Plain sequences (wearable-sensor style) through the same train/evaluate commands and the `gru` model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from action.cli import main
from action.sequences.dataset import read_sequences


def make_sensor_data(n: int, seed: int, length: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """3-channel sequences; 'up' and 'down' are the same ramp in opposite time order, 'flat' is noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    names = np.array(["up", "down", "flat"])[rng.integers(0, 3, n)]
    x = rng.normal(0, 0.2, (n, length, 3)).astype(np.float32)
    for i, name in enumerate(names):
        ramp = {"up": t, "down": t[::-1], "flat": 0.5 * np.ones_like(t)}[name]
        x[i, :, 0] += 5.0 * ramp * rng.uniform(0.7, 1.3) + 20.0  # offset and scale like a raw sensor
    return x, names


def test_npz_and_csv_read_the_same(tmp_path: Path) -> None:
    x, y = make_sensor_data(5, 0, length=4)
    np.savez(tmp_path / "s.npz", X=x, y=y)
    rows = ["sample,label,ax,ay,az"] + [f"{i},{y[i]},{','.join(str(v) for v in x[i, t])}" for i in range(5) for t in range(4)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    a, b = read_sequences(tmp_path / "s.npz"), read_sequences(tmp_path / "s.csv")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-6)
    assert a.classes == b.classes and a.y.tolist() == b.y.tolist()


def test_bad_sequence_files_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", data=np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="wrong.npz: expected arrays 'X'"):
        read_sequences(tmp_path / "wrong.npz")
    np.savez(tmp_path / "nan.npz", X=np.full((2, 3, 1), np.nan), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"nan.npz: recording 0 has 3 NaN/Inf values"):
        read_sequences(tmp_path / "nan.npz")
    (tmp_path / "ragged.csv").write_text("sample,label,a\n0,x,1\n0,x,2\n1,y,3\n")
    assert read_sequences(tmp_path / "ragged.csv").lengths.tolist() == [2, 1]  # unequal lengths are welcome


def test_gru_learns_order_from_sensor_sequences(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x, y = make_sensor_data(300, 1)
    np.savez(tmp_path / "train.npz", X=x, y=y)
    x, y = make_sensor_data(90, 2)
    np.savez(tmp_path / "test.npz", X=x, y=y)
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "train.npz"),
                "--model",
                "gru",
                "--out",
                str(tmp_path / "m"),
                "--epochs",
                "12",
                "--lr",
                "0.01",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "test.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] >= 0.9 and report["videos"] == 90


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("zscore", [[-(2**0.5), -(2**0.5)], [2**0.5, 2**0.5]]),  # training steps 1, 3, 2, 2: mean 2, sd 1/sqrt(2)
        ("zerocenter", [[-1.0, -10.0], [1.0, 10.0]]),
        ("rescale-symmetric", [[-1.0, -1.0], [1.0, 1.0]]),
        ("rescale-zero-one", [[0.0, 0.0], [1.0, 1.0]]),
        ("none", [[1.0, 10.0], [3.0, 30.0]]),
    ],
)
def test_each_normalization_uses_the_training_statistics_per_channel(kind: str, expected: list) -> None:
    from action.sequences.dataset import SequenceNormalization

    training = [np.array([[1.0, 10.0]]), np.array([[3.0, 30.0], [2.0, 20.0], [2.0, 20.0]])]  # channel means 2, 20
    norm = SequenceNormalization.fit(kind, training)
    np.testing.assert_allclose(norm(np.array([[1.0, 10.0], [3.0, 30.0]])), expected, atol=1e-6)
    assert SequenceNormalization.from_dict(norm.to_dict()) == norm  # what action_model.json stores comes back


def _aeon(name: str, split: str) -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("aeon").submodule_search_locations[0]) / "datasets" / "data" / name / f"{name}_{split}.ts"


def test_unequal_length_recordings_train_evaluate_and_predict_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """MATLAB's Japanese Vowels (7-29 steps per utterance) straight from the .ts files, with the sequence defaults."""
    train, test = _aeon("JapaneseVowels", "TRAIN"), _aeon("JapaneseVowels", "TEST")
    assert main(["train", "--data", str(train), "--model", "gru", "--out", str(tmp_path / "m"), "--epochs", "12", "--quiet"]) == 0
    config = json.loads((tmp_path / "m" / "action_model.json").read_text(encoding="utf-8"))
    assert config["normalization"]["kind"] == "zscore" and len(config["normalization"]["mean"]) == 12
    options = json.loads((tmp_path / "m" / "training_options.json").read_text(encoding="utf-8"))
    assert options["gradient_threshold"] == 1.0 and options["sequence_length"] == "longest"  # the sequence defaults
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == 370 and report["accuracy"] >= 0.85  # 12 epochs; the defaults' 60 give 0.95+ (benchmarks/action_sequences.py)
    assert main(["predict", "--model", str(tmp_path / "m"), str(test), "--json", "--top-k", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 370 and {p["steps"] for p in predictions} <= set(range(7, 30))
    truth = read_sequences(test, classes=config["classes"])
    hits = np.mean([p["label"] == config["classes"][y] for p, y in zip(predictions, truth.y)])
    assert abs(hits - report["accuracy"]) < 1e-9  # predict and evaluate apply the same stored normalisation


def test_normalization_statistics_come_from_the_training_part_only(tmp_path: Path) -> None:
    from action.train import DataSource, train_model

    x, y = make_sensor_data(60, 3)
    x[:6] += 1000.0  # recordings that a 10% validation split could hold out must not move the statistics
    np.savez(tmp_path / "d.npz", X=x, y=y)
    trainer = train_model(
        DataSource(tmp_path / "d.npz", val_fraction=0.1), tmp_path / "m", "gru", {"max_epochs": 1, "verbose": False, "plots": "none"}
    )
    train_x = np.concatenate(trainer.data_loader.dataset.sequences.x)
    config = json.loads((tmp_path / "m" / "action_model.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(config["normalization"]["mean"], train_x.mean(axis=0), rtol=1e-5)
