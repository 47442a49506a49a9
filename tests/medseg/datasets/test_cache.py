"""The RAM cache: cases prepared once, then drawn from without a copy, so no augmentation may change a cached value."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.transforms import RandomizableTransform

from medseg.datasets.cache import make_dataset
from medseg.io.volumes import Geometry, write_volume
from medseg.transforms import BodyClassIndicesd, preprocessing

GEOMETRY = Geometry((40, 36, 32), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _mr_case_with_coarse_channels(folder) -> dict:
    """An MR-like image (a noisy ball of two tissues in air), 2 coarse probability channels and a 3-label map."""
    rng = np.random.default_rng(0)
    grid = np.indices(GEOMETRY.shape).astype(np.float32)
    radius = np.sqrt(sum((g - n / 2) ** 2 for g, n in zip(grid, GEOMETRY.shape)))
    label = np.where(radius < 7, 2, np.where(radius < 14, 1, 0)).astype(np.uint8)
    image = np.where(label == 2, 0.9, np.where(label == 1, 0.6, 0.0)) + rng.normal(0, 0.03, label.shape)
    paths = [write_volume(image.astype(np.float32), GEOMETRY, folder / "image.nii.gz")]
    for c in (1, 2):
        paths.append(write_volume((label == c).astype(np.float32) * 0.8, GEOMETRY, folder / f"coarse_{c}.nii.gz"))
    return {"image": [str(p) for p in paths], "label": str(write_volume(label, GEOMETRY, folder / "label.nii.gz"))}


def _cached_values(dataset) -> list[dict]:
    """Each cached case's arrays and the length of each tensor's transform record, copied."""
    out = []
    for case in dataset._cache:  # MONAI keeps the prepared cases here
        values = {}
        for key, value in case.items():
            values[key] = copy.deepcopy(value)
            if isinstance(value, torch.Tensor) and hasattr(value, "applied_operations"):
                values[f"{key}.operations"] = len(value.applied_operations)
        out.append(values)
    return out


def _assert_same(before: list[dict], after: list[dict]) -> None:
    for case_before, case_after in zip(before, after, strict=True):
        assert case_before.keys() == case_after.keys()
        for key, value in case_before.items():
            other = case_after[key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), f"cached {key} changed"
            elif isinstance(value, (list, tuple)):  # the class indices
                assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(value, other, strict=True)), key
            else:
                np.testing.assert_equal(value, other, err_msg=f"cached {key} changed")


class _DoublesInPlace(RandomizableTransform):
    """A defective augmentation: it scales the patch in place, which, through the crop's view, reaches the cache."""

    def __call__(self, data):
        data["image"].mul_(2.0)
        return data


@pytest.mark.parametrize("defective", [False, True])
def test_ram_cache_unchanged_after_draws_through_every_augmentation(tmp_path, defective):
    chain = preprocessing(
        (2.0, 2.0, 2.0),
        roi_size=(16, 16, 16),
        num_samples=2,
        class_ratios=[1, 1, 1],
        normalization=["zscore", "minmax", "minmax"],
        window=[None, (0.0, 1.0), (0.0, 1.0)],
        mirror_axes=(0, 1, 2),
        intensity_augmentation=True,
        scan_gain_augmentation=True,
        coarse_channels=2,
        coarse_augmentation=True,
    )
    if defective:
        after_crop = 1 + next(i for i, t in enumerate(chain.transforms) if type(t).__name__ == "RandCropByLabelClassesd")
        chain.transforms = [*chain.transforms[:after_crop], _DoublesInPlace(), *chain.transforms[after_crop:]]
    dataset = make_dataset([_mr_case_with_coarse_channels(tmp_path)], chain, cache="ram")
    chain.set_random_state(0)
    before = _cached_values(dataset)
    for _ in range(30):
        patches = dataset[0]
        assert len(patches) == 2 and patches[0]["image"].shape == (3, 16, 16, 16)
    if defective:  # the check sees a change: a transform that writes into its input would corrupt every later draw
        with pytest.raises(AssertionError, match="cached image changed"):
            _assert_same(before, _cached_values(dataset))
    else:
        _assert_same(before, _cached_values(dataset))


def test_mr_class_centres_found_once_and_cached(tmp_path):
    """Z-score (MR) inputs too: each label's voxels are found once (MONAI's ``ClassesToIndicesd``), and the patches
    are centred on them: with class ratios [0, 0, 1] every patch's centre voxel is label 2."""
    chain = preprocessing((2.0, 2.0, 2.0), None, (9, 9, 9), num_samples=20, class_ratios=[0, 0, 1], normalization="zscore")
    item = _mr_case_with_coarse_channels(tmp_path)
    dataset = make_dataset([{"image": item["image"][0], "label": item["label"]}], chain, cache="ram")
    (case,) = dataset._cache
    label = np.asarray(case["label"])[0]
    indices = case[BodyClassIndicesd.KEY]
    # at most 10,000 a label, evenly spread: all of the smallest label, a subset of each larger one
    assert [len(i) for i in indices] == [min(int((label == c).sum()), BodyClassIndicesd.PER_CLASS) for c in range(3)]
    for c, where in enumerate(indices):
        assert (label.reshape(-1)[np.asarray(where)] == c).all()
    dataset.transform.set_random_state(1)
    patches = dataset[0]
    assert all(int(p["label"][0, 4, 4, 4]) == 2 for p in patches)
