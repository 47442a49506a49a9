"""The scan page's API on a real server process: masks on the scan's exact grid, hostile zips refused, nothing left."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import slicerio

from medseg.inference.segmenter import load_segmenter
from medseg.io.volumes import read_header, read_volume
from tests.action.web_server import Server
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series


@pytest.fixture(scope="module")
def server(untrained_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    running = Server(untrained_bundle, tmp_path_factory.mktemp("scan_server"), max_upload_mb=20, module="medseg")
    yield running
    running.stop()
    assert not list(running.tmpdir.glob("medact-scans-*")), "the result root must be removed on shutdown"


def _post(server: Server, name: str, content: bytes) -> requests.Response:
    return requests.post(server.url + "/api/segment", files={"file": (name, content, "application/octet-stream")}, timeout=300)


def _results(server: Server) -> list[Path]:
    roots = list(server.tmpdir.glob("medact-scans-*"))
    assert len(roots) == 1, roots
    return sorted(roots[0].iterdir())


def test_a_scan_comes_back_on_its_own_grid_with_volumes_and_views(server: Server, untrained_bundle: Path, demo_dataset: Path) -> None:
    scan = sorted((demo_dataset / "imagesTs").iterdir())[0]
    answer = _post(server, "../../" + scan.name, scan.read_bytes())  # a hostile name only names the outputs, sanitised
    assert answer.status_code == 200, answer.text
    data = answer.json()
    reference = read_header(scan).geometry
    assert data["case"] == scan.name.split(".")[0] and data["shape"] == list(reference.shape)
    assert "dicom_seg" not in data["downloads"]  # a DICOM SEG only for a DICOM series
    seg = requests.get(server.url + data["downloads"]["seg_nrrd"], timeout=60)
    assert seg.status_code == 200 and "attachment" in seg.headers["Content-Disposition"]
    (server.tmpdir / "got.seg.nrrd").write_bytes(seg.content)
    segmentation = slicerio.read_segmentation(str(server.tmpdir / "got.seg.nrrd"))
    np.testing.assert_allclose(segmentation["ijkToLPS"], reference.ijk_to_lps, atol=1e-4)  # the input's exact geometry
    expected, _ = load_segmenter(untrained_bundle).segment(scan)  # what `medseg infer` gives
    np.testing.assert_array_equal(segmentation["voxels"], expected)
    (server.tmpdir / "got_seg.nii.gz").write_bytes(requests.get(server.url + data["downloads"]["nifti"], timeout=60).content)
    np.testing.assert_array_equal(read_volume(server.tmpdir / "got_seg.nii.gz")[0], expected)
    voxel_ml = float(np.prod(reference.spacing)) / 1000
    for row in data["labels"]:
        assert row["voxels"] == int((expected == row["value"]).sum()) and row["volume_ml"] == pytest.approx(
            row["voxels"] * voxel_ml, abs=1e-3
        )
    for axis, count in data["views"].items():
        png = requests.get(server.url + data["view_url"].format(axis=axis, index=count // 2), timeout=60)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert requests.get(server.url + data["view_url"].format(axis=axis, index=count), timeout=60).status_code == 404
    assert requests.get(server.url + f"/api/results/{data['id']}/..%2F..%2Fetc%2Fpasswd", timeout=60).status_code == 404
    assert not any(p.name.startswith(("upload", "scan")) for p in next(r for r in _results(server) if r.name == data["id"]).iterdir())


def test_a_zipped_dicom_series_is_segmented_on_its_grid(server: Server, tmp_path: Path) -> None:
    folder = write_dicom_series(random_labels(OBLIQUE.shape).astype(np.int16) * 100, OBLIQUE, tmp_path / "series")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"patient/study/{path.name}")
    answer = _post(server, "case9.zip", archive.getvalue())
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["case"] == "case9" and data["shape"] == list(OBLIQUE.shape)
    (tmp_path / "s.seg.nrrd").write_bytes(requests.get(server.url + data["downloads"]["seg_nrrd"], timeout=60).content)
    segmentation = slicerio.read_segmentation(str(tmp_path / "s.seg.nrrd"))
    np.testing.assert_allclose(segmentation["ijkToLPS"], read_header(folder).geometry.ijk_to_lps, atol=1e-3)
    # a DICOM series also gets its DICOM SEG, the same mask
    from medseg.io.dicom_seg import read_dicom_seg

    (tmp_path / "s_seg.dcm").write_bytes(requests.get(server.url + data["downloads"]["dicom_seg"], timeout=60).content)
    labels, _ = read_dicom_seg(tmp_path / "s_seg.dcm", folder, read_header(folder).geometry)
    np.testing.assert_array_equal(labels, segmentation["voxels"])


def _zip(members: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return archive.getvalue()


def _declaring(size: int) -> bytes:
    """A one-member zip whose headers declare ``size`` bytes unpacked (the member really holds 10)."""
    data = bytearray(_zip({"slice.dcm": b"0123456789"}))
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", size)
    data[22:26] = struct.pack("<I", size)
    return bytes(data)


@pytest.mark.parametrize(
    "name, content, status, message",
    [
        ("climb.zip", _zip({"../../evil.dcm": b"x"}), 400, "points outside the archive"),
        ("absolute.zip", _zip({"/etc/evil.dcm": b"x"}), 400, "points outside the archive"),
        ("many.zip", _zip({f"{i}.dcm": b"" for i in range(10_000)}), 413, "10000 files"),
        ("bomb.zip", _declaring(2**30), 413, "declares 1024 MB unpacked"),
        ("notes.nii.gz", b"my shopping list\n" * 100, 422, "not a NIfTI, NRRD or MetaImage scan"),
        ("broken.nii.gz", b"\x1f\x8b" + b"\x00" * 300, 422, "damaged gzip"),
    ],
)
def test_hostile_uploads_are_refused_and_leave_nothing(server: Server, name: str, content: bytes, status: int, message: str) -> None:
    before = _results(server)
    answer = _post(server, name, content)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert _results(server) == before


def test_a_truncated_scan_is_422_naming_no_server_path(server: Server, demo_dataset: Path) -> None:
    scan = sorted((demo_dataset / "imagesTs").iterdir())[0]
    data = scan.read_bytes()
    answer = _post(server, scan.name, data[: len(data) // 2])
    assert answer.status_code == 422 and "Not a readable scan" in answer.json()["error"], answer.text
    assert "medact-scans" not in answer.json()["error"]


def test_results_are_removed_after_the_configured_time(untrained_bundle: Path, demo_dataset: Path) -> None:
    import time

    from medseg.web.server import create_app

    app = create_app(untrained_bundle, keep_minutes=1 / 60)  # one second
    client, root = app.test_client(), app.config["RESULTS"].root
    scan = sorted((demo_dataset / "imagesTs").iterdir())[0]
    answer = client.post("/api/segment", data={"file": (scan.open("rb"), scan.name)}, content_type="multipart/form-data")
    assert answer.status_code == 200 and len(list(root.iterdir())) == 1
    assert client.get(answer.json["downloads"]["nifti"]).status_code == 200
    time.sleep(1.5)
    assert client.get(answer.json["downloads"]["nifti"]).status_code == 404 and not list(root.iterdir())
    import shutil

    shutil.rmtree(root)


def test_sweeping_never_fails_while_other_requests_remove_folders() -> None:
    """Folders removed by other requests (failed uploads) while a sweep runs, and folders still being filled, in 8 threads."""
    import shutil
    import threading
    import time

    from medseg.web.server import Results

    results, errors = Results(keep_s=0.0), []

    def churn() -> None:
        try:
            for _ in range(200):
                token, folder = results.new()
                (folder / "x").write_bytes(b"1")
                if token[0] < "m":
                    shutil.rmtree(folder)  # a failed upload removes its own folder
                results.done(token)
                results.sweep()
        except Exception as err:  # noqa: BLE001 - any exception is the failure this test looks for
            errors.append(err)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    token, folder = results.new()  # a folder being filled is never swept, however old
    time.sleep(0.05)
    results.sweep()
    assert folder.is_dir()
    results.done(token)
    time.sleep(0.05)
    results.sweep()
    assert not any(results.root.iterdir())
    shutil.rmtree(results.root)
    results.sweep()  # the root itself gone (shutdown): still no error


def test_expiring_results_never_answer_500_under_concurrent_requests(untrained_bundle: Path, tmp_path: Path) -> None:
    """Results that expire after 0.3 s while 6 clients segment, download and view them: only 200 and 404."""
    import concurrent.futures
    import time

    from tests import bad_inputs

    scan = bad_inputs.nifti("small.nii.gz", shape=(40, 36, 24))(tmp_path)  # a small scan: many requests in little time
    content = scan.read_bytes()
    server = Server(untrained_bundle, tmp_path, max_upload_mb=20, module="medseg", extra=("--keep-minutes", "0.005", "--workers", "2"))

    def client(index: int) -> list[int]:
        codes = []
        for _ in range(4):
            answer = _post(server, scan.name, content)
            codes.append(answer.status_code)
            if answer.status_code != 200:
                continue
            data = answer.json()
            for delay in (0.0, 0.2, 0.4):
                time.sleep(delay)
                codes.append(requests.get(server.url + data["downloads"]["seg_nrrd"], timeout=60).status_code)
                codes.append(requests.get(server.url + data["view_url"].format(axis="axial", index=0), timeout=60).status_code)
        return codes

    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = [c for result in pool.map(client, range(6)) for c in result]
    finally:
        server.stop()
    assert set(codes) <= {200, 404} and 200 in codes and 404 in codes, codes
    assert "Internal error" not in (tmp_path / "server.log").read_text(encoding="utf-8")
