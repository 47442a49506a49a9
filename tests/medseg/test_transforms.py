"""Preprocessing: the transform chain, per-channel normalisation, mirroring, epoch-seeded patches."""

import re

import numpy as np
import pytest

from medseg.datasets.cache import make_dataset
from medseg.datasets.datalists import datalist
from medseg.io.volumes import VolumeError, write_volume
from medseg.transforms import preprocessing
from tests.medseg.conftest import OBLIQUE, random_labels


def _write(path):
    return write_volume(random_labels(), OBLIQUE, path)


def test_training_patches_and_validation_volumes(demo_dataset):
    item = datalist(demo_dataset)[0]
    patches = preprocessing((2.0, 2.0, 2.0), (-200, 300), (32, 32, 32), num_samples=3, class_ratios=[0, 0, 0, 1])(item)
    assert len(patches) == 3 and patches[0]["image"].shape == (1, 32, 32, 32)
    # class ratios [0, 0, 0, 1]: every patch is centred on the tumour, so every patch holds some
    assert all((p["label"] == 3).any() for p in patches)
    whole = preprocessing((2.0, 2.0, 2.0), (-200, 300))(item)
    assert float(whole["image"].min()) >= 0.0 and float(whole["image"].max()) <= 1.0
    np.testing.assert_allclose(np.abs(np.diag(whole["image"].affine[:3, :3].numpy())), 2.0, atol=1e-5)


def test_mr_zscore_uses_the_body_and_puts_any_background_below_it():
    from medseg.transforms import BodyZScored

    rng = np.random.default_rng(0)
    tissue = np.zeros((1, 40, 40, 40), np.float32)
    tissue[:, 10:30, 10:30, 10:30] = rng.normal(0.6, 0.1, (1, 20, 20, 20)).clip(0.2, 1)
    noisy = tissue + np.abs(rng.normal(0, 0.02, tissue.shape)).astype(np.float32) * (tissue == 0)  # background noise, no zeros
    clean_out, noisy_out = (BodyZScored()({"image": img})["image"] for img in (tissue, noisy))
    body = tissue > 0
    for out in (clean_out, noisy_out):
        assert abs(out[body].mean()) < 0.05 and abs(out[body].std() - 1) < 0.05  # statistics of the body only
        assert out[~body].max() < out[body].min()  # the background, zero or noise, lies below every tissue voxel
    # MONAI's nonzero z-score leaves the zero background at 0: the body's mean, inside the tissue range
    from monai.transforms import NormalizeIntensity

    monai_out = np.asarray(NormalizeIntensity(nonzero=True)(tissue))
    assert monai_out[body].min() < monai_out[~body].max() == 0.0


@pytest.mark.parametrize(("normalization", "window"), [("minmax", (-200, 300)), ("minmax", None), ("zscore", None)])
def test_one_channel_preprocessing_is_the_single_modality_chain(demo_dataset, normalization, window):
    """The per-channel chain, given one channel, gives exactly what the measured single-modality recipes were chosen
    with: MinMaxd then the crop above the window's floor (CT), or the crop above Otsu then the body z-score (MR)."""
    from monai import transforms as T

    from medseg.io.reader import LoadVolumed
    from medseg.transforms import AboveOtsu, BodyZScored
    from shared.transforms import MinMaxd

    item = datalist(demo_dataset)[0]
    keys = ["image", "label"]
    steps = [LoadVolumed("image"), LoadVolumed("label"), T.EnsureChannelFirstd(keys=keys, channel_dim="no_channel")]
    steps += [
        T.Orientationd(keys=keys, axcodes="RAS", labels=None),
        T.Spacingd(keys=keys, pixdim=(2, 2, 2), mode=("bilinear", "nearest"), dtype=np.float32),
    ]
    if normalization == "minmax":
        lo, hi = window or (None, None)
        steps += [
            MinMaxd(keys="image", input_min=lo, input_max=hi),
            T.CropForegroundd(keys=keys, source_key="image", margin=2, allow_smaller=True),
        ]
    else:
        steps += [
            T.CropForegroundd(keys=keys, source_key="image", select_fn=AboveOtsu(), margin=2, allow_smaller=True),
            BodyZScored("image"),
        ]
    reference = T.Compose(steps)(item)
    ours = preprocessing((2, 2, 2), window, normalization=normalization)(item)
    for key in keys:
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(reference[key]))
        np.testing.assert_allclose(np.asarray(ours[key].affine), np.asarray(reference[key].affine))


def test_each_channel_is_normalised_on_its_own(tmp_path):
    """A CT channel (window) and an MR channel (z-score) of one case, on a RAS 1 mm grid (no resampling): each gets
    its own scheme, with known answers."""
    from medseg.io.volumes import Geometry

    grid = Geometry((20, 18, 12), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # RAS
    rng = np.random.default_rng(0)
    inside = np.zeros(grid.shape, bool)
    inside[4:16, 3:15, 2:10] = True
    ct = np.where(inside, 100.0, -1000.0)
    mr = np.where(inside, 400.0 + rng.normal(0, 20, grid.shape), 0.0)
    files = [str(write_volume(a.astype(np.float32), grid, tmp_path / f"c_{n:04d}.nii.gz")) for n, a in enumerate((ct, mr))]
    out = preprocessing((1, 1, 1), [(-200, 300), None], with_label=False, normalization=["minmax", "zscore"])({"image": files})
    image = np.asarray(out["image"])
    assert image.shape == (2, 16, 16, 12)  # the body (12 x 12 x 8) and a 2-voxel margin, clipped at the grid's edge
    body = np.zeros(image.shape[1:], bool)
    body[2:14, 2:14, 2:10] = True
    np.testing.assert_allclose(image[0][body], 0.6, atol=1e-6)  # (100 + 200) / 500
    np.testing.assert_allclose(image[0][~body], 0.0, atol=1e-6)
    assert abs(image[1][body].mean()) < 1e-4 and abs(image[1][body].std() - 1) < 1e-4 and image[1][~body].max() < -5
    from shared.errors import unwrap

    with pytest.raises(RuntimeError) as caught:  # MONAI wraps a transform's error: "applying transform ..."
        preprocessing((1, 1, 1), None, with_label=False, normalization=["zscore"] * 3)({"image": files})
    assert isinstance(unwrap(caught.value), VolumeError)
    assert re.search(r"c_0000\.nii\.gz: 2 channel\(s\), but the bundle normalises 3", str(unwrap(caught.value)))


def test_mirror_augmentation_flips_image_and_label_together():
    """``mirror_axes``: patches flipped along the axes (p = 0.5 each), the label with its image; none by default."""
    plain = preprocessing((2, 2, 2), (-200, 300), roi_size=(32, 32, 32), num_samples=1)
    mirrored = preprocessing((2, 2, 2), (-200, 300), roi_size=(32, 32, 32), num_samples=1, mirror_axes=(0,))
    assert not any(type(t).__name__ == "RandFlipd" for t in plain.transforms)
    flips = [t for t in mirrored.transforms if type(t).__name__ == "RandFlipd"]
    assert len(flips) == 1 and flips[0].flipper.spatial_axis == 0
    flips[0].set_random_state(0)
    seen = set()
    for _ in range(8):
        out = flips[0](dict(image=np.arange(8.0).reshape(1, 2, 2, 2), label=np.arange(8).reshape(1, 2, 2, 2)))
        assert np.array_equal(np.asarray(out["image"]), np.asarray(out["label"]))
        seen.add(float(np.asarray(out["image"])[0, 0, 0, 0]))
    assert seen == {0.0, 4.0}  # flipped along x in some draws, not in others


@pytest.mark.parametrize(
    ("normalization", "window", "message"),
    [
        ("gamma", None, r"normalization='gamma' is invalid"),
        (["zscore", "histogram"], None, r"normalization=\['zscore', 'histogram'\] is invalid"),
        ("minmax", [(-200, 300, 7)], r"window=\[\(-200, 300, 7\)\] is invalid"),
        (["minmax", "zscore", "zscore"], [(-200, 300), None], r"normalization lists 3 channels but window lists 2"),
    ],
)
def test_channel_recipes_that_cannot_be_applied_are_refused(normalization, window, message):
    from medseg.transforms import ChannelRecipe

    with pytest.raises(ValueError, match=message):
        ChannelRecipe(normalization, window)


def test_training_patches_are_drawn_anew_each_epoch_in_persistent_workers(demo_dataset):
    """medseg's training dataset (MONAI CacheDataset + class-balanced patch sampling) with 2 persistent workers:
    epoch 2's patches differ from epoch 1's, and equal what one process draws."""
    from tests.shared.test_data import epoch_draws

    items = datalist(demo_dataset)  # 4 cases: 2 batches per epoch, one for each worker
    transform = preprocessing((4.0, 4.0, 4.0), (-200, 300), (16, 16, 16), num_samples=2, class_ratios=[1, 1, 1, 1])
    data = make_dataset(items, transform, "ram", pixdim=(4.0, 4.0, 4.0))
    sums = lambda run: [[round(float(b["image"][i].sum()), 3) for b in epoch for i in range(len(b["image"]))] for epoch in run]
    two = sums(epoch_draws(data, workers=2))
    assert two[0] != two[1]
    assert two == sums(epoch_draws(data, workers=0))


def test_array_and_dictionary_transforms_are_monai_pairs_that_agree():
    """Each dictionary transform is a MONAI ``MapTransform`` over its array twin, and both give the same voxels."""
    import torch
    from monai.transforms import MapTransform, Transform

    from medseg.transforms import BodyZScore, BodyZScored, ChannelNormalize, ChannelNormalized, ChannelRecipe

    rng = np.random.default_rng(0)
    image = torch.as_tensor(np.stack([rng.normal(100, 20, (8, 8, 8)), rng.normal(0, 5, (8, 8, 8))]).astype(np.float32))
    recipe = ChannelRecipe(["minmax", "zscore"], [(0.0, 200.0), None])
    for array, mapped in ((ChannelNormalize(recipe, "minmax"), ChannelNormalized(recipe, "minmax")), (BodyZScore(), BodyZScored())):
        assert isinstance(array, Transform) and isinstance(mapped, MapTransform)
        expected = array(image)
        out = mapped({"image": image, "label": "untouched"})
        torch.testing.assert_close(out["image"], expected)
        assert out["label"] == "untouched"
    minmax = ChannelNormalize(recipe, "minmax")(image)
    assert float(minmax[0].min()) >= 0.0 and float(minmax[0].max()) <= 1.0  # channel 0 rescaled into its window
    torch.testing.assert_close(minmax[1], image[1])  # the z-score channel is left to its own step


def _air_and_body(rng):
    """``(image, label, body)`` ``(1, 40, 40, 40)``: air (-1000) around a ball of body tissue (radius 9 voxels, 20-40 HU)
    holding an organ (label 1, 100 HU), and a label-2 blob drawn in the air (no body there)."""
    grid = np.stack(np.meshgrid(*[np.arange(40)] * 3, indexing="ij"))
    body = (((grid - 20) ** 2).sum(0) <= 81)[None]
    image = np.where(body, rng.uniform(20, 40, body.shape), -1000.0).astype(np.float32)
    label = np.zeros((1, 40, 40, 40), np.uint8)
    image[:, 17:23, 17:23, 17:23], label[:, 17:23, 17:23, 17:23] = 100.0, 1
    label[:, 1:4, 1:4, 1:4] = 2
    return image, label, body


def test_centres_in_body_keep_background_centres_out_of_the_air():
    from medseg.transforms import BodyClassIndicesd, ChannelRecipe

    image, label, body = _air_and_body(np.random.default_rng(0))
    normalised = np.clip((image - 10.0) / 90.0, 0, 1)  # the min-max window (10, 100): air at the floor, body above it
    indices = BodyClassIndicesd(ChannelRecipe("minmax", (10, 100)), 3)({"image": normalised, "label": label})[BodyClassIndicesd.KEY]
    background = np.asarray(indices[0])
    assert len(background) == body.sum() - 6**3  # background centres: the body around the organ, none of the air
    assert body.reshape(-1)[background].all()
    assert len(indices[1]) == 6**3
    assert len(indices[2]) == 27  # a label with no voxel in the body keeps all of its voxels


def test_centres_are_at_most_per_class_spread_over_the_label():
    from medseg.transforms import BodyClassIndicesd, ChannelRecipe

    step = BodyClassIndicesd(ChannelRecipe("minmax", (0, 1)), 1)
    label, image = np.zeros((1, 50, 60, 200), np.uint8), np.ones((1, 50, 60, 200), np.float32)
    (indices,) = step({"image": image, "label": label})[BodyClassIndicesd.KEY]
    coords = np.stack(np.unravel_index(np.asarray(indices), label.shape[1:]), -1)
    assert len(np.unique(np.asarray(indices))) == BodyClassIndicesd.PER_CLASS
    assert [len(np.unique(c)) for c in coords.T] == [50, 60, 200]  # every row, column and slice holds centres


@pytest.mark.parametrize("centres_in_body", [False, True])
def test_training_patches_centred_in_the_body_only_with_the_option(tmp_path, centres_in_body):
    image, label, _ = _air_and_body(np.random.default_rng(1))
    from medseg.io.volumes import Geometry

    geometry = Geometry((40, 40, 40), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    item = {
        "image": str(write_volume(image[0].astype(np.int16), geometry, tmp_path / "image.nii.gz")),
        "label": str(write_volume(label[0], geometry, tmp_path / "label.nii.gz")),
    }
    chain = preprocessing((2, 2, 2), (10, 100), (3, 3, 3), num_samples=40, class_ratios=[1, 0, 0], centres_in_body=centres_in_body)
    chain.set_random_state(0)
    centres = [float(p["image"][0, 1, 1, 1]) for p in chain(item)]  # background patches: is the centre voxel air?
    in_air = sum(c == 0.0 for c in centres)  # the cropped volume's background is about 70% air (a ball in its box)
    assert (in_air == 0) if centres_in_body else (in_air > 15)


def test_centres_in_body_leave_mr_inputs_alone():
    """Only min-max (CT) inputs get body-centred patches: z-score (MR) channels, alone or with a CT channel, centre
    anywhere (on the MNI152 brain the Otsu body kept background patches off the tissue around the brain)."""

    def steps(normalization, window):
        chain = preprocessing((2, 2, 2), window, (16, 16, 16), class_ratios=[1, 1], normalization=normalization, centres_in_body=True)
        return [type(t).__name__ for t in chain.transforms]

    assert "BodyClassIndicesd" in steps("minmax", (0, 100))
    assert "BodyClassIndicesd" not in steps("zscore", None)
    assert "BodyClassIndicesd" not in steps(["zscore", "minmax"], [None, (0, 100)])
