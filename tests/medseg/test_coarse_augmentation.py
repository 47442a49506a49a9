"""The cascade augmentation: the coarse stage's probabilities perturbed by grey morphology, kept at most 1 in sum."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.coarse_augmentation import OPERATORS, RandCoarseMorphologyd, dilate, erode
from medseg.io.volumes import Geometry, write_volume
from medseg.transforms import preprocessing


@pytest.mark.parametrize("radius", [1, 3])
def test_dilation_and_erosion_are_scipys_grey_morphology_by_a_cube(radius):
    volume = np.random.default_rng(radius).random((9, 10, 11), dtype=np.float32)
    size = (2 * radius + 1,) * 3
    cube = np.ones(size, bool)  # grey morphology by a flat footprint: the extreme over the cube around each voxel
    np.testing.assert_array_equal(dilate(volume, radius), ndimage.grey_dilation(volume, footprint=cube, mode="nearest"))
    np.testing.assert_array_equal(erode(volume, radius), ndimage.grey_erosion(volume, footprint=cube, mode="nearest"))
    assert dilate(volume, radius)[radius, radius, radius] == volume[: 2 * radius + 1, : 2 * radius + 1, : 2 * radius + 1].max()


def test_a_dilated_point_is_a_cube_and_an_opened_point_is_gone():
    point = np.zeros((7, 7, 7), np.float32)
    point[3, 3, 3] = 1.0
    assert int(OPERATORS["dilation"](point, 2).sum()) == 5**3 and float(OPERATORS["dilation"](point, 2)[1:6, 1:6, 1:6].min()) == 1.0
    assert float(OPERATORS["opening"](point, 1).max()) == 0.0
    np.testing.assert_array_equal(OPERATORS["closing"](point, 1), point)


def _patch(seed: int, images: int = 1, labels: int = 3) -> torch.Tensor:
    """(images + labels, 12, 12, 12): image channels, then a softmax's foreground probabilities (sum <= 1 per voxel)."""
    generator = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(labels + 1, 12, 12, 12, generator=generator)
    return torch.cat([torch.randn(images, 12, 12, 12, generator=generator), torch.softmax(logits, 0)[1:]])


@pytest.mark.parametrize("seed", range(6))
def test_perturbed_probabilities_stay_probabilities_and_images_pass_unchanged(seed):
    patch = _patch(seed)
    given = patch.clone()
    transform = RandCoarseMorphologyd("image", channels=3, prob=1.0)
    transform.set_random_state(seed)
    out = transform({"image": patch})["image"]
    assert torch.equal(patch, given)  # the input (a crop may be a view of the cached volume) is not written to
    assert torch.equal(out[0], patch[0])
    coarse = out[1:]
    assert float(coarse.min()) >= 0.0 and float(coarse.max()) <= 1.0
    assert float(coarse.sum(0).max()) <= 1.0 + 1e-5  # a voxel one label gains, the others lose
    assert sorted(c for c, _, _ in transform.steps) == [0, 1, 2]  # every label, once
    assert not torch.allclose(coarse, patch[1:])


def test_the_last_operator_decides_its_channel():
    patch = _patch(7, labels=1)  # one coarse channel: nothing else scales it, so it is exactly its operator's output
    transform = RandCoarseMorphologyd("image", channels=1, prob=1.0)
    transform.set_random_state(2)
    out = transform({"image": patch})["image"]
    ((channel, name, radius),) = transform.steps
    assert channel == 0
    torch.testing.assert_close(out[1], torch.as_tensor(OPERATORS[name](patch[1].numpy(), radius)).clamp(0, 1))


def test_without_the_draw_the_patch_is_untouched():
    patch = _patch(3)
    transform = RandCoarseMorphologyd("image", channels=3, prob=0.0)
    assert transform({"image": patch})["image"] is patch and transform.steps == []


@pytest.mark.parametrize(
    ("kwargs", "shape", "match"),
    [
        ({"channels": 0}, None, r"channels 0 .*expected channels >= 1"),
        ({"channels": 2, "radii": (0, 3)}, None, r"radii \(0, 3\).*1 <= radii\[0\]"),
        ({"channels": 4}, (4, 6, 6, 6), r"'image' has 4 channels; expected images and then 4 coarse ones"),
    ],
)
def test_bad_settings_are_refused(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        RandCoarseMorphologyd("image", prob=1.0, **kwargs)({"image": torch.zeros(shape)})


def test_the_training_chain_perturbs_only_the_coarse_channels(tmp_path):
    geometry = Geometry((20, 20, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    rng = np.random.default_rng(0)
    label = np.zeros((20, 20, 20), np.uint8)
    label[5:15, 5:15, 5:15] = 1
    image = write_volume((100 * rng.random((20, 20, 20))).astype(np.float32), geometry, tmp_path / "t1.nii.gz")
    coarse = write_volume(np.where(label == 1, 0.9, 0.0).astype(np.float32), geometry, tmp_path / "coarse.nii.gz")
    item = {"image": [str(image), str(coarse)], "label": str(write_volume(label, geometry, tmp_path / "label.nii.gz"))}
    chains = [
        preprocessing(
            (2, 2, 2),
            [None, [0.0, 1.0]],
            (8, 8, 8),
            num_samples=20,
            class_ratios=[1, 1],
            normalization="minmax",
            coarse_channels=1,
            coarse_augmentation=on,
        )
        for on in (False, True)
    ]
    plain, perturbed = (chain.set_random_state(5)(dict(item)) for chain in chains)
    assert all(torch.equal(a["image"][0], b["image"][0]) and torch.equal(a["label"], b["label"]) for a, b in zip(plain, perturbed))
    changed = sum(not torch.equal(a["image"][1], b["image"][1]) for a, b in zip(plain, perturbed))
    assert 2 <= changed <= 16  # p 0.4 of 20 patches (a patch wholly inside or outside may not change under every operator)
