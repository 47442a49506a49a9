"""python -m action train --nproc-per-node 2: two gloo processes on this CPU machine, then a single-process resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from action.data import Sampling
from action.model_dir import load_model
from action.train import classification_metrics, clip_data
from action.video import DecodeLimits
from shared.engine import build_evaluator
from shared.options import TrainingOptions

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--frames", "8", "--size", "32", "--batch-size", "4", "--quiet", "--lr", "0.003"]


@pytest.mark.slow
def test_two_process_training_matches_single_process_evaluation_and_resumes(tiny_videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "action", "train", "--data", str(tiny_videos), "--model", "c3d_gru", "--out", str(out), "--epochs", "1", *FAST]
    done = subprocess.run([*command, "--nproc-per-node", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "2 process(es)" in done.stdout and done.stdout.count("Model:") == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == ["action_model.json", "checkpoints", "history.csv", "history.json", "model.pt", "training_options.json", "training_progress.png"]
    history = json.loads((out / "history.json").read_text())["rows"]
    # 32 training videos, one per class held out for validation: 24, i.e. 12 per rank -> 3 batches of 4
    assert history[-1]["iteration"] == 3

    network, config = load_model(out)
    sampling = Sampling.from_dict(config.sampling)
    _, val_set, _ = clip_data(tiny_videos, sampling, "auto", 1, 0.1, 0, False, True, DecodeLimits())
    evaluator = build_evaluator(network, val_set, TrainingOptions(mini_batch_size=4, verbose=False), classification_metrics(8), "accuracy", torch.nn.CrossEntropyLoss())
    evaluator.run()
    for key in ("accuracy", "f1", "loss"):
        assert history[-1][f"val_{key}"] == pytest.approx(float(evaluator.state.metrics[key]), abs=1e-5), key

    done = subprocess.run([*command[:-len(FAST) - 2], "--epochs", "2", *FAST, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    history = json.loads((out / "history.json").read_text())["rows"]
    assert history[-1]["epoch"] == 2 and history[-1]["iteration"] == 2 * 6  # one process: 24 videos / 4 per batch
