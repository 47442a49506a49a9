import json
import re

import numpy as np
import pytest
from monai.data import CacheDataset, Dataset, PersistentDataset

from medseg.data import datalist, label_names, make_dataset, pair_folders, preprocessing, strip_suffix
from medseg.io.volumes import VolumeError, write_volume
from tests.medseg.conftest import OBLIQUE, random_labels


def _write(path):
    return write_volume(random_labels(), OBLIQUE, path)


def test_strip_suffix():
    assert [strip_suffix(n) for n in ("a.nii.gz", "b.seg.nrrd", "c.mha", "d.mat", "e.txt")] == ["a", "b", "c", "d", "e.txt"]


def test_pairs_by_name_including_nnunet_channel_suffix(tmp_path):
    _write(tmp_path / "img" / "case1.nii.gz"), _write(tmp_path / "img" / "case2_0000.nrrd")
    _write(tmp_path / "lab" / "case1.nii.gz"), _write(tmp_path / "lab" / "case2.nrrd")
    pairs = pair_folders(tmp_path / "img", tmp_path / "lab")
    assert [(p["image"].split("/")[-1], p["label"].split("/")[-1]) for p in pairs] == [
        ("case1.nii.gz", "case1.nii.gz"),
        ("case2_0000.nrrd", "case2.nrrd"),
    ]


def test_orphans_are_all_listed(tmp_path):
    _write(tmp_path / "img" / "a.nii.gz"), _write(tmp_path / "lab" / "b.nii.gz")
    with pytest.raises(VolumeError, match=r"image a\.nii\.gz has no label in .*lab; label b\.nii\.gz has no image in .*img"):
        pair_folders(tmp_path / "img", tmp_path / "lab")


def test_datalist_sources(tmp_path, demo_dataset):
    items = datalist(demo_dataset)
    assert len(items) == 4 and all(p.startswith(str(demo_dataset)) for item in items for p in item.values())
    assert len(datalist(demo_dataset / "dataset.json", "test")) == 2
    assert len(datalist(demo_dataset.parent / demo_dataset.name)) == 4
    single = datalist(items[0]["image"])
    assert single == [{"image": items[0]["image"]}]
    with pytest.raises(VolumeError, match=r"has no 'validation' list; it has \['test', 'training'\]"):
        datalist(demo_dataset, "validation")
    with pytest.raises(FileNotFoundError, match="Dataset not found"):
        datalist(tmp_path / "nothing")
    assert label_names(demo_dataset) == {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}


def test_dataset_json_without_labels(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"training": []}))
    with pytest.raises(VolumeError, match="has no 'labels' mapping"):
        datalist(tmp_path)


def test_dataset_json_labels_in_decathlon_or_nnunet_v2_order(tmp_path, demo_dataset):
    description = json.loads((demo_dataset / "dataset.json").read_text(encoding="utf-8"))
    description["labels"] = {"background": 0, "liver": 1, "kidney": 2, "tumour": 3}  # nnU-Net v2
    (tmp_path / "dataset.json").write_text(json.dumps(description))
    assert label_names(tmp_path) == label_names(demo_dataset) == {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}
    description["labels"] = {"background": 0, "organ": [1, 2]}  # nnU-Net v2 regions
    (tmp_path / "dataset.json").write_text(json.dumps(description))
    with pytest.raises(VolumeError, match=r"dataset.json: 'labels' must map values to names .*region labels are not supported"):
        label_names(tmp_path)


def test_training_patches_and_validation_volumes(demo_dataset):
    item = datalist(demo_dataset)[0]
    patches = preprocessing((2.0, 2.0, 2.0), (-200, 300), (32, 32, 32), num_samples=3, class_ratios=[0, 0, 0, 1])(item)
    assert len(patches) == 3 and patches[0]["image"].shape == (1, 32, 32, 32)
    # class ratios [0, 0, 0, 1]: every patch is centred on the tumour, so every patch holds some
    assert all((p["label"] == 3).any() for p in patches)
    whole = preprocessing((2.0, 2.0, 2.0), (-200, 300))(item)
    assert float(whole["image"].min()) >= 0.0 and float(whole["image"].max()) <= 1.0
    np.testing.assert_allclose(np.abs(np.diag(whole["image"].affine[:3, :3].numpy())), 2.0, atol=1e-5)


def test_cache_choice_respects_the_ram_budget(tmp_path, demo_dataset):
    items = datalist(demo_dataset)
    transform = preprocessing((2.0, 2.0, 2.0))
    assert isinstance(make_dataset(items[:1], transform, "auto", ram_budget_gb=1.0), CacheDataset)
    assert isinstance(make_dataset(items, transform, "auto", ram_budget_gb=1e-6, cache_dir=tmp_path), PersistentDataset)
    uncached = make_dataset(items, transform, "auto", ram_budget_gb=1e-6)
    assert type(uncached) is Dataset
    with pytest.raises(ValueError, match="cache='disk' needs cache_dir"):
        make_dataset(items, transform, "disk")


def test_mr_zscore_uses_the_body_and_puts_any_background_below_it():
    from medseg.data import BodyZScored

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


def test_dataset_description_is_the_one_answer_to_folder_or_json(tmp_path) -> None:
    from medseg.data import dataset_description

    (tmp_path / "with").mkdir()
    (tmp_path / "with" / "dataset.json").write_text("{}")
    (tmp_path / "bare" / "imagesTr").mkdir(parents=True)
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    assert dataset_description(tmp_path / "with") == tmp_path / "with" / "dataset.json"
    assert dataset_description(tmp_path / "with" / "dataset.json") == tmp_path / "with" / "dataset.json"
    assert dataset_description(tmp_path / "other.json") == tmp_path / "other.json"  # any name, as MONAI's datalists
    assert dataset_description(tmp_path / "bare") is None and dataset_description(tmp_path / "scan.nii.gz") is None
    assert dataset_description(tmp_path / "missing") is None


@pytest.mark.parametrize(("normalization", "window"), [("minmax", (-200, 300)), ("minmax", None), ("zscore", None)])
def test_one_channel_preprocessing_is_the_single_modality_chain(demo_dataset, normalization, window):
    """The per-channel chain, given one channel, gives exactly what the measured single-modality recipes were chosen
    with: MinMaxd then the crop above the window's floor (CT), or the crop above Otsu then the body z-score (MR)."""
    from monai import transforms as T

    from medseg.data import AboveOtsu, BodyZScored
    from medseg.io.reader import LoadVolumed
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
    from medseg.data import ChannelRecipe

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
