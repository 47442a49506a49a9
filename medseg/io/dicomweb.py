"""Series from a PACS and DICOM SEGs back to it, over DICOMweb: QIDO-RS (search), WADO-RS (retrieve), STOW-RS (store).

The HTTP side is ``dicomweb-client`` (the Imaging Data Commons' client, also what MONAI Label's DICOMweb datastore
uses); this module adds what a segmentation tool needs around it: choosing the image series of a study, retrieving it
into a folder the volume reader takes, checking that it is a volume before a model runs, storing a DICOM SEG, and one
line naming the server and the problem for every way this goes wrong (:class:`PacsError`): a server that cannot be
reached, credentials refused, a study or series that is not there, a series that is not a volume, a store refused.

Credentials: a bearer token, or a user name and password (HTTP basic), as a PACS behind a proxy or Orthanc asks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.io.dicom_read import NON_IMAGE_MODALITIES

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: DICOM JSON tags (QIDO-RS answers)
SERIES_UID, MODALITY, INSTANCES, DESCRIPTION = "0020000E", "00080060", "00201209", "0008103E"


class PacsError(ValueError):
    """A DICOMweb request that could not be done; the message names the server and what went wrong."""


@dataclass(frozen=True)
class Pacs:
    """A DICOMweb server: its base URL (``http://host:8042/dicom-web``) and credentials.

    Args:
        url: the DICOMweb root (QIDO, WADO and STOW under it, as Orthanc, dcm4chee and Google's Healthcare API serve).
        token: a bearer token (``Authorization: Bearer ...``).
        user: HTTP basic authentication's user (ignored when ``token`` is given).
        password: its password.
        timeout: seconds to wait for one answer.
    """

    url: str
    token: str | None = None
    user: str | None = None
    password: str | None = None
    timeout: float = 120.0

    def client(self) -> Any:
        """A ``dicomweb_client.DICOMwebClient`` for this server."""
        from dicomweb_client import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        if not re.match(r"^https?://[^/\s]+", self.url or ""):
            raise PacsError(f"{self.url!r}: a DICOMweb URL starts with http:// or https:// and names a server.")
        session = create_session_from_user_pass(self.user, self.password or "") if self.user and not self.token else create_session()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        client = DICOMwebClient(self.url.rstrip("/"), session=session, headers=headers, timeout=self.timeout)
        # dicomweb-client's default retries every failure 5 times with 2-16 s waits (30 s before "cannot be reached");
        # 3 attempts 0.5 and 1 s apart still ride out a busy PACS's 429/503 and fail a wrong URL in under 2 s
        client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
        return client

    @contextlib.contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turn what ``requests`` raises while doing ``what`` into one :class:`PacsError` line."""
        import requests

        try:
            yield
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else "?"
            detail = (err.response.text or "").strip().splitlines()[:1] if err.response is not None else []
            hint = " (check --dicomweb-token, or --dicomweb-user and MEDACT_DICOMWEB_PASSWORD)" if code in (401, 403) else ""
            raise PacsError(f"{self.url}: {what} was refused with HTTP {code}{hint}{': ' + detail[0][:200] if detail else ''}.") from None
        except (requests.ConnectionError, requests.Timeout) as err:
            reason = type(err).__name__
            raise PacsError(
                f"{self.url}: the PACS cannot be reached ({reason}) while trying to {what}; check the URL and that it is running."
            ) from None


def _value(item: dict[str, Any], tag: str, default: Any = None) -> Any:
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


def check_uid(uid: str, what: str) -> str:
    """``uid`` when it reads as a DICOM UID (digits and dots, at most 64), else :class:`PacsError`."""
    if not (uid and len(uid) <= 64 and UID.match(uid)):
        raise PacsError(f"{what} {uid!r} is not a DICOM UID (digits and dots, at most 64 characters).")
    return uid


def study_series(pacs: Pacs, client: Any, study: str) -> list[dict[str, Any]]:
    """The study's series as ``{"uid", "modality", "instances", "description"}`` (QIDO-RS), or :class:`PacsError` when the
    server has no such study."""
    check_uid(study, "Study UID")
    with pacs.calling(f"search study {study}"):
        found = client.search_for_series(study_instance_uid=study, fields=[MODALITY, INSTANCES, DESCRIPTION])
    if not found:
        raise PacsError(f"{pacs.url}: no study {study} (QIDO-RS finds no series in it); check the Study Instance UID.")
    return [
        {
            "uid": _value(s, SERIES_UID),
            "modality": _value(s, MODALITY, "?"),
            "instances": _value(s, INSTANCES),
            "description": _value(s, DESCRIPTION, ""),
        }
        for s in found
    ]


def choose_series(pacs: Pacs, study: str, series: Sequence[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    """The series to segment: ``wanted`` when given (it must be in the study and hold images), else the study's only
    image series; several image series and no ``wanted``: :class:`PacsError` listing them."""
    listed = ", ".join(f"{s['uid']} ({s['modality']}, {s['instances']} images)" for s in series)
    if wanted is not None:
        check_uid(wanted, "Series UID")
        match = [s for s in series if s["uid"] == wanted]
        if not match:
            raise PacsError(f"{pacs.url}: study {study} has no series {wanted}; its series: {listed}.")
        if match[0]["modality"] in NON_IMAGE_MODALITIES:
            raise PacsError(f"{pacs.url}: series {wanted} is a {match[0]['modality']}, not images to segment.")
        return match[0]
    images = [s for s in series if s["modality"] not in NON_IMAGE_MODALITIES]
    if len(images) == 1:
        return images[0]
    if not images:
        raise PacsError(f"{pacs.url}: study {study} holds no image series ({listed}).")
    raise PacsError(f"{pacs.url}: study {study} holds {len(images)} image series; choose one with --series: {listed}.")


def retrieve_series(pacs: Pacs, study: str, series: str | None, folder: str | os.PathLike) -> Path:
    """Retrieve a series (WADO-RS) into ``folder/<SeriesInstanceUID>/`` (one file per instance) and return that folder.

    The series is checked to be one volume the reader takes (:func:`medseg.io.volumes.read_header`) before it is
    returned: a localizer, a single slice, a series with a missing slice is :class:`PacsError` naming it. Retrieved
    into a hidden sibling first and renamed, so the folder is whole or absent.
    """
    from medseg.io.volumes import VolumeError, read_header

    client = pacs.client()
    chosen = choose_series(pacs, study, study_series(pacs, client, study), series)
    target = Path(folder) / chosen["uid"]
    if target.exists():
        raise PacsError(f"{target}: already exists; retrieve into an empty folder.")
    staging = Path(tempfile.mkdtemp(prefix=".retrieving-", dir=folder))
    try:
        with pacs.calling(f"retrieve series {chosen['uid']}"):
            instances = client.retrieve_series(study, chosen["uid"])
        for number, dataset in enumerate(instances):
            dataset.save_as(staging / f"{number:05d}.dcm", enforce_file_format=True)
        try:
            read_header(staging)
        except (VolumeError, ValueError) as err:
            reason = str(err).replace(str(staging), "the series")
            raise PacsError(f"{pacs.url}: series {chosen['uid']} of study {study} is not a volume to segment: {reason}") from None
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def store_instance(pacs: Pacs, path: str | os.PathLike, client: Any = None) -> str:
    """Send one DICOM file to the PACS (STOW-RS, into the study it names); returns its SOP Instance UID. A refused
    instance (HTTP error, or listed in the answer's Failed SOP Sequence) is :class:`PacsError`."""
    import pydicom

    dataset = pydicom.dcmread(path)
    client = client or pacs.client()
    with pacs.calling(f"store {Path(path).name}"):
        answer = client.store_instances([dataset], study_instance_uid=dataset.StudyInstanceUID)
    failed = getattr(answer, "FailedSOPSequence", None) if answer is not None else None
    if failed:
        reason = getattr(failed[0], "FailureReason", "?")
        raise PacsError(f"{pacs.url}: the PACS refused {Path(path).name} (failure reason {reason}).")
    return str(dataset.SOPInstanceUID)


def pacs_from_arguments(url: str, token: str | None, user: str | None) -> Pacs:
    """The server of the CLI's ``--dicomweb``/``--dicomweb-token``/``--dicomweb-user``; the password comes from ``MEDACT_DICOMWEB_PASSWORD``
    (never a command-line argument: those are visible to every user of the machine), the token from ``--dicomweb-token`` or
    ``MEDACT_DICOMWEB_TOKEN``."""
    token = token or os.environ.get("MEDACT_DICOMWEB_TOKEN") or None
    password = os.environ.get("MEDACT_DICOMWEB_PASSWORD")
    if user and not password and not token:
        raise PacsError(f"--dicomweb-user {user}: set the password in the environment variable MEDACT_DICOMWEB_PASSWORD.")
    return Pacs(url, token=token, user=user, password=password)
