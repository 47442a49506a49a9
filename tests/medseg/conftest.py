"""Synthetic volumes with real geometry for medseg tests (generated, never downloaded)."""

import locale
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.volumes import Geometry

# an oblique, anisotropic, non-RAS grid: what a real scanner writes
ROTATION = np.array([[0.0, 0.0, -1.0], [0.8, 0.6, 0.0], [-0.6, 0.8, 0.0]]).T
OBLIQUE = Geometry((20, 18, 12), (0.8, 0.9, 2.5), (-31.5, 12.25, 88.0), tuple(ROTATION.reshape(-1)))


def random_labels(shape=(20, 18, 12), seed=0, num=4):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for value in range(1, num):
        centre = rng.integers(3, np.array(shape) - 3)
        sl = tuple(slice(c - 2, c + 3) for c in centre)
        labels[sl] = value
    return labels


def write_dicom_series(volume: np.ndarray, geometry: Geometry, folder, skip=(), offsets=None):
    """Write ``volume[i, j, k]`` as one CT DICOM file per k slice, with positions from ``geometry``
    (``offsets``: mm added to slice k's position along the stacking axis, for unevenly spaced series).

    SimpleITK's DICOM writer (GDCM) sets the process locale to "C", after which every text file
    opened without an explicit encoding in this test process would be read as ASCII; the locale
    found on entry is put back.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_dicom_slices(volume, geometry, folder, skip, offsets)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(volume: np.ndarray, geometry: Geometry, folder, skip, offsets=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    direction = geometry.direction_matrix
    orientation = "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.9.1"
    for k in range(volume.shape[2]):
        if k in skip:
            continue
        piece = sitk.GetImageFromArray(volume[:, :, k].T.astype(np.int16)[None])
        position = np.asarray(geometry.origin) + direction[:, 2] * (geometry.spacing[2] * k + (offsets[k] if offsets is not None else 0.0))
        piece.SetSpacing((geometry.spacing[0], geometry.spacing[1], 1.0))
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.9",
            "0020|000e": series_uid,
            "0020|0052": "1.2.826.0.1.3680043.2.1125.9.2",  # frame of reference (a DICOM SEG shares it)
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{geometry.spacing[1]:.6f}\\{geometry.spacing[0]:.6f}",
            "0018|0050": f"{geometry.spacing[2]:.6f}",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(piece)
    return folder


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    from medseg.datasets.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("medseg_demo"), n_train=4, n_test=2, seed=3).parent


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory):
    """A copy of the vnet_seg template with seeded, untrained weights: serving and export tests need a real network, not a good one."""
    from medact_bundles import template_dir
    from medseg.workflow import copy_with_fresh_weights

    return copy_with_fresh_weights(template_dir("vnet_seg"), tmp_path_factory.mktemp("bundle") / "vnet_seg")
