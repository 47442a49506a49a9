"""medseg plan: a dataset fingerprint becomes a ready bundle; datasets it cannot plan for are refused, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main
from medseg.io.volumes import Geometry, write_volume
from medseg.planning.fingerprint import PlanError, fingerprint
from medseg.planning.planner import make_plan, plan_dataset, target_spacing

ROOT = Path(__file__).resolve().parents[2]


def test_ct_dataset_gets_a_foreground_percentile_window(demo_dataset: Path, tmp_path: Path) -> None:
    plan = plan_dataset(demo_dataset, tmp_path / "ct")
    values = plan["values"]
    assert values["normalization"] == "minmax" and plan["modality"] == "CT"
    assert values["bias_correction"] is False  # no MR channel: nothing for N4 to correct
    low, high = values["window"]
    # the synthetic organs are 35-200 HU (+-18 HU noise): the window spans them, not the -1000 HU air
    assert -60 < low < 40 and 180 < high < 300
    train = json.loads((tmp_path / "ct" / "configs" / "train.json").read_text(encoding="utf-8"))
    infer = json.loads((tmp_path / "ct" / "configs" / "inference.json").read_text(encoding="utf-8"))
    for key in ("pixdim", "window", "normalization", "bias_correction", "roi_size", "sw_roi_size", "colours"):
        assert train[key] == values[key], key
        assert infer[key] is None, key  # inference takes what the model trained with (models/model.json)
    meta = json.loads((tmp_path / "ct" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "liver", "2": "kidney", "3": "tumour"}
    assert train["bundle_root"] == infer["bundle_root"] == "."  # a planned bundle can be moved, as the shipped one
    assert train["dataset_dir"] == str(demo_dataset.resolve())
    _verify_with_monai(tmp_path / "ct")


def _verify_with_monai(bundle: Path) -> None:
    """MONAI's own offline checks of a bundle: metadata against the shipped schema, the network against its declared shapes.

    The functions ``python -m monai.bundle verify_metadata`` / ``verify_net_in_out`` dispatch to, called
    in this process (the shipped template's checks run through the CLI itself: tests/medseg/test_bundle.py).
    """
    from monai.bundle import verify_metadata, verify_net_in_out

    from medact_bundles import schema_file

    configs = bundle / "configs"
    verify_metadata(meta_file=str(configs / "metadata.json"), filepath=str(schema_file()))
    verify_net_in_out(
        "network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
        device="cpu",
    )


def test_mr_dataset_gets_zscore_and_its_labels(tmp_path: Path) -> None:
    from medseg.datasets.mni152 import make_hemisphere_dataset

    data = make_hemisphere_dataset(tmp_path / "mni", resolution=2).parent
    assert main(["plan", str(data), "--out", str(tmp_path / "mr")]) == 0
    train = json.loads((tmp_path / "mr" / "configs" / "train.json").read_text(encoding="utf-8"))
    assert train["normalization"] == "zscore" and train["window"] is None
    assert train["bias_correction"] is True  # MR: N4 before the z-score, in training and inference alike
    assert train["pixdim"] == [2.0, 2.0, 2.0]  # the median spacing of 2 mm cases that fit the CPU budget as they are
    assert train["train"]["preprocessing"]["class_ratios"] == [1, 1, 1]
    # a left hemisphere and its mirror: flipped left-right the labels look like the training labels, not front-back
    assert train["mirror_axes"] == [0]
    reason = json.loads((tmp_path / "mr" / "plan.json").read_text(encoding="utf-8"))["plan"]["reasons"]["mirror_axes"]
    assert reason.startswith("mirrored along R:") and "R 1.00" in reason
    meta = json.loads((tmp_path / "mr" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "grey_matter", "2": "white_matter"}
    assert meta["network_data_format"]["inputs"]["image"]["modality"] == "T1"
    _verify_with_monai(tmp_path / "mr")


def test_large_scans_get_a_coarser_spacing_than_their_median() -> None:
    spacing, reason = target_spacing([[0.7, 0.7, 1.0]] * 3, [[512, 512, 300]] * 3)
    assert all(s > 1.0 for s in spacing) and "fits" in reason
    # at the new spacing the median scan has at most the budget's voxels
    assert np.prod(np.array([512, 512, 300]) * np.array([0.7, 0.7, 1.0]) / np.array(spacing)) <= 192**3 * 1.01


def test_iterations_set_the_epochs(demo_dataset: Path) -> None:
    print_ = fingerprint(demo_dataset)
    assert make_plan(print_)["values"]["mirror_axes"] == []  # the demo's liver is on one side, its tumour anywhere
    plan = make_plan(print_, iterations=60)
    per_epoch = int(np.ceil(print_["training_cases"] / 2))
    assert plan["values"]["options#max_epochs"] == int(np.ceil(60 / per_epoch))


def _write(array: np.ndarray, path: Path) -> None:
    if array.ndim == 3:
        write_volume(array, Geometry(array.shape, (1.0,) * 3, (0.0,) * 3, tuple(np.eye(3).reshape(-1))), path)
    else:  # a 2D image: what a slice export or a screenshot converter writes
        import nibabel as nib

        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def _dataset(root: Path, modality: dict, cases: int = 2, shape=(20, 18, 12)) -> Path:
    training = []
    for i in range(cases):
        _write(np.random.default_rng(i).normal(100, 10, shape).astype(np.int16), root / "imagesTr" / f"c{i}.nii.gz")
        label = np.zeros(shape, np.uint8)
        label[5:10, 5:10] = 1
        _write(label, root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps({"modality": modality, "labels": {"0": "background", "1": "organ"}, "training": training}), encoding="utf-8"
    )
    return root


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), r"no dataset.json"),
        (lambda root: _dataset(root, {"0": "CT"}, cases=1), r"dataset.json: 1 case\(s\); plan needs at least 2"),
        (lambda root: _dataset(root, {"0": "T1", "1": "T2"}), r"c0.nii.gz: 1 channel\(s\); the dataset declares 2 per case"),
        (lambda root: _dataset(root, {"T1": "0"}), r"dataset.json: has no 'modality' .*mapping channel numbers to names"),
        (lambda root: _dataset(root, {"0": "CT"}, shape=(20, 18)), r"c0.nii.gz: 2D image .*expected a single-channel 3D volume"),
        (lambda root: (_dataset(root, {"0": "CT"}), shutil.rmtree(root / "imagesTr")), r"imagesTr/c0.nii.gz: Volume not found"),
    ],
)
def test_datasets_plan_cannot_use_are_refused_and_nothing_is_written(tmp_path: Path, make, message: str, capsys) -> None:
    data = tmp_path / "data"
    make(data)
    with pytest.raises((PlanError, FileNotFoundError, ValueError), match=message):
        plan_dataset(data, tmp_path / "bundle")
    assert main(["plan", str(data), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".plan-*"))


def test_existing_bundle_is_not_overwritten(demo_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(PlanError, match=r"taken: exists and is not empty"):
        plan_dataset(demo_dataset, tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]


def test_anisotropic_axis_takes_the_10th_percentile_spacing_as_nnunet() -> None:
    # a prostate MR series: 0.6 mm in plane, mostly 3.6 mm slices, some 3.0 mm; 20 slices against 320 x 320
    spacings, shapes = [[0.6, 0.6, 3.6]] * 8 + [[0.6, 0.6, 3.0]] * 2, [[320, 320, 20]] * 10
    spacing, reason = target_spacing(spacings, shapes, max_voxels=None)
    assert spacing == [0.6, 0.6, 3.0] and "axis S is anisotropic" in reason and "10th percentile" in reason
    # thick slices but many of them (size x 3 not below the others'): not anisotropic by nnU-Net's rule, the median stays
    assert target_spacing([[1.0, 1.0, 3.6]] * 10, [[200, 200, 150]] * 10, max_voxels=None)[0] == [1.0, 1.0, 3.6]
    assert target_spacing([[2.0, 2.0, 2.0]] * 4, [[60, 60, 60]] * 4) == ([2.0, 2.0, 2.0], "median spacing of 4 cases")
    # the CPU plan says why its patch does not follow that spacing (V-Net's 32-voxel floor per axis)
    print_ = {"labels": {0: "background", 1: "prostate"}, "colours": {}, "training_cases": 10, "modality": "T2"}
    print_ |= {"spacings": spacings, "shapes": shapes, "foreground": {"p0.5": 0, "p50": 1, "p99.5": 2, "mean": 1, "sd": 1}}
    plan = make_plan(print_)
    assert plan["values"]["roi_size"] == [32, 32, 32] and "cannot follow the anisotropic spacing" in plan["reasons"]["roi_size"]
