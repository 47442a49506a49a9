"""python -m action end to end on real encoded videos: train (resume), evaluate, predict, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from action.cli import main
from tests.cli_run import modules_after

FAST = ["--frames", "8", "--size", "32", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def trained(tiny_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "c3d"
    argv = ["train", "--data", str(tiny_videos), "--model", "c3d_gru", "--out", str(out), "--epochs", "1", "--device", "cpu"]
    assert main([*argv, *FAST]) == 0
    return out


def test_training_writes_a_complete_model_directory(trained: Path) -> None:
    for name in ("action_model.json", "model.pt", "history.csv", "training_progress.png", "training_options.json"):
        assert (trained / name).is_file(), name
    config = json.loads((trained / "action_model.json").read_text(encoding="utf-8"))
    assert config["model"] == "c3d_gru" and len(config["classes"]) == 8 and config["sampling"]["frames"] == 8
    from shared.options import TrainingOptions

    options = TrainingOptions.load(trained / "training_options.json")
    assert (options.execution_environment, options.precision) == ("cpu", "fp32")  # --device cpu reached the engine


def test_resume_continues_the_same_run(trained: Path, tiny_videos: Path, tmp_path: Path) -> None:
    rows_before = (trained / "history.csv").read_text(encoding="utf-8").count("\n")
    assert main(["train", "--data", str(tiny_videos), "--model", "c3d_gru", "--out", str(trained), "--epochs", "2", "--resume", *FAST]) == 0
    history = json.loads((trained / "history.json").read_text(encoding="utf-8"))
    assert history["rows"][-1]["epoch"] == 2 and (trained / "history.csv").read_text(encoding="utf-8").count("\n") > rows_before


def test_evaluate_json_and_reports(trained: Path, tiny_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    argv = ["evaluate", "--model", str(trained), "--data", str(tiny_videos), "--out", str(tmp_path / "eval"), "--json", "--device", "cpu"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "top5_accuracy",
        "mean_class_accuracy",
        "clip_accuracy",
        "video_accuracy",
        "f1_weighted",
    ):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["videos"] == 16 and report["top5_accuracy"] >= report["accuracy"]
    assert report["mean_class_accuracy"] == pytest.approx(report["recall_macro"])
    for name in ("summary.json", "per_class.csv", "predictions.csv", "confusion_chart.png"):
        assert (tmp_path / "eval" / name).is_file(), name
    assert (tmp_path / "eval" / "predictions.csv").read_text(encoding="utf-8").count("\n") == 17


def test_evaluate_counts_skipped_videos(trained: Path, tiny_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    data = Path(shutil.copytree(tiny_videos, tmp_path / "data"))
    (data / "Wave" / "v_Wave_g01_c01.avi").write_bytes(b"\x00" * 100)
    assert main(["evaluate", "--model", str(trained), "--data", str(data)]) == 2
    assert "v_Wave_g01_c01.avi: not a readable video container" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained), "--data", str(data), "--skip-bad", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == 15 and report["skipped"][0]["path"].endswith("v_Wave_g01_c01.avi")


def test_predict_top_k_and_timeline(trained: Path, tiny_videos: Path, capsys: pytest.CaptureFixture) -> None:
    video = sorted(tiny_videos.glob("Wave/*.mp4"))[0]
    capsys.readouterr()
    argv = ["predict", "--model", str(trained), str(video), "--top-k", "5", "--timeline", "--window", "0.8", "--json", "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    probabilities = [r["probability"] for r in result["top_k"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert result["label"] == result["top_k"][0]["label"]
    starts = [row["start_s"] for row in result["timeline"]]
    assert (
        starts[0] == 0.0 and starts == sorted(starts) and result["timeline"][-1]["end_s"] == pytest.approx(result["duration_s"], abs=1e-3)
    )


def test_bad_inputs_exit_2_naming_the_problem(
    trained: Path, tiny_videos: Path, bad_videos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["predict", "--model", str(trained), str(bad_videos["empty"])]) == 2
    assert "empty.avi: the file is empty" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_videos), "--out", str(tmp_path / "x"), "--split", "4", *FAST]) == 2
    assert "trainlist04.txt: split file not found" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), str(bad_videos["empty"])]) == 2
    assert "is not a trained action model directory" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_videos), "--out", str(trained), "--epochs", "1", *FAST]) == 2
    assert "checkpoint" in capsys.readouterr().err.lower()  # a fresh run never overwrites another run's checkpoints


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "action", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "evaluate", "predict", "extract-features", "make-demo-data"):
        assert command in result.stdout


def test_predict_and_serve_start_without_monai(trained: Path, tiny_videos: Path) -> None:
    """Prediction needs torch and PyAV, not MONAI (4 s of imports): --help, a real prediction and the server's module."""
    heavy = ("monai", "ignite", "torchvision", "itk", "matplotlib")
    assert "monai" not in modules_after("action", "predict", "--help", watch=heavy)[1]
    video = sorted(tiny_videos.glob("Jump/*"))[0]
    out, imported = modules_after("action", "predict", "--model", str(trained), str(video), "--json", watch=heavy)
    assert json.loads(out)["label"] and imported == set(), imported
    code = "import sys, action.web.server, action.predict; print('monai' in sys.modules or 'ignite' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout.strip() == "False"


def test_every_command_that_runs_a_network_takes_a_device() -> None:
    from action.cli import build_parser

    parser = build_parser()
    for argv in (
        ["train", "--data", "d", "--out", "o"],
        ["evaluate", "--model", "m", "--data", "d"],
        ["predict", "--model", "m", "v.mp4"],
        ["serve", "--model", "m"],
        ["extract-features", "--data", "d", "--cache-dir", "c", "--backbone", "resnet18"],
    ):
        assert parser.parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1", argv
    assert parser.parse_args(["predict", "--model", "m", "v.mp4"]).precision == "fp32"
    assert parser.parse_args(["train", "--data", "d", "--out", "o"]).precision is None  # the --options file or fp32
