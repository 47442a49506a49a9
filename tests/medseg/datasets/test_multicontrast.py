"""Several input channels end to end: the two-contrast phantom, planning, training, inference and what is refused."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets.datalists import datalist
from medseg.datasets.multicontrast import make_multicontrast_dataset, single_channel_description
from medseg.io.volumes import Geometry, read_volume, write_volume
from medseg.planning.planner import make_plan
from tests.cli_run import run_main


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training + 1 held-out two-channel cases (nnU-Net v2 layout)."""
    root = tmp_path_factory.mktemp("phantom")
    make_multicontrast_dataset(root, n_train=4, n_test=1, seed=3)
    return root


@pytest.fixture(scope="module")
def bundle(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``medseg plan`` on the phantom, then ``medseg train`` for 2 epochs with N4 bias correction of both MR channels
    (the paths must work, not the model)."""
    out = tmp_path_factory.mktemp("bundles") / "two"
    assert run_main(main, "plan", phantom, "--out", out).returncode == 0
    result = run_main(main, "train", "--bundle", out, "--data", phantom, "--epochs", "2", "--set", "bias_correction=true")
    assert result.returncode == 0, result.stderr
    return out


def test_the_oedema_shows_on_flair_only(phantom: Path) -> None:
    """Known answer of the generator: inside the oedema, T1 has the intensity of the white matter it lies in
    (so no T1 model can see it) while FLAIR is far brighter."""
    for item in datalist(phantom):
        t1, flair = (read_volume(p)[0] for p in item["image"])
        label = read_volume(item["label"])[0]
        oedema = label == 2
        flair_white = np.median(flair[(label == 0) & (flair > 0.5 * np.median(flair[oedema]))])  # not air
        white = (label == 0) & (t1 > np.percentile(t1[oedema], 10)) & (t1 < np.percentile(t1[oedema], 90))
        assert abs(np.median(t1[oedema]) - np.median(t1[white])) < 0.05 * np.median(t1[white])
        assert np.median(flair[oedema]) > 1.6 * flair_white


def test_datalists_of_both_layouts(phantom: Path, tmp_path: Path) -> None:
    items = datalist(phantom)
    assert len(items) == 4 and all(len(i["image"]) == 2 and i["image"][1].endswith("_0001.nii.gz") for i in items)
    assert [Path(i["label"]).name for i in datalist(phantom, "test")] == ["case_004.nii.gz"]
    single = datalist(single_channel_description(phantom, tmp_path / "t1.json"))
    assert [i["image"] for i in single] == [i["image"][0] for i in items]
    # nnU-Net v1's case lists name the case, not its channel files
    lists = {"modality": {"0": "T1", "1": "FLAIR"}, "labels": {"0": "background", "1": "core", "2": "oedema"}}
    lists["training"] = [{"image": f"{phantom}/imagesTr/case_000.nii.gz", "label": f"{phantom}/labelsTr/case_000.nii.gz"}]
    (tmp_path / "v1.json").write_text(json.dumps(lists), encoding="utf-8")
    assert datalist(tmp_path / "v1.json")[0]["image"] == items[0]["image"]


def test_plan_normalises_each_channel_by_its_modality_and_declares_them(bundle: Path) -> None:
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 2 and image["channel_def"] == {"0": "T1", "1": "FLAIR"}
    assert train["normalization"] == ["zscore", "zscore"] and train["window"] is None
    assert "channel 1 FLAIR" in json.loads((bundle / "plan.json").read_text(encoding="utf-8"))["plan"]["reasons"]["normalization"]


def test_a_ct_channel_gets_its_window_and_width_is_a_multiple_of_the_channels() -> None:
    fg = {"p0.5": -100.0, "p50": 40.0, "p99.5": 250.0, "mean": 40.0, "sd": 50.0}
    print_ = {
        "modality": "CT, PET, MR",
        "channels": ["CT", "PET", "MR"],
        "labels": {0: "background", 1: "lesion"},
        "colours": {},
        "training_cases": 8,
        "spacings": [[1.0, 1.0, 1.0]] * 8,
        "shapes": [[64, 64, 64]] * 8,
        "foreground": fg,
        "foreground_per_channel": [fg, fg, fg],
    }
    values = make_plan(print_)["values"]
    assert values["normalization"] == ["minmax", "zscore", "zscore"] and values["window"] == [[-100.0, 250.0], None, None]
    assert values["width"] % 3 == 0 and values["width"] >= 4


def test_bias_correction_is_recorded_and_inference_applies_it(bundle: Path) -> None:
    """The model was trained on N4-corrected channels: its record says so, and the segmenter rebuilt from it corrects."""
    from medseg.bias_field import N4Corrected
    from medseg.inference.trained import trained_segmenter

    assert json.loads((bundle / "models" / "model.json").read_text())["settings"]["bias_correction"] is True
    segmenter = trained_segmenter(bundle, device="cpu")
    assert segmenter.bias_correction is True
    assert any(isinstance(t, N4Corrected) for t in segmenter._transforms(None).transforms)


def test_trained_two_channel_bundle_infers_channel_files_onto_the_input_grid(bundle: Path, phantom: Path, tmp_path: Path) -> None:
    (case,) = datalist(phantom, "test")
    result = run_main(main, "infer", "--bundle", bundle, "--input", *case["image"], "--output", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert list(written) == [case["image"][0]]
    mask, geometry = read_volume(tmp_path / "out" / "case_004_seg.nii.gz")
    assert not geometry.matches(read_volume(case["image"][0])[1]) and set(np.unique(mask)) <= {0, 1, 2}
    # the same case as one 4D file (the Decathlon's layout) gives the same mask
    t1, flair = (nib.load(p) for p in case["image"])
    nib.save(nib.Nifti1Image(np.stack([t1.get_fdata(), flair.get_fdata()], axis=-1).astype(np.float32), t1.affine), tmp_path / "c.nii.gz")
    assert run_main(main, "infer", "--bundle", bundle, "--input", tmp_path / "c.nii.gz", "--output", tmp_path / "four").returncode == 0
    np.testing.assert_array_equal(read_volume(tmp_path / "four" / "c_seg.nii.gz")[0], mask)


def _moved(path: str, folder: Path) -> Path:
    image, geometry = read_volume(path)
    shifted = Geometry(geometry.shape, geometry.spacing, tuple(np.add(geometry.origin, (4.0, 0, 0))), geometry.direction)
    return write_volume(image, shifted, folder / Path(path).name)


def _infer_case(kind: str, case: dict, folder: Path) -> list[Path]:
    t1, flair = (Path(p) for p in case["image"])
    if kind == "missing-channel":
        return [Path(shutil.copy(t1, folder))]
    if kind == "different-grids":
        return [Path(shutil.copy(t1, folder)), _moved(str(flair), folder)]
    if kind == "one-channel-file":
        return [Path(shutil.copy(t1, folder / "scan.nii.gz"))]
    image = nib.load(t1)  # "three-channels": a 4D file with one channel too many
    nib.save(nib.Nifti1Image(np.stack([image.get_fdata()] * 3, axis=-1).astype(np.float32), image.affine), folder / "scan.nii.gz")
    return [folder / "scan.nii.gz"]


INFER_CASES = [
    ("missing-channel", r"case_004_0001\.nii\.gz is missing"),
    ("different-grids", r"case_004_0001\.nii\.gz: its grid differs from channel 0 \(case_004_0000\.nii\.gz\)"),
    ("one-channel-file", r"scan\.nii\.gz has no channel suffix _0000\.\._0001"),
    ("three-channels", r"scan\.nii\.gz: 3 channel\(s\); the model takes 2 \(T1, FLAIR\)"),
]


@pytest.mark.parametrize(("kind", "reason"), INFER_CASES, ids=[c[0] for c in INFER_CASES])
def test_infer_refuses_channels_that_do_not_fit_and_writes_nothing(
    kind: str, reason: str, bundle: Path, phantom: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = _infer_case(kind, datalist(phantom, "test")[0], inputs)
    before = sorted(inputs.iterdir())
    result = run_main(main, "infer", "--bundle", bundle, "--input", *files, "--output", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(reason, lines[0]), lines[0]
    assert sorted(inputs.iterdir()) == before and not (tmp_path / "out").exists()


def _copy_dataset(phantom: Path, dest: Path) -> Path:
    shutil.copytree(phantom, dest)
    return dest


def test_validate_names_a_channel_on_another_grid(phantom: Path, tmp_path: Path) -> None:
    data = _copy_dataset(phantom, tmp_path / "data")
    _moved(str(data / "imagesTr" / "case_002_0001.nii.gz"), data / "imagesTr")
    result = run_main(main, "validate", data)
    assert result.returncode == 1
    assert "ERROR " + str(data / "imagesTr" / "case_002_0001.nii.gz") + ": its grid differs from channel 0" in result.stdout


def test_plan_refuses_channel_files_the_dataset_does_not_declare(phantom: Path, tmp_path: Path) -> None:
    data = _copy_dataset(phantom, tmp_path / "data")
    description = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    (data / "dataset.json").write_text(json.dumps({**description, "channel_names": {"0": "T1"}}), encoding="utf-8")
    result = run_main(main, "plan", data, "--out", tmp_path / "bundle")  # 2 files per case, 1 channel declared
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "case_000_0001.nii.gz: a channel file beyond channel 0 (4 such files), but 1 channel is declared" in result.stderr
    assert not (tmp_path / "bundle").exists()


def test_train_refuses_a_dataset_with_other_channels_than_the_bundle(bundle: Path, phantom: Path, tmp_path: Path) -> None:
    t1_only = single_channel_description(phantom, tmp_path / "t1.json")
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    result = run_main(main, "train", "--bundle", copy, "--data", t1_only, "--epochs", "1")
    assert result.returncode == 2, result.stderr
    assert "case_000_0000.nii.gz: 1 channel(s); the bundle's network takes 2 per case" in result.stderr


def test_validate_names_a_case_whose_channel_count_differs(phantom: Path, tmp_path: Path) -> None:
    """Decathlon layout (one 4D file per case): a case with 3 channels in a dataset that declares 2."""
    items = datalist(phantom)
    (tmp_path / "imagesTr").mkdir()
    training = []
    for n, item in enumerate(items[:2]):
        t1, flair = (nib.load(p) for p in item["image"])
        channels = [t1.get_fdata(), flair.get_fdata()] + ([flair.get_fdata()] if n == 1 else [])
        nib.save(nib.Nifti1Image(np.stack(channels, axis=-1).astype(np.float32), t1.affine), tmp_path / "imagesTr" / f"c{n}.nii.gz")
        training.append({"image": f"./imagesTr/c{n}.nii.gz", "label": item["label"]})
    description = {"modality": {"0": "T1", "1": "FLAIR"}, "labels": {"0": "background", "1": "core", "2": "oedema"}}
    (tmp_path / "dataset.json").write_text(json.dumps({**description, "training": training}), encoding="utf-8")
    result = run_main(main, "validate", tmp_path)
    assert result.returncode == 1 and result.stdout.count("ERROR") == 1, result.stdout
    assert f"ERROR {tmp_path / 'imagesTr' / 'c1.nii.gz'}: 3 channel(s); the dataset declares 2 per case." in result.stdout


def test_the_scan_page_segments_a_4d_upload_with_a_two_channel_bundle(bundle: Path, phantom: Path, tmp_path: Path) -> None:
    """The scan page's app in this process (its server is tested as a process in tests/medseg/web): one 4D upload."""
    from medseg.web.server import create_app

    (case,) = datalist(phantom, "test")
    t1, flair = (nib.load(p) for p in case["image"])
    four = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([t1.get_fdata(), flair.get_fdata()], axis=-1).astype(np.float32), t1.affine), four)
    client = create_app(bundle).test_client()
    with four.open("rb") as upload:
        answer = client.post("/api/segment", data={"file": (upload, "c.nii.gz")}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["shape"] == list(t1.shape)
    with open(case["image"][0], "rb") as upload:
        one = client.post("/api/segment", data={"file": (upload, "t1.nii.gz")}, content_type="multipart/form-data")
    assert one.status_code == 422 and "1 channel(s); the model takes 2 (T1, FLAIR)" in one.get_json()["error"]
