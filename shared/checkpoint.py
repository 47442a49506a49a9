"""Resumable checkpoints that lose nothing.

Built on Ignite's ``Checkpoint`` with two changes, each for a measured gap:

- Ignite's ``DiskSaver(atomic=True)`` writes its temporary file next to the
  checkpoints under a random ``tmpXXXX`` name and never fsyncs. A kill leaves a
  partial file inside the checkpoint directory that nothing cleans up.
  :class:`AtomicDiskSaver` writes under ``<dir>/.partial/``, fsyncs, then renames.
- Ignite's ``Checkpoint.__call__`` removes the oldest file *before* writing the
  new one, so with ``n_saved=1`` a crash during the write leaves no checkpoint.
  :class:`AtomicDiskSaver` defers every removal until the new file is complete.

Everything is saved as tensors and plain Python containers so that
``torch.load(..., weights_only=True)`` reads it; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import shutil
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.handlers import Checkpoint, DiskSaver

from shared.io import atomic_path
from shared.weights import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")
PARTIAL_DIR = ".partial"
REQUIRED_KEYS = ("network", "optimizer", "trainer", "rng")


class RNGState:
    """Snapshot of the torch, CUDA, numpy and Python RNGs, as tensors (``weights_only``-loadable).

    Args:
        generators: extra ``torch.Generator`` objects to save and restore by name (the
            DataLoader's own generator, which seeds its worker processes each epoch).
    """

    def __init__(self, generators: Mapping[str, torch.Generator] | None = None) -> None:
        self.generators = dict(generators or {})

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global RNG that MONAI and user code draw from is what resumes
        version, internal, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "numpy_extra": torch.tensor([pos, has_gauss], dtype=torch.int64),
            "numpy_cached": torch.tensor(cached, dtype=torch.float64),
            "python_internal": torch.tensor(internal, dtype=torch.int64),
            "python_version": int(version),
            "python_gauss": torch.tensor(float("nan") if gauss is None else gauss, dtype=torch.float64),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        state["generators"] = {name: gen.get_state() for name, gen in self.generators.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        pos, has_gauss = (int(v) for v in state["numpy_extra"])
        keys = state["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_cached"])))  # noqa: NPY002 - see state_dict
        gauss = float(state["python_gauss"])
        internal = tuple(int(v) for v in state["python_internal"])
        random.setstate((int(state["python_version"]), internal, None if gauss != gauss else gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for name, gen_state in state.get("generators", {}).items():
            if name in self.generators:
                self.generators[name].set_state(gen_state)


class AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` that never exposes a partial file and deletes old files only after a save succeeds."""

    def __init__(self, dirname: str | Path, save_on_rank: int = 0) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False, save_on_rank=save_on_rank)
        self._pending_removals: list[str] = []

    def _save_func(self, checkpoint: Mapping, path: Path, func: Any) -> None:
        partial = self.dirname / PARTIAL_DIR
        try:
            with atomic_path(path, tmp_dir=partial) as tmp:
                func(checkpoint, tmp)
        finally:
            with contextlib.suppress(OSError):  # only succeeds when empty: leave the directory as users expect
                partial.rmdir()

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, filename, metadata)
        pending, self._pending_removals = self._pending_removals, []
        if idist.get_rank() != self.save_on_rank:
            return
        for old in pending:
            if old != filename:  # Ignite re-saving the same step "removes" it first: keep the new file
                (self.dirname / old).unlink(missing_ok=True)

    def remove(self, filename: str) -> None:
        self._pending_removals.append(filename)


def make_checkpointer(to_save: MutableMapping[str, Any], directory: str | Path, n_saved: int = 2) -> Checkpoint:
    """An Ignite ``Checkpoint`` writing ``<directory>/checkpoint_<iteration>.pt``, keeping ``n_saved`` files."""
    if n_saved < 2:
        raise ValueError(f"n_saved={n_saved}: keep at least 2 checkpoints so a damaged newest file has a fallback.")
    return Checkpoint(
        to_save,
        AtomicDiskSaver(directory),
        filename_pattern="{name}_{global_step}.{ext}",
        n_saved=n_saved,
        global_step_transform=lambda engine, _event: engine.state.iteration,
        include_self=True,
    )


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every ``checkpoint_<iteration>.pt`` in ``directory``, newest first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name)) and p.is_file()]
    return sorted(found, reverse=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint file safely (``weights_only=True``) and check it is a medact training checkpoint."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad magic number, unpickling refused, ...
        raise CheckpointError(f"Checkpoint {path} cannot be read: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"Checkpoint {path} holds a {type(state).__name__}, expected a dict of training state.")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks {missing}; it is not a medact training checkpoint.")
    return state


def load_latest_checkpoint(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """Newest readable checkpoint in ``directory``; a damaged newer one is skipped with a loud warning.

    Raises:
        CheckpointError: the directory holds no checkpoint, or none is readable.
    """
    candidates = list_checkpoints(directory)
    if not candidates:
        raise CheckpointError(
            f"Cannot resume: no checkpoint_<iteration>.pt in {directory}. "
            "Start without resume, or point checkpoint_path at the directory of the run to continue."
        )
    failures = []
    for _, path in candidates:
        try:
            state = read_checkpoint(path)
        except CheckpointError as err:
            failures.append(str(err))
            message = f"{err}. FALLING BACK to the previous checkpoint; training will repeat the lost iterations."
            logger.error(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            continue
        return path, state
    raise CheckpointError(f"No readable checkpoint in {directory}: " + " | ".join(failures))


def prepare_checkpoint_dir(directory: str | Path, resume: bool) -> Path:
    """Create the checkpoint directory; refuse to mix a fresh run into an old run's checkpoints.

    Leftover temporary files of a killed writer (``.partial/``) are removed.
    """
    folder = Path(directory)
    existing = list_checkpoints(folder)
    if existing and not resume:
        raise CheckpointError(
            f"Checkpoint directory {folder} already holds {len(existing)} checkpoint(s) of another run "
            f"(newest: {existing[0][1].name}). Continue that run with --resume (resume=True in Python), or choose an empty directory."
        )
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / PARTIAL_DIR, ignore_errors=True)
    return folder
