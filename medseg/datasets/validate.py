"""Dataset integrity checks before training (nnU-Net's ``verify_dataset_integrity`` as the anchor).

Every problem is one line naming the case's file, what was found and what was expected;
``python -m medseg validate DATA`` prints them and exits non-zero when any is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.volumes import MAX_VOXELS, Header, VolumeError, check_finite, read_header, read_volume


@dataclasses.dataclass(frozen=True)
class Problem:
    """``level`` is ``"error"`` (the case cannot be used) or ``"warning"`` (it can, but look)."""

    level: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} {self.path}: {self.message}"


def _header(path: str, var: str | None, max_voxels: int, problems: list[Problem]) -> Header | None:
    try:
        header = read_header(path, var, max_voxels)
    except (VolumeError, FileNotFoundError) as err:
        problems.append(Problem("error", path, str(err).removeprefix(f"{path}: ")))
        return None
    if header.ndim != 3 or header.components != 1:
        extra = f", {header.components} components per voxel" if header.components != 1 else ""
        problems.append(
            Problem(
                "error",
                path,
                f"{header.ndim}D image (size {'x'.join(map(str, header.geometry.shape))}{extra}); expected a single-channel 3D volume.",
            )
        )
        return None
    return header


def _voxels(path: str, var: str | None, problems: list[Problem]) -> np.ndarray | None:
    try:
        return read_volume(path, var)[0]
    except VolumeError as err:
        problems.append(Problem("error", path, str(err).removeprefix(f"{path}: ")))
        return None


def check_label_values(label: np.ndarray, allowed: Iterable[int] | None) -> list[str]:
    """Messages for non-integer values and values outside ``allowed`` (``None``: not declared, not checked)."""
    values = np.unique(label)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            return ["label holds NaN/Inf values; expected integer class labels."]
        fractional = values[values != np.round(values)]
        if fractional.size:
            return [
                f"label holds non-integer values {np.round(fractional[:5], 4).tolist()}; expected integer class labels (was it resampled with linear interpolation?)."
            ]
    if allowed is None:
        return []
    unexpected = sorted(set(int(v) for v in values) - set(allowed))
    return [f"label values {unexpected} are not among the declared labels {sorted(allowed)}."] if unexpected else []


def _image_headers(image: Any, var: str | None, max_voxels: int, problems: list[Problem]) -> tuple[list[Header], int] | None:
    """Headers and channel count of one case's image (a file, a 4D file or one file per channel)."""
    from medseg.io.channels import channel_headers

    try:
        return channel_headers(image, var, max_voxels)
    except (VolumeError, FileNotFoundError) as err:
        problems.append(_problem_of(err, image))
        return None


def _problem_of(err: Exception, image: Any) -> Problem:
    """An error about one of a case's files as a :class:`Problem` naming that file (the message starts with it)."""
    from medseg.io.channels import channel_paths

    text = str(err)
    path = next((str(p) for p in channel_paths(image) if text.startswith(f"{p}: ")), str(channel_paths(image)[0]))
    return Problem("error", path, text.removeprefix(f"{path}: "))


def check_case(
    item: dict,
    labels: Sequence[int] | None,
    allow_resample: bool = False,
    mat_vars: tuple[str | None, str | None] = (None, None),
    max_voxels: int = MAX_VOXELS,
    seen_labels: set[int] | None = None,
    channels: int | None = None,
) -> list[Problem]:
    """All problems of one ``{"image": path or [channel paths], "label": path}`` case; the label values found are added
    to ``seen_labels``. ``channels``: the channel count every image must have (``None``: not checked here)."""
    from medseg.io.channels import first_path, read_channels

    problems: list[Problem] = []
    image, label_path = item["image"], item.get("label")
    image_path = str(first_path(image))
    found = _image_headers(image, mat_vars[0], max_voxels, problems)
    if found and channels is not None and found[1] != channels:
        problems.append(Problem("error", image_path, f"{found[1]} channel(s); the dataset declares {channels} per case."))
    label_header = _header(label_path, mat_vars[1], max_voxels, problems) if label_path else None
    image_header = found[0][0] if found else None
    if image_header and label_header:
        differences = image_header.geometry.matches(label_header.geometry)
        if differences:
            level = "warning" if allow_resample else "error"
            hint = (
                " (the label will be resampled onto the image)"
                if allow_resample
                else "; pass --allow-resample to resample labels onto images"
            )
            problems.append(
                Problem(level, label_path, f"geometry differs from the image {Path(image_path).name}: {'; '.join(differences)}{hint}.")
            )
    if image_header:
        try:
            voxels, _ = read_channels(image, mat_vars[0], max_voxels)
            paths = [h.path for h in found[0]]
            for path, channel in zip(paths if len(paths) == len(voxels) else paths * len(voxels), voxels):
                check_finite(path, channel)
        except VolumeError as err:
            problems.append(_problem_of(err, image))
    if label_header:
        label = _voxels(label_path, mat_vars[1], problems)
        if label is not None:
            messages = check_label_values(label, labels)
            problems += [Problem("error", label_path, m) for m in messages]
            if seen_labels is not None and not messages:
                seen_labels.update(int(v) for v in np.unique(label))
            if not np.any(label):
                problems.append(Problem("warning", label_path, "label is empty (background only)."))
    return problems


def validate(
    items: Sequence[dict],
    labels: Sequence[int] | None,
    allow_resample: bool = False,
    mat_vars: tuple[str | None, str | None] = (None, None),
    seen_labels: set[int] | None = None,
    channels: int | None = None,
    channel_origin: str = "the dataset declares",
) -> list[Problem]:
    """Check every case; returns all problems (errors first, then warnings, each in case order).

    ``labels``: the declared label values (``None``: undeclared; the values found are collected in ``seen_labels``).
    ``channels``: the declared channel count (``None``: every case must have the first case's count).
    """
    from medseg.io.channels import channel_paths

    expected, origin = channels, channel_origin
    if expected is None and items:  # undeclared: every case must have the first readable case's count
        first = _image_headers(items[0]["image"], mat_vars[0], MAX_VOXELS, [])
        expected, origin = (first[1] if first else None), f"the first case ({channel_paths(items[0]['image'])[0].name}) has"
    found = [p for item in items for p in check_case(item, labels, allow_resample, mat_vars, seen_labels=seen_labels, channels=expected)]
    found = [dataclasses.replace(p, message=p.message.replace("the dataset declares", origin)) for p in found]
    return [p for p in found if p.level == "error"] + [p for p in found if p.level == "warning"]
