"""Plain sequences (wearable-sensor style) through the same train/evaluate commands and the `gru` model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from action.cli import main
from action.sequences import read_sequences


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
    with pytest.raises(ValueError, match="nan.npz: X contains NaN"):
        read_sequences(tmp_path / "nan.npz")
    (tmp_path / "ragged.csv").write_text("sample,label,a\n0,x,1\n0,x,2\n1,y,3\n")
    with pytest.raises(ValueError, match="ragged.csv: samples have different numbers of time steps"):
        read_sequences(tmp_path / "ragged.csv")


def test_gru_learns_order_from_sensor_sequences(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x, y = make_sensor_data(300, 1)
    np.savez(tmp_path / "train.npz", X=x, y=y)
    x, y = make_sensor_data(90, 2)
    np.savez(tmp_path / "test.npz", X=x, y=y)
    assert main(["train", "--data", str(tmp_path / "train.npz"), "--model", "gru", "--out", str(tmp_path / "m"), "--epochs", "12", "--lr", "0.01", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "test.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] >= 0.9 and report["videos"] == 90
