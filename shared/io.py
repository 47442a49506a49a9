"""Atomic file output: every file medact writes appears complete or not at all.

A reader (a user, 3D Slicer, a resumed run) must never see half a file, even
when the writing process is killed with SIGKILL. Each writer here builds the
file under a temporary name in the destination's own filesystem, flushes and
fsyncs it, then ``os.replace``-s it over the final name, which POSIX makes
atomic. A crash leaves at most a stray temporary file (named
``.<name>.partial-*``), never a truncated output.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PARTIAL_MARKER = ".partial-"


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory entry so a completed rename survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def full_suffix(path: str | os.PathLike) -> str:
    """``".nii.gz"`` for ``a.nii.gz``, ``".seg.nrrd"`` for ``b.seg.nrrd``, else the last suffix."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".seg.nrrd", ".tar.gz"):
        if name.endswith(double):
            return Path(path).name[-len(double) :]
    return Path(path).suffix


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Args:
        path: final destination. Its parent directory is created if missing.
        tmp_dir: where the temporary file lives (default: the destination's directory).
            It must be on the same filesystem as ``path`` so the rename is atomic.

    The temporary name keeps the destination's suffix (``.nii.gz``, ``.png``), so writers
    that pick the format from the name (SimpleITK, matplotlib) write the right one.
    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    where = Path(tmp_dir) if tmp_dir is not None else final.parent
    where.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}{PARTIAL_MARKER}", suffix=full_suffix(final), dir=where)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the permissions open() would give
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_directory(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_with(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(binary_handle)`` on a temporary file, then move it to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_with(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as strict JSON (NaN/Inf become null) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(to_strict_json(data), indent=indent) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts keyed by ``columns``) as CSV to ``path`` atomically; missing cells are empty."""

    def write(handle: IO[bytes]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
        handle.write(text.getvalue().encode("utf-8"))

    return atomic_write_with(path, write)


def append_csv_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Append ``rows`` to the CSV ``path`` (written by :func:`atomic_write_csv` with the same ``columns``), flushed and
    fsynced: a log that grows during a run costs its new rows, not the whole file each time. A crash can leave at most
    a partial last line, which :func:`shared.handlers.read_history_csv` drops."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    with open(path, "ab") as handle:
        handle.write(text.getvalue().encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return value


def to_strict_json(data: Any) -> Any:
    """Replace non-finite floats by ``None`` recursively, so ``json.dumps`` emits valid JSON."""
    if isinstance(data, float):
        return data if data == data and data not in (float("inf"), float("-inf")) else None
    if isinstance(data, Mapping):
        return {str(k): to_strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_strict_json(v) for v in data]
    return data
