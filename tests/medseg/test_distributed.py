"""The V-Net bundle under torchrun (2 gloo processes, MONAI's multi_gpu_train.json pattern), then a single-process resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.distributed import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "vnet_seg" / "configs"
TINY = ["--width", "4", "--options#validation_frequency", "2", "--cache", "none", "--options#verbose", "False"]


def _run(args: list, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (nccl, one rank per GPU)")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=TWO_GPUS)])
def test_torchrun_two_processes_then_resume_in_one(tmp_path: Path, demo_dataset: Path, device: str) -> None:
    """gloo on the CPU; on 2 GPUs nccl, which refuses two ranks on one GPU: the run ends only if each rank took LOCAL_RANK's."""
    bundle = tmp_path / "vnet_seg"
    shutil.copytree(CONFIGS, bundle / "configs")
    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'multi_gpu_train.json'}']"
    common = ["--bundle_root", bundle, "--dataset_dir", demo_dataset, "--device", device, *TINY]
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            free_port(),  # a fixed port collided with a second suite on the same machine (EADDRINUSE)
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            configs,
            *common,
            "--options#max_epochs",
            1,
        ]
    )
    models = bundle / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        "checkpoints",
        "history.csv",
        "history.json",
        "model.json",
        "model.pt",
        "training_options.json",
        "training_progress.png",
    ]
    rows = json.loads((models / "history.json").read_text(encoding="utf-8"))["rows"]
    two_process_iterations = rows[-1]["iteration"]
    assert rows[-1]["epoch"] == 1 and "val_dice" in rows[-1]
    _run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            bundle / "configs" / "train.json",
            *common,
            "--options#max_epochs",
            2,
            "--resume",
            "True",
        ]
    )
    rows = json.loads((models / "history.json").read_text(encoding="utf-8"))["rows"]
    assert rows[-1]["epoch"] == 2 and rows[-1]["iteration"] == 4 * two_process_iterations  # one process: twice the iterations per epoch


@pytest.mark.slow
def test_ranks_train_disjoint_cases_end_equal_and_report_single_process_metrics(tmp_path: Path, demo_dataset: Path) -> None:
    runs = {}
    for name in ("ddp", "single"):
        runs[name] = tmp_path / name / "vnet_seg"
        shutil.copytree(CONFIGS, runs[name] / "configs")
    script = ROOT / "tests" / "medseg" / "ddp_run.py"
    _run([sys.executable, script, "train", runs["ddp"], demo_dataset, 2])
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for epoch in ("1", "2"):
        a, b = set(ranks[0]["seen"][epoch]), set(ranks[1]["seen"][epoch])
        # 3 training cases on 2 ranks: 2 each, the shorter shard padded with one repeated case (as DistributedSampler)
        assert len(a) == len(b) == 2 and len(a | b) == 3 and len(a & b) == 1, (a, b)
    w0, w1 = (torch.load(tmp_path / "ddp" / f"rank{r}_weights.pt", weights_only=True) for r in (0, 1))
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)
    _run([sys.executable, script, "evaluate", runs["single"], demo_dataset, tmp_path / "ddp" / "rank0_weights.pt"])
    single = json.loads((tmp_path / "single" / "single.json").read_text(encoding="utf-8"))["val"]
    assert set(single) >= {"dice", "iou"}
    for key, value in single.items():
        assert ranks[0]["val"][key] == pytest.approx(value, abs=1e-5), key
