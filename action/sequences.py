"""Plain labelled sequences for the recurrent heads (e.g. wearable-sensor activity data).

Two file forms, read by :func:`read_sequences`:

- ``.npz`` with ``X`` float ``(N, T, C)`` and ``y`` ``(N,)`` labels (strings or integers);
- ``.csv`` with one row per time step: columns ``sample``, ``label`` and one column per
  channel (all samples must have the same number of steps, in file order).

Samples become ``{"image": (T, C) float32, "label": int}``, normalised per channel with
``shared.transforms.MinMax`` using the *training* set's per-channel range (kept in the
model directory so prediction uses the same numbers).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch

from shared.transforms import MinMax

SEQUENCE_SUFFIXES = (".npz", ".csv")


@dataclasses.dataclass
class Sequences:
    """``x`` float32 ``(N, T, C)``, ``y`` int64 ``(N,)`` into ``classes``."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]


def _labels(raw: np.ndarray, path: Path, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    names = [str(v) for v in raw.tolist()]
    classes = classes or sorted(set(names), key=lambda s: (len(s), s) if s.lstrip("-").isdigit() else (0, s))
    lookup = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise ValueError(f"{path}: labels {unknown[:10]} are not among the model's classes {classes}.")
    return np.array([lookup[n] for n in names], dtype=np.int64), classes


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"sample", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a CSV header with 'sample', 'label' and channel columns.")
        channels = [c for c in reader.fieldnames if c not in ("sample", "label")]
        samples: dict[str, tuple[str, list[list[float]]]] = {}
        for n, row in enumerate(reader, 2):
            try:
                values = [float(row[c]) for c in channels]
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {n}: channel values must be numbers, got {[row[c] for c in channels]}.") from None
            samples.setdefault(row["sample"], (row["label"], []))[1].append(values)
    lengths = {len(steps) for _, steps in samples.values()}
    if len(lengths) != 1:
        raise ValueError(f"{path}: samples have different numbers of time steps {sorted(lengths)}; expected one length.")
    return np.array([steps for _, steps in samples.values()], dtype=np.float32), np.array([label for label, _ in samples.values()])


def read_sequences(path: str | Path, classes: list[str] | None = None) -> Sequences:
    """Read a ``.npz`` or ``.csv`` sequence file (see the module docstring); ``classes`` fixes the label order."""
    path = Path(path)
    if path.suffix not in SEQUENCE_SUFFIXES or not path.is_file():
        raise ValueError(f"{path}: expected an existing .npz (X, y) or .csv sequence file.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if not {"X", "y"} <= set(data.files):
                raise ValueError(f"{path}: expected arrays 'X' (N, T, C) and 'y' (N,), found {data.files}.")
            x, raw = data["X"].astype(np.float32), data["y"]
    else:
        x, raw = _read_csv(path)
    if x.ndim != 3 or len(x) != len(raw):
        raise ValueError(f"{path}: X must be (N, T, C) with one label per sample; got X {x.shape} and y {raw.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: X contains NaN or Inf values.")
    y, classes = _labels(raw, path, classes)
    return Sequences(x, y, classes)


def channel_range(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel minimum and maximum over samples and time: the normalisation window."""
    return x.min(axis=(0, 1)).tolist(), x.max(axis=(0, 1)).tolist()


class SequenceDataset(torch.utils.data.Dataset):
    """``{"image": (T, C) float32 in [0, 1], "label": int, "video": index}`` normalised with a fixed per-channel window."""

    def __init__(self, sequences: Sequences, window: tuple[list[float], list[float]]) -> None:
        self.sequences = sequences
        # (1, C) bounds broadcast along time; a 1-D bound would be read as one value per *first* axis entry
        low, high = (np.asarray(w, dtype=np.float32).reshape(1, -1) for w in window)
        self.normalise = MinMax(input_min=low, input_max=np.where(high > low, high, low + 1.0))

    def __len__(self) -> int:
        return len(self.sequences.y)

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.as_tensor(self.normalise(self.sequences.x[index])), "label": int(self.sequences.y[index]), "video": index}

    @property
    def labels(self) -> np.ndarray:
        return self.sequences.y
