"""Synthetic CT-like abdomen volumes with labels, written as a Decathlon-style dataset.

The anatomy is defined once in physical space (RAS millimetres) and sampled on each
case's own voxel grid, so cases with different spacing and orientation show the same
kind of body: air outside, soft tissue (0 HU), a liver (label 1, ~100 HU), two kidneys
(label 2, ~200 HU) and, in most cases, a hypodense liver tumour (label 3, ~35 HU), with
Gaussian noise and a smooth intensity bias. Some cases are anisotropic (1 x 1 x 3 mm)
and some are not stored in RAS order, which is what real scanners produce.

``python -m medseg make-demo-data OUT`` calls :func:`make_dataset`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from medseg.io.volumes import Geometry, write_volume
from shared.io import atomic_write_json

LABELS = {"0": "background", "1": "liver", "2": "kidney", "3": "tumour"}
#: Slicer-style colours (RGB 0-1) per label, written into dataset.json and the exports.
COLOURS = {"1": [0.86, 0.55, 0.40], "2": [0.72, 0.30, 0.27], "3": [0.95, 0.85, 0.20]}
FIELD_OF_VIEW_MM = (176.0, 144.0, 128.0)
SPACINGS = ((2.0, 2.0, 2.0), (1.6, 1.6, 2.4), (1.25, 1.25, 3.0))
# direction matrices (columns = LPS unit vector of each index axis)
ORIENTATIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "PIR": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """One case's organs in RAS mm: ellipsoid centres and radii, and the tumour (radius 0 = none)."""

    liver_centre: np.ndarray
    liver_radii: np.ndarray
    kidney_centres: tuple[np.ndarray, np.ndarray]
    kidney_radii: np.ndarray
    tumour_centre: np.ndarray
    tumour_radius: float
    offset_hu: float

    @classmethod
    def random(cls, rng: np.random.Generator, tumour: bool) -> Anatomy:
        shift = rng.uniform(-8, 8, 3)
        liver_c = np.array([-28.0, 12.0, 14.0]) + shift
        liver_r = np.array([34.0, 28.0, 24.0]) * rng.uniform(0.9, 1.1, 3)
        kidneys = (np.array([-38.0, -32.0, -24.0]) + shift, np.array([38.0, -32.0, -24.0]) + shift)
        kidney_r = np.array([11.0, 10.0, 17.0]) * rng.uniform(0.9, 1.1, 3)
        direction = rng.normal(size=3)
        tumour_c = liver_c + direction / np.linalg.norm(direction) * rng.uniform(0, 0.45) * liver_r
        return cls(liver_c, liver_r, kidneys, kidney_r, tumour_c, float(rng.uniform(7, 11)) if tumour else 0.0, float(rng.uniform(-15, 15)))


def _inside(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return (((points - centre) / radii) ** 2).sum(axis=-1) <= 1.0


def render(anatomy: Anatomy, geometry: Geometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample the anatomy on ``geometry``'s grid: ``(image int16 HU, label uint8)``, both ``[i, j, k]``."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = idx @ geometry.ras_affine[:3, :3].T + geometry.ras_affine[:3, 3]
    label = np.zeros(len(ras), dtype=np.uint8)
    image = np.full(len(ras), -1000.0)
    body = _inside(ras, np.zeros(3), np.array([82.0, 64.0, 60.0]))
    image[body] = 0.0
    liver = _inside(ras, anatomy.liver_centre, anatomy.liver_radii)
    image[liver], label[liver] = 100.0, 1
    for centre in anatomy.kidney_centres:
        kidney = _inside(ras, centre, anatomy.kidney_radii)
        image[kidney], label[kidney] = 200.0, 2
    if anatomy.tumour_radius > 0:
        tumour = _inside(ras, anatomy.tumour_centre, np.full(3, anatomy.tumour_radius)) & liver
        image[tumour], label[tumour] = 35.0, 3
    bias = 12.0 * np.sin(ras[:, 0] / 40.0) * np.cos(ras[:, 2] / 50.0)
    image = image + anatomy.offset_hu * body + bias + rng.normal(0, 18.0, len(ras))
    shape = geometry.shape
    return np.clip(image, -1024, 3071).astype(np.int16).reshape(shape), label.reshape(shape)


def case_geometry(index: int, rng: np.random.Generator) -> Geometry:
    """Grid of case ``index``: spacing and orientation cycle through :data:`SPACINGS` / :data:`ORIENTATIONS`."""
    spacing = np.asarray(SPACINGS[index % len(SPACINGS)])
    direction = list(ORIENTATIONS.values())[(index // len(SPACINGS)) % len(ORIENTATIONS)]
    shape = np.round(np.asarray(FIELD_OF_VIEW_MM) / spacing).astype(int)
    # put the field of view's centre at the physical origin (plus a little jitter)
    centre_lps = rng.uniform(-5, 5, 3)
    origin = centre_lps - direction @ (spacing * (shape - 1) / 2.0)
    return Geometry(tuple(int(s) for s in shape), tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.reshape(-1).tolist()))


def make_dataset(out: str | Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` cases (NIfTI and NRRD alternating) and ``dataset.json`` under ``out``.

    Layout: ``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``labelsTs/`` (test labels are kept for
    evaluation), ``dataset.json`` with ``labels``, ``colors``, ``training`` and ``test`` lists.
    Returns the path of ``dataset.json``.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    training, test = [], []
    for index in range(n_train + n_test):
        split = "Tr" if index < n_train else "Ts"
        suffix = ".nii.gz" if index % 2 == 0 else ".nrrd"
        geometry = case_geometry(index, rng)
        anatomy = Anatomy.random(rng, tumour=index % 4 != 3)
        image, label = render(anatomy, geometry, rng)
        name = f"case_{index:03d}{suffix}"
        write_volume(image, geometry, out / f"images{split}" / name)
        write_volume(label, geometry, out / f"labels{split}" / name)
        entry = {"image": f"./images{split}/{name}", "label": f"./labels{split}/{name}"}
        (training if split == "Tr" else test).append(entry)
    description = {
        "name": "medact synthetic abdomen",
        "description": "Synthetic CT-like volumes generated by medseg.datasets.synthetic (no patient data).",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": LABELS,
        "colors": COLOURS,
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }
    return atomic_write_json(out / "dataset.json", description)
