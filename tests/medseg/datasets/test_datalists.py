"""Datalists: Decathlon dataset.json, image/label folders, label names; and the cache choice."""

import json

import pytest
from monai.data import CacheDataset, Dataset, PersistentDataset

from medseg.datasets.cache import make_dataset
from medseg.datasets.datalists import datalist, label_names, pair_folders
from medseg.io.volumes import VolumeError, strip_suffix, write_volume
from medseg.transforms import preprocessing
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


def test_cache_choice_respects_the_ram_budget(tmp_path, demo_dataset):
    items = datalist(demo_dataset)
    transform = preprocessing((2.0, 2.0, 2.0))
    assert isinstance(make_dataset(items[:1], transform, "auto", ram_budget_gb=1.0), CacheDataset)
    assert isinstance(make_dataset(items, transform, "auto", ram_budget_gb=1e-6, cache_dir=tmp_path), PersistentDataset)
    uncached = make_dataset(items, transform, "auto", ram_budget_gb=1e-6)
    assert type(uncached) is Dataset
    with pytest.raises(ValueError, match="cache='disk' needs cache_dir"):
        make_dataset(items, transform, "disk")


def test_a_disk_cache_reused_after_the_preprocessing_changed_serves_the_new_volumes(tmp_path, demo_dataset):
    """One cache_dir, the same case, a 2 mm then a 4 mm spacing: the second reads its own volume, not the first's."""
    items = datalist(demo_dataset)[:1]
    shapes = [
        tuple(make_dataset(items, preprocessing(pixdim, with_label=False), "disk", cache_dir=tmp_path)[0]["image"].shape)
        for pixdim in ((2.0, 2.0, 2.0), (4.0, 4.0, 4.0), (2.0, 2.0, 2.0))
    ]
    assert shapes[0] == shapes[2] and shapes[1] != shapes[0], shapes
    assert len(list(tmp_path.glob("*.pt"))) == 2  # one entry per preprocessing, the 2 mm one reused


def test_dataset_description_is_the_one_answer_to_folder_or_json(tmp_path) -> None:
    from medseg.datasets.datalists import dataset_description

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
