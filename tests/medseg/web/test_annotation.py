"""MONAI Label's annotation loop on a real ``medseg serve --monai-label --datastore DIR`` process, driven by MONAI Label's
own clients: ``monailabel.client.MONAILabelClient`` and 3D Slicer's (``MONAILabelLib/client.py``), from the
``monailabel`` wheel (installed without its server dependencies by ``make install``)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from medseg.io.volumes import Geometry, read_header, read_volume, write_volume
from tests.action.web_server import Server

with warnings.catch_warnings():  # the client imports cgi, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException


def _slicer_client_module():
    """3D Slicer's MONAILabel client, as the wheel installs it (``<prefix>/monailabel/plugins/slicer/...``)."""
    path = Path(sys.prefix) / "monailabel" / "plugins" / "slicer" / "MONAILabel" / "MONAILabelLib" / "client.py"
    spec = importlib.util.spec_from_file_location("slicer_monailabel_client", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datastore")


@pytest.fixture(scope="module")
def server(untrained_bundle: Path, store_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    extra = ("--monai-label", "--datastore", str(store_dir))
    running = Server(untrained_bundle, tmp_path_factory.mktemp("annotation_server"), max_upload_mb=4, module="medseg", extra=extra)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def scans(demo_dataset: Path) -> list[Path]:
    return sorted((demo_dataset / "imagesTr").iterdir())[:3]


def _status(err: MONAILabelClientException) -> str:
    return str(err.msg)


def test_upload_list_save_a_label_and_ask_for_the_next_sample(
    server: Server, scans: list[Path], demo_dataset: Path, tmp_path: Path
) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    for n, scan in enumerate(scans):
        assert client.upload_image(str(scan), f"case_{n}") == {"image": f"case_{n}"}
    listing = client.datastore()
    assert sorted(listing["objects"]) == ["case_0", "case_1", "case_2"] and all(not o["labels"] for o in listing["objects"].values())
    label = _label_for(scans[1])
    assert client.save_label("case_1", str(label), tag="final") == {"image": "case_1", "label": "case_1"}
    assert client.next_sample("first", {})["id"] == "case_0"
    assert client.next_sample("random", {})["id"] in ("case_0", "case_2")
    info = client.info()
    assert info["datastore"] == {"total": 3, "completed": 1, "label_tags": {"final": 1}}
    assert set(info["strategies"]) == {"random", "first", "uncertainty"}
    saved = Path(client.download_label("case_1", "final"))
    back, geometry = read_volume(saved)
    expected, expected_geometry = read_volume(label)
    np.testing.assert_array_equal(back, expected)
    assert not geometry.matches(expected_geometry)


def test_a_label_off_its_grid_or_with_unknown_values_or_for_no_image_is_refused(
    server: Server, store_dir: Path, scans: list[Path], demo_dataset: Path, tmp_path: Path
) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    client.upload_image(str(scans[0]), "grid_case")
    reference, geometry = read_volume(_label_for(scans[0]))
    moved = Geometry(geometry.shape, geometry.spacing, tuple(np.asarray(geometry.origin) + 5.0), geometry.direction)
    cases = {
        "moved.nii.gz": (write_volume(reference, moved, tmp_path / "moved.nii.gz"), "not on its image"),
        "values.nii.gz": (
            write_volume(np.where(reference > 0, 7, 0).astype(np.uint8), geometry, tmp_path / "values.nii.gz"),
            "values \\[7\\]",
        ),
    }
    for path, reason in cases.values():
        with pytest.raises(MONAILabelClientException, match=f"Status: 422.*{reason}"):
            client.save_label("grid_case", str(path), tag="final")
    with pytest.raises(MONAILabelClientException, match="Status: 404.*No image .*nobody"):
        client.save_label("nobody", str(cases["values.nii.gz"][0]), tag="final")
    assert client.datastore()["objects"]["grid_case"]["labels"] == {}  # nothing half-written
    assert not [p for p in store_dir.rglob("*") if p.name.startswith(".") or ("grid_case" in p.name and "labels" in p.parts)]


def test_a_session_image_is_segmented_without_entering_the_datastore(server: Server, scans: list[Path], tmp_path: Path) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    before = sorted(client.datastore()["objects"])
    session = client.create_session(str(scans[2]))
    session_id = session["session_id"]
    assert client.get_session(session_id)["name"] == session_id
    mask_file, params = client.infer("vnet_seg", "", {"result_extension": ".nii.gz"}, session_id=session_id)
    mask, geometry = read_volume(mask_file)
    assert (
        mask.shape == tuple(geometry.shape)
        and not geometry.matches(read_header(scans[2]).geometry)
        and params["label_names"] == {"liver": 1, "kidney": 2, "tumour": 3}
    )
    client.remove_session(session_id)
    with pytest.raises(MONAILabelClientException, match="Status: 404"):
        client.get_session(session_id)
    assert sorted(client.datastore()["objects"]) == before


def test_slicers_own_client_saves_a_label_and_reads_the_datastore(
    server: Server, scans: list[Path], demo_dataset: Path, tmp_path: Path
) -> None:
    slicer = _slicer_client_module().MONAILabelClient(server.url, tmpdir=str(tmp_path))
    assert slicer.upload_image(str(scans[0]), "slicer_case")["image"] == "slicer_case"
    mask_file, params = slicer.infer("vnet_seg", "slicer_case", {"result_extension": ".nrrd"})
    assert Path(mask_file).is_file() and params["image"] == "slicer_case"
    assert slicer.save_label("slicer_case", str(_label_for(scans[0])), tag="final")["label"] == "slicer_case"
    assert "final" in slicer.datastore()["objects"]["slicer_case"]["labels"]


def test_the_datastore_is_a_folder_that_survives_a_restart(
    server: Server, store_dir: Path, untrained_bundle: Path, scans: list[Path], tmp_path: Path
) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    client.upload_image(str(scans[0]), "kept")
    client.save_label("kept", str(_label_for(scans[0])), tag="final")
    assert (store_dir / "images").is_dir() and any(p.name.startswith("kept") for p in (store_dir / "labels" / "final").iterdir())
    (tmp_path / "again").mkdir()
    again = Server(untrained_bundle, tmp_path / "again", module="medseg", extra=("--monai-label", "--datastore", str(store_dir)))
    try:
        other = MONAILabelClient(again.url, tmpdir=str(tmp_path))
        assert "final" in other.datastore()["objects"]["kept"]["labels"]
    finally:
        again.stop()


def _label_for(scan: Path) -> Path:
    return scan.parent.parent / "labelsTr" / scan.name


def _wait_until_done(client: MONAILabelClient, timeout_s: float = 600) -> dict:
    import time

    deadline = time.monotonic() + timeout_s
    while client.train_status(check_if_running=True):
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(1)
    return client.train_status()


def test_training_on_saved_labels_serves_the_new_weights_only_when_they_are_not_worse(
    server: Server, untrained_bundle: Path, store_dir: Path, scans: list[Path], tmp_path: Path
) -> None:
    """The loop: 3 images, 2 corrected labels saved, train, status until done, the served model replaced only when its
    validation Dice is not lower (the previous one kept), and the next sample is the unlabelled image."""
    import hashlib

    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    for n, scan in enumerate(scans):
        client.upload_image(str(scan), f"loop_{n}")
    for n in (0, 1):
        client.save_label(f"loop_{n}", str(_label_for(scans[n])), tag="final")
    weights = untrained_bundle / "models" / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    started = client.train_start("vnet_seg", {"max_epochs": 2})
    assert started["state"] == "RUNNING" and started["cases"] >= 2
    with pytest.raises(MONAILabelClientException, match="Status: 409"):
        client.train_start("vnet_seg", {"max_epochs": 2})  # one run at a time
    status = _wait_until_done(client)
    assert status["state"] == "SUCCESS", status
    new, served = status["dice"]["new"], status["dice"]["served"]
    assert status["replaced"] == (new >= served) and status["epoch"] == 2
    after = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (after != before) == status["replaced"]
    assert (untrained_bundle / "models" / "previous" / "model.pt").is_file() == status["replaced"]
    assert client.info()["train_stats"]["vnet_seg"]["state"] == "SUCCESS"
    _the_most_uncertain_unlabelled_image_is_next(client, untrained_bundle, store_dir)


def _the_most_uncertain_unlabelled_image_is_next(client: MONAILabelClient, bundle: Path, store_dir: Path) -> None:
    """``next_sample("uncertainty")`` is the unlabelled image with the highest mean voxel entropy of the served model's
    probabilities, recomputed here with the bundle's current weights (replaced or not by the training above)."""
    from medseg.inference.segmenter import load_segmenter

    objects = client.datastore()["objects"]
    unlabelled = sorted(i for i, o in objects.items() if "final" not in o["labels"])
    assert "loop_2" in unlabelled and "loop_0" not in unlabelled
    chosen = client.next_sample("uncertainty", {})
    segmenter, scores = load_segmenter(bundle), {}
    for image_id in unlabelled:
        kept: list = []
        segmenter.segment(store_dir / "images" / f"{image_id}{objects[image_id]['image']['ext']}", None, kept)
        scores[image_id] = sum(float((-(p := np.clip(np.asarray(c, np.float32), 1e-7, 1)) * np.log(p)).mean()) for c in kept)
    assert chosen["id"] == max(scores, key=scores.get) and chosen["entropy"] == pytest.approx(scores[chosen["id"]], rel=1e-3)
    assert client.next_sample("uncertainty", {}) == chosen  # cached per model version: the same answer


def test_a_stopped_training_leaves_the_served_model_and_says_so(
    server: Server, untrained_bundle: Path, scans: list[Path], tmp_path: Path
) -> None:
    import hashlib
    import time

    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    for n in (0, 1):
        client.upload_image(str(scans[n]), f"stop_{n}")
        client.save_label(f"stop_{n}", str(_label_for(scans[n])), tag="final")
    weights = untrained_bundle / "models" / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    client.train_start("vnet_seg", {"max_epochs": 500})
    time.sleep(3)
    stopped = client.train_stop()
    assert stopped["state"] == "STOPPED" and "unchanged" in stopped["reason"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before
    assert not client.train_status(check_if_running=True)


def test_training_needs_two_labelled_images_and_says_so(untrained_bundle: Path, tmp_path: Path) -> None:
    from medseg.web.datastore import DatastoreError, FolderDatastore
    from medseg.web.training import Finetuner

    tuner = Finetuner(untrained_bundle, FolderDatastore(tmp_path / "empty", [0, 1, 2, 3]), on_better=lambda _: None)
    with pytest.raises(DatastoreError, match=r"at least 2 images with a final label .* has 0") as refused:
        tuner.start({"max_epochs": 1})
    assert refused.value.status == 422 and tuner.status()["state"] == "NONE" and not tuner.running()
    assert not list((tmp_path / "empty" / ".train").iterdir())  # nothing half-made
