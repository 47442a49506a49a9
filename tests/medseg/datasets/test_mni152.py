"""The MNI152 datasets: real template voxels from the nilearn wheel, the grey matter divided by position."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medseg.datasets.mni152 import (
    LABELS,
    STRUCTURE_LABELS,
    make_structures_dataset,
    scanner_variant,
    structure_labels,
    template_and_labels,
)


@pytest.fixture(scope="module")
def template() -> tuple[np.ndarray, np.ndarray]:
    t1, labels = template_and_labels(resolution=2)
    return labels, t1.affine


def test_structures_divide_the_grey_matter_and_keep_the_white(template) -> None:
    labels, affine = template
    parts = structure_labels(labels, affine)
    grey = labels == LABELS["grey_matter"]
    assert np.array_equal(parts == STRUCTURE_LABELS["white_matter"], labels == LABELS["white_matter"])
    assert np.array_equal((parts >= STRUCTURE_LABELS["deep_grey"]), grey)  # every grey voxel in exactly one region
    counts = {name: int((parts == value).sum()) for name, value in STRUCTURE_LABELS.items() if value >= 2}
    assert min(counts.values()) > 1000, counts  # 2 mm voxels: every region at least 8 cm^3
    assert counts["deep_grey"] == min(counts.values()), counts  # the small structure the task is about


def test_regions_lie_where_the_anatomy_says(template) -> None:
    labels, affine = template
    parts = structure_labels(labels, affine)
    ijk = np.argwhere(parts > 0).T
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:]
    values = parts[tuple(ijk)]
    centre = {name: xyz[:, values == value].mean(axis=1) for name, value in STRUCTURE_LABELS.items() if value >= 2}
    assert centre["frontal"][1] > centre["parietal"][1] > centre["occipital"][1]  # front to back along y (A)
    assert centre["cerebellum"][2] < centre["temporal"][2] < centre["parietal"][2]  # low to high along z (S)
    deep = np.abs(xyz[:, values == STRUCTURE_LABELS["deep_grey"]])
    assert deep[0].mean() > 10 and abs(centre["deep_grey"][1]) < 20  # putamen/caudate: off the midline, mid-y


def test_labels_are_symmetric_left_right(template) -> None:
    """The hemispheres mirror each other, so training on the mirrored left one is training on right anatomy."""
    labels, affine = template
    parts = structure_labels(labels, affine)
    middle = int(np.ceil((np.linalg.inv(affine) @ [0, 0, 0, 1])[0]))
    width = min(middle, parts.shape[0] - middle)
    left, right = parts[middle - width : middle], parts[middle : middle + width][::-1]
    grey = (left >= 2) & (right >= 2)
    assert (left[grey] == right[grey]).mean() > 0.95  # the template itself is nearly symmetric; the planes exactly


def test_structures_dataset_is_a_hemisphere_split_with_the_region_labels(tmp_path) -> None:
    description = json.loads(make_structures_dataset(tmp_path / "parts", resolution=2).read_text())
    assert description["labels"] == STRUCTURE_LABELS
    assert set(description["colors"]) == {str(v) for v in STRUCTURE_LABELS.values() if v}
    assert [len(description[k]) for k in ("training", "validation", "test")] == [2, 1, 2]
    right = nib.load(tmp_path / "parts" / description["test"][0]["label"])
    image = nib.load(tmp_path / "parts" / description["test"][0]["image"])
    assert np.allclose(right.affine, image.affine) and right.shape == image.shape
    assert set(np.unique(np.asarray(right.dataobj))) == set(STRUCTURE_LABELS.values())
    assert (right.affine @ [0, 0, 0, 1])[0] >= 0  # the test hemisphere is the right one (x >= 0 mm)


def test_scanner_variant_applies_each_part_alone_with_the_same_draws() -> None:
    """The parts of the test hemisphere's corruption one at a time: the same seed gives the same field, gain and noise."""
    data = np.full((20, 24, 16), 0.5)
    whole = scanner_variant(data, seed=3)
    bias, gain, noise = (scanner_variant(data, seed=3, parts=(part,)) for part in ("bias", "gain", "noise"))
    assert np.array_equal(scanner_variant(data, seed=3, parts=()), data)
    assert 0.015 < np.std(noise - data) < 0.025  # noise alone: sd 0.02, no trend
    assert np.ptp(gain) == 0 and 0.4 <= gain[0, 0, 0] <= 0.6 and gain[0, 0, 0] != 0.5  # one gain 0.8-1.2 everywhere
    field = bias / data
    assert 0.55 <= field.min() < 1 < field.max() <= 1.45  # a linear field of +-15% per axis, no noise on it
    assert np.allclose(field[1:] - field[:-1], field[1, 0, 0] - field[0, 0, 0])  # linear along each axis
    assert np.allclose(whole, np.clip(bias * (gain / data) + (noise - data), 0, None))  # the parts make the whole
