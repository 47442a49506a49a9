"""The two sequence formats that need a parser of their own: UEA/UCR ``.ts`` and MATLAB ``.mat`` cell arrays.

Both return ``(recordings, labels)``: a list of ``(T_i, C)`` arrays (time first) and one label per
recording; :func:`action.sequences.readers.read_sequences` checks and converts them.

Why not a library: aeon's ``load_from_ts_file`` reads ``.ts`` but imports numba and pandas (seconds
of start-up for a 100-line grammar) and pads unequal lengths into a NaN-filled array; scipy and h5py
read ``.mat`` containers but know nothing of MATLAB's sequence convention (``C x T`` matrices in a
cell array, labels as numbers, char rows or strings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def read_ts(path: Path, labelled: bool = True) -> tuple[list[np.ndarray], list[str] | None]:
    """A UEA/UCR ``.ts`` file: header ``@...`` lines, then ``@data`` and one recording per line.

    A data line holds the channels separated by ``:`` (values by ``,``) and, with
    ``@classLabel true``, the label last. Every channel of a recording must have the same length;
    recordings may differ (``@equalLength false``). ``?`` (missing) values are refused, as are
    ``@timeStamps true`` files.
    """
    header: dict[str, str] = {}
    recordings, labels = [], []
    with path.open(encoding="utf-8") as handle:
        lines = enumerate(handle, 1)
        for n, line in lines:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if not text.startswith("@"):
                raise ValueError(f"{path}, line {n}: expected a '@' header line before '@data', got {text[:40]!r}.")
            key, _, value = text[1:].partition(" ")
            if key.lower() == "data":
                break
            header[key.lower()] = value.strip()
        else:
            raise ValueError(f"{path}: no '@data' line; not a UEA/UCR .ts file.")
        if header.get("timestamps", "false").lower() == "true":
            raise ValueError(f"{path}: '@timeStamps true' (time-stamped values) is not supported; export the series without time stamps.")
        has_label = header.get("classlabel", "false").split(" ")[0].lower() == "true"
        if not has_label and labelled:
            raise ValueError(f"{path}: '@classLabel' is not true; training and evaluation need a class label per recording.")
        for n, line in lines:
            if line.strip():
                recording, label = _ts_line(path, n, line.strip() if has_label else line.strip() + ":")
                recordings.append(recording)
                labels.append(label)
    return recordings, labels if has_label else None


def _ts_line(path: Path, n: int, text: str) -> tuple[np.ndarray, str]:
    *channels, label = text.split(":")
    if not channels:
        raise ValueError(f"{path}, line {n}: expected channel values and a label separated by ':'.")
    try:
        values = [np.array([float(v) if v.strip() != "?" else np.nan for v in channel.split(",") if v.strip()]) for channel in channels]
    except ValueError:
        raise ValueError(f"{path}, line {n}: channel values must be numbers.") from None
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise ValueError(
            f"{path}, line {n}: its {len(values)} channels have different lengths {sorted(lengths)}; each channel of a recording needs the same number of steps."
        )
    return np.stack(values, axis=1), label.strip()


def read_mat(
    path: Path, x_var: str | None = None, y_var: str | None = None, labelled: bool = True
) -> tuple[list[np.ndarray], list[Any] | None]:
    """A MATLAB ``.mat`` (v5 or v7.3) with a cell array of ``C x T`` recordings and (when ``labelled``) a label vector."""
    import h5py

    if h5py.is_hdf5(path):
        return _read_mat73(path, x_var, y_var, labelled)
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path))
    except Exception as err:  # noqa: BLE001 - scipy raises several types for damaged files
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({str(err).splitlines()[0]}).") from None
    data = {k: v for k, v in data.items() if not k.startswith("__")}
    x_name = _pick(path, data, x_var, _is_recording_cells, "the cell array of C x T recordings", "x")
    cells = data[x_name].ravel(order="F")
    recordings = [_cell_matrix(path, x_name, i, c) for i, c in enumerate(cells)]
    if not labelled:
        return recordings, None
    y_name = _pick(path, data, y_var, _is_label_vector, "the label vector", "y", exclude=x_name)
    return recordings, _mat_labels(path, y_name, data[y_name])


def _is_recording_cells(value: Any) -> bool:
    """A cell array (object array) of numeric matrices."""
    return (
        isinstance(value, np.ndarray)
        and value.dtype == object
        and value.size > 0
        and all(isinstance(c, np.ndarray) and c.dtype != object and np.issubdtype(c.dtype, np.number) for c in value.ravel())
    )


def _is_label_vector(value: Any) -> bool:
    """A numeric vector, a char matrix (strings, one per row) or a cell array of strings."""
    if not isinstance(value, np.ndarray) or value.size == 0:
        return False
    if value.dtype == object:
        return all(isinstance(c, np.ndarray) and c.dtype.kind == "U" for c in value.ravel())
    return value.dtype.kind == "U" or (np.issubdtype(value.dtype, np.number) and min(value.shape) == 1)


def _pick(path: Path, data: dict, name: str | None, test: Any, what: str, option: str, exclude: str | None = None) -> str:
    if name is not None:
        if name not in data:
            raise ValueError(f"{path}: no variable '{name}'; the file holds {sorted(data)}.")
        return name
    candidates = [k for k, v in data.items() if k != exclude and test(v)]
    if len(candidates) != 1:
        raise ValueError(f"{path}: cannot tell which variable is {what} (file holds {sorted(data)}); name it with --mat-{option}-var.")
    return candidates[0]


def _cell_matrix(path: Path, name: str, index: int, cell: Any) -> np.ndarray:
    matrix = np.asarray(cell)
    if matrix.dtype == object or matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"{path}: {name}{{{index + 1}}} is not a numeric C x T matrix (got {matrix.dtype} of shape {matrix.shape}).")
    return matrix.T.astype(np.float64)  # MATLAB's C x T -> T x C


def _mat_labels(path: Path, name: str, value: np.ndarray) -> list[Any]:
    if value.dtype == object:  # cell array of strings
        return [str(np.asarray(c).ravel()[0]) if np.asarray(c).size else "" for c in value.ravel(order="F")]
    if value.dtype.kind == "U":  # char matrix: one label per row
        return [str(v).strip() for v in value.ravel()]
    if not np.issubdtype(value.dtype, np.number):
        raise ValueError(
            f"{path}: labels '{name}' are {value.dtype}; expected numbers, a char matrix or a cell array of strings (convert categorical with cellstr)."
        )
    return list(value.ravel(order="F").tolist())


def _read_mat73(path: Path, x_var: str | None, y_var: str | None, labelled: bool = True) -> tuple[list[np.ndarray], list[Any] | None]:
    """v7.3 (HDF5): a cell array is a dataset of object references; every array is stored transposed."""
    import h5py

    with h5py.File(path, "r") as f:

        def is_char(item: Any) -> bool:
            return item.attrs.get("MATLAB_class", b"") == b"char"

        def cells(item: Any) -> list[Any]:
            return [f[ref] for ref in np.asarray(item).ravel()] if item.dtype == h5py.ref_dtype else []

        data = {k: v for k, v in f.items() if isinstance(v, h5py.Dataset) and not k.startswith("#")}
        x_name = _pick(
            path, data, x_var, lambda v: bool(cells(v)) and not any(is_char(c) for c in cells(v)), "the cell array of C x T recordings", "x"
        )
        recordings = [np.asarray(c, dtype=np.float64) for c in cells(data[x_name])]  # stored T x C: MATLAB's C x T transposed
        if not labelled:
            return recordings, None
        y_name = _pick(
            path,
            data,
            y_var,
            lambda v: (
                (bool(cells(v)) and all(is_char(c) for c in cells(v))) or (v.dtype != h5py.ref_dtype and (is_char(v) or min(v.shape) == 1))
            ),
            "the label vector",
            "y",
            exclude=x_name,
        )
        labels = data[y_name]
        if labels.dtype == h5py.ref_dtype:  # cell array of strings
            return recordings, ["".join(map(chr, np.asarray(c).ravel())) for c in cells(labels)]
        if is_char(labels):  # char matrix N x L, stored L x N
            codes = np.asarray(labels)
            return recordings, ["".join(map(chr, codes[:, i])).strip() for i in range(codes.shape[1])]
        return recordings, np.asarray(labels).ravel().tolist()
