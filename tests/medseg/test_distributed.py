"""The V-Net bundle under torchrun (2 gloo processes, MONAI's multi_gpu_train.json pattern), then a single-process resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "vnet_seg" / "configs"
TINY = ["--width", "4", "--options#validation_frequency", "2", "--cache", "none", "--options#verbose", "False"]


def _run(args: list, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_torchrun_two_processes_then_resume_in_one(tmp_path: Path, demo_dataset: Path) -> None:
    bundle = tmp_path / "vnet_seg"
    shutil.copytree(CONFIGS, bundle / "configs")
    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'multi_gpu_train.json'}']"
    common = ["--bundle_root", bundle, "--dataset_dir", demo_dataset, *TINY]
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517", "-m", "monai.bundle", "run",
          "--config_file", configs, *common, "--options#max_epochs", 1])  # fmt: skip
    models = bundle / "models"
    assert sorted(p.name for p in models.iterdir()) == ["checkpoints", "history.csv", "history.json", "model.pt", "training_options.json", "training_progress.png"]
    rows = json.loads((models / "history.json").read_text())["rows"]
    two_process_iterations = rows[-1]["iteration"]
    assert rows[-1]["epoch"] == 1 and "val_dice" in rows[-1]
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", bundle / "configs" / "train.json", *common, "--options#max_epochs", 2, "--resume", "True"])
    rows = json.loads((models / "history.json").read_text())["rows"]
    assert rows[-1]["epoch"] == 2 and rows[-1]["iteration"] == 4 * two_process_iterations  # one process: twice the iterations per epoch
