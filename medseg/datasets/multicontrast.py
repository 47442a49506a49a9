"""A synthetic two-contrast brain MR (T1 + FLAIR) in which one structure shows on the second channel only.

As oedema does on FLAIR: a lesion core (label 1) is dark on T1 and bright on FLAIR; the oedema around it
(label 2) is bright on FLAIR and, on T1, has exactly the intensity of the tissue it lies in, so no single-channel
model can see it. The oedema's extent and offset from the core vary from case to case, so its shape cannot be guessed
from the core either. Each case has its own grid (spacing, orientation), intensity scale (MR has no absolute
scale) and bias field per channel.

Written in nnU-Net v2's layout: ``imagesTr/case_000_0000.nii.gz`` (T1), ``case_000_0001.nii.gz`` (FLAIR),
``labelsTr/case_000.nii.gz``, ``imagesTs``/``labelsTs`` for held-out cases, and a ``dataset.json`` with
``channel_names`` and no case lists. :func:`single_channel_description` writes a ``dataset.json`` over the same
files that lists channel 0 only (the comparison recipe). No real multi-contrast scan ships in a package here.

``python -m medseg make-demo-data OUT --multi-contrast`` calls :func:`make_multicontrast_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.io.volumes import Geometry, write_volume
from shared.io import atomic_write_json

CHANNELS = {"0": "T1", "1": "FLAIR"}
LABELS = {"background": 0, "core": 1, "oedema": 2}
COLOURS = {"1": [0.95, 0.35, 0.25], "2": [0.95, 0.85, 0.30]}
BRAIN_RADII_MM = np.array([46.0, 56.0, 42.0])
FIELD_OF_VIEW_MM = (112.0, 132.0, 104.0)
SPACINGS = ((2.0, 2.0, 2.0), (1.8, 1.8, 2.4))
#: (T1, FLAIR) mean intensity of each tissue before the case's scale; oedema's T1 is the tissue's own
INTENSITY = {"grey": (60.0, 75.0), "white": (100.0, 60.0), "core": (30.0, 95.0), "oedema_flair": 140.0}
NOISE_SD = 6.0


def _inside(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return (((points - centre) / radii) ** 2).sum(axis=-1) <= 1.0


def _grid(index: int, rng: np.random.Generator) -> Geometry:
    spacing = np.asarray(SPACINGS[index % len(SPACINGS)])
    direction = np.eye(3) if index % 3 else np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    shape = np.round(np.asarray(FIELD_OF_VIEW_MM) / spacing).astype(int)
    origin = rng.uniform(-4, 4, 3) - direction @ (spacing * (shape - 1) / 2.0)
    return Geometry(tuple(int(s) for s in shape), tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.reshape(-1).tolist()))


def render_case(geometry: Geometry, rng: np.random.Generator, with_core: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t1, flair, label)`` on ``geometry``'s grid (float32, float32, uint8; ``[i, j, k]``); ``with_core``: a lesion
    core inside the oedema (else oedema alone, as a non-enhancing lesion)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = idx @ geometry.ras_affine[:3, :3].T + geometry.ras_affine[:3, 3]
    radii = BRAIN_RADII_MM * rng.uniform(0.92, 1.08, 3)
    brain = _inside(ras, np.zeros(3), radii)
    white = _inside(ras, np.zeros(3), radii * 0.72)
    t1, flair = np.zeros(len(ras)), np.zeros(len(ras))
    t1[brain], flair[brain] = INTENSITY["grey"]
    t1[white], flair[white] = INTENSITY["white"]
    direction = rng.normal(size=3)
    core_centre = direction / np.linalg.norm(direction) * rng.uniform(0.0, 0.45) * radii
    core_radius = rng.uniform(5.0, 9.0) if with_core else 0.0
    oedema_centre = core_centre + rng.uniform(-10.0, 10.0, 3)  # the core, when there is one, says little of where
    oedema = _inside(ras, oedema_centre, max(core_radius, 4.0) + rng.uniform(2.0, 18.0, 3)) & brain  # ... or how far
    core = _inside(ras, core_centre, np.full(3, core_radius)) & brain if with_core else np.zeros(len(ras), bool)
    label = np.zeros(len(ras), dtype=np.uint8)
    label[oedema], label[core] = 2, 1
    flair[oedema] = INTENSITY["oedema_flair"]  # T1 keeps the tissue's value: invisible there
    t1[core], flair[core] = INTENSITY["core"]
    images = []
    for channel, scale in ((t1, rng.uniform(0.8, 1.25)), (flair, rng.uniform(0.8, 1.25))):
        phase = rng.uniform(0, 2 * np.pi, 2)
        bias = 1.0 + 0.08 * np.sin(ras[:, 0] / 35.0 + phase[0]) * np.cos(ras[:, 2] / 45.0 + phase[1])
        noisy = (channel * bias + rng.normal(0, NOISE_SD, len(ras)) * brain + np.abs(rng.normal(0, 2.0, len(ras)))) * scale
        images.append(noisy.astype(np.float32).reshape(geometry.shape))
    return images[0], images[1], label.reshape(geometry.shape)


def make_multicontrast_dataset(out: str | Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` two-channel cases under ``out`` (nnU-Net v2 layout); returns ``dataset.json``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for index in range(n_train + n_test):
        split = "Tr" if index < n_train else "Ts"
        geometry = _grid(index, rng)
        t1, flair, label = render_case(geometry, rng, with_core=index % 4 != 3)
        name = f"case_{index:03d}"
        write_volume(t1, geometry, out / f"images{split}" / f"{name}_0000.nii.gz")
        write_volume(flair, geometry, out / f"images{split}" / f"{name}_0001.nii.gz")
        write_volume(label, geometry, out / f"labels{split}" / f"{name}.nii.gz")
    description = {
        "name": "medact synthetic two-contrast brain",
        "description": "Synthetic T1 + FLAIR volumes (medseg.datasets.multicontrast): the oedema shows on FLAIR only. No patient data.",
        "channel_names": CHANNELS,
        "labels": LABELS,
        "colors": COLOURS,
        "numTraining": n_train,
        "file_ending": ".nii.gz",
    }
    return atomic_write_json(out / "dataset.json", description)


def single_channel_description(dataset_dir: str | Path, out: str | Path, channel: int = 0) -> Path:
    """A Decathlon ``dataset.json`` at ``out`` listing only ``channel`` of every case of ``dataset_dir`` (same files)."""
    dataset_dir, out = Path(dataset_dir), Path(out)
    lists = {}
    for split, key in (("Tr", "training"), ("Ts", "test")):
        lists[key] = [
            {"image": str(image), "label": str(dataset_dir / f"labels{split}" / image.name.replace(f"_{channel:04d}", ""))}
            for image in sorted((dataset_dir / f"images{split}").glob(f"*_{channel:04d}.nii.gz"))
        ]
    description = {
        "name": f"medact synthetic two-contrast brain, channel {channel} only",
        "modality": {"0": CHANNELS[str(channel)]},
        "labels": {str(v): k for k, v in LABELS.items()},
        "colors": COLOURS,
        **lists,
    }
    return atomic_write_json(out, description)
