"""Multi-channel images: one 4D file (the Medical Segmentation Decathlon's multi-modal NIfTI) or one 3D file per
channel (nnU-Net's ``case_0000.nii.gz``, ``case_0001.nii.gz``, ...), read as one ``(C, i, j, k)`` array on one grid.

A case is refused, naming the file, when a channel is missing, when its channels lie on different grids (they would
be stacked voxel by voxel: a registration problem, not something to resample silently) or when its channel count is
not the dataset's or the bundle's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.io.volumes import MAX_VOXELS, Geometry, Header, VolumeError, read_header, read_volume, strip_suffix

#: nnU-Net's channel suffix: ``<case>_<4 digits>`` (``la_003_0000.nii.gz`` is channel 0 of case ``la_003``)
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")

#: one case's image: a single file (3D, or 4D with the channels last) or one 3D file per channel
ImageSource = str | os.PathLike | Sequence[str | os.PathLike]


def channel_paths(image: ImageSource) -> list[Path]:
    """The file(s) of one case's image, in channel order."""
    return [Path(image)] if isinstance(image, (str, os.PathLike)) else [Path(p) for p in image]


def first_path(image: ImageSource) -> Path:
    """The file that names the case and defines its grid (channel 0)."""
    return channel_paths(image)[0]


def split_channel(stem: str) -> tuple[str, int | None]:
    """``"la_003_0001"`` -> ``("la_003", 1)``; ``"case7"`` -> ``("case7", None)``."""
    match = CHANNEL_SUFFIX.match(stem)
    return (match["case"], int(match["channel"])) if match else (stem, None)


def channel_headers(image: ImageSource, mat_var: str | None = None, max_voxels: int = MAX_VOXELS) -> tuple[list[Header], int]:
    """Headers of a case's files and its channel count: a 4D file has ``size[3]`` channels, a 3D file one.

    Raises:
        VolumeError: a file is neither a 3D nor a 4D single-component volume, or a channel's grid differs from channel 0's.
        FileNotFoundError: a channel file is missing.
    """
    paths = channel_paths(image)
    headers = []
    for path in paths:
        if len(paths) > 1 and not path.exists():
            raise FileNotFoundError(f"{path}: channel file not found (the case lists {len(paths)} channel files).")
        headers.append(read_header(path, mat_var, max_voxels))
    for header in headers:
        multi = header.ndim == 4 and len(paths) == 1
        if header.components != 1 or not (header.ndim == 3 or multi):
            extra = f", {header.components} components per voxel" if header.components != 1 else ""
            raise VolumeError(
                f"{header.path}: {header.ndim}D image (size {'x'.join(map(str, header.geometry.shape))}{extra}); expected a single-channel "
                "3D volume (several channels: one 3D file per channel, or one 4D file with the channels last)."
            )
    check_same_grid(paths, [h.geometry for h in headers])
    channels = _fourth_size(paths[0]) if headers[0].ndim == 4 else len(paths)
    return headers, channels


def check_same_grid(paths: Sequence[Path], geometries: Sequence[Geometry]) -> None:
    """Raise naming the first channel whose grid differs from channel 0's."""
    for path, geometry in zip(paths[1:], geometries[1:]):
        differences = geometry.matches(geometries[0])
        if differences:
            raise VolumeError(
                f"{path}: its grid differs from channel 0 ({paths[0].name}): {'; '.join(differences)}; every channel of a case must "
                "lie on one grid (register and resample them first)."
            )


def _fourth_size(path: Path) -> int:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return int(reader.GetSize()[3])


def read_channels(image: ImageSource, mat_var: str | None = None, max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, Geometry]:
    """Read one case's image as ``(array[C, i, j, k], Geometry)``; a plain 3D file gives ``C = 1``.

    Args:
        image: a 3D file, a 4D file (channels along its fourth axis) or a list of 3D files, one per channel.
        mat_var: the ``.mat`` variable of every channel file.
        max_voxels: limit per file, checked on the header before any voxel is read.
    """
    headers, _ = channel_headers(image, mat_var, max_voxels)
    if headers[0].ndim == 4:
        return _read_4d(Path(headers[0].path)), headers[0].geometry
    arrays = [read_volume(h.path, mat_var, max_voxels)[0] for h in headers]
    return np.stack(arrays), headers[0].geometry


def _read_4d(path: Path) -> np.ndarray:
    """``(C, i, j, k)`` voxels of a 4D file; NIfTI through nibabel (the reason is in :func:`medseg.io.volumes.read_volume`)."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            array = np.asanyarray(nib.load(str(path)).dataobj)
        except Exception as err:
            raise VolumeError(
                f"{path}: cannot read the voxel data; the file is truncated or corrupt ({type(err).__name__}: {err})."
            ) from err
        return np.ascontiguousarray(np.moveaxis(array, 3, 0))
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise VolumeError(f"{path}: cannot read the voxel data; the file is truncated or corrupt ({err}).") from err
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(0, 3, 2, 1))  # (C, k, j, i) -> (C, i, j, k)


def group_channels(files: Sequence[Path], channels: int | None = None) -> list[tuple[str, str | list[str]]]:
    """Group a folder's volume files into cases by nnU-Net's ``_XXXX`` channel suffix.

    Args:
        files: volume files (sorted).
        channels: the dataset's channel count (``dataset.json``). ``None`` (a bare folder): several channels only when
            every case has the same channel files ``_0000`` .. ``_000N`` with N > 0, so that names such as
            ``patient_2019.nii.gz`` stay cases of their own.

    Returns:
        ``[(case id, image)]``: one channel: ``(file stem, file)``; several: ``(case, [channel files in order])``.

    Raises:
        VolumeError: with ``channels`` > 1, a case misses a channel file or has one beyond them (all such problems listed).
    """
    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        case, channel = split_channel(_stem(path))
        cases.setdefault(case if channel is not None else _stem(path), {})[-1 if channel is None else channel] = path
    if channels is None:
        counts = {len(c) for c in cases.values()}
        regular = len(counts) == 1 and all(sorted(c) == list(range(len(c))) for c in cases.values())
        channels = counts.pop() if regular else 1
    if channels <= 1:
        stray = [str(c[k]) for c in cases.values() if 0 in c for k in sorted(c) if k > 0]  # case_0001 beside a case_0000
        if stray:
            raise VolumeError(
                f"{stray[0]}: a channel file beyond channel 0 ({len(stray)} such files), but 1 channel is declared; declare every "
                'channel in dataset.json (e.g. "channel_names": {"0": "T1", "1": "FLAIR"}) or remove the extra files.'
            )
        return [(_stem(path), str(path)) for path in files]
    grouped, problems = [], []
    for case, by_channel in cases.items():
        first = next(iter(by_channel.values()))
        missing = [c for c in range(channels) if c not in by_channel]
        extra = sorted(c for c in by_channel if not 0 <= c < channels)
        problems += [f"{first.parent / (case + f'_{c:04d}' + _suffix(first))} is missing" for c in missing]
        problems += [
            f"{by_channel[c]} has no channel suffix _0000.._{channels - 1:04d}"
            if c < 0
            else f"{by_channel[c]} is not one of channels _0000.._{channels - 1:04d}"
            for c in extra
        ]
        if not missing and not extra:
            grouped.append((case, [str(by_channel[c]) for c in range(channels)]))
    if problems:
        raise VolumeError(
            f"Cannot group the files into cases of {channels} channels (one file per channel, named case_0000, case_0001, ..., "
            "or one 4D file per case): " + "; ".join(problems) + "."
        )
    return grouped


def _stem(path: Path) -> str:
    return strip_suffix(path.name)


def _suffix(path: Path) -> str:
    return path.name[len(_stem(path)) :]


def case_name(image: ImageSource) -> str:
    """The name outputs of a case are named after: the file stem of a single file (as always), the case without its
    ``_0000`` channel suffix for a list of channel files."""
    paths = channel_paths(image)
    stem = _stem(paths[0])
    return split_channel(stem)[0] if len(paths) > 1 else stem


def source_key(image: ImageSource) -> str:
    """A hashable key for one case's image (its channel 0 file's path, as given)."""
    return str(channel_paths(image)[0])


def cases_from_inputs(inputs: Sequence[str | os.PathLike], channels: int) -> list[ImageSource]:
    """The cases named on a command line for a model with ``channels`` inputs: each path is a case when
    ``channels`` is 1; otherwise a 4D file is a case and the other files are grouped by their ``_XXXX`` channel
    suffix (:func:`group_channels`), in the order their channel 0 files were given.

    Raises:
        VolumeError: a channel file is missing or extra (naming it).
    """
    if channels <= 1:
        return [str(p) for p in inputs]
    whole = [str(p) for p in inputs if Path(p).is_file() and read_header(p).ndim == 4]
    grouped = dict(group_channels([Path(p) for p in inputs if str(p) not in whole], channels))
    by_first = {image[0]: image for image in grouped.values()}
    return [p if p in whole else by_first[p] for p in map(str, inputs) if p in whole or p in by_first]
