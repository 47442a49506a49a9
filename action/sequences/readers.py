"""Read labelled sequences of any length from the files users hold them in, without pickles.

Every form gives :class:`Sequences`: one float32 ``(T_i, C)`` array per recording (time first),
an integer label per recording, and the class names. Readers by suffix (:func:`read_sequences`):

- ``.npz``: ``X`` ``(N, T, C)`` + ``y`` ``(N,)`` (equal lengths), or ``X`` ``(sum of lengths, C)``
  + ``lengths`` ``(N,)`` + ``y`` ``(N,)`` (recordings stacked along time; any lengths); optionally
  ``groups`` ``(N,)`` (the subject or session of each recording). Object arrays are refused
  (``allow_pickle=False``: a pickle can run code).
- ``.csv``: one row per time step, columns ``sample``, ``label`` and one per channel; each sample
  has its own number of rows (rows of one sample may not be interleaved with another's); an optional
  ``group`` (or ``subject``) column names each sample's subject.

Recordings with groups are held out for validation by whole group (:mod:`action.splits`): one subject's
recordings never sit on both sides.
- ``.mat`` (MATLAB v5 or v7.3): a cell array of ``C x T`` matrices (MATLAB's sequence layout,
  ``XTrain`` of "Sequence Classification Using Deep Learning") and a label vector (numbers,
  a char matrix or a cell array of strings; convert ``categorical`` with ``cellstr`` first). The
  variables are found by shape or named (``x_var``, ``y_var``).
- ``.ts``: the UEA/UCR archive format (``@problemName`` ... ``@data``; one line per recording,
  channels separated by ``:``, the class label last).

Malformed files raise ``ValueError`` naming the file and what is wrong: lengths that do not add
up, channel counts that differ between recordings, NaN/Inf steps (recording and step named),
labels outside the model's classes.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SEQUENCE_SUFFIXES = (".npz", ".csv", ".mat", ".ts")


@dataclasses.dataclass
class Sequences:
    """``x[i]`` float32 ``(T_i, C)``; ``y`` int64 ``(N,)`` indices into ``classes``; ``groups`` the subject (or session)
    of each recording, or ``None``."""

    x: list[np.ndarray]
    y: np.ndarray
    classes: list[str]
    groups: list[str] | None = None

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` time steps per recording."""
        return np.array([len(s) for s in self.x], dtype=np.int64)

    @property
    def channels(self) -> int:
        return int(self.x[0].shape[1])

    def subset(self, keep: np.ndarray) -> Sequences:
        """The recordings where the boolean ``keep`` ``(N,)`` is true."""
        groups = [g for g, k in zip(self.groups, keep) if k] if self.groups is not None else None
        return Sequences([s for s, k in zip(self.x, keep) if k], self.y[keep], self.classes, groups)


def class_order(names: Sequence[str]) -> list[str]:
    """Sorted class names; integer names in numeric order (``"2"`` before ``"10"``)."""
    return sorted(set(names), key=lambda s: (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s))


def _labels(raw: Sequence, path: Path, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    names = [_label_text(v) for v in raw]
    classes = classes or class_order(names)
    lookup = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise ValueError(f"{path}: labels {unknown[:10]} are not among the model's classes {classes}.")
    return np.array([lookup[n] for n in names], dtype=np.int64), classes


def _label_text(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # MATLAB stores label numbers as doubles: 3.0 -> "3"
    return str(value).strip()


def check_recordings(x: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Each recording ``(T_i, C)`` with ``T_i >= 1``, one channel count, finite values; float32 copies."""
    if not x:
        raise ValueError(f"{path}: holds no recordings.")
    channels = {s.shape[1] if s.ndim == 2 else -1 for s in x}
    if len(channels) != 1 or -1 in channels:
        counts = sorted({s.shape[1] for s in x if s.ndim == 2})
        raise ValueError(
            f"{path}: recordings have different channel counts {counts} (or are not 2-D); every recording needs the same channels."
        )
    for i, s in enumerate(x):
        if len(s) == 0:
            raise ValueError(f"{path}: recording {i} has no time steps.")
        bad = ~np.isfinite(s)
        if bad.any():
            step, channel = np.argwhere(bad)[0]
            raise ValueError(
                f"{path}: recording {i} has {int(bad.sum())} NaN/Inf values (first at step {step}, channel {channel}); remove or fill them before training."
            )
    return [np.ascontiguousarray(s, dtype=np.float32) for s in x]


def _read_npz(path: Path, labelled: bool = True) -> tuple[list[np.ndarray], Sequence | None, list[str] | None]:
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(
            f"{path}: {err} (object arrays are refused; store recordings as X (sum of lengths, C) + lengths (N,) + y (N,))."
        ) from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}).") from None
    with data:
        if not {"X", "y"} <= set(data.files) and (labelled or "X" not in data.files):
            raise ValueError(
                f"{path}: expected arrays 'X' (N, T, C) or 'X' (sum of lengths, C) + 'lengths', and 'y' (N,); found {data.files}."
            )
        try:
            x, y = data["X"], (data["y"] if "y" in data.files else None)
            lengths = data["lengths"] if "lengths" in data.files else None
            groups = [str(g) for g in data["groups"].tolist()] if "groups" in data.files else None
        except ValueError as err:
            raise ValueError(
                f"{path}: {err} (object arrays are refused; store recordings as X (sum of lengths, C) + lengths (N,) + y (N,))."
            ) from None
    if lengths is None:
        if x.ndim != 3:
            raise ValueError(f"{path}: X has shape {x.shape}; expected (N, T, C), or (sum of lengths, C) with a 'lengths' array.")
        return list(x), y, groups
    return _split_stacked(path, x, lengths, len(y) if y is not None else len(lengths)), y, groups


def _split_stacked(path: Path, x: np.ndarray, lengths: np.ndarray, n_labels: int) -> list[np.ndarray]:
    if x.ndim != 2:
        raise ValueError(f"{path}: with 'lengths', X must be (sum of lengths, C); got shape {x.shape}.")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer) or (lengths < 1).any():
        raise ValueError(
            f"{path}: 'lengths' must be positive integers, one per recording; got {lengths[:10].tolist()} (dtype {lengths.dtype})."
        )
    if int(lengths.sum()) != len(x):
        raise ValueError(f"{path}: lengths add up to {int(lengths.sum())} steps but X has {len(x)} rows.")
    if len(lengths) != n_labels:
        raise ValueError(f"{path}: {len(lengths)} lengths but {n_labels} labels in y; expected one label per recording.")
    return np.split(x, np.cumsum(lengths)[:-1])


def _read_csv(path: Path, labelled: bool = True) -> tuple[list[np.ndarray], list[str] | None, list[str] | None]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"sample", "label"} if labelled else {"sample"}
        if not reader.fieldnames or not needed <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a CSV header with 'sample', 'label' and channel columns; got {reader.fieldnames}.")
        group_column = next((c for c in ("group", "subject") if c in reader.fieldnames), None)
        channels = [c for c in reader.fieldnames if c not in ("sample", "label", group_column)]
        if not channels:
            raise ValueError(f"{path}: no channel columns besides 'sample' and 'label'.")
        samples: dict[str, tuple[str, list[list[float]]]] = {}
        groups: dict[str, str] = {}
        previous = None
        for n, row in enumerate(reader, 2):
            name = row["sample"]
            if name != previous and name in samples:
                raise ValueError(
                    f"{path}, line {n}: rows of sample {name!r} resume after another sample's; keep each sample's rows together, in time order."
                )
            previous = name
            try:
                values = [float(row[c]) for c in channels]
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {n}: channel values must be numbers, got {[row[c] for c in channels]}.") from None
            label, steps = samples.setdefault(name, (row.get("label", ""), []))
            if group_column is not None and groups.setdefault(name, row[group_column]) != row[group_column]:
                raise ValueError(
                    f"{path}, line {n}: sample {name!r} changes {group_column} from {groups[name]!r} to {row[group_column]!r}."
                )
            if row.get("label", "") != label:
                raise ValueError(
                    f"{path}, line {n}: sample {name!r} changes label from {label!r} to {row['label']!r}; one label per sample."
                )
            steps.append(values)
    labels = [label for label, _ in samples.values()] if "label" in reader.fieldnames else None
    found = [groups[name] for name in samples] if group_column is not None else None
    return [np.array(steps, dtype=np.float64) for _, steps in samples.values()], labels, found


def read_sequences(
    path: str | Path, classes: list[str] | None = None, x_var: str | None = None, y_var: str | None = None, labelled: bool = True
) -> Sequences:
    """Read a sequence file (see the module docstring); ``classes`` fixes the label order (a model's classes).

    Args:
        path: ``.npz``, ``.csv``, ``.mat`` or ``.ts`` file.
        classes: the label names in index order; labels outside them are an error.
        x_var: ``.mat`` only: the variable holding the cell array of ``C x T`` recordings.
        y_var: ``.mat`` only: the variable holding the labels.
        labelled: ``False`` for prediction: files may then lack labels (``y`` is all -1).
    """
    from action.sequences.formats import read_mat, read_ts

    path = Path(path)
    if path.suffix.lower() not in SEQUENCE_SUFFIXES:
        raise ValueError(f"{path}: unknown sequence file type {path.suffix!r}; expected one of {', '.join(SEQUENCE_SUFFIXES)}.")
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected a {path.suffix} sequence file).")
    readers = {
        ".npz": _read_npz,
        ".csv": _read_csv,
        ".ts": lambda p, lab: (*read_ts(p, lab), None),  # neither format has a group field
        ".mat": lambda p, lab: (*read_mat(p, x_var, y_var, lab), None),
    }
    x, raw, groups = readers[path.suffix.lower()](path, labelled)
    if groups is not None and len(groups) != len(x):
        raise ValueError(f"{path}: {len(groups)} groups but {len(x)} recordings; expected one group per recording.")
    if not labelled:
        return Sequences(check_recordings(list(x), path), np.full(len(x), -1, dtype=np.int64), list(classes or []))
    if raw is None:
        raise ValueError(f"{path}: has no labels; training and evaluation need one label per recording.")
    if len(x) != len(raw):
        raise ValueError(f"{path}: {len(x)} recordings but {len(raw)} labels; expected one label per recording.")
    x = check_recordings(list(x), path)
    y, classes = _labels(list(np.asarray(raw).tolist()) if not isinstance(raw, list) else raw, path, classes)
    return Sequences(x, y, classes, groups)
