"""Uploaded scans for ``medseg serve``: what a file is (from its bytes), only its own bytes read, DICOM zips unpacked safely.

The client's file name never reaches the disk and never decides the reader: :func:`scan_suffix`
reads the first bytes (gzip -> ``.nii.gz``, NIfTI-1/2 magic -> ``.nii``, ``NRRD`` -> ``.nrrd``,
MetaImage ``ObjectType`` -> ``.mha``, ``PK`` -> a zip of a DICOM series).

Only the uploaded bytes are read. NRRD, MetaImage and Analyze/NIfTI pairs can keep their voxels
in *another* file named by the header (``data file: /any/path``, ``ElementDataFile = /any/path``,
``.hdr`` + ``.img``); a reader given such an upload would open that server file and serve its
content as a scan. :func:`check_attached` reads the header text itself (never ITK, which would
follow the reference) and refuses every such upload with :data:`DETACHED`, and
:func:`unpack_dicom_zip` refuses a zip member that is such a header. (The CLI reads detached
headers, ``.nhdr``/``.mhd``, from disk: there the user names the files.)

:func:`unpack_dicom_zip` checks the archive before extracting anything: member count, the total
size the archive declares, no absolute paths, no ``..``, no links; then it extracts the DICOM
members under fresh names, counting the bytes it really writes (a member may declare less than it
inflates to). The policy and its limits: ``docs/uploads.md``.

:func:`store_upload` applies all of it to one upload, under :class:`UploadLimits`; :func:`in_new_folder` runs a
request's work in a fresh private folder and removes it on failure. The scan page and the MONAI Label upload
(:mod:`medseg.web.monailabel`) both store through these two.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import shutil
import stat
import threading
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from medseg.io.volumes import VolumeError, VolumeTooLarge, read_header


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: the answer to any upload whose header points at data outside the upload
DETACHED = "detached data files are not accepted in uploads; send a single .nrrd/.mha with attached data, NIfTI, or a zipped DICOM series"
#: the longest header read as text (NRRD, MetaImage): real ones are a few hundred bytes
MAX_HEADER_BYTES = 1 << 20


def _nifti_magic(head: bytes) -> bool:
    """NIfTI-1 (``n+1`` single file, ``ni1`` header of a pair, at byte 344) or NIfTI-2 (``n+2``/``ni2`` at byte 4)."""
    return (len(head) >= 348 and head[344:347] in (b"n+1", b"ni1")) or head[4:7] in (b"n+2", b"ni2")


def _nifti_pair(head: bytes) -> bool:
    """The header half of a ``.hdr``/``.img`` pair: magic ``ni1``/``ni2`` (its voxels are in another file)."""
    return (len(head) >= 348 and head[344:347] == b"ni1") or head[4:7] == b"ni2"


def _analyze_header(head: bytes) -> bool:
    """An Analyze 7.5 ``.hdr`` (``sizeof_hdr`` = 348, either byte order, no NIfTI magic): always a pair."""
    return len(head) >= 348 and head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c") and not _nifti_magic(head)


def scan_suffix(path: Path) -> str:
    """The reader suffix of an uploaded file from its content: ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.dcm`` or ``.zip``."""
    with path.open("rb") as handle:
        head = handle.read(540)
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as inner:
                inner_head = inner.read(540)
        except (OSError, EOFError):
            raise UploadError(422, "The upload is a damaged gzip file; expected a .nii.gz scan.") from None
        if _nifti_pair(inner_head) or _analyze_header(inner_head):
            raise UploadError(422, f"The upload is the header of an Analyze/NIfTI .hdr/.img pair; {DETACHED}.")
        if _nifti_magic(inner_head):
            return ".nii.gz"
        raise UploadError(422, "The upload is gzip-compressed but holds no NIfTI image.")
    if _nifti_pair(head) or _analyze_header(head):
        raise UploadError(422, f"The upload is the header of an Analyze/NIfTI .hdr/.img pair; {DETACHED}.")
    if _nifti_magic(head):
        return ".nii"
    if head.startswith(b"NRRD"):
        return ".nrrd"
    if head.lstrip().startswith((b"ObjectType", b"NDims")):
        return ".mha"
    if head.startswith(b"PK\x03\x04"):
        return ".zip"
    if _member_kind(head) == "dicom":  # one DICOM file: an enhanced multi-frame volume, or refused saying what it is
        return ".dcm"
    raise UploadError(
        422, "The upload is not a NIfTI, NRRD or MetaImage scan, a DICOM file, nor a zip of a DICOM series (decided from its content)."
    )


def check_attached(path: Path, suffix: str) -> None:
    """Refuse an upload whose voxels would be read from another file (422, :data:`DETACHED`).

    ``suffix`` is :func:`scan_suffix`'s answer. NRRD: no ``data file``/``datafile`` field (any
    spelling, any case), and the header ends with the blank line that precedes attached data.
    MetaImage: ``ElementDataFile = LOCAL``. NIfTI pairs were refused by :func:`scan_suffix`.
    """
    if suffix == ".nrrd":
        _check_nrrd_attached(path)
    elif suffix == ".mha":
        _check_metaimage_attached(path)


def _header_text(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_HEADER_BYTES)


def _check_nrrd_attached(path: Path) -> None:
    head = _header_text(path).replace(b"\r\n", b"\n")
    end = head.find(b"\n\n")
    for line in head[: end if end >= 0 else len(head)].decode("latin-1").split("\n")[1:]:
        field = line.split(":", 1)[0].replace(" ", "").lower()
        if not line.startswith("#") and field == "datafile":
            raise UploadError(422, f"The upload is a NRRD header whose voxels are in another file ('data file' field); {DETACHED}.")
    if end < 0:  # a detached header (.nhdr) ends at the end of the file, with no data after it
        raise UploadError(422, f"The upload is a NRRD header with no data after it; {DETACHED}.")


def _check_metaimage_attached(path: Path) -> None:
    for line in _header_text(path).split(b"\n"):
        key, _, value = line.decode("latin-1").partition("=")
        if key.strip().lower() == "elementdatafile":  # always the header's last line; binary data follows
            if value.strip().upper() != "LOCAL":
                raise UploadError(
                    422, f"The upload is a MetaImage header whose voxels are in another file (ElementDataFile is not LOCAL); {DETACHED}."
                )
            return
    raise UploadError(422, f"The upload is a MetaImage header without ElementDataFile = LOCAL; {DETACHED}.")


def _member_kind(head: bytes) -> str:
    """``"dicom"`` (``DICM`` at byte 128, or a preamble-less file starting with group 0008), ``"header"`` (a volume
    format that may point at other files: NRRD, MetaImage, NIfTI/Analyze, gzip), else ``"other"`` (README, thumbnails)."""
    if head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00"):  # preamble-less: group 0008 (either byte order)
        return "dicom"
    text = head.lstrip()
    if head.startswith((b"NRRD", b"\x1f\x8b")) or text.startswith((b"ObjectType", b"NDims")) or _nifti_magic(head) or _analyze_header(head):
        return "header"
    return "other"


def unpack_dicom_zip(archive: Path, folder: Path, max_members: int, max_bytes: int) -> Path:
    """Extract the files of ``archive`` flat into ``folder`` under numbered names; refuse hostile archives first.

    Only DICOM members are extracted; others (a README, thumbnails) are skipped. A member that is a
    NRRD, MetaImage, NIfTI or Analyze file is refused: those are not a DICOM series, and their
    headers can point at files elsewhere on this server.

    Raises:
        UploadError: 400 not a zip, a path that is absolute or climbs out (``..``), a link;
            413 more than ``max_members`` files or more than ``max_bytes`` declared or inflated;
            422 a member that is a volume header (:data:`DETACHED`), or no DICOM member at all.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise UploadError(400, "The upload starts like a zip but is not a readable zip archive.") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_members:
            raise UploadError(413, f"The zip holds {len(members)} files; at most {max_members} are accepted.")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise UploadError(413, f"The zip declares {declared / 2**20:.0f} MB unpacked; the limit is {max_bytes / 2**20:.0f} MB.")
        for member in zf.infolist():
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (member.filename[1:2] == ":"):
                raise UploadError(400, f"The zip member {member.filename[:80]!r} points outside the archive; refused.")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UploadError(400, f"The zip member {member.filename[:80]!r} is a link; refused.")
        folder.mkdir(parents=True, exist_ok=True)
        written, extracted = 0, 0
        for index, member in enumerate(members):
            with zf.open(member) as source:
                head = source.read(540)
                kind = _member_kind(head)
                if kind == "header":
                    raise UploadError(
                        422,
                        f"The zip member {member.filename[:80]!r} is not DICOM but a volume file or header; a zip must hold one DICOM series, and {DETACHED}.",
                    )
                if kind == "other":
                    continue
                with (folder / f"{index:06d}.dcm").open("wb") as target:
                    chunk = head
                    while chunk:
                        written += len(chunk)
                        if written > max_bytes:  # inflates beyond what it declared
                            raise UploadError(413, f"The zip unpacks to more than {max_bytes / 2**20:.0f} MB; refused.")
                        target.write(chunk)
                        chunk = source.read(1 << 20)
                extracted += 1
        if not extracted:
            raise UploadError(422, "The zip holds no DICOM file; expected the files of one DICOM series.")
    return folder


MAX_ZIP_MEMBERS = 5000
#: voxels an uploaded scan may declare (``--max-voxels``): a 512 x 512 x 1100 whole-body CT fits
MAX_UPLOAD_VOXELS = 300_000_000


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """What one upload may be.

    Args:
        max_bytes: the request body (``--max-upload-mb``).
        max_voxels: voxels (x components) the scan's header may declare, checked before any voxel is read.
        max_members: files in a zipped DICOM series.
    """

    max_bytes: int
    max_voxels: int = MAX_UPLOAD_VOXELS
    max_members: int = MAX_ZIP_MEMBERS

    @property
    def max_unpacked_bytes(self) -> int:
        """What a DICOM zip may unpack to: 4 bytes per allowed voxel plus 64 MiB of headers, at most 10x the upload."""
        return min(10 * self.max_bytes, 4 * self.max_voxels + (64 << 20))


def store_upload(upload: Any, folder: Path, limits: UploadLimits) -> Path:
    """Save, identify and check one upload in ``folder``; returns the scan file (or DICOM folder), which holds only uploaded bytes.

    Raises:
        UploadError: not a scan or a hostile zip (400/422), a header whose data is in another file
            (422), more than ``limits.max_voxels`` declared (413): all before any voxel is read.
    """
    stored = folder / "upload"
    upload.save(stored)
    suffix = scan_suffix(stored)
    if suffix == ".zip":
        scan = unpack_dicom_zip(stored, folder / "dicom", limits.max_members, limits.max_unpacked_bytes)
        stored.unlink()
    else:
        check_attached(stored, suffix)
        scan = stored.rename(folder / f"scan{suffix}")
    try:
        read_header(scan, max_voxels=limits.max_voxels)
    except VolumeTooLarge as err:
        declared = str(err).split("header declares ", 1)[-1].split(", more than", 1)[0]
        raise UploadError(
            413, f"The scan's header declares {declared}; uploads may have at most {limits.max_voxels:.3g} voxels (--max-voxels)."
        ) from None
    return scan


def in_new_folder(results: Any, work: Any, noun: str = "scan", detail: bool = False) -> Any:
    """``work(token, folder)`` in a new result folder, the one place the scan page and the MONAI Label upload keep
    this rule: a bad upload (:class:`UploadError`, ``VolumeError``) becomes a JSON error (``detail``: its message
    also under MONAI Label's key) and, like any failure, removes the folder; its expiry counts from the end."""
    from shared.web import json_error

    token, folder = results.new()
    try:
        return work(token, folder)
    except (UploadError, VolumeError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        status = err.status if isinstance(err, UploadError) else 422
        message = str(err)
        if not isinstance(err, UploadError):
            message = f"Not a readable {noun}: " + re.sub(re.escape(str(folder)) + r"/\S*", f"the uploaded {noun}", message)
        return json_error(status, message, **({"detail": message} if detail else {}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        results.done(token)


class ImageStore:
    """Image id -> the private result folder holding its upload (expiring with the server's results)."""

    def __init__(self, results: Any) -> None:
        self.results, self._ids, self._lock = results, {}, threading.Lock()

    def put(self, image_id: str, token: str, scan: Path) -> None:
        """``image_id`` is now the upload stored as ``scan`` in ``token``'s folder; an earlier upload of that id is retired:
        removed once no inference reads it any more (never under a running one)."""
        with self._lock:
            old = self._ids.get(image_id)
            self._ids[image_id] = (token, scan.name)
        if old and old[0] != token:
            self.results.retire(old[0])

    def remove(self, image_id: str) -> None:
        """Forget ``image_id``; its folder is removed once no inference reads it any more."""
        with self._lock:
            old = self._ids.pop(image_id, None)
        if old:
            self.results.retire(old[0])

    def hold(self, image_id: str) -> tuple[str, Path] | None:
        """``(token, scan)`` of a stored image with a use of its folder taken (give it back with ``results.done``), else ``None``."""
        with self._lock:
            token, name = self._ids.get(image_id, (None, None))
            if token is None or not self.results.hold(token):
                return None
        scan = self.results.root / token / name
        if not scan.exists():
            self.results.done(token)
            return None
        return token, scan
