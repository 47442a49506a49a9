"""MONAI Label's annotation loop with the datastore in a real PACS: ``medseg serve --monai-label --dicomweb URL`` against
Orthanc with its DICOMweb plugin (tests/pacs.py), driven by ``monailabel.client.MONAILabelClient``.

Three CT series go into the PACS (STOW-RS); the client lists them, saves two corrected labels (stored as DICOM SEGs
in the scans' studies), reads one back, asks for the next sample, trains, and meets the refusals.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.io.volumes import read_volume
from tests.action.web_server import Server
from tests.medseg.conftest import write_dicom_series
from tests.medseg.web.test_annotation import _wait_until_done

with warnings.catch_warnings():  # the client imports cgi, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException

ROOT_UID = "1.2.826.0.1.3680043.2.1125.50"


def _series_uid(n: int) -> str:
    return f"{ROOT_UID}.{n}.1"


@pytest.fixture(scope="module")
def pacs_scans(orthanc, demo_dataset: Path, tmp_path_factory) -> dict[str, Path]:
    """Three demo training scans stored in the PACS as CT series, each in a study of its own: series uid -> its label."""
    from medseg.io.dicomweb import Pacs

    client = Pacs(orthanc.url, user=orthanc.user, password=orthanc.password).client()
    labels = {}
    for n, scan in enumerate(sorted((demo_dataset / "imagesTr").iterdir())[:3]):
        volume, geometry = read_volume(scan)
        folder = write_dicom_series(np.asarray(volume) * 1000, geometry, tmp_path_factory.mktemp("series") / "ct")
        instances = []
        for k, path in enumerate(sorted(folder.iterdir())):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{ROOT_UID}.{n}", _series_uid(n)
            ds.SOPInstanceUID = f"{_series_uid(n)}.{k + 1}"
            instances.append(ds)
        client.store_instances(instances)
        labels[_series_uid(n)] = demo_dataset / "labelsTr" / scan.name
    return labels


@pytest.fixture(scope="module")
def server(orthanc, pacs_scans, untrained_bundle: Path, tmp_path_factory):
    cache = tmp_path_factory.mktemp("dicomweb_cache")
    extra = ("--monai-label", "--dicomweb", orthanc.url, "--dicomweb-user", orthanc.user, "--datastore", str(cache))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MEDACT_DICOMWEB_PASSWORD", orthanc.password)
        running = Server(untrained_bundle, tmp_path_factory.mktemp("pacs_server"), max_upload_mb=4, module="medseg", extra=extra)
    yield running
    running.stop()


def test_labels_saved_from_the_client_are_segs_in_the_pacs_and_come_back_equal(server, orthanc, pacs_scans, tmp_path) -> None:
    from medseg.io.dicomweb import Pacs

    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    assert sorted(client.datastore()["objects"]) == sorted(pacs_scans)
    first, second, third = sorted(pacs_scans)
    for image in (first, second):
        assert client.save_label(image, str(pacs_scans[image]), tag="final")["image"] == image
    pacs = Pacs(orthanc.url, user=orthanc.user, password=orthanc.password).client()
    segs = [s for s in pacs.search_for_series(study_instance_uid=f"{ROOT_UID}.0") if s["00080060"]["Value"] == ["SEG"]]
    assert len(segs) == 1 and segs[0]["0008103E"]["Value"] == ["medact label final"]  # in the scan's own study
    back, _ = read_volume(client.download_label(first, "final"))
    expected, _ = read_volume(pacs_scans[first])
    np.testing.assert_array_equal(np.asarray(back), np.asarray(expected))
    assert client.info()["datastore"]["completed"] == 2 and client.next_sample("first", {})["id"] == third

    started = client.train_start("vnet_seg", {"max_epochs": 1})
    assert started["state"] == "RUNNING" and started["cases"] == 2
    status = _wait_until_done(client)
    assert status["state"] == "SUCCESS" and status["epoch"] == 1, status


def test_what_a_pacs_datastore_cannot_do_is_refused_in_one_line(server, pacs_scans, demo_dataset, tmp_path) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    image = sorted(pacs_scans)[2]
    label = pacs_scans[image]
    with pytest.raises(MONAILabelClientException, match="Status: 405.*Images come from the PACS"):
        client.upload_image(str(next((demo_dataset / "imagesTr").iterdir())), "new_case")
    with pytest.raises(MONAILabelClientException, match=r"Status: 404.*No image series .*1\.2\.3\.4.* in the PACS"):
        client.save_label("1.2.3.4", str(label), tag="final")
    values, geometry = read_volume(label)
    from medseg.io.volumes import write_volume

    wrong = write_volume(np.where(np.asarray(values) > 0, 9, 0).astype(np.uint8), geometry, tmp_path / "wrong.nii.gz")
    with pytest.raises(MONAILabelClientException, match=r"Status: 422.*values \[9\]"):
        client.save_label(image, str(wrong), tag="final")
    assert "final" not in client.datastore()["objects"][image]["labels"]  # nothing stored


def test_infer_answers_a_dicom_seg_of_a_pacs_image_and_refuses_one_of_a_nifti(server, pacs_scans, demo_dataset, tmp_path) -> None:
    """``/infer/{model}?output=dicom_seg``: the SEG references the PACS series and holds the mask the client's
    ``output=all`` answer holds; a session's NIfTI upload has no DICOM source: 422 in one line."""
    import requests

    from medseg.io.dicom_seg import read_dicom_seg

    image = sorted(pacs_scans)[1]
    answer = requests.post(f"{server.url}/infer/vnet_seg", params={"image": image, "output": "dicom_seg"}, timeout=120)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/dicom"
    (tmp_path / "seg.dcm").write_bytes(answer.content)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    mask_file, _ = client.infer("vnet_seg", image, {"result_extension": ".nii.gz"})
    expected, geometry = read_volume(mask_file)
    series = tmp_path / "series"
    series.mkdir()
    for n, instance in enumerate(pydicom.dcmread(p) for p in sorted(_cached_series(server, image).iterdir())):
        instance.save_as(series / f"{n}.dcm")
    rebuilt, _ = read_dicom_seg(tmp_path / "seg.dcm", series, geometry)
    np.testing.assert_array_equal(rebuilt, np.asarray(expected))

    session = client.create_session(str(next((demo_dataset / "imagesTr").iterdir())))["session_id"]
    refused = requests.post(f"{server.url}/infer/vnet_seg", params={"image": "", "session_id": session, "output": "dicom_seg"}, timeout=120)
    assert refused.status_code == 422 and "output=dicom_seg needs a DICOM image" in refused.json()["error"]


def _cached_series(server, image: str) -> Path:
    """The server's cached copy of a PACS series (its --datastore folder)."""
    args = server.process.args
    return Path(args[args.index("--datastore") + 1]) / "series" / image


def test_a_pacs_that_cannot_be_reached_is_a_502_line_never_a_500(untrained_bundle: Path, tmp_path: Path) -> None:
    """The server's side of an unreachable PACS (no Orthanc needed): every datastore route answers 502 naming it."""
    from medseg.io.dicomweb import Pacs
    from medseg.web.dicomweb_datastore import PacsDatastoreSpec
    from medseg.web.server import create_app

    down = PacsDatastoreSpec(Pacs("http://127.0.0.1:9/dicom-web", timeout=5))
    app = create_app(untrained_bundle, monai_label=True, datastore=tmp_path / "cache", dicomweb=down)
    client = app.test_client()
    for method, url in [("get", "/datastore/?output=stats"), ("get", "/info/"), ("post", "/activelearning/first")]:
        answer = getattr(client, method)(url)
        assert answer.status_code == 502, (url, answer.get_data(as_text=True))
        assert "127.0.0.1:9/dicom-web: the PACS cannot be reached" in answer.json["error"]
    answer = client.post("/infer/vnet_seg?image=1.2.3")
    assert answer.status_code in (404, 502) and "error" in answer.json


def test_filters_choose_the_image_series_and_labels_are_still_found(orthanc, pacs_scans, tmp_path) -> None:
    """``--dicomweb-filter``: QIDO filters narrow the images (a real PACS holds far more than one project wants)."""
    from medseg.io.dicomweb import Pacs
    from medseg.web.dicomweb_datastore import DicomwebDatastore

    pacs = Pacs(orthanc.url, user=orthanc.user, password=orthanc.password)
    one = sorted(pacs_scans)[0]
    store = DicomwebDatastore(
        pacs, tmp_path, {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}, {"name": "t", "version": "1"}, {"SeriesInstanceUID": one}
    )
    assert store.image_ids() == [one] and store.labelled() == [one]  # its label (saved by the first test) found
    everything = DicomwebDatastore(pacs, tmp_path / "all", {0: "background"}, {"name": "t", "version": "1"})
    assert everything.image_ids() == sorted(pacs_scans)  # the SEGs in the same studies are labels, not images
