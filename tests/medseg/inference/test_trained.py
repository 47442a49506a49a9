"""A trained model carries its settings (models/model.json): infer, evaluate and the bundle's configs rebuild it from there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main
from medseg.inference.segmenter import load_segmenter
from medseg.io.volumes import read_header
from medseg.model_record import MODEL_IDS, ModelRecordError, check_ensemble, read_record, same_value

QUIET = ["--set", "options#verbose=false", "--set", "options#plots=none", "--set", 'cache="none"', "--device", "cpu"]


@pytest.fixture(scope="module")
def width8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The issue's example: ``plan``, then ``train --set width=8`` (and a coarser spacing, 3^3 kernels), a few iterations."""
    from tests.medseg.test_train_infer import write_small_ct

    root = tmp_path_factory.mktemp("trained")
    data = write_small_ct(root / "data", cases=3, size=32)
    bundle = root / "b"
    assert main(["plan", str(data), "--out", str(bundle), "--iterations", "2", "--budget", "cpu"]) == 0
    overrides = ["width=8", "pixdim=[3.0,3.0,3.0]", "kernel_size=3"]
    train = ["train", "--bundle", str(bundle), "--data", str(data), *(a for o in overrides for a in ("--set", o)), *QUIET]
    assert main(train) == 0
    return bundle, data


def test_training_writes_the_resolved_settings_beside_the_weights(width8: tuple[Path, Path]) -> None:
    bundle, _ = width8
    record = read_record(bundle / "models" / "model.pt")
    assert record is not None and set(MODEL_IDS) <= set(record["settings"])
    assert record["settings"]["width"] == 8 and record["network"]["width"] == 8 and record["settings"]["pixdim"] == [3.0, 3.0, 3.0]
    assert record["settings"]["kernel_size"] == record["network"]["kernel_size"] == 3
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    assert train["width"] == 4  # the bundle's config still says what the plan wrote: the record, not the config, describes the model
    overrides = record["training"]["overrides"]
    assert overrides["width"] == 8 and overrides["pixdim"] == [3.0, 3.0, 3.0] and overrides["device"] == "cpu", overrides
    assert record["labels"] == {"0": "background", "1": "organ", "2": "small_organ"}
    assert set(record["versions"]) == {"medact", "monai", "torch"} and record["versions"]["monai"] != "unknown"


def test_infer_uses_the_width_and_spacing_the_model_trained_with(width8: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, data = width8
    scan = next((data / "imagesTr").glob("*.nii.gz"))
    assert main(["infer", "--bundle", str(bundle), "--input", str(scan), "--output", str(tmp_path / "out")]) == 0
    mask = tmp_path / "out" / scan.name.replace(".nii.gz", "_seg.nii.gz")
    assert read_header(mask).geometry.shape == read_header(scan).geometry.shape
    segmenter = load_segmenter(bundle)
    assert segmenter.network.width == 8 and list(segmenter.pixdim) == [3.0, 3.0, 3.0] and segmenter.network.kernel_size == 3
    # inference-only settings stay free
    assert load_segmenter(bundle, overrides={"overlap": 0.25, "sw_batch_size": 2}).overlap == 0.25


def test_a_setting_that_contradicts_the_model_is_refused_in_one_line(width8: tuple[Path, Path], tmp_path: Path, capfd) -> None:
    bundle, data = width8
    scan = next((data / "imagesTr").glob("*.nii.gz"))
    capfd.readouterr()
    argv = ["infer", "--bundle", str(bundle), "--input", str(scan), "--output", str(tmp_path / "out"), "--set", "width=4"]
    assert main(argv) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "width=4 contradicts the trained model" in err[0] and "model.json: width=8" in err[0], err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelRecordError, match=r"pixdim=\[2.0, 2.0, 2.0\] contradicts the trained model"):
        load_segmenter(bundle, overrides={"pixdim": [2.0, 2.0, 2.0]})  # the same inference.json MONAI's CLI runs
    with pytest.raises(ModelRecordError, match=r"kernel_size=5 contradicts the trained model .*kernel_size=3"):
        load_segmenter(bundle, overrides={"kernel_size": 5})
    assert load_segmenter(bundle, overrides={"width": 8}).network.width == 8  # agreeing is not contradicting


def test_bundle_evaluation_rebuilds_the_trained_model_whatever_train_json_says(width8: tuple[Path, Path], tmp_path: Path) -> None:
    from medseg.workflow import run_workflow

    bundle, data = width8
    run_workflow(bundle, ["train.json", "evaluate.json"], {"dataset_dir": str(data), "eval_split": "training", "eval_dir": str(tmp_path)})
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["cases"] == 3 and np.isfinite(summary["mean_dice"])


def test_folds_of_one_ensemble_must_agree(width8: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(width8[0], bundle)
    for k in (0, 1):
        shutil.copytree(bundle / "models", bundle / "models" / f"fold_{k}", ignore=shutil.ignore_patterns("fold_*", "checkpoints"))
    assert load_segmenter(bundle, folds=[0, 1]).ensemble  # two folds of one plan
    odd = bundle / "models" / "fold_1" / "model.json"
    record = json.loads(odd.read_text(encoding="utf-8"))
    record["settings"]["pixdim"] = [2.0, 2.0, 2.0]
    odd.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ModelRecordError, match=r"disagree on pixdim: fold 0 has \[3.0, 3.0, 3.0\], fold 1 has \[2.0, 2.0, 2.0\]"):
        load_segmenter(bundle, folds=[0, 1])


def test_weights_without_a_record_fall_back_to_train_json(untrained_bundle: Path, tmp_path: Path, caplog) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(untrained_bundle, bundle)
    (bundle / "models" / "model.json").unlink()
    assert load_segmenter(bundle).network.width == json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))["width"]
    assert "has no model record beside it" in caplog.text


def test_damaged_record_is_refused_naming_it(untrained_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(untrained_bundle, bundle)
    (bundle / "models" / "model.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelRecordError, match=r"model.json: not a readable model record"):
        load_segmenter(bundle)


def test_same_value_compares_as_json() -> None:
    assert same_value((2, 2, 2), [2.0, 2.0, 2.0]) and same_value("minmax", "minmax") and not same_value([2, 2], [2, 3])
    assert not same_value(None, [1]) and same_value([[-200, 300]], [(-200.0, 300.0)])
    check_ensemble([("one", {"settings": {}, "labels": {}})])  # a single model has nothing to agree with
