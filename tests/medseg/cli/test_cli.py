import json
import shutil
import subprocess
import sys

import numpy as np

from medact_bundles import init_bundle
from medseg.cli import main
from medseg.io.volumes import Geometry, read_volume, write_volume
from tests.cli_run import modules_after, run_main


def _medseg(*args):
    return run_main(main, *args)


def _medseg_process(*args, timeout=300):
    """The real entry point, ``python -m medseg``, in its own interpreter."""
    return subprocess.run([sys.executable, "-m", "medseg", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_evaluate_perfect_predictions(tmp_path, demo_dataset):
    pred = tmp_path / "pred"
    pred.mkdir()
    for path in sorted((demo_dataset / "labelsTs").iterdir()):
        shutil.copy(path, pred / path.name.replace(".nii.gz", "_seg.nii.gz").replace(".nrrd", "_seg.nrrd"))
    done = _medseg(
        "evaluate",
        "--pred",
        pred,
        "--label",
        demo_dataset / "labelsTs",
        "--out",
        tmp_path / "report",
        "--images",
        demo_dataset / "imagesTs",
        "--dataset",
        demo_dataset / "dataset.json",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["cases"] == 2 and summary["mean_dice"] == 1.0
    assert summary["per_label"]["liver"]["hd95_mm_mean"] == 0.0
    full = json.loads((tmp_path / "report" / "summary.json").read_text(encoding="utf-8"))
    assert full["matlab"]["DataSetMetrics"]["GlobalAccuracy"] == 1.0 and full["matlab"]["DataSetMetrics"]["MeanBFScore"] == 1.0
    for name in (
        "per_case.csv",
        "dataset_metrics.csv",
        "class_metrics.csv",
        "image_metrics.csv",
        "normalized_confusion.csv",
        "metric_bars.png",
        "overlays.png",
        "confusion_chart.png",
    ):
        assert (tmp_path / "report" / name).stat().st_size > 0, name


def test_evaluate_refuses_a_prediction_on_another_grid(tmp_path, demo_dataset):
    reference = sorted((demo_dataset / "labelsTs").iterdir())[0]
    label, geometry = read_volume(reference)
    moved = Geometry(geometry.shape, geometry.spacing, tuple(np.asarray(geometry.origin) + 1.0), geometry.direction)
    pred = tmp_path / "pred"
    write_volume(label, moved, pred / reference.name)
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(reference, labels / reference.name)
    done = _medseg("evaluate", "--pred", pred, "--label", labels, "--out", tmp_path / "r", "--dataset", demo_dataset)
    assert done.returncode == 2 and f"{reference.name}: grid differs from the reference" in done.stderr
    assert not (tmp_path / "r").exists()


def test_infer_without_trained_weights_is_a_clear_error(tmp_path, demo_dataset):
    bundle = tmp_path / "bundle"
    init_bundle("vnet_seg", bundle)
    image = sorted((demo_dataset / "imagesTs").iterdir())[0]
    done = _medseg("infer", "--bundle", bundle, "--input", image, "--output", tmp_path / "out")
    assert done.returncode == 2 and "Model weights not found:" in done.stderr and "models/model.pt" in done.stderr
    assert not (tmp_path / "out").exists()


def test_help_explains_every_command():
    done = _medseg_process("--help")
    assert done.returncode == 0
    for command in ("validate", "train", "infer", "evaluate", "make-demo-data"):
        assert command in done.stdout
    assert "--format" in _medseg("infer", "--help").stdout
    bad = _medseg_process("evaluate", "--pred", "nowhere", "--label", "nowhere", "--out", "x")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_train_resume_without_checkpoint_is_an_error(tmp_path, demo_dataset):
    bundle = tmp_path / "bundle"
    init_bundle("vnet_seg", bundle)
    done = _medseg("train", "--bundle", bundle, "--data", demo_dataset, "--resume", "--set", 'cache="none"')
    assert done.returncode == 2 and "Cannot resume: no checkpoint_<iteration>.pt in" in done.stderr
    assert not (bundle / "models" / "model.pt").exists()


def test_validate_starts_without_torch_or_monai(demo_dataset):
    out, imported = modules_after("medseg", "validate", str(demo_dataset), watch=("monai", "torch", "ignite"))
    assert "cases checked: 0 errors" in out and imported == set(), (out, imported)


def test_every_command_that_runs_a_network_takes_device_and_precision() -> None:
    from medseg.cli import build_parser
    from medseg.cli.common import device_overrides

    parser = build_parser()
    for argv in (
        ["train", "--bundle", "b", "--data", "d"],
        ["infer", "--bundle", "b", "--input", "x.nii.gz", "--output", "o"],
        ["serve", "--bundle", "b"],
    ):
        args = parser.parse_args([*argv, "--device", "cpu", "--precision", "bf16"])
        assert device_overrides(args) == {"device": "cpu", "precision": "bf16"}, argv
        assert device_overrides(parser.parse_args(argv)) == {}, "without the flags the bundle's keys decide"
    args = parser.parse_args(["train", "--bundle", "b", "--data", "d", "--num-workers", "2", "--deterministic"])
    assert device_overrides(args) == {"num_workers": 2, "deterministic": True}


def test_infer_reports_each_case_as_it_is_written(tmp_path, demo_dataset):
    """Per-case progress: one ``[i/n] case -> files (s)`` line per case on stdout, in order, then the total."""
    from medact_bundles import template_dir
    from medseg.workflow import copy_with_fresh_weights

    bundle = copy_with_fresh_weights(template_dir("vnet_seg"), tmp_path / "bundle")
    images = sorted((demo_dataset / "imagesTs").iterdir())[:2]
    done = _medseg("infer", "--bundle", bundle, "--input", *images, "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(" -> ")[0] for line in lines[:2]] == [f"[1/2] {images[0]}", f"[2/2] {images[1]}"]
    assert all(line.endswith(" s)") and "_seg.nii.gz" in line for line in lines[:2])
    assert lines[2] == f"2 case(s) segmented into {tmp_path / 'out'}" and done.stderr == ""
