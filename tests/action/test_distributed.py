"""python -m action train --nproc-per-node 2: two gloo processes on this CPU machine, then a single-process resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from action.models.model_dir import load_model
from action.train import DataSource, classification_metrics
from action.training_data import clip_data
from action.video.dataset import Sampling
from shared.engine import build_evaluator
from shared.options import TrainingOptions

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--frames", "8", "--size", "32", "--batch-size", "4", "--quiet", "--lr", "0.003"]


@pytest.mark.slow
def test_two_process_training_matches_single_process_evaluation_and_resumes(tiny_videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "action",
        "train",
        "--data",
        str(tiny_videos),
        "--model",
        "c3d_gru",
        "--out",
        str(out),
        "--epochs",
        "1",
        *FAST,
    ]
    done = subprocess.run([*command, "--nproc-per-node", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "2 process(es)" in done.stdout and done.stdout.count("Model:") == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "action_model.json",
        "checkpoints",
        "history.csv",
        "history.json",
        "model.pt",
        "training_options.json",
        "training_progress.png",
    ]
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))["rows"]
    # 32 training videos in 2 groups, one group held out for validation: 16, i.e. 8 per rank -> 2 batches of 4
    assert history[-1]["iteration"] == 2

    network, config = load_model(out)
    sampling = Sampling.from_dict(config.sampling)
    val_set = clip_data(DataSource(tiny_videos, val_fraction=0.1), sampling, seed=0).val
    evaluator = build_evaluator(
        network,
        val_set,
        TrainingOptions(mini_batch_size=4, verbose=False),
        classification_metrics(8),
        "accuracy",
        torch.nn.CrossEntropyLoss(),
    )
    evaluator.run()
    for key in ("accuracy", "f1", "loss"):
        assert history[-1][f"val_{key}"] == pytest.approx(float(evaluator.state.metrics[key]), abs=1e-5), key

    done = subprocess.run(
        [*command[: -len(FAST) - 2], "--epochs", "2", *FAST, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))["rows"]
    assert history[-1]["epoch"] == 2 and history[-1]["iteration"] == 2 * 4  # one process: 16 videos / 4 per batch


@pytest.mark.slow
def test_each_rank_trains_on_a_disjoint_half_and_ends_with_equal_weights(tiny_videos: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "action" / "ddp_run.py"), str(tiny_videos), str(tmp_path / "run"), "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for epoch in ("1", "2"):
        a, b = ranks[0]["seen"][epoch], ranks[1]["seen"][epoch]
        assert len(a) == len(b) == 8 and set(a).isdisjoint(b) and len(set(a) | set(b)) == 16  # 16 training videos (one group)
    w0, w1 = (torch.load(tmp_path / f"rank{r}_weights.pt", weights_only=True) for r in (0, 1))
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)
