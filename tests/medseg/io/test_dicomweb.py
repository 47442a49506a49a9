"""Scans in and out of a real PACS: Orthanc with its DICOMweb plugin (tests/pacs.py), driven through dicomweb-client.

Round trip: STOW a generated CT series -> ``medseg infer --dicomweb ... --store`` -> QIDO finds the SEG in the study
-> WADO retrieves it -> highdicom rebuilds the mask equal to ``medseg infer``'s on the same files. Then the faults,
each one line naming the server and the problem, with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.cli import main
from medseg.io.dicomweb import Pacs, PacsError, retrieve_series, store_instance
from medseg.io.volumes import Geometry, read_volume
from tests.cli_run import run_main
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series

STUDY = "1.2.826.0.1.3680043.2.1125.9"  # write_dicom_series's study and series
SERIES = "1.2.826.0.1.3680043.2.1125.9.1"


def _client(orthanc):
    return Pacs(orthanc.url, user=orthanc.user, password=orthanc.password).client()


@pytest.fixture(scope="module")
def ct_series(orthanc, tmp_path_factory) -> Path:
    """A generated CT series, written as files and stored in the PACS (STOW-RS)."""
    volume = random_labels(seed=4).astype(np.int16) * 300 - 100  # on OBLIQUE's grid (20, 18, 12)
    folder = write_dicom_series(volume, OBLIQUE, tmp_path_factory.mktemp("ct") / "ct")
    _client(orthanc).store_instances([pydicom.dcmread(p) for p in sorted(folder.iterdir())])
    return folder


@pytest.fixture
def pacs_env(orthanc, monkeypatch):
    monkeypatch.setenv("MEDACT_DICOMWEB_PASSWORD", orthanc.password)
    return ["--dicomweb", orthanc.url, "--dicomweb-user", orthanc.user]


def test_infer_from_the_pacs_stores_a_seg_equal_to_infer_on_the_files(ct_series, pacs_env, orthanc, untrained_bundle, tmp_path):
    from medseg.io.dicom_seg import read_dicom_seg

    local = run_main(main, "infer", "--bundle", untrained_bundle, "--input", ct_series, "--output", tmp_path / "local", "--format", "nifti")
    assert local.returncode == 0, local.stderr
    done = run_main(
        main, "infer", "--bundle", untrained_bundle, *pacs_env, "--study", STUDY, "--output", tmp_path / "pacs", "--store", "--json"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["series"] == SERIES and len(answer["stored"]) == 1
    (seg_uid,) = answer["stored"].values()

    client = _client(orthanc)
    segs = [s for s in client.search_for_series(study_instance_uid=STUDY) if s["00080060"]["Value"] == ["SEG"]]
    assert len(segs) == 1  # QIDO finds the SEG in the scan's own study
    (seg,) = client.retrieve_series(STUDY, segs[0]["0020000E"]["Value"][0])  # WADO
    assert seg.SOPInstanceUID == seg_uid and seg.FrameOfReferenceUID == pydicom.dcmread(next(ct_series.iterdir())).FrameOfReferenceUID
    seg.save_as(tmp_path / "retrieved_seg.dcm", enforce_file_format=True)
    expected, geometry = read_volume(tmp_path / "local" / "ct_seg.nii.gz")
    rebuilt, _ = read_dicom_seg(tmp_path / "retrieved_seg.dcm", ct_series, geometry)
    assert np.array_equal(rebuilt, np.asarray(expected))
    assert expected.max() > 0  # an untrained model still labels voxels: the comparison is not of two empty masks


def test_retrieve_series_gives_the_stored_volume(ct_series, orthanc, tmp_path):
    pacs = Pacs(orthanc.url, user=orthanc.user, password=orthanc.password)
    folder = retrieve_series(pacs, STUDY, SERIES, tmp_path)
    assert folder == tmp_path / SERIES
    got, grid = read_volume(folder)
    want, want_grid = read_volume(ct_series)
    assert np.array_equal(np.asarray(got), np.asarray(want)) and grid.matches(want_grid, tol=1e-6) == []


#: (what is wrong, how to make it happen, what the one line says)
FAULTS = [
    ("unreachable", {"url": "http://127.0.0.1:9/dicom-web"}, "cannot be reached"),
    ("bad password", {"password": "wrong"}, "HTTP 401"),
    ("unknown study", {"study": "1.2.3.4.5"}, "no study 1.2.3.4.5"),
    ("unknown series", {"series": "1.2.3.4.6"}, "has no series 1.2.3.4.6"),
    ("not a UID", {"study": "../../etc"}, "not a DICOM UID"),
    ("not a URL", {"url": "pacs:8042"}, "starts with http"),
]


@pytest.mark.parametrize(("case", "change", "message"), FAULTS, ids=[f[0] for f in FAULTS])
def test_pacs_faults_are_one_line_and_write_nothing(case, change, message, ct_series, orthanc, tmp_path):
    pacs = Pacs(change.get("url", orthanc.url), user=orthanc.user, password=change.get("password", orthanc.password), timeout=10)
    with pytest.raises(PacsError, match=message):
        retrieve_series(pacs, change.get("study", STUDY), change.get("series", SERIES), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_series_that_is_not_a_volume_is_refused_before_the_model(orthanc, untrained_bundle, pacs_env, tmp_path):
    """A lone slice (a localizer) in a study of its own."""
    one = write_dicom_series(
        np.zeros((8, 8, 1), np.int16), Geometry((8, 8, 1), (1, 1, 1), (0, 0, 0), tuple(np.eye(3).ravel())), tmp_path / "one"
    )
    lone = pydicom.dcmread(next(one.iterdir()))
    lone.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.77"
    lone.SeriesInstanceUID, lone.SOPInstanceUID = f"{lone.StudyInstanceUID}.1", f"{lone.StudyInstanceUID}.1.1"
    _client(orthanc).store_instances([lone])
    done = run_main(main, "infer", "--bundle", untrained_bundle, *pacs_env, "--study", lone.StudyInstanceUID, "--output", tmp_path / "out")
    assert done.returncode != 0 and "is not a volume to segment" in done.stderr and lone.SeriesInstanceUID in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_store_the_pacs_refuses_is_one_line(ct_series, orthanc, tmp_path):
    from tests.pacs import REFUSED_STUDY

    refused = pydicom.dcmread(next(ct_series.iterdir()))
    refused.StudyInstanceUID = REFUSED_STUDY
    refused.save_as(tmp_path / "refused.dcm")
    pacs = Pacs(orthanc.url, user=orthanc.user, password=orthanc.password)
    with pytest.raises(PacsError, match=r"store refused.dcm was refused with HTTP 403"):
        store_instance(pacs, tmp_path / "refused.dcm")
    assert _client(orthanc).search_for_series(study_instance_uid=REFUSED_STUDY) == []


def test_cli_refuses_mixed_or_missing_sources(untrained_bundle, tmp_path):
    both = run_main(main, "infer", "--bundle", untrained_bundle, "--input", "a.nii.gz", "--dicomweb", "http://x", "--output", tmp_path)
    assert both.returncode != 0 and "--input FILES, or --dicomweb" in both.stderr
    no_study = run_main(main, "infer", "--bundle", untrained_bundle, "--dicomweb", "http://x", "--output", tmp_path)
    assert no_study.returncode != 0 and "--dicomweb needs --study" in no_study.stderr
    store = run_main(main, "infer", "--bundle", untrained_bundle, "--input", "a.nii.gz", "--store", "--output", tmp_path)
    assert store.returncode != 0 and "needs --dicomweb" in store.stderr
