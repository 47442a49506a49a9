"""medseg cross-validate: folds trained and resumed, each case scored once by the model that never saw it, post-processing decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_cross_validation_scores_every_case_once_and_resumes(tmp_path: Path) -> None:
    from medseg.cli import main
    from tests.medseg.test_train_infer import write_small_ct

    data = write_small_ct(tmp_path / "data", cases=5, size=32)
    bundle = tmp_path / "bundle"
    assert main(["plan", str(data), "--out", str(bundle), "--budget", "cpu"]) == 0
    quiet = ["--epochs", "1", "--set", "options#verbose=false", "--set", "options#plots=none", "--set", 'cache="none"', "--device", "cpu"]
    quiet += ["--set", "width=8"]  # not the plan's 4: each fold's scoring must rebuild the model it trained (models/fold_K/model.json)
    assert main(["cross-validate", "--bundle", str(bundle), "--data", str(data), "--folds", "0", "1", *quiet]) == 0
    first = {k: (bundle / "models" / f"fold_{k}" / "model.pt").stat().st_mtime_ns for k in (0, 1)}
    assert main(["cross-validate", "--bundle", str(bundle), "--data", str(data), *quiet, "--json"]) == 0
    summary = json.loads((bundle / "crossval" / "summary.json").read_text(encoding="utf-8"))
    assert [summary["folds"][str(k)]["status"] for k in range(5)] == ["done", "done", "trained", "trained", "trained"]
    assert {k: (bundle / "models" / f"fold_{k}" / "model.pt").stat().st_mtime_ns for k in (0, 1)} == first  # not retrained
    splits = json.loads((bundle / "splits.json").read_text(encoding="utf-8"))
    predicted = sorted(p.name for k in range(5) for p in (bundle / "crossval" / f"fold_{k}" / "pred").glob("*_seg.nii.gz"))
    assert predicted == sorted(f"{case}_seg.nii.gz" for fold in splits for case in fold["val"])  # each case once, by its fold
    assert set(summary["pooled_dice"]) == {"1", "2"} and (bundle / "postprocessing.json").is_file()
    scan = next((data / "imagesTr").glob("*.nii.gz"))
    ensemble = [
        "infer",
        "--bundle",
        str(bundle),
        "--input",
        str(scan),
        "--output",
        str(tmp_path / "out"),
        "--folds",
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    assert main(ensemble) == 0 and (tmp_path / "out" / scan.name.replace(".nii.gz", "_seg.nii.gz")).is_file()
