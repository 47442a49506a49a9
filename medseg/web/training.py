"""Fine-tuning the served model from the datastore's saved labels (``POST /train/{model}``), in a background process.

One job at a time. A job copies the bundle's configs into ``DIR/.train/run-N/bundle``, writes a ``dataset.json`` of the
images with a ``final`` label (plus the cases of ``--data``, when the server was given one), and runs ``medseg train``
on it in its own process (the CLI's path: the shared engine, checkpoints, the model record), starting from the served
weights (the bundle's ``init_weights``) with the served model's own settings (its record's overrides). When the process
ends well, the new model and the served one segment the run's validation cases; the new weights are served only when
their mean Dice is not lower: they are copied into the bundle's ``models/`` atomically, the previous model kept in
``models/previous/``. A crash, a stop (``DELETE /train/``) or a worse Dice leaves the served model as it was, and
``GET /train/`` says why.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.web.datastore import FINAL, DatastoreError, FolderDatastore

#: epochs of one fine-tuning run unless the request says (``{"max_epochs": N}``)
MAX_EPOCHS = 20


class Finetuner:
    """The server's fine-tuning job (see the module docstring).

    Args:
        bundle: the served bundle folder.
        store: the datastore whose labels train it.
        on_better: called with the new model's weights file when they replace the served ones (the server reloads).
        extra_data: a dataset whose training cases join the saved labels (``medseg serve --data``).
        device_flags: ``medseg train`` flags for the device (``["--device", "cpu"]``).
    """

    def __init__(
        self,
        bundle: Path,
        store: FolderDatastore,
        on_better: Callable[[Path], None],
        extra_data: Path | None = None,
        device_flags: list[str] | None = None,
    ) -> None:
        self.bundle, self.store, self.on_better, self.extra_data = Path(bundle), store, on_better, extra_data
        self.device_flags = device_flags or []
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._run: Path | None = None
        self._watcher: threading.Thread | None = None
        self._state: dict[str, Any] = {"state": "NONE"}

    # ---- requests --------------------------------------------------------------------------------------------------
    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start a job; :class:`DatastoreError` 409 while one runs, 422 with fewer than 2 training cases."""
        max_epochs = int(params.get("max_epochs") or MAX_EPOCHS)
        if not 1 <= max_epochs <= 10_000:
            raise DatastoreError(f"max_epochs={max_epochs}: give 1 to 10000.")
        with self._lock:
            if self.running():
                raise DatastoreError("A training run is going on; wait for it (GET /train/) or stop it (DELETE /train/).", 409)
            run = self._new_run()
            try:
                dataset = self._write_dataset(run)
                command = self._command(run, dataset, max_epochs)
            except BaseException:
                shutil.rmtree(run, ignore_errors=True)  # a refused start leaves nothing behind
                raise
            log = open(run / "train.log", "w")  # noqa: SIM115 - the process writes it; closed when the watcher ends
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=run, start_new_session=True)
            self._run = run
            self._state = {"state": "RUNNING", "run": run.name, "max_epochs": max_epochs, "cases": dataset["cases"]}
        self._watcher = threading.Thread(target=self._watch, args=(self._process, run, log), daemon=True)
        self._watcher.start()
        return self.status()

    def running(self) -> bool:
        """Whether a job is on: its process runs, or its outcome (the comparison, the swap) is not settled yet."""
        return self._state.get("state") in ("RUNNING", "STOPPING")

    def status(self) -> dict[str, Any]:
        """``GET /train/``: state (``NONE``, ``RUNNING``, ``SUCCESS``, ``FAILED``, ``STOPPED``), progress, the outcome."""
        state = dict(self._state)
        if self._run is not None:
            state.update(_progress(self._run / "bundle" / "models"))
        return state

    def stop(self) -> dict[str, Any]:
        """``DELETE /train/``: stop the running job (its process group; the served model stays)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._state["state"] = "STOPPING"
                os.killpg(self._process.pid, 15)
        if self._watcher is not None:
            self._watcher.join(timeout=120)  # the outcome is settled before the answer
        return self.status()

    # ---- the job ---------------------------------------------------------------------------------------------------
    def _new_run(self) -> Path:
        root = self.store.root / ".train"
        root.mkdir(exist_ok=True)
        run = root / f"run-{len([p for p in root.iterdir() if p.name.startswith('run-')]) + 1}"
        run.mkdir()
        shutil.copytree(self.bundle / "configs", run / "bundle" / "configs")
        return run

    def _write_dataset(self, run: Path) -> dict[str, Any]:
        """``run/dataset.json``: the labelled datastore images (+ the extra dataset's training cases)."""
        from medseg.datasets.datalists import datalist

        cases = [
            {"image": str(self.store.image_file(i).resolve()), "label": str(self.store.label_file(i, FINAL).resolve())}
            for i in self.store.labelled(FINAL)
        ]
        if self.extra_data is not None:
            cases += datalist(self.extra_data, "training")
        if len(cases) < 2:
            raise DatastoreError(
                f"Training needs at least 2 images with a final label (one to validate on); the datastore has {len(cases)}."
            )
        meta = json.loads((self.bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
        names = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        (run / "dataset.json").write_text(json.dumps({"labels": names, "training": cases}, indent=1), encoding="utf-8")
        return {"path": run / "dataset.json", "cases": len(cases)}

    def _command(self, run: Path, dataset: dict[str, Any], max_epochs: int) -> list[str]:
        from medseg.model_record import read_record

        weights = self.bundle / "models" / "model.pt"
        record = read_record(weights) or {}
        overrides = (record.get("training") or {}).get("overrides") or {}
        sets = [f"{key}={json.dumps(value)}" for key, value in overrides.items() if key not in ("init_weights", "options#max_epochs")]
        sets.append(f"init_weights={json.dumps(str(weights.resolve()))}")
        command = [sys.executable, "-m", "medseg", "train", "--bundle", str(run / "bundle"), "--data", str(dataset["path"])]
        command += ["--epochs", str(max_epochs), *self.device_flags]
        return command + [arg for value in sets for arg in ("--set", value)]

    def _watch(self, process: subprocess.Popen, run: Path, log: Any) -> None:
        code = process.wait()
        log.close()
        try:
            outcome = self._finish(run, code)
        except Exception as err:  # noqa: BLE001 - a job's failure is reported by GET /train/, never raised in the server
            outcome = {"state": "FAILED", "reason": f"{type(err).__name__}: {err}"}
        with self._lock:
            self._state.update(outcome)

    def _finish(self, run: Path, code: int) -> dict[str, Any]:
        if self._state.get("state") == "STOPPING":
            return {"state": "STOPPED", "reason": "stopped by DELETE /train/; the served model is unchanged"}
        if code < 0:  # killed (out of memory, an operator): the log's last line is no reason
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return {"state": "FAILED", "reason": f"training was killed by signal {name}; the served model is unchanged"}
        if code != 0:
            tail = (run / "train.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            return {"state": "FAILED", "reason": f"training exited with code {code}: {tail[0][:300]}; the served model is unchanged"}
        new, previous = _compare_on_validation(run, self.bundle)
        outcome = {"state": "SUCCESS", "dice": {"new": new, "served": previous}}
        if new < previous:
            return {
                **outcome,
                "replaced": False,
                "reason": f"validation Dice {new:.4f} < the served model's {previous:.4f}: kept the served model",
            }
        _install(run / "bundle" / "models", self.bundle / "models")
        self.on_better(self.bundle / "models" / "model.pt")
        return {**outcome, "replaced": True}


def _progress(models: Path) -> dict[str, Any]:
    """The last row of a run's ``history.csv``: epoch, iteration, losses, validation Dice (empty before the first)."""
    path = models / "history.csv"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    last = rows[-1]
    dice = [float(r["val_dice"]) for r in rows if r.get("val_dice")]
    return {
        "epoch": int(last["epoch"]),
        "iteration": int(last["iteration"]),
        "train_loss": float(last["train_loss"]),
        "best_val_dice": max(dice) if dice else None,
    }


def _compare_on_validation(run: Path, bundle: Path) -> tuple[float, float]:
    """Mean Dice of the new and the served model on the run's validation cases (the split ``medseg train`` made)."""
    import numpy as np

    from medseg.datasets.splits import split_cases
    from medseg.evaluation.metrics import dice
    from medseg.inference.segmenter import load_segmenter
    from medseg.io.volumes import read_volume

    _, validation = split_cases(run / "dataset.json", check=False)
    new, served = load_segmenter(run / "bundle"), load_segmenter(bundle)
    scores = {"new": [], "served": []}
    for case in validation:
        reference = np.asarray(read_volume(case["label"])[0])
        labels = [v for v in new.names if v]
        for key, model in (("new", new), ("served", served)):
            mask, _ = model.segment(case["image"])
            scores[key].append(float(np.nanmean(list(dice(mask, reference, labels).values()))))
    return float(np.mean(scores["new"])), float(np.mean(scores["served"]))


def _install(source: Path, models: Path) -> None:
    """The new ``model.pt`` and ``model.json`` into ``models/``, the current ones into ``models/previous/`` first; each
    file is replaced by a rename, so a reader sees the old model or the new one."""
    previous = models / "previous"
    previous.mkdir(exist_ok=True)
    for name in ("model.pt", "model.json"):
        if (models / name).is_file():
            shutil.copy2(models / name, previous / f".{name}.tmp")
            os.replace(previous / f".{name}.tmp", previous / name)
    for name in ("model.json", "model.pt"):  # the record first: weights never sit beside another model's record for long
        shutil.copy2(source / name, models / f".{name}.tmp")
        os.replace(models / f".{name}.tmp", models / name)
