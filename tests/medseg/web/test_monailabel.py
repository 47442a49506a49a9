"""MONAI Label's auto-segmentation protocol on a real ``medseg serve --monai-label`` process, driven as 3D Slicer's
MONAILabel module drives it (:mod:`tests.medseg.web.slicer_client`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

from medseg.inference.segmenter import load_segmenter
from medseg.io.volumes import read_header, read_volume
from tests.action.web_server import Server
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series
from tests.medseg.web import slicer_client as slicer


@pytest.fixture(scope="module")
def server(untrained_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    running = Server(untrained_bundle, tmp_path_factory.mktemp("label_server"), max_upload_mb=2, module="medseg", extra=("--monai-label",))
    yield running
    running.stop()
    assert not list(running.tmpdir.glob("medact-scans-*")), "the result root must be removed on shutdown"


def _stored(server: Server) -> list[Path]:
    (root,) = server.tmpdir.glob("medact-scans-*")
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_info_describes_the_bundle_as_a_segmentation_model(server: Server, untrained_bundle: Path) -> None:
    status, info = slicer.info(server.url)
    assert status == 200
    labels = {"liver": 1, "kidney": 2, "tumour": 3}
    assert info["labels"] == labels
    assert info["models"] == {"vnet_seg": {"type": "segmentation", "labels": labels, "dimension": 3, "description": info["description"]}}
    assert info["name"] and info["version"]


def test_upload_then_infer_gives_the_cli_mask_on_the_volume_grid(
    server: Server, untrained_bundle: Path, demo_dataset: Path, tmp_path: Path
) -> None:
    scan = sorted((demo_dataset / "imagesTs").glob("*.nii.gz"))[0]
    status, answer = slicer.upload_image(server.url, scan, "../case 7")  # ids name folders of ours, never paths
    assert status == 400 and "Image id '../case 7'" in answer["detail"]
    status, answer = slicer.upload_image(server.url, scan, "case_7")
    assert (status, answer) == (200, {"image": "case_7"})
    status, params, files = slicer.infer(server.url, "vnet_seg", "case_7", {"result_extension": ".nrrd", "result_dtype": "uint8"})
    assert status == 200, params
    assert params["label_names"] == {"liver": 1, "kidney": 2, "tumour": 3} and params["image"] == "case_7"
    ((name, data),) = files.items()
    assert name == "case_7_seg.nrrd"
    (tmp_path / name).write_bytes(data)
    mask, geometry = read_volume(tmp_path / name)
    assert not geometry.matches(read_header(scan).geometry) and mask.dtype == np.uint8
    expected, _ = load_segmenter(untrained_bundle).segment(scan)  # what `medseg infer` writes
    np.testing.assert_array_equal(mask, expected)
    assert not any(p.name.endswith("_seg.nrrd") for p in _stored(server)), "the answer's file is not kept"


def test_a_zipped_dicom_series_and_other_result_formats(server: Server, tmp_path: Path) -> None:
    folder = write_dicom_series(random_labels(OBLIQUE.shape).astype(np.int16) * 100, OBLIQUE, tmp_path / "series")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    assert slicer.upload_image(server.url, archive, "ct1")[0] == 200
    status, params, files = slicer.infer(server.url, "vnet_seg", "ct1", {"result_extension": ".nii.gz", "result_dtype": "uint16"})
    assert status == 200 and list(files) == ["ct1_seg.nii.gz"] and params["image"] == "ct1"
    (tmp_path / "r.nii.gz").write_bytes(next(iter(files.values())))
    mask, geometry = read_volume(tmp_path / "r.nii.gz")
    assert mask.dtype == np.uint16 and not geometry.matches(read_header(folder).geometry, tol=1e-3)
    only_json = requests.post(server.url + "/infer/vnet_seg?image=ct1&output=json", data={"params": "{}"}, timeout=120)
    assert only_json.status_code == 200 and only_json.json()["label_names"]["liver"] == 1


BAD_REQUESTS = [
    ("unknown model", "POST", "/infer/spleen?image=case_7", {"params": "{}"}, 404, "No model 'spleen'; this server has 'vnet_seg'"),
    ("unknown image", "POST", "/infer/vnet_seg?image=nobody", {"params": "{}"}, 404, "No image 'nobody'"),
    ("bad extension", "POST", "/infer/vnet_seg?image=case_7", {"params": '{"result_extension": ".png"}'}, 400, "result_extension '.png'"),
    ("bad dtype", "POST", "/infer/vnet_seg?image=case_7", {"params": '{"result_dtype": "float64"}'}, 400, "result_dtype 'float64'"),
    ("params not json", "POST", "/infer/vnet_seg?image=case_7", {"params": "{oops"}, 400, "not JSON"),
    ("training", "POST", "/train/", {}, 501, "not offered"),
    ("active learning", "POST", "/activelearning/random", {}, 501, "not offered"),
    ("save label", "PUT", "/datastore/label?image=case_7", {}, 501, "not offered"),
]


@pytest.mark.parametrize(("what", "method", "path", "form", "status", "message"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_requests_it_cannot_serve_get_one_json_reason(
    server: Server, demo_dataset: Path, what: str, method: str, path: str, form: dict, status: int, message: str
) -> None:
    scan = sorted((demo_dataset / "imagesTs").glob("*.nii.gz"))[0]
    assert slicer.upload_image(server.url, scan, "case_7")[0] == 200
    before = _stored(server)
    answer = requests.request(method, server.url + path, data=form, timeout=120)
    assert answer.status_code == status and message in answer.json()["detail"] == answer.json()["error"], answer.text
    assert _stored(server) == before, "nothing is left on disk by a refused request"


def test_uploads_over_the_limits_are_refused_and_leave_nothing(server: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.nii.gz"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 2**20))  # over --max-upload-mb 2
    before = _stored(server)
    status, body, _ = slicer.request(server.url, "PUT", "/datastore/?image=big", {}, {"file": big})
    assert status == 413 and b"larger than the limit" in body
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"not a volume at all")
    status, body, _ = slicer.request(server.url, "PUT", "/datastore/?image=fake", {}, {"file": fake})
    assert status in (400, 422) and b"error" in body
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../../evil.dcm", b"x")
    (tmp_path / "evil.zip").write_bytes(hostile.getvalue())
    status, body, _ = slicer.request(server.url, "PUT", "/datastore/?image=evil", {}, {"file": tmp_path / "evil.zip"})
    assert status == 400 and b"outside the archive" in body
    assert _stored(server) == before
    assert slicer.infer(server.url, "vnet_seg", "fake", {})[0] == 404  # a refused upload is not an image


def test_concurrent_inferences_of_one_image_and_a_reupload_all_answer_and_leave_nothing(
    untrained_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A Slicer retry storm: 8 /infer/ calls on one image at once, the image uploaded again while they run. Each call
    writes its own result file, the folder is held by each (counted, not a set) and a re-upload retires the old folder
    only when its last reader is done: all 200 with the mask of the volume they read, nothing left but the new upload."""
    from concurrent.futures import ThreadPoolExecutor

    running = Server(
        untrained_bundle,
        tmp_path_factory.mktemp("label_race"),
        max_upload_mb=2,
        module="medseg",
        extra=("--monai-label", "--max-transfers", "12", "--transfer-wait", "120"),
    )
    try:
        work = tmp_path_factory.mktemp("race_volumes")
        first = write_volume_file(work / "a.nii.gz", seed=1)
        second = write_volume_file(work / "b.nii.gz", seed=2)
        assert slicer.upload_image(running.url, first, "img")[0] == 200
        expected = {name: load_segmenter(untrained_bundle).segment(path)[0] for name, path in (("a", first), ("b", second))}

        def call(n: int) -> tuple[int, np.ndarray | None]:
            if n == 4:  # the re-upload, in the middle of the storm
                return slicer.upload_image(running.url, second, "img")[0], None
            status, _, files = slicer.infer(running.url, "vnet_seg", "img", {"result_extension": ".nii.gz"})
            if status != 200:
                return status, None
            path = work / f"got{n}.nii.gz"
            path.write_bytes(next(iter(files.values())))
            return status, np.asarray(read_volume(path)[0])

        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(call, range(9)))
        assert [status for status, _ in answers] == [200] * 9, answers
        for _, mask in (a for a in answers if a[1] is not None):
            assert any(np.array_equal(mask, e) for e in expected.values())  # the old volume's mask or the new one's
        (root,) = running.tmpdir.glob("medact-scans-*")
        left = sorted(p.relative_to(root).parts[-1] for p in root.rglob("*") if p.is_file())
        assert left == ["scan.nii.gz"], left  # the new upload only: no result file, the old folder gone
    finally:
        running.stop()


def write_volume_file(path: Path, seed: int) -> Path:
    from medseg.io.volumes import write_volume

    return write_volume((random_labels(OBLIQUE.shape, seed=seed) * 80).astype(np.int16), OBLIQUE, path)
