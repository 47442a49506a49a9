"""What ``medseg infer`` writes beside the masks (class probabilities), and the guard that no output replaces an input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.io.channels import ImageSource, case_name, channel_paths, source_key
from medseg.io.volumes import Geometry, VolumeError


def save_probabilities(path: Path, probabilities: Sequence[np.ndarray], geometry: Geometry, names: Mapping[int, str]) -> Path:
    """``<stem>_probabilities.npz``: ``probabilities`` float16 ``(C, i, j, k)`` on the input grid, its ``ijk_to_lps`` and label names."""
    from shared.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            probabilities=np.stack(probabilities),
            ijk_to_lps=geometry.ijk_to_lps,
            shape=np.asarray(geometry.shape),
            names=np.asarray([names[k] for k in sorted(names)]),
        )
    return path


def guard_outputs(inputs: Sequence[ImageSource], output_dir: Path) -> None:
    """Raise when ``output_dir`` is an input's own folder and an export name could replace an input."""
    files = [p for image in inputs for p in channel_paths(image)]
    resolved_inputs = {p.resolve() for p in files}
    for image in inputs:
        stem = case_name(image)
        for name in (
            f"{stem}_seg.nii.gz",
            f"{stem}.seg.nrrd",
            f"{stem}_seg.nrrd",
            f"{stem}_seg.ctbl",
            f"{stem}_seg.mat",
            f"{stem}_probabilities.npz",
            f"{stem}_seg.dcm",
        ):
            if (output_dir / name).resolve() in resolved_inputs:
                raise VolumeError(
                    f"Output {output_dir / name} would overwrite the input {source_key(image)}; choose another --output directory."
                )
    out = output_dir.resolve()
    for folder in (p for p in resolved_inputs if p.is_dir()):  # a DICOM series folder: every file in it is read as a slice
        if out == folder or folder in out.parents:
            raise VolumeError(
                f"Output directory {output_dir} is inside the DICOM input folder {folder}: the masks written there would be read "
                "as slices of the series next time; choose another --output directory (its parent is fine)."
            )
