"""medseg.web.uploads: what real writers produce with attached data is accepted; everything that points elsewhere is refused by its header alone."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.volumes import read_volume, write_volume
from medseg.web.uploads import DETACHED, UploadError, check_attached, scan_suffix, unpack_dicom_zip
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series

VOLUME = (np.arange(20 * 18 * 12).reshape(20, 18, 12) % 9).astype(np.int16)


def _itk_file(path: Path, compress: bool) -> Path:
    image = OBLIQUE.apply_to(sitk.GetImageFromArray(VOLUME.transpose(2, 1, 0)))
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


@pytest.mark.parametrize(
    "name, compress", [("a.nrrd", False), ("b.nrrd", True), ("c.mha", False), ("d.mha", True), ("e.nii", False), ("f.nii.gz", True)]
)
def test_attached_files_from_itk_are_accepted_as_what_they_are(tmp_path: Path, name: str, compress: bool) -> None:
    path = _itk_file(tmp_path / name, compress)
    upload = path.rename(tmp_path / "upload")  # the server stores an upload under a name of its own
    suffix = scan_suffix(upload)
    assert name.endswith(suffix)
    check_attached(upload, suffix)  # no error
    np.testing.assert_array_equal(read_volume(upload.rename(tmp_path / f"scan{suffix}"))[0], VOLUME)


def test_nibabel_nifti_is_accepted(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(VOLUME, np.diag([0.8, 0.9, 2.5, 1.0])), str(tmp_path / "scan.nii.gz"))
    assert scan_suffix(tmp_path / "scan.nii.gz") == ".nii.gz"


@pytest.mark.parametrize("header_name, data_suffix", [("scan.nhdr", ".raw.gz"), ("scan.mhd", ".zraw"), ("plain.mhd", ".raw")])
def test_detached_headers_written_by_itk_are_refused_from_their_text(tmp_path: Path, header_name: str, data_suffix: str) -> None:
    """Real detached files (ITK writes .nhdr/.mhd beside their data): the header alone is the upload."""
    header = _itk_file(tmp_path / header_name, compress=header_name != "plain.mhd")
    assert any(p.name.endswith(data_suffix) for p in tmp_path.iterdir())  # ITK really wrote the data elsewhere
    upload = header.rename(tmp_path / "upload")
    with pytest.raises(UploadError, match=DETACHED) as caught:
        check_attached(upload, scan_suffix(upload))
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "header, reason",
    [
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n", "no data after it"),
        (b"NRRD0004\r\ntype: short\r\ndata  file : elsewhere.raw\r\n\r\n\x00\x00", "'data file' field"),
        (b"NRRD0005\n# data file: a comment is not a field\ntype: short\ndimension: 1\nsizes: 1\nencoding: raw\n\n\x00\x00", None),
        (b"ObjectType = Image\nNDims = 1\nDimSize = 1\nElementType = MET_SHORT\nElementDataFile = local\n\x00\x00", None),
        (b"ObjectType = Image\nNDims = 1\nDimSize = 1\nElementType = MET_SHORT\nElementDataFile = x%03d.raw 1 3 1\n", "not LOCAL"),
        (b"ObjectType = Image\nNDims = 1\nDimSize = 1\nElementType = MET_SHORT\n", "without ElementDataFile"),
    ],
)
def test_header_rules(tmp_path: Path, header: bytes, reason: str | None) -> None:
    path = tmp_path / "upload"
    path.write_bytes(header)
    if reason is None:
        check_attached(path, scan_suffix(path))
    else:
        with pytest.raises(UploadError, match=reason):
            check_attached(path, scan_suffix(path))


def _series_zip(tmp_path: Path, extra: dict[str, bytes]) -> Path:
    folder = write_dicom_series(random_labels(OBLIQUE.shape).astype(np.int16), OBLIQUE, tmp_path / "series")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"DICOM/{path.name}")
        for name, content in extra.items():
            zf.writestr(name, content)
    return archive


def test_a_zip_keeps_its_dicom_files_and_skips_notes(tmp_path: Path) -> None:
    archive = _series_zip(tmp_path, {"README.txt": b"exported by a PACS viewer\n", "thumbs/preview.jpg": b"\xff\xd8\xff\xe0 not dicom"})
    folder = unpack_dicom_zip(archive, tmp_path / "out", max_members=100, max_bytes=50 << 20)
    assert len(list(folder.iterdir())) == OBLIQUE.shape[2]
    unpacked, original = read_volume(folder), read_volume(tmp_path / "series")
    np.testing.assert_array_equal(unpacked[0], original[0])
    assert unpacked[1].matches(original[1]) == []


@pytest.mark.parametrize(
    "member, content",
    [
        ("x.nhdr", b"NRRD0004\ntype: short\ndata file: /etc/shadow\n"),
        ("x.mhd", b"ObjectType = Image\nElementDataFile = /etc/shadow\n"),
        ("x.nii.gz", b"\x1f\x8b\x08\x00"),
        ("x.hdr", b"\x5c\x01\x00\x00" + b"\x00" * 344),
    ],
)
def test_a_zip_with_a_volume_header_is_refused(tmp_path: Path, member: str, content: bytes) -> None:
    archive = _series_zip(tmp_path, {member: content})
    with pytest.raises(UploadError, match=f"{member}' is not DICOM.*{DETACHED}") as caught:
        unpack_dicom_zip(archive, tmp_path / "out", max_members=100, max_bytes=50 << 20)
    assert caught.value.status == 422


def test_a_zip_without_dicom_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "notes.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("notes.txt", b"nothing here")
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UploadError, match="holds no DICOM file"):
        unpack_dicom_zip(archive, tmp_path / "out", max_members=100, max_bytes=1 << 20)


def test_the_cli_reader_still_reads_detached_headers_from_disk(tmp_path: Path) -> None:
    header = _itk_file(tmp_path / "scan.nhdr", compress=True)
    write_volume(VOLUME, OBLIQUE, tmp_path / "copy.mhd")
    np.testing.assert_array_equal(read_volume(header)[0], VOLUME)
    np.testing.assert_array_equal(read_volume(tmp_path / "copy.mhd")[0], VOLUME)
