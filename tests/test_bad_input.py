"""The bad-input suite: every command and the web API, fed what users bring by mistake.

Each case is a generated file (``tests/bad_inputs.py``) and a command. What must hold for each:
exit code 2 (``medseg validate``: 1 when the data has problems, as documented; the API: a 4xx),
exactly one line on stderr that names the file and says what is wrong, no traceback, and nothing
written: no output file, no partial or temporary file left next to the inputs or outputs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import bad_inputs as bad

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``make`` writes it into a folder; ``command`` names how it is fed; ``reason`` is a regex of the message."""

    id: str
    command: str
    make: bad.Generator
    reason: str
    exit_code: int = 2


def _nifti_ok(name: str) -> bad.Generator:
    return bad.nifti(name)


VOLUME_CASES = [
    Case("empty", "medseg infer", bad.empty("scan.nii.gz"), "empty"),
    Case("random-bytes", "medseg infer", bad.random_bytes("scan.nii.gz"), "not a readable|not a valid|cannot read"),
    Case("gz-cut-half", "medseg infer", bad.truncated(_nifti_ok("src.nii.gz"), 0.5, "scan.nii.gz"), "truncated|cut off|ends before"),
    Case(
        "gz-cut-100",
        "medseg infer",
        bad.truncated(_nifti_ok("src.nii.gz"), 100, "scan.nii.gz"),
        "truncated|cut off|ends before|not a readable",
    ),
    Case(
        "nii-cut-header",
        "medseg infer",
        bad.truncated(_nifti_ok("src.nii"), 200, "scan.nii"),
        "truncated|cut off|ends before|not a readable",
    ),
    Case("nii-cut-data", "medseg infer", bad.truncated(_nifti_ok("src.nii"), 0.6, "scan.nii"), "truncated|cut off|ends before"),
    Case(
        "nrrd-cut", "medseg infer", bad.truncated(_nifti_ok("src.nrrd"), 0.5, "scan.nrrd"), "truncated|cut off|ends before|not a readable"
    ),
    Case("png-as-nifti", "medseg infer", bad.text_named("scan.nii.gz"), "not a readable|not a valid|cannot read"),
    Case("text-as-mha", "medseg infer", bad.text_named("scan.mha"), "not a readable|not a valid|cannot read"),
    Case("2d", "medseg infer", bad.nifti("scan.nii.gz", shape=(32, 32)), "2D|2-D|three dimensions|3D"),
    Case("4d", "medseg infer", bad.nifti("scan.nii.gz", shape=(16, 16, 8, 3)), r"3 channel\(s\); the model takes 1"),
    Case("rgb", "medseg infer", bad.rgb_nifti("scan.nii.gz"), "component|RGB|channels|scalar"),
    Case("vector-nrrd", "medseg infer", bad.nrrd_vector("scan.nrrd"), "component|channels|scalar"),
    Case("nan", "medseg infer", bad.nifti("scan.nii.gz", dtype=np.float32, fill=bad.set_nan), "NaN"),
    Case("inf", "medseg infer", bad.nifti("scan.nii.gz", dtype=np.float32, fill=bad.set_inf), "Inf|infinite"),
    Case("huge-header", "medseg infer", bad.nifti_huge_header("scan.nii"), "voxels|limit|too large"),
    Case("directory", "medseg infer", bad.directory("scan.nii.gz"), "DICOM|folder|directory"),
    Case("missing", "medseg infer", lambda folder: folder / "scan.nii.gz", "no such|not found|does not exist"),
    Case("eval-pred-cut", "medseg evaluate", bad.truncated(_nifti_ok("src.nii.gz"), 0.5, "case.nii.gz"), "truncated|cut off|ends before"),
    Case("eval-pred-random", "medseg evaluate", bad.random_bytes("case.nii.gz"), "not a readable|not a valid|cannot read"),
    Case("eval-pred-shape", "medseg evaluate", bad.nifti("case.nii.gz", shape=(10, 10, 10)), "shape|grid|geometry"),
    Case("eval-pred-labels", "medseg evaluate", bad.nifti("case.nii.gz", fill=lambda d: d.__setitem__((0, 0, 0), 9)), "label|9"),
    Case("eval-pred-2d", "medseg evaluate", bad.nifti("case.nii.gz", shape=(24, 20)), "2D|2-D|three dimensions|3D"),
    Case("dicom-seg-of-nifti", "medseg infer dicom-seg", bad.nifti("scan.nii.gz"), "DICOM SEG needs a DICOM source series"),
    Case("dicom-seg-of-nrrd", "medseg infer dicom-seg", bad.nifti("scan.nrrd"), "DICOM SEG needs a DICOM source series"),
    Case("validate-no-folder", "medseg validate", lambda folder: folder / "nothing", "no such|not found|does not exist"),
    Case("validate-bad-json", "medseg validate", bad.dataset_json("dataset.json", "{not json"), "JSON|json"),
    Case("validate-json-no-labels", "medseg validate", bad.dataset_json("dataset.json", bad.json_text({"training": []})), "labels"),
    Case(
        "validate-cut-image",
        "medseg validate",
        bad.truncated(_nifti_ok("src.nii.gz"), 0.5, "case.nii.gz"),
        "truncated|cut off|ends before",
        exit_code=1,
    ),
]

VIDEO_CASES = [
    Case("empty", "action predict", bad.empty("clip.mp4"), "empty"),
    Case("random-bytes", "action predict", bad.random_bytes("clip.mp4"), "not a readable video"),
    Case("text-as-mp4", "action predict", bad.text_named("clip.mp4"), "not a readable video|not an allowed video format"),
    Case(
        "mp4-cut-half",
        "action predict",
        bad.truncated(bad.video("src.mp4", frames=60, size=(96, 128)), 0.5, "clip.mp4"),
        "truncated|damaged|not a readable",
    ),
    Case(
        "mp4-cut-10pc",
        "action predict",
        bad.truncated(bad.video("src.mp4", frames=60, size=(96, 128)), 0.1, "clip.mp4"),
        "truncated|damaged|not a readable",
    ),
    Case("mp4-cut-1k", "action predict", bad.truncated(bad.video("src.mp4"), 1000, "clip.mp4"), "truncated|damaged|not a readable"),
    Case(
        "avi-cut-half",
        "action predict",
        bad.truncated(bad.video("src.avi", frames=60, size=(96, 128)), 0.5, "clip.avi"),
        "truncated|damaged|ends",
    ),
    Case("huge-header", "action predict", bad.avi_huge_header("clip.avi"), "pixels per frame"),
    Case("directory", "action predict", bad.directory("clip.mp4"), "no such video file|a folder|directory"),
    Case("missing", "action predict", lambda folder: folder / "clip.mp4", "no such video file"),
    Case(
        "sequences-to-video-model",
        "action predict",
        bad.npz("clip.npz", X=np.zeros((2, 5, 3)), y=np.array(["a", "b"])),
        "reads videos|video",
    ),
    Case("feature-weights-random", "action extract-features", bad.random_bytes("weights.pth"), "weights|state dict|not a"),
    Case("feature-weights-empty", "action extract-features", bad.empty("weights.pth"), "weights|empty"),
    Case("feature-weights-text", "action extract-features", bad.text_named("weights.pth"), "weights|state dict|not a"),
]

SEQUENCE_CASES = [
    Case("train-missing", "action train", lambda folder: folder / "train.npz", "no such|not found|does not exist"),
    Case("train-random-npz", "action train", bad.random_bytes("train.npz"), "not a readable|not a valid|npz"),
    Case(
        "train-pickled-npz",
        "action train",
        bad.npz("train.npz", X=np.array([np.zeros((3, 2)), np.zeros((4, 2))], dtype=object), y=np.array(["a", "b"])),
        "pickle|object",
    ),
    Case(
        "train-lengths-wrong",
        "action train",
        bad.npz("train.npz", X=np.zeros((10, 3)), lengths=np.array([4, 4]), y=np.array(["a", "b"])),
        "lengths",
    ),
    Case("train-csv-nan", "action train", bad.csv_text("train.csv", bad.sensor_rows(nan_at=(1, 2))), "NaN"),
    Case("train-csv-empty", "action train", bad.empty("train.csv"), "empty|header"),
    Case("train-mat-random", "action train", bad.random_bytes("train.mat"), "not a readable|MATLAB|mat"),
    Case("train-ts-text", "action train", bad.text_named("train.ts"), "ts|@|header|video"),
    Case("train-directory-npz", "action train", bad.directory("train.npz"), "folder|directory|no such|classes"),
    Case("train-video-folder-one-broken", "action train", lambda folder: _video_folder_with_a_broken_file(folder), "broken.mp4"),
    Case("evaluate-channels", "action evaluate", bad.csv_text("test.csv", bad.sensor_rows(channels=4)), "4 channels|channels"),
    Case("evaluate-labels", "action evaluate", bad.npz("test.npz", X=np.zeros((2, 5, 3)), y=np.array(["a", "zebra"])), "zebra|classes"),
    Case("evaluate-random", "action evaluate", bad.random_bytes("test.npz"), "not a readable|not a valid|npz"),
    Case("predict-unequal-channels", "action predict-seq", bad.npz("rec.npz", X=np.zeros((2, 5, 4))), "4 channels|channels"),
]


def _video_folder_with_a_broken_file(folder: Path) -> Path:
    """A one-folder-per-class dataset of real videos, with one file cut in half (named in the error)."""
    root = folder / "videos"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(2):
            bad.video(f"v{index}.mp4", frames=12, size=(32, 32))(root / label)
    whole = (root / "b" / "v1.mp4").read_bytes()
    (root / "b" / "broken.mp4").write_bytes(whole[: len(whole) // 2])
    return root / "b" / "broken.mp4"


ALL_CASES = VOLUME_CASES + VIDEO_CASES + SEQUENCE_CASES


def test_the_suite_is_large_enough() -> None:
    assert len(ALL_CASES) >= 40 and len({(c.command, c.id) for c in ALL_CASES}) == len(ALL_CASES)


# ---- what the commands are fed -------------------------------------------------------------------


def _validate_argv(case: Case, path: Path) -> list[str]:
    """``medseg validate`` of a damaged file, or (exit code 1) of a dataset folder whose one image is damaged."""
    if case.exit_code == 1:  # a dataset folder whose one image is damaged
        (path.parent / "imagesTr").mkdir()
        (path.parent / "labelsTr").mkdir()
        path = path.rename(path.parent / "imagesTr" / path.name)
        bad.nifti("case.nii.gz")(path.parent.parent / "labelsTr")
        bad.dataset_json(
            "dataset.json",
            bad.json_text(
                {
                    "labels": {"0": "background", "1": "a"},
                    "training": [{"image": "imagesTr/case.nii.gz", "label": "labelsTr/case.nii.gz"}],
                }
            ),
        )(path.parent.parent)
        return ["validate", str(path.parent.parent), "--labels", ",".join(str(v) for v in range(7))]
    return ["validate", str(path)]


def _extract_features_argv(path: Path, out: Path) -> list[str]:
    """``action extract-features`` of two tiny videos with ``path`` as the backbone weights."""
    videos = path.parent / "videos"
    for label in ("a", "b"):
        (videos / label).mkdir(parents=True)
        bad.video("v.mp4", frames=12, size=(32, 32))(videos / label)
    return [
        "extract-features",
        "--data",
        str(videos),
        "--cache-dir",
        str(out),
        "--backbone",
        "resnet18",
        "--weights",
        str(path),
        "--frames",
        "4",
        "--size",
        "32",
        "--backbone-size",
        "32",
    ]


def _action_train_argv(path: Path, out: Path) -> list[str]:
    """``action train`` on a folder with a broken video (c3d_gru) or on a sequence file (gru)."""
    data = path.parent.parent if path.name == "broken.mp4" else path
    model = "c3d_gru" if path.name == "broken.mp4" else "gru"
    return [
        "train",
        "--data",
        str(data),
        "--model",
        model,
        "--out",
        str(out),
        "--epochs",
        "1",
        "--quiet",
        "--frames",
        "8",
        "--size",
        "32",
    ]


def _argv(case: Case, path: Path, models: dict[str, Path], out: Path) -> tuple[Callable, list[str]]:
    from action.cli import main as action_main
    from medseg.cli import main as medseg_main

    command = case.command
    if command in ("medseg infer", "medseg infer dicom-seg"):
        formats = "nifti,seg.nrrd,mat" + (",dicom-seg" if command.endswith("dicom-seg") else "")
        return medseg_main, ["infer", "--bundle", str(models["bundle"]), "--input", str(path), "--output", str(out), "--format", formats]
    if command == "medseg evaluate":
        return medseg_main, [
            "evaluate",
            "--pred",
            str(path.parent),
            "--label",
            str(models["labels"]),
            "--out",
            str(out),
            "--bundle",
            str(models["bundle"]),
        ]
    if command == "medseg validate":
        return medseg_main, _validate_argv(case, path)
    if command == "action predict":
        return action_main, ["predict", "--model", str(models["clip"]), str(path)]
    if command == "action predict-seq":
        return action_main, ["predict", "--model", str(models["seq"]), str(path)]
    if command == "action extract-features":
        return action_main, _extract_features_argv(path, out)
    if command == "action train":
        return action_main, _action_train_argv(path, out)
    if command == "action evaluate":
        return action_main, ["evaluate", "--model", str(models["seq"]), "--data", str(path), "--out", str(out)]
    raise AssertionError(command)


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", ALL_CASES, ids=[f"{c.command.replace(' ', '-')}:{c.id}" for c in ALL_CASES])
def test_bad_input_is_one_clear_line_and_nothing_is_written(
    case: Case, models: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    path = case.make(inputs)
    main, argv = _argv(case, path, models, out)
    before = _snapshot(inputs)
    capfd.readouterr()
    code = main(argv)
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    if case.exit_code == 1:  # medseg validate: one line per problem on stdout, the summary last
        problems = [line for line in captured.out.splitlines() if path.name in line]
        assert code == 1 and problems and re.search(case.reason, problems[0], re.IGNORECASE), captured.out
        assert not lines, captured.err
    else:
        assert code == 2, (captured.out, captured.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        assert path.name in lines[0], f"the message must name {path.name}: {lines[0]}"
        assert re.search(case.reason, lines[0], re.IGNORECASE), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(inputs) == before, "nothing may be written next to the inputs"
    assert not out.exists() or not any(p.is_file() and not p.name.startswith("manifest") for p in out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root reads any file: permissions cannot make one unreadable",
)
@pytest.mark.parametrize("command, make", [("medseg infer", bad.nifti("scan.nii.gz")), ("action predict", bad.video("clip.mp4"))])
def test_an_unreadable_file_is_named(
    command: str, make: bad.Generator, models: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    path = make(tmp_path)
    path.chmod(0)
    main, argv = _argv(Case("unreadable", command, make, ""), path, models, tmp_path / "out")
    capfd.readouterr()
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path.name in err and "Traceback" not in err


def _bundle_without_bundle_root(folder: Path) -> Path:
    import json

    from medact_bundles import init_bundle

    bundle = init_bundle("vnet_seg", folder / "bundle")
    config = bundle / "configs" / "inference.json"
    config.write_text(
        json.dumps({k: v for k, v in json.loads(config.read_text(encoding="utf-8")).items() if k != "bundle_root"}), encoding="utf-8"
    )
    return bundle


def _folder_with(name: str) -> bad.Generator:
    def make(folder: Path) -> Path:
        (folder / "bundle").mkdir()
        (folder / "bundle" / name).write_text("mine, keep it\n")
        return folder / "bundle"

    return make


BUNDLE_CASES = [
    ("medseg-init-bundle-not-empty", "medseg", ["init-bundle", "{bundle}"], _folder_with("notes.txt"), "exists and is not empty"),
    ("action-init-bundle-not-empty", "action", ["init-bundle", "{bundle}"], _folder_with("notes.txt"), "exists and is not empty"),
    (
        "train-bundle-without-configs",
        "medseg",
        ["train", "--bundle", "{bundle}", "--data", "{bundle}"],
        _folder_with("model.pt"),
        "has no configs/ folder",
    ),
    (
        "infer-bundle-without-configs",
        "medseg",
        ["infer", "--bundle", "{bundle}", "--input", "{bundle}/model.pt", "--output", "{out}"],
        _folder_with("model.pt"),
        "has no configs/ folder",
    ),
    (
        "infer-bundle-missing",
        "medseg",
        ["infer", "--bundle", "{bundle}/nowhere", "--input", "{bundle}", "--output", "{out}"],
        _folder_with("x"),
        "no such bundle folder",
    ),
    (
        "infer-bundle-root-missing",
        "medseg",
        ["infer", "--bundle", "{bundle}", "--input", "{bundle}/LICENSE", "--output", "{out}"],
        _bundle_without_bundle_root,
        'has no "bundle_root"',
    ),
]


@pytest.mark.parametrize("name, program, argv, make, reason", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_a_wrong_bundle_folder_is_one_line_and_nothing_is_written(
    name, program, argv, make, reason, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    from action.cli import main as action_main
    from medseg.cli import main as medseg_main

    bundle, out = make(tmp_path), tmp_path / "out"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capfd.readouterr()
    code = (medseg_main if program == "medseg" else action_main)([a.format(bundle=bundle, out=out) for a in argv])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and reason in err[0], err
    assert str(bundle) in err[0], f"the message must name the folder: {err[0]}"
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before and not out.exists()


NO_CUDA = "no CUDA device is available here"
DEVICE_CASES = [
    ("medseg-train", "medseg", ["train", "--bundle", "{bundle}", "--data", "{data}", "--device", "cuda"], NO_CUDA),
    ("medseg-infer", "medseg", ["infer", "--bundle", "{bundle}", "--input", "{data}", "--output", "{out}", "--device", "cuda"], NO_CUDA),
    ("medseg-serve", "medseg", ["serve", "--bundle", "{bundle}", "--port", "0", "--device", "cuda:1"], NO_CUDA),
    ("action-train", "action", ["train", "--data", "{data}", "--out", "{out}", "--device", "gpu"], NO_CUDA),
    ("action-evaluate", "action", ["evaluate", "--model", "{clip}", "--data", "{data}", "--out", "{out}", "--device", "cuda"], NO_CUDA),
    ("action-predict", "action", ["predict", "--model", "{clip}", "{data}", "--device", "cuda"], NO_CUDA),
    ("action-serve", "action", ["serve", "--model", "{clip}", "--port", "0", "--device", "cuda"], NO_CUDA),
    (
        "action-extract-features",
        "action",
        ["extract-features", "--data", "{data}", "--cache-dir", "{out}", "--backbone", "resnet18", "--device", "cuda"],
        NO_CUDA,
    ),
    (
        "fp16-on-the-cpu",
        "medseg",
        ["infer", "--bundle", "{bundle}", "--input", "{data}", "--output", "{out}", "--device", "cpu", "--precision", "fp16"],
        "'fp16' needs a CUDA device",
    ),
    ("unknown-device", "action", ["predict", "--model", "{clip}", "{data}", "--device", "tpu"], "is not one of auto, cpu, cuda, cuda:N"),
    (
        "unknown-precision",
        "action",
        ["predict", "--model", "{clip}", "{data}", "--precision", "fp8"],
        "is not one of fp32, bf16, fp16, auto",
    ),
    ("plan-unknown-budget", "medseg", ["plan", "{data}", "--out", "{out}", "--budget", "tpu:8"], "expected cpu, gpu:<GiB>"),
]


@pytest.mark.parametrize("name, program, argv, reason", DEVICE_CASES, ids=[c[0] for c in DEVICE_CASES])
def test_an_unusable_device_fails_in_one_line_before_any_work(
    name, program, argv, reason, models: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    import torch

    from action.cli import main as action_main
    from medseg.cli import main as medseg_main

    if reason == NO_CUDA and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (data / "untouched.txt").write_text("the data stays as it is\n")
    capfd.readouterr()
    values = {"bundle": models["bundle"], "clip": models["clip"], "data": data, "out": out}
    code = (medseg_main if program == "medseg" else action_main)([a.format(**values) for a in argv])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and reason in err[0], err
    assert not out.exists() and sorted(p.name for p in data.iterdir()) == ["untouched.txt"]
