"""Crash test: a training process killed with SIGKILL resumes and ends exactly where an unbroken run ends."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shared.checkpoint import CHECKPOINT_PATTERN, list_checkpoints, read_checkpoint

SCRIPT = Path(__file__).with_name("crash_train_run.py")
TOTAL_ITERATIONS = 48  # 96 samples / 8 per batch x 4 epochs


def _command(out: Path, ckpt: Path | None, resume: bool = False, sleep: float = 0.0) -> list[str]:
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--sleep", str(sleep)]
    if ckpt is not None:
        cmd += ["--ckpt", str(ckpt)]
    return cmd + (["--resume"] if resume else [])


def _finish(cmd: list[str]) -> int:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["iteration"]


def _assert_every_checkpoint_complete(folder: Path) -> None:
    """Each file directly in the checkpoint directory is a complete, loadable checkpoint."""
    for path in list(folder.iterdir()) if folder.is_dir() else []:
        if path.name == ".partial":  # the writer's scratch directory (created and removed around each save)
            continue
        assert CHECKPOINT_PATTERN.match(path.name), f"stray file {path.name} in the checkpoint directory"
        try:
            read_checkpoint(path)
        except FileNotFoundError:
            continue  # rotated away between listing and reading
        except Exception as err:
            if path.exists():
                raise AssertionError(f"partial checkpoint visible: {path}: {err}") from err


def _newest_iteration(ckpt: Path) -> int:
    found = list_checkpoints(ckpt)
    return found[0][0] if found else 0


def _kill_during_training(cmd: list[str], ckpt: Path, delay: float) -> int:
    """Start ``cmd``, wait for it to write a checkpoint newer than those already there, SIGKILL it ``delay`` s later."""
    before = _newest_iteration(ckpt)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while _newest_iteration(ckpt) <= before:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no new checkpoint appeared"
        time.sleep(0.02)
    kill_at = time.monotonic() + delay
    while time.monotonic() < kill_at:
        _assert_every_checkpoint_complete(ckpt)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close(), proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the process finished before it could be killed"
    _assert_every_checkpoint_complete(ckpt)
    return _newest_iteration(ckpt)


@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_matches_an_unbroken_run(tmp_path):
    """One run killed three times (the second and third kills hit resumed runs), then resumed to the end."""
    reference_out = tmp_path / "reference"
    assert _finish(_command(reference_out, None)) == TOTAL_ITERATIONS
    reference = torch.load(reference_out / "model.pt", weights_only=True)
    rng = random.Random(2026)
    out, ckpt = tmp_path / "run", tmp_path / "run" / "ck"
    killed_at = []
    for point in range(3):
        killed_at.append(_kill_during_training(_command(out, ckpt, resume=point > 0, sleep=0.08), ckpt, delay=rng.uniform(0.1, 0.5)))
    assert 0 < killed_at[0] < killed_at[1] < killed_at[2] < TOTAL_ITERATIONS, killed_at
    assert _finish(_command(out, ckpt, resume=True)) == TOTAL_ITERATIONS
    resumed = torch.load(out / "model.pt", weights_only=True)
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=f"{name} differs after kills at {killed_at}")
    assert not (ckpt / ".partial").exists() or not any((ckpt / ".partial").iterdir())
