"""Fine-tuning from a datastore (medseg/web/training.py): a training process that dies midway leaves the served model."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from medseg.web.datastore import FolderDatastore
from medseg.web.training import Finetuner


def _labelled_store(folder: Path, dataset: Path) -> FolderDatastore:
    store = FolderDatastore(folder, [0, 1, 2, 3])
    for scan in sorted((dataset / "imagesTr").iterdir())[:2]:
        image_id = scan.name.split(".")[0]
        store.put_image(image_id, Path(shutil.copy(scan, folder / scan.name)))
        store.put_label(image_id, Path(shutil.copy(dataset / "labelsTr" / scan.name, folder / f"label_{scan.name}")))
    return store


def _training_pids(run: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"medseg train --bundle {run}"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_a_training_killed_midway_is_failed_with_the_reason_and_the_served_model_stays(
    untrained_bundle: Path, demo_dataset: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(untrained_bundle, tmp_path / "bundle"))
    weights = bundle / "models" / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    had_previous = sorted(p.name for p in (bundle / "models").rglob("*"))  # the shared bundle may have been fine-tuned before
    served: list[Path] = []
    tuner = Finetuner(bundle, _labelled_store(tmp_path / "store", demo_dataset), on_better=served.append)
    started = tuner.start({"max_epochs": 500})
    run = tmp_path / "store" / ".train" / started["run"] / "bundle"
    deadline = time.monotonic() + 120
    while not (run / "models" / "history.csv").is_file():  # killed once it is training, not while it starts
        assert time.monotonic() < deadline and tuner.running(), tuner.status()
        time.sleep(0.5)
    (pid,) = _training_pids(run)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while tuner.running():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status = tuner.status()
    assert status["state"] == "FAILED" and "killed by signal SIGKILL" in status["reason"] and "unchanged" in status["reason"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before and not served
    assert sorted(p.name for p in (bundle / "models").rglob("*")) == had_previous  # nothing installed, nothing moved
    assert tuner.start({"max_epochs": 1})["state"] == "RUNNING"  # the crashed run does not block the next
    tuner.stop()
