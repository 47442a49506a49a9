"""Both stages of a cascade: the coarse stage's probabilities reach the fine stage on each image's own grid, a
planned cascade trains and segments through the CLI, and what it cannot do yet is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.evaluation.metrics import dice
from medseg.inference.cascade import PROBABILITY_FLOOR, CascadeSegmenter, write_coarse_channels, write_coarse_dataset
from medseg.inference.segmenter import Segmenter, load_segmenter
from medseg.io.volumes import read_volume, write_volume
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series
from tests.medseg.inference.test_segmenter import NAMES, IntensityOracle
from tests.medseg.test_train_infer import write_small_ct


class ProbabilityEcho(torch.nn.Module):
    """A fine stage that ignores the image: its logits are the logs of the coarse probabilities it is given
    (channels 1..3; background: what they leave), so its argmax is the coarse stage's wherever they arrive intact."""

    in_channels = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, 1:].clamp(min=0)
        background = (1 - p.sum(1, keepdim=True)).clamp(min=1e-6)
        return torch.log(torch.cat([background, p.clamp(min=1e-6)], 1)) * 10


def _stages(coarse_pixdim: float, fine_pixdim: float) -> tuple[Segmenter, Segmenter]:
    coarse = Segmenter(IntensityOracle(), NAMES, pixdim=(coarse_pixdim,) * 3, window=(0, 3), roi_size=(16, 16, 16))
    fine = Segmenter(
        ProbabilityEcho(),
        NAMES,
        pixdim=(fine_pixdim,) * 3,
        window=[(0, 3), (0, 1), (0, 1), (0, 1)],
        normalization=["minmax"] * 4,
        roi_size=(16, 16, 16),
    )
    return coarse, fine


def test_coarse_probabilities_are_written_on_the_image_grid_with_the_floor(tmp_path: Path) -> None:
    image = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "case.nrrd")
    coarse, _ = _stages(2.0, 1.0)
    files = write_coarse_channels(coarse, image, tmp_path / "out", "case")
    assert [f.name for f in files] == [f"case_coarse_{k}.nii.gz" for k in (1, 2, 3)]
    probs = [read_volume(f) for f in files]
    assert all(geometry.matches(OBLIQUE) == [] for _, geometry in probs)
    stack = np.stack([p for p, _ in probs])
    assert stack.min() >= 0 and stack.sum(0).max() <= 1 + 1e-3
    assert not ((stack > 0) & (stack < PROBABILITY_FLOOR)).any()  # tiny softmax values are 0: the crop keeps to the body


def test_the_fine_stage_receives_the_coarse_probabilities_on_its_own_grid(tmp_path: Path) -> None:
    """With a fine stage that echoes its probability channels, the cascade's mask is the coarse stage's mask: the
    channels arrive on the right voxels, for an oblique NRRD as for NIfTI. Without them the fine stage is refused."""
    labels = random_labels()
    for suffix in (".nrrd", ".nii.gz"):
        image = write_volume(labels.astype(np.int16), OBLIQUE, tmp_path / f"case{suffix}")
        coarse, fine = _stages(2.0, 1.0)
        coarse_mask, _ = coarse.segment(image)
        cascade = CascadeSegmenter(coarse, fine)
        mask, geometry = cascade.segment(image)
        assert geometry.matches(OBLIQUE) == []
        agree = (mask == coarse_mask).mean()
        assert agree > 0.97, agree  # the fine grid (1 mm) resamples the probabilities once more than the coarse mask
        assert 0.5 < (coarse_mask == labels).mean() < 0.99  # and the coarse mask is not the labels: the test can tell
        assert cascade.in_channels == 1 and cascade.names == NAMES
        with pytest.raises(Exception, match=r"1 channel\(s\); the model takes 4"):
            fine.segment(image)


def test_a_dicom_series_reaches_the_fine_stage_with_its_probabilities_on_the_series_grid(tmp_path: Path) -> None:
    """A series folder is channel 0 of the fine stage beside NIfTI probabilities written on the series' own grid."""
    labels = random_labels()
    folder = write_dicom_series(labels.astype(np.int16), OBLIQUE, tmp_path / "series")
    coarse, fine = _stages(2.0, 1.0)
    coarse_mask, _ = coarse.segment(folder)
    mask, geometry = CascadeSegmenter(coarse, fine).segment(folder)
    series, series_geometry = read_volume(folder)  # stacked by slice position: k may run the other way
    assert np.allclose(geometry.ijk_to_lps, series_geometry.ijk_to_lps, atol=1e-3)
    assert (mask == coarse_mask).mean() > 0.97 and 0.5 < (coarse_mask == np.asarray(series)).mean() < 0.99


def test_segment_files_of_a_cascade_exports_the_fine_stages_labels(tmp_path: Path) -> None:
    image = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "in" / "case.nii.gz")
    written = CascadeSegmenter(*_stages(2.0, 1.0)).segment_files([str(image)], tmp_path / "out", ("nifti",))
    (files,) = written.values()
    assert files[0].name == "case_seg.nii.gz"
    assert read_volume(files[0])[1].matches(OBLIQUE) == []


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_ct(tmp_path_factory.mktemp("small_ct_cascade"), cases=4, seed=1)


@pytest.fixture(scope="module")
def cascade_bundle(small_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("cascade") / "bundle"
    assert main(["plan", str(small_ct), "--out", str(bundle), "--iterations", "90", "--cascade", "on"]) == 0
    quiet = ["--set", "options#verbose=false", "--set", "options#plots=none", "--device", "cpu"]
    # nnU-Net's coarse-channel augmentation, off in a plan: --set reaches both stages, and the coarse one (no coarse
    # channels) must train as it would without it
    augmented = ["--set", "train#preprocessing#coarse_augmentation=true"]
    assert main(["train", "--bundle", str(bundle), "--data", str(small_ct), *quiet, *augmented]) == 0
    return bundle


def test_a_planned_cascade_trains_both_stages_and_infer_runs_both(small_ct: Path, cascade_bundle: Path, tmp_path: Path) -> None:
    plan = json.loads((cascade_bundle / "plan.json").read_text())["plan"]
    coarse = json.loads((cascade_bundle / "coarse" / "plan.json").read_text())["plan"]
    assert np.allclose(np.asarray(coarse["values"]["pixdim"]) / plan["values"]["pixdim"], plan["cascade"]["spacing_scale"], atol=1e-3)
    assert plan["channels"] == ["CT", "coarse organ", "coarse small_organ"]
    assert (cascade_bundle / "coarse" / "models" / "model.pt").is_file() and (cascade_bundle / "models" / "model.pt").is_file()
    described = json.loads((cascade_bundle / "coarse_channels" / "dataset.json").read_text())
    assert all(len(case["image"]) == 3 and Path(case["image"][1]).is_file() for case in described["training"])
    segmenter = load_segmenter(cascade_bundle)
    assert isinstance(segmenter, CascadeSegmenter) and segmenter.fine.network.in_channels == 3
    for stage in (cascade_bundle / "coarse", cascade_bundle):  # each decided on its validation case, the fine one on 3 channels
        decision = json.loads((stage / "models" / "postprocessing.json").read_text(encoding="utf-8"))
        assert decision["decided_on"] == "1 validation case(s)" and set(decision["dice_without"]) == {"1", "2"}
    assert segmenter.fine.remove_small == {int(k): v for k, v in decision["remove_smaller_than_ml"].items()}
    new = write_small_ct(tmp_path / "new", cases=1, seed=7)  # a case neither stage saw
    assert (
        main(
            [
                "infer",
                "--bundle",
                str(cascade_bundle),
                "--input",
                str(new / "imagesTr" / "case0.nii.gz"),
                "--output",
                str(tmp_path / "out"),
                "--format",
                "nifti",
            ]
        )
        == 0
    )
    mask, _ = read_volume(tmp_path / "out" / "case0_seg.nii.gz")
    label, _ = read_volume(new / "labelsTr" / "case0.nii.gz")
    scores = dice(np.asarray(mask), np.asarray(label), (1, 2))
    assert scores[1] > 0.6, scores  # 90 iterations a stage; broken channels or an untrained stage give about 0


@pytest.mark.parametrize(("flag", "named"), [(["--resume"], "--resume"), (["--fold", "0"], "--fold")])
def test_what_a_cascade_cannot_do_yet_is_refused_before_training(cascade_bundle: Path, small_ct: Path, flag, named, capsys) -> None:
    before = sorted(p.name for p in (cascade_bundle / "models").iterdir())
    assert main(["train", "--bundle", str(cascade_bundle), "--data", str(small_ct), *flag]) != 0
    assert f"a two-stage (cascade) bundle; {named} cannot be used" in capsys.readouterr().err
    assert sorted(p.name for p in (cascade_bundle / "models").iterdir()) == before


def test_cross_validation_of_a_cascade_is_refused(cascade_bundle: Path, small_ct: Path, capsys) -> None:
    assert main(["cross-validate", "--bundle", str(cascade_bundle), "--data", str(small_ct), "--folds", "0"]) != 0
    assert "a two-stage (cascade) bundle; cross-validate cannot be used with it yet" in capsys.readouterr().err
    assert not (cascade_bundle / "models" / "fold_0").exists()


def test_the_coarse_dataset_keeps_the_validation_list_and_names_a_case_without_label(
    small_ct: Path, cascade_bundle: Path, tmp_path: Path
) -> None:
    description = json.loads((small_ct / "dataset.json").read_text())
    with_validation = tmp_path / "data"
    with_validation.mkdir()
    items = [{k: str((small_ct / v).resolve()) for k, v in case.items()} for case in description["training"]]
    (with_validation / "dataset.json").write_text(json.dumps({**description, "training": items[:3], "validation": items[3:]}))
    made = json.loads(write_coarse_dataset(cascade_bundle / "coarse", with_validation, tmp_path / "c", ["CT", "a", "b"]).read_text())
    assert [len(made["training"]), len(made["validation"])] == [3, 1]
    assert made["validation"][0]["label"] == items[3]["label"] and made["channel_names"] == {"0": "CT", "1": "a", "2": "b"}
    unlabelled = tmp_path / "nolabel"
    unlabelled.mkdir()
    (unlabelled / "dataset.json").write_text(json.dumps({**description, "training": [{"image": items[0]["image"]}, items[1]]}))
    with pytest.raises(Exception, match=r"case0.nii.gz: a training case without a label"):
        write_coarse_dataset(cascade_bundle / "coarse", unlabelled, tmp_path / "c2", ["CT", "a", "b"])
    assert not (tmp_path / "c2").exists() and not list(tmp_path.glob(".coarse-*"))  # nothing partial left behind


def test_a_served_cascade_answers_the_scan_page_and_monai_label_with_the_cli_mask(cascade_bundle: Path, tmp_path: Path) -> None:
    """``medseg serve`` (scan page and MONAI Label's protocol, as 3D Slicer drives it) runs both stages: the same mask
    as ``load_segmenter`` gives, for a zipped DICOM series and for a NIfTI volume."""
    import io
    import zipfile

    import requests
    import slicerio

    from tests.action.web_server import Server
    from tests.medseg.web import slicer_client as slicer

    new = write_small_ct(tmp_path / "new", cases=1, seed=8)
    volume, geometry = read_volume(new / "imagesTr" / "case0.nii.gz")
    folder = write_dicom_series(np.asarray(volume).astype(np.int16), geometry, tmp_path / "series")
    expected, _ = load_segmenter(cascade_bundle).segment(folder)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"series/{path.name}")
    (tmp_path / "srv").mkdir()
    running = Server(cascade_bundle, tmp_path / "srv", max_upload_mb=20, module="medseg", extra=("--monai-label",))
    try:
        files = {"file": ("case9.zip", archive.getvalue(), "application/octet-stream")}
        answer = requests.post(running.url + "/api/segment", files=files, timeout=300)
        assert answer.status_code == 200, answer.text
        (tmp_path / "s.seg.nrrd").write_bytes(requests.get(running.url + answer.json()["downloads"]["seg_nrrd"], timeout=60).content)
        np.testing.assert_array_equal(slicerio.read_segmentation(str(tmp_path / "s.seg.nrrd"))["voxels"], expected)
        scan = new / "imagesTr" / "case0.nii.gz"
        assert slicer.upload_image(running.url, scan, "case_0") == (200, {"image": "case_0"})
        status, params, answered = slicer.infer(running.url, next(iter(slicer.info(running.url)[1]["models"])), "case_0", {})
        assert status == 200, params
        ((name, data),) = answered.items()
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(read_volume(tmp_path / name)[0], load_segmenter(cascade_bundle).segment(scan)[0])
    finally:
        running.stop()
