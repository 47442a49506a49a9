import json
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.cli import main
from medseg.datasets.validate import check_case, check_label_values, validate
from medseg.io.volumes import Geometry, write_volume
from tests.cli_run import run_main
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series

LABELS = [0, 1, 2, 3]


def _pair(tmp_path, name="c", image=None, label=None, label_geometry=None, suffix=".nii.gz"):
    image = random_labels().astype(np.int16) * 50 if image is None else image
    label = random_labels() if label is None else label
    ipath = write_volume(image, OBLIQUE, tmp_path / "imagesTr" / f"{name}{suffix}")
    lpath = write_volume(label, label_geometry or OBLIQUE, tmp_path / "labelsTr" / f"{name}{suffix}")
    return {"image": str(ipath), "label": str(lpath)}


def _messages(problems):
    return [str(p) for p in problems]


def test_clean_case_has_no_problem(tmp_path):
    assert check_case(_pair(tmp_path), LABELS) == []


def test_shape_and_affine_mismatch(tmp_path):
    shifted = Geometry(OBLIQUE.shape, OBLIQUE.spacing, (0.0, 0.0, 0.0), OBLIQUE.direction)
    problems = _messages(check_case(_pair(tmp_path, label_geometry=shifted), LABELS))
    assert (
        len(problems) == 1
        and problems[0].startswith("ERROR")
        and "labelsTr/c.nii.gz: geometry differs from the image c.nii.gz: origin" in problems[0]
    )
    small = Geometry((10, 18, 12), OBLIQUE.spacing, OBLIQUE.origin, OBLIQUE.direction)
    item = _pair(tmp_path, "d", label=np.zeros((10, 18, 12), np.uint8), label_geometry=small)
    assert any("shape (20, 18, 12) vs (10, 18, 12)" in m for m in _messages(check_case(item, LABELS)))
    assert check_case(_pair(tmp_path, "e", label_geometry=shifted), LABELS, allow_resample=True)[0].level == "warning"


def test_2d_and_4d_are_named(tmp_path):
    item = _pair(tmp_path)
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), item["image"])
    assert any("imagesTr/c.nii.gz: 2D image (size 8x8)" in m for m in _messages(check_case(item, LABELS)))
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 3), np.float32), np.eye(4)), item["image"])  # 3 channels, channels last
    assert any(
        "imagesTr/c.nii.gz: 3 channel(s); the dataset declares 1 per case" in m for m in _messages(check_case(item, LABELS, channels=1))
    )
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 2, 2), np.float32), np.eye(4)), item["image"])
    assert any("imagesTr/c.nii.gz: 5D image" in m for m in _messages(check_case(item, LABELS)))


def test_nan_image_and_bad_labels(tmp_path):
    image = np.zeros(OBLIQUE.shape, np.float32)
    image[1, 2, 3] = np.nan
    label = random_labels().astype(np.float32)
    label[0, 0, 0] = 0.5
    messages = _messages(check_case(_pair(tmp_path, image=image, label=label), LABELS))
    assert any("imagesTr/c.nii.gz: 1 NaN and 0 Inf voxels" in m for m in messages)
    assert any("labelsTr/c.nii.gz: label holds non-integer values [0.5]" in m for m in messages)
    unexpected = random_labels()
    unexpected[0, 0, 0] = 9
    assert any(
        "label values [9] are not among the declared labels [0, 1, 2, 3]" in m
        for m in _messages(check_case(_pair(tmp_path, "u", label=unexpected), LABELS))
    )


def test_empty_label_is_a_warning(tmp_path):
    problems = check_case(_pair(tmp_path, label=np.zeros(OBLIQUE.shape, np.uint8)), LABELS)
    assert [(p.level, p.message) for p in problems] == [("warning", "label is empty (background only).")]


def test_truncated_and_huge_files(tmp_path):
    item = _pair(tmp_path)
    label = Path(item["label"])
    label.write_bytes(label.read_bytes()[:-40])
    assert any(
        "labelsTr/c.nii.gz: cannot read the voxel data; the file is truncated or corrupt" in m for m in _messages(check_case(item, LABELS))
    )
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    with open(tmp_path / "huge.nii", "wb") as f:
        header.write_to(f)
    problems = _messages(check_case({"image": str(tmp_path / "huge.nii")}, LABELS))
    assert len(problems) == 1 and "huge.nii: header declares 30000x30000x30000" in problems[0]


def test_dicom_series_missing_slice(tmp_path):
    d = OBLIQUE.direction_matrix.copy()
    d[:, 2] = np.cross(d[:, 0], d[:, 1])
    geometry = Geometry(OBLIQUE.shape, OBLIQUE.spacing, OBLIQUE.origin, tuple(d.reshape(-1)))
    folder = write_dicom_series(np.zeros(OBLIQUE.shape, np.int16), geometry, tmp_path / "ct", skip={4})
    assert "a slice is missing" in _messages(check_case({"image": str(folder)}, LABELS))[0]


def test_label_value_check_directly():
    assert check_label_values(np.array([0, 1, 2]), [0, 1, 2]) == []
    assert check_label_values(np.array([0.0, np.nan]), [0, 1]) == ["label holds NaN/Inf values; expected integer class labels."]


def test_errors_come_before_warnings(tmp_path):
    items = [_pair(tmp_path, "a", label=np.zeros(OBLIQUE.shape, np.uint8)), _pair(tmp_path, "b", label=np.full(OBLIQUE.shape, 5, np.uint8))]
    assert [p.level for p in validate(items, LABELS)] == ["error", "warning"]


def test_cli_exit_codes_and_one_line_per_problem(tmp_path, demo_dataset):
    ok = run_main(main, "validate", demo_dataset)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith("4 cases checked: 0 errors, 0 warnings.")
    _pair(tmp_path, "a", label=np.full(OBLIQUE.shape, 7, np.uint8))
    _pair(tmp_path, "b", label=np.zeros(OBLIQUE.shape, np.uint8))
    bad = run_main(main, "validate", tmp_path, "--labels", "0,1,2,3")
    lines = bad.stdout.strip().splitlines()
    assert bad.returncode == 1
    assert lines[0].startswith("ERROR ") and "labelsTr/a.nii.gz: label values [7]" in lines[0]
    assert lines[1].startswith("WARNING ") and "labelsTr/b.nii.gz: label is empty" in lines[1]
    assert lines[2] == "2 cases checked: 1 errors, 1 warnings."


def test_without_dataset_json_the_labels_present_are_reported(tmp_path, capfd):
    """imagesTr/labelsTr and no dataset.json: the values are read and reported, and ITK prints nothing on stderr."""
    _pair(tmp_path, "a", label=np.full(OBLIQUE.shape, 7, np.uint8))
    _pair(tmp_path, "b")
    capfd.readouterr()
    code = main(["validate", str(tmp_path)])
    out, err = capfd.readouterr()
    assert code == 0 and err == ""  # once: "WARNING: In .../itkGDCMSeriesFileNames.cxx ... No Series were found"
    assert out.strip().endswith(
        "2 cases checked: 0 errors, 0 warnings. Label values present: [0, 1, 2, 3, 7] (no dataset.json and no --labels: not checked against declared labels)."
    )
    assert main(["validate", str(tmp_path), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["labels_found"] == [0, 1, 2, 3, 7]
