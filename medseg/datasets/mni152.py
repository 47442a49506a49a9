"""A real-MRI dataset from the ``nilearn`` wheel: the MNI152 T1 template split into hemispheres.

The ICBM 2009a MNI152 T1 template and its grey- and white-matter probability maps ship inside the
``nilearn`` wheel (nothing is downloaded). :func:`make_hemisphere_dataset` turns them into a
Decathlon-style dataset for a held-out test that a network cannot memorise: it trains on the left
hemisphere (as is, and mirrored so it also sees right-hemisphere anatomy), validates on a copy of
the left one as another scanner might show it (bias field, gain, noise), and is tested on the right
hemisphere it never saw (plain and as such a variant). Labels are the argmax over
(rest, grey, white) of the probability maps. Tutorial 3 and ``benchmarks/medseg_recipe.py`` use it.

:func:`make_structures_dataset` is the same split with a harder label map: the grey matter divided by position
(:func:`structure_labels`) into deep grey, cerebellum and four cortical regions beside the white matter, so that
structures differ in size by 20x and a patch must see the surrounding anatomy to tell which region it is in
(``benchmarks/medseg_budget.py --task mni-structures``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.io import atomic_write_json

LABELS = {"background": 0, "grey_matter": 1, "white_matter": 2}  # nnU-Net v2 order (name -> value)
COLOURS = {"1": [0.55, 0.55, 0.85], "2": [0.95, 0.95, 0.75]}
STRUCTURE_LABELS = {
    "background": 0,
    "white_matter": 1,
    "deep_grey": 2,
    "cerebellum": 3,
    "occipital": 4,
    "temporal": 5,
    "frontal": 6,
    "parietal": 7,
}
STRUCTURE_COLOURS = {
    "1": [0.95, 0.95, 0.75],
    "2": [0.85, 0.30, 0.30],
    "3": [0.55, 0.80, 0.45],
    "4": [0.45, 0.55, 0.90],
    "5": [0.95, 0.70, 0.30],
    "6": [0.80, 0.50, 0.80],
    "7": [0.40, 0.80, 0.80],
}
#: distance (mm) from the CSF outside the brain beyond which grey matter near the centre is deep grey (the caudate and
#: putamen at 2 mm: the cortex, the insula and the medial cortex all touch sulci that open to the outside)
DEEP_GREY_DEPTH_MM = 12.0
#: name, hemisphere, mirrored, scanner-variant seed, dataset.json list
CASES = (
    ("left", "left", False, None, "training"),
    ("left_mirrored", "left", True, 1, "training"),
    ("left_variant", "left", False, 2, "validation"),
    ("right", "right", False, None, "test"),
    ("right_variant", "right", False, 3, "test"),
)


def scanner_variant(data: np.ndarray, seed: int, parts: tuple[str, ...] = ("bias", "gain", "noise")) -> np.ndarray:
    """The same anatomy as another scan might show it: smooth linear bias field (+-15% per axis), gain 0.8-1.2, noise
    (sd 0.02; the T1 is 0-1, grey matter 0.65 +- 0.07, white 0.84 +- 0.04). ``parts``: which of the three to apply (the
    same ``seed`` draws the same field, gain and noise whichever are applied), to tell what each costs a model."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in data.shape], indexing="ij")
    bias = 1 + sum(rng.uniform(-0.15, 0.15) * g for g in grid)
    gain, noise = rng.uniform(0.8, 1.2), rng.normal(0, 0.02, data.shape)
    out = data * (bias if "bias" in parts else 1) * (gain if "gain" in parts else 1)
    return np.clip(out + (noise if "noise" in parts else 0), 0, None)


def template_and_labels(resolution: int = 2) -> tuple[object, np.ndarray]:
    """``(T1 nibabel image, uint8 labels)`` on the template's RAS grid (``resolution`` 1 or 2 mm)."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=resolution)
    grey = datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    white = datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    labels = np.argmax(np.stack([1 - grey - white, grey, white]), axis=0).astype(np.uint8)
    return t1, labels


def structure_labels(labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Grey/white labels (:data:`LABELS`) -> :data:`STRUCTURE_LABELS`: grey matter divided by MNI position (mm).

    In this order, each taking the grey voxels left: deep grey (deeper than :data:`DEEP_GREY_DEPTH_MM` from the
    outside CSF, |x| < 35, -45 < y < 30, -25 < z < 30), cerebellum (z < -20 and y < -40, or the brainstem's |x| < 15,
    y < -10), occipital (y < -70), temporal (z < -5, y < 15), frontal (y >= -15), parietal (the rest). The planes are
    coarse lobe boundaries, not an atlas: what matters here is that each region is told by where it lies.
    """
    from scipy import ndimage

    x, y, z = (affine[:3, :3] @ np.indices(labels.shape).reshape(3, -1) + affine[:3, 3:]).reshape(3, *labels.shape)
    background, _ = ndimage.label(labels == 0)
    outside = background == background[0, 0, 0]  # the corner is outside the head: CSF connected to it is outside CSF
    depth = ndimage.distance_transform_edt(~outside, sampling=np.linalg.norm(affine[:3, :3], axis=0))
    regions = {
        "deep_grey": (depth > DEEP_GREY_DEPTH_MM) & (np.abs(x) < 35) & (y > -45) & (y < 30) & (z > -25) & (z < 30),
        "cerebellum": (z < -20) & ((y < -40) | ((np.abs(x) < 15) & (y < -10))),
        "occipital": y < -70,
        "temporal": (z < -5) & (y < 15),
        "frontal": y >= -15,
        "parietal": np.ones(labels.shape, dtype=bool),
    }
    out = np.where(labels == LABELS["white_matter"], STRUCTURE_LABELS["white_matter"], 0).astype(np.uint8)
    left = labels == LABELS["grey_matter"]
    for name, where in regions.items():
        out[left & where] = STRUCTURE_LABELS[name]
        left &= ~where
    return out


def make_hemisphere_dataset(out: str | Path, resolution: int = 2) -> Path:
    """Write the five hemisphere cases (:data:`CASES`) and ``dataset.json`` under ``out``; returns its path.

    The left hemisphere is x < 0 mm (the first half of the RAS voxel columns); ``img.slicer`` keeps
    each half's affine, so the halves stay at their true positions in scanner space.
    """
    t1, labels = template_and_labels(resolution)
    return write_hemispheres(out, t1, labels, "MNI152 hemispheres", LABELS, COLOURS)


def make_structures_dataset(out: str | Path, resolution: int = 2) -> Path:
    """:func:`make_hemisphere_dataset` with the grey matter divided into regions (:func:`structure_labels`)."""
    t1, labels = template_and_labels(resolution)
    parts = structure_labels(labels, t1.affine)
    return write_hemispheres(out, t1, parts, "MNI152 hemisphere structures", STRUCTURE_LABELS, STRUCTURE_COLOURS)


def write_hemispheres(
    out: str | Path, t1: object, labels: np.ndarray, name: str, names: dict[str, int], colours: dict[str, list[float]]
) -> Path:
    """The cases of :data:`CASES` cut from ``t1`` and ``labels`` (on its grid), and ``dataset.json``; its path."""
    import nibabel as nib

    out = Path(out)
    label_image = nib.Nifti1Image(labels, t1.affine)
    middle = int(np.ceil((np.linalg.inv(t1.affine) @ [0, 0, 0, 1])[0]))  # first voxel column with x >= 0 mm
    halves = {"left": slice(0, middle), "right": slice(middle, None)}
    lists: dict[str, list] = {"training": [], "validation": [], "test": []}
    for name, hemisphere, mirrored, seed, listed in CASES:
        split = "Ts" if listed == "test" else "Tr"
        image, label = t1.slicer[halves[hemisphere]], label_image.slicer[halves[hemisphere]]
        data, label_data = image.get_fdata(), np.asarray(label.dataobj)
        if mirrored:  # a left hemisphere flipped left-right looks like a right one
            data, label_data = data[::-1].copy(), label_data[::-1].copy()
        if seed is not None:
            data = scanner_variant(data, seed)
        for folder, array, affine in (
            (f"images{split}", data.astype(np.float32), image.affine),
            (f"labels{split}", label_data, label.affine),
        ):
            (out / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), out / folder / f"{name}.nii.gz")
        lists[listed].append({"image": f"./images{split}/{name}.nii.gz", "label": f"./labels{split}/{name}.nii.gz"})
    description = {
        "name": name,
        "tensorImageSize": "3D",
        "modality": {"0": "T1"},
        "labels": names,
        "colors": colours,
        **lists,
    }
    return atomic_write_json(out / "dataset.json", description)
