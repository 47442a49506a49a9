"""Uploaded scans for ``medseg serve``: what a file is (from its bytes), and DICOM zips unpacked safely.

The client's file name never reaches the disk and never decides the reader: :func:`scan_suffix`
reads the first bytes (gzip -> ``.nii.gz``, NIfTI-1/2 magic -> ``.nii``, ``NRRD`` -> ``.nrrd``,
MetaImage ``ObjectType`` -> ``.mha``, ``PK`` -> a zip of a DICOM series). :func:`unpack_dicom_zip`
checks the archive before extracting anything: member count, the total size the archive declares,
no absolute paths, no ``..``, no links; then it extracts under fresh names, counting the bytes it
really writes (a member may declare less than it inflates to).
"""

from __future__ import annotations

import gzip
import stat
import zipfile
from pathlib import Path, PurePosixPath


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _nifti_magic(head: bytes) -> bool:
    """NIfTI-1 (``n+1``/``ni1`` at byte 344) or NIfTI-2 (``n+2`` at byte 4)."""
    return (len(head) >= 348 and head[344:347] in (b"n+1", b"ni1")) or head[4:7] == b"n+2"


def scan_suffix(path: Path) -> str:
    """The reader suffix of an uploaded file from its content: ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha`` or ``.zip``."""
    with path.open("rb") as handle:
        head = handle.read(540)
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as inner:
                if _nifti_magic(inner.read(540)):
                    return ".nii.gz"
        except (OSError, EOFError):
            raise UploadError(422, "The upload is a damaged gzip file; expected a .nii.gz scan.") from None
        raise UploadError(422, "The upload is gzip-compressed but holds no NIfTI image.")
    if _nifti_magic(head):
        return ".nii"
    if head.startswith(b"NRRD"):
        return ".nrrd"
    if head.lstrip().startswith((b"ObjectType", b"NDims")):
        return ".mha"
    if head.startswith(b"PK\x03\x04"):
        return ".zip"
    raise UploadError(422, "The upload is not a NIfTI, NRRD or MetaImage scan, nor a zip of a DICOM series (decided from its content).")


def unpack_dicom_zip(archive: Path, folder: Path, max_members: int, max_bytes: int) -> Path:
    """Extract the files of ``archive`` flat into ``folder`` under numbered names; refuse hostile archives first.

    Raises:
        UploadError: 400 not a zip, a path that is absolute or climbs out (``..``), a link;
            413 more than ``max_members`` files or more than ``max_bytes`` declared or inflated.
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
        written = 0
        for index, member in enumerate(members):
            with zf.open(member) as source, (folder / f"{index:06d}.dcm").open("wb") as target:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:  # inflates beyond what it declared
                        raise UploadError(413, f"The zip unpacks to more than {max_bytes / 2**20:.0f} MB; refused.")
                    target.write(chunk)
    return folder
