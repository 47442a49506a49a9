"""Every DICOM file of pydicom's own test corpus and of pydicom-data (real vendor files: CT/MR, enhanced multi-frame,
every common transfer syntax, big endian, implicit VR, no file meta, colour secondary captures and ultrasound, RT dose,
plan and structure sets, SR, waveforms, truncated files) through ``medseg infer``, uploaded alone and zipped: it
segments, or it gets one line naming the file and the reason (exit 2 / 4xx). Never a traceback, never a 500, nothing
left on disk."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
import requests

from medseg.cli import main
from tests.action.web_server import Server

PYDICOM = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "data_store" / "data"
CORPUS = sorted(PYDICOM.glob("*.dcm")) + sorted(DATA_STORE.glob("*.dcm"))
#: the volumes of the corpus (enhanced multi-frame CT placed by per-frame positions); every other file is refused,
#: liver.dcm and liver_expb.dcm too: they are DICOM SEGs (masks), not CT
SEGMENTS = {"eCT_Supplemental.dcm"}
#: what each refusal must say, by a word of its reason
REASONS = ("no pixel data", "not a scan", "not a volume", "dose grid", "cannot be placed", "truncated", "damaged", "no SOP class", "decode")
#: an upload whose first bytes are no known format at all (a DICOM fragment without preamble or group 0008) is refused as such
UNKNOWN = ("decided from its content", "holds no DICOM file")


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 140, f"pydicom's and pydicom-data's files: found {len(CORPUS)}"


@pytest.fixture(scope="module")
def server(untrained_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    running = Server(untrained_bundle, tmp_path_factory.mktemp("corpus_server"), max_upload_mb=60, module="medseg")
    yield running
    running.stop()


def _reason_is_one_line_naming(text: str, name: str) -> bool:
    return len(text.strip().splitlines()) == 1 and name in text and any(r in text for r in REASONS) and "Traceback" not in text


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_infer_segments_or_refuses_in_one_line(path: Path, untrained_bundle: Path, tmp_path: Path, capfd) -> None:
    out = tmp_path / "out"
    capfd.readouterr()
    argv = ["infer", "--bundle", str(untrained_bundle), "--input", str(path), "--output", str(out), "--device", "cpu"]
    code = main([*argv, "--format", "nifti,dicom-seg"])
    err = capfd.readouterr().err
    if path.name in SEGMENTS:
        from tests.medseg.io.test_dicom_seg import dciodvfy_errors

        assert code == 0, err
        assert (out / f"{path.stem}_seg.nii.gz").is_file() and dciodvfy_errors(out / f"{path.stem}_seg.dcm") == []
    else:
        assert code == 2 and _reason_is_one_line_naming(err.removeprefix("error: "), path.name), err
        assert not out.exists()


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_upload_alone_and_zipped_segments_or_refuses_with_4xx(path: Path, server: Server) -> None:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(path, f"series/{path.name}")
    for name, content in ((path.name, path.read_bytes()), (path.stem + ".zip", zipped.getvalue())):
        answer = requests.post(server.url + "/api/segment", files={"file": (name, content, "application/octet-stream")}, timeout=300)
        if path.name in SEGMENTS:
            assert answer.status_code == 200, answer.text
            assert {"nifti", "seg_nrrd", "dicom_seg"} <= set(answer.json()["downloads"])
        else:
            assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
            message = answer.json()["error"]
            assert any(r in message for r in (*REASONS, *UNKNOWN)) and "\n" not in message, message
    roots = list(server.tmpdir.glob("medact-scans-*"))
    leftovers = [p for p in roots[0].iterdir() if not list(p.glob("*_seg.nii.gz"))] if roots else []
    assert not leftovers, leftovers  # a refused upload leaves nothing behind
