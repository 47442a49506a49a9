import numpy as np
import pytest

from medseg.datasets.datalists import names_from_channel_def
from medseg.datasets.splits import split_cases
from medseg.evaluation.report import pair_predictions
from medseg.io.volumes import VolumeError, write_volume
from tests.medseg.conftest import OBLIQUE, random_labels


def test_split_is_deterministic_and_disjoint(demo_dataset):
    train, val = split_cases(demo_dataset, 0.25, seed=1)
    again_train, again_val = split_cases(demo_dataset, 0.25, seed=1)
    assert (train, val) == (again_train, again_val)
    assert len(val) == 1 and len(train) == 3 and not {v["image"] for v in val} & {t["image"] for t in train}


def test_split_refuses_a_dataset_with_errors(tmp_path):
    write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "imagesTr" / "a.nii.gz")
    write_volume(np.full(OBLIQUE.shape, 9, np.uint8), OBLIQUE, tmp_path / "labelsTr" / "a.nii.gz")
    write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "imagesTr" / "b.nii.gz")
    write_volume(random_labels(), OBLIQUE, tmp_path / "labelsTr" / "b.nii.gz")
    with pytest.raises(VolumeError, match=r"failed validation \(1 errors\):\nERROR .*labelsTr/a\.nii\.gz: label values \[9\]"):
        split_cases(tmp_path, labels=[0, 1, 2, 3])
    with pytest.raises(VolumeError, match="need at least 2"):
        split_cases(tmp_path / "imagesTr" / "b.nii.gz", labels=[0, 1, 2, 3], check=False)


def test_predictions_must_have_references(tmp_path):
    write_volume(random_labels(), OBLIQUE, tmp_path / "pred" / "x_seg.nii.gz")
    write_volume(random_labels(), OBLIQUE, tmp_path / "ref" / "y.nii.gz")
    with pytest.raises(VolumeError, match=r"Predictions without a reference in .*ref: \['x'\]"):
        pair_predictions(tmp_path / "pred", tmp_path / "ref")


def test_channel_def_keys_become_ints_and_write_checks_shape(tmp_path):
    assert names_from_channel_def({"0": "background", "1": "liver"}) == {0: "background", 1: "liver"}
    with pytest.raises(VolumeError, match=r"array shape \(2, 2, 2\) does not match the geometry \(20, 18, 12\)"):
        write_volume(np.zeros((2, 2, 2)), OBLIQUE, tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists()


def test_dataset_json_validation_list_is_used(tmp_path, demo_dataset):
    import json
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(demo_dataset, copy)
    description = json.loads((copy / "dataset.json").read_text(encoding="utf-8"))
    description["validation"] = description["test"]
    (copy / "dataset.json").write_text(json.dumps(description))
    train, val = split_cases(copy)
    assert len(train) == 4 and [v["image"].split("/")[-1] for v in val] == ["case_004.nii.gz", "case_005.nrrd"]
