"""Masks out for 3D Slicer: ``.seg.nrrd`` with named, coloured segments, and NIfTI + a colour table.

Both carry the input's exact grid (:class:`medseg.io.volumes.Geometry`), so Slicer shows them
over the original scan without any registration. Files are written atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import slicerio

from medseg.io.colours import label_colours
from medseg.io.volumes import Geometry, mask_dtype, write_volume  # mask_dtype: re-exported, its old home
from shared.io import atomic_path, atomic_write_text

FORMATS = ("nifti", "seg.nrrd", "nrrd", "mat", "dicom-seg")


def write_seg_nrrd(
    mask: np.ndarray, geometry: Geometry, path: str | Path, names: Mapping[int, str], colours: Mapping[int, Sequence[float]] | None = None
) -> Path:
    """A Slicer segmentation (one segment per foreground label, named and coloured) via ``slicerio``.

    Args:
        mask: ``[i, j, k]`` integer labels on ``geometry``'s grid.
        names: label value -> segment name (background 0 is not a segment).
        colours: label value -> RGB in [0, 1] (defaults: distinct hues).
    """
    rgb = label_colours(names, colours)
    segments = []
    for label in sorted(v for v in names if v != 0):
        present = np.nonzero(mask == label)
        extent = [int(v) for axis in present for v in (axis.min(), axis.max())] if present[0].size else [0, -1, 0, -1, 0, -1]
        segments.append(
            {
                "id": f"Segment_{label}",
                "name": names[label],
                "labelValue": int(label),
                "layer": 0,
                "color": list(rgb[label]),
                "extent": extent,
            }
        )
    segmentation = {
        "voxels": np.asarray(mask),
        "ijkToLPS": geometry.ijk_to_lps,
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
    }
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation)
    return Path(path)


def write_colour_table(path: str | Path, names: Mapping[int, str], colours: Mapping[int, Sequence[float]] | None = None) -> Path:
    """A 3D Slicer colour table (``.ctbl``: ``value name R G B A`` per line, 0-255) for a NIfTI label map."""
    rgb = label_colours(names, colours)
    lines = ["# 3D Slicer color table written by medact", f"# {len(names)} values"]
    for label in sorted(names):
        r, g, b = (0, 0, 0) if label == 0 else (round(255 * c) for c in rgb[label])
        lines.append(f"{label} {names[label].replace(' ', '_')} {r} {g} {b} {0 if label == 0 else 255}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def export_mask(
    mask: np.ndarray,
    geometry: Geometry,
    output_dir: str | Path,
    stem: str,
    names: Mapping[int, str],
    formats: Sequence[str] = ("nifti", "seg.nrrd"),
    colours: Mapping[int, Sequence[float]] | None = None,
    source: Any = None,
    algorithm: Mapping[str, str] | None = None,
    segment_codes: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``mask`` in each of ``formats``; returns the files.

    Names: ``nifti`` -> ``<stem>_seg.nii.gz`` + ``<stem>_seg.ctbl``; ``seg.nrrd`` -> ``<stem>.seg.nrrd``;
    ``nrrd`` -> ``<stem>_seg.nrrd`` (plain label map); ``mat`` -> ``<stem>_seg.mat``; ``dicom-seg`` ->
    ``<stem>_seg.dcm``, a DICOM Segmentation of the DICOM series ``source`` (:mod:`medseg.io.dicom_seg`, with the
    bundle's ``algorithm`` name and version and ``segment_codes``).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; expected some of {FORMATS}.")
    out = Path(output_dir)
    mask = np.asarray(mask).astype(mask_dtype(max(names) + 1 if names else int(mask.max()) + 1), copy=False)
    out.mkdir(parents=True, exist_ok=True)
    # all or nothing: every format is written into a private folder beside the outputs, then moved into place; a format
    # that cannot be written (a DICOM SEG of a series without a frame of reference, a full disk) leaves none of them
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        staged = _write_formats(mask, geometry, staging, stem, names, formats, colours, source, algorithm, segment_codes)
        written = []
        for path in staged:
            os.replace(path, out / path.name)
            written.append(out / path.name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_formats(
    mask: np.ndarray,
    geometry: Geometry,
    out: Path,
    stem: str,
    names: Mapping[int, str],
    formats: Sequence[str],
    colours: Mapping[int, Sequence[float]] | None,
    source: Any,
    algorithm: Mapping[str, str] | None,
    segment_codes: Mapping[str, Any] | None,
) -> list[Path]:
    written = []
    if "dicom-seg" in formats:  # first: the one most likely to be refused
        from medseg.io.dicom_seg import write_dicom_seg

        written.append(write_dicom_seg(mask, geometry, source, out / f"{stem}_seg.dcm", names, colours, algorithm, segment_codes))
    if "nifti" in formats:
        written.append(write_volume(mask, geometry, out / f"{stem}_seg.nii.gz"))
        written.append(write_colour_table(out / f"{stem}_seg.ctbl", names, colours))
    if "seg.nrrd" in formats:
        written.append(write_seg_nrrd(mask, geometry, out / f"{stem}.seg.nrrd", names, colours))
    if "nrrd" in formats:
        written.append(write_volume(mask, geometry, out / f"{stem}_seg.nrrd"))
    if "mat" in formats:
        written.append(write_volume(mask, geometry, out / f"{stem}_seg.mat"))
    order = {"_seg.nii.gz": 0, "_seg.ctbl": 1, ".seg.nrrd": 2, "_seg.nrrd": 3, "_seg.mat": 4, "_seg.dcm": 5}
    return sorted(written, key=lambda p: next(v for k, v in order.items() if p.name.endswith(k)))
