"""The training patch's augmentations: nnU-Net's intensity ones (with SciPy's blur) and an MR scan's gain."""

import numpy as np
import pytest

from medseg.datasets.datalists import datalist
from medseg.transforms import preprocessing


def _changed_patches(item, chains, seeds, same_keys=False):
    """How many patches the second chain changed against the first on the same seeds; labels must not change."""
    changed = 0
    for seed in range(seeds):
        plain, augmented = (chain.set_random_state(seed)(dict(item)) for chain in chains)
        for p, a in zip(plain, augmented):
            np.testing.assert_array_equal(np.asarray(p["label"]), np.asarray(a["label"]))
            assert a["image"].shape == p["image"].shape and np.isfinite(np.asarray(a["image"])).all()
            assert set(a) == set(p) or not same_keys
            changed += not np.allclose(np.asarray(p["image"]), np.asarray(a["image"]))
    return changed


def test_intensity_augmentation_changes_images_only_and_keeps_every_patch_finite(demo_dataset):
    """``intensity_augmentation``: nnU-Net's intensity transforms after the crops; the same seed draws the same patches
    and labels with and without them, and some images (not all: each transform has its probability) change."""
    item = datalist(demo_dataset)[0]
    chains = [
        preprocessing((2, 2, 2), (-200, 300), (32, 32, 32), num_samples=4, class_ratios=[1, 1, 1, 1], intensity_augmentation=on)
        for on in (False, True)
    ]
    changed = _changed_patches(item, chains, seeds=5)
    assert 0 < changed < 20  # P(no transform fires) = 0.9 x 0.8 x 0.85^2 x 0.75 x 0.9 x 0.7 = 0.22 a patch


def test_gaussian_blur_is_scipys_filter_at_the_drawn_sigma_on_each_channel():
    import torch
    from monai.data import MetaTensor
    from scipy import ndimage

    from medseg.patch_augmentation import RandGaussianBlurd

    image = MetaTensor(torch.rand(2, 12, 10, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    blur = RandGaussianBlurd("image", sigma=(0.5, 1.0), prob=1.0)
    blur.set_random_state(3)
    out = blur({"image": image, "label": "untouched"})
    assert 0.5 <= blur.sigma <= 1.0 and out["label"] == "untouched"
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, image.affine)
    for c in range(2):
        expected = ndimage.gaussian_filter(image.numpy()[c], blur.sigma, mode="nearest")
        np.testing.assert_allclose(out["image"].numpy()[c], expected, rtol=1e-5, atol=1e-6)
    never = RandGaussianBlurd("image", prob=0.0)
    assert torch.equal(never({"image": image})["image"], image)


def test_scan_gain_is_a_gain_on_the_raw_scan_seen_through_its_own_z_score():
    """``RandScanGaind`` after a recorded z-score: a patch becomes exactly what the scan's z-score makes of the raw
    patch times the drawn gain; the min-max (CT) channel, the cached input and the label are untouched."""
    import torch

    from medseg.patch_augmentation import RandScanGaind
    from medseg.transforms import BodyZScore, ChannelNormalized, ChannelRecipe

    rng = np.random.default_rng(0)
    mr = np.zeros((20, 20, 20), np.float32)
    mr[4:16, 4:16, 4:16] = 100 + rng.normal(0, 5, (12, 12, 12))
    ct = rng.uniform(-100, 200, (20, 20, 20)).astype(np.float32)
    raw = torch.as_tensor(np.stack([mr, ct]))
    recipe = ChannelRecipe(["zscore", "minmax"], [None, (-100, 200)])
    normalised = ChannelNormalized(recipe, "zscore", record_raw_zero=True)({"image": raw, "label": "kept"})
    mean, sd = BodyZScore.stats(raw[:1])
    np.testing.assert_allclose(normalised["image_raw_zero"], [-mean / sd, np.nan], rtol=1e-6)
    patch = {**normalised, "image": normalised["image"][:, 2:10, 2:10, 2:10]}  # a view, as a crop gives
    before = normalised["image"].clone()
    gain = RandScanGaind("image", gains=(0.6, 1.4), prob=1.0)
    gain.set_random_state(1)
    out = gain(patch)
    g = float(gain.gain[0])
    assert 0.6 <= g <= 1.4 and g != 1.0 and "image_raw_zero" not in out and out["label"] == "kept"
    expected = (g * raw[0, 2:10, 2:10, 2:10].double() - mean) / sd
    np.testing.assert_allclose(out["image"][0].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert torch.equal(out["image"][1], before[1, 2:10, 2:10, 2:10])
    assert torch.equal(normalised["image"], before)


def test_scan_gain_augmentation_changes_mr_patches_only(demo_dataset):
    """``scan_gain_augmentation``: on a z-scored scan some patches change (p 0.5) and none of the labels; on a CT
    recipe (no raw zero to scale about) every patch is the same as without it; a chain that never recorded the raw
    zero is refused by name."""
    from medseg.patch_augmentation import RandScanGaind

    item = datalist(demo_dataset)[0]
    for normalization, expect_changes in (("zscore", True), ("minmax", False)):
        window = None if normalization == "zscore" else (-200, 300)
        chains = [
            preprocessing((2, 2, 2), window, (32, 32, 32), num_samples=4, normalization=normalization, scan_gain_augmentation=on)
            for on in (False, True)
        ]
        changed = _changed_patches(item, chains, seeds=3, same_keys=True)
        assert (0 < changed < 12) if expect_changes else changed == 0
    with pytest.raises(KeyError, match="no 'image_raw_zero'; normalise with ChannelNormalized"):
        RandScanGaind("image", prob=1.0)({"image": np.zeros((1, 2, 2, 2))})
