"""Generators of bad input files for the bad-input suite (``tests/test_bad_input.py``).

Each generator writes one file (or folder) under a directory and returns its path. They make
what users really bring by mistake: empty and random files, files cut off at several offsets,
the wrong container behind an extension, 2D/4D/multi-component volumes, NaN/Inf voxels, headers
that declare absurd sizes, unequal sequences, wrong channel counts.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Generator = Callable[[Path], Path]


def random_bytes(name: str, size: int = 4096) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(np.random.default_rng(len(name)).integers(0, 256, size, dtype=np.uint8).tobytes())
        return path

    return make


def empty(name: str) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(b"")
        return path

    return make


def text_named(name: str) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text("this is a text file, not what its name says\n" * 20)
        return path

    return make


def truncated(source: Generator, fraction: float, name: str) -> Generator:
    """``source``'s file cut to ``fraction`` of its bytes (or to that many bytes when ``fraction >= 1``)."""

    def make(folder: Path) -> Path:
        good = source(folder)
        data = good.read_bytes()
        good.unlink()
        keep = int(fraction) if fraction >= 1 else int(len(data) * fraction)
        path = folder / name
        path.write_bytes(data[:keep])
        return path

    return make


def directory(name: str) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.mkdir()
        return path

    return make


# ---- volumes --------------------------------------------------------------------------------------


def nifti(name: str, shape: tuple[int, ...] = (24, 20, 16), dtype=np.int16, fill: Callable[[np.ndarray], None] | None = None) -> Generator:
    """A NIfTI with a real (oblique-free, 1.5 mm) affine; ``fill`` may spoil the voxels."""

    def make(folder: Path) -> Path:
        import nibabel as nib

        data = (np.arange(np.prod(shape)).reshape(shape) % 7).astype(dtype)
        if fill is not None:
            fill(data)
        affine = np.diag([1.5, 1.5, 1.5, 1.0])
        affine[:3, 3] = (-10.0, 20.0, 5.0)
        path = folder / name
        if name.endswith((".nii", ".nii.gz")):
            nib.save(nib.Nifti1Image(data, affine), str(path))
        else:  # NRRD, MHA through ITK
            from medseg.io.volumes import Geometry, write_volume

            write_volume(data, Geometry(shape, (1.5,) * 3, (10.0, -20.0, 5.0), tuple(np.eye(3).reshape(-1))), path)
        return path

    return make


def rgb_nifti(name: str) -> Generator:
    """A multi-component (RGB) NIfTI volume."""

    def make(folder: Path) -> Path:
        import nibabel as nib

        data = np.zeros((16, 16, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        path = folder / name
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        return path

    return make


def nifti_huge_header(name: str) -> Generator:
    """A valid NIfTI header declaring 30000^3 voxels, followed by a few bytes of data."""

    def make(folder: Path) -> Path:
        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_data_dtype(np.int16)
        header.set_data_shape((30000, 30000, 30000))
        header.set_qform(np.eye(4), code=1)
        path = folder / name
        path.write_bytes(header.binaryblock + b"\x00" * 4 + b"\x00" * 64)
        return path

    return make


def nrrd_vector(name: str) -> Generator:
    """A 3-component vector NRRD volume."""

    def make(folder: Path) -> Path:
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.zeros((8, 16, 16, 3), dtype=np.float32), isVector=True)
        path = folder / name
        sitk.WriteImage(image, str(path))
        return path

    return make


def set_nan(data: np.ndarray) -> None:
    data[3, 4, 5] = np.nan


def set_inf(data: np.ndarray) -> None:
    data[3, 4, 5] = np.inf


# ---- videos ---------------------------------------------------------------------------------------


def video(name: str, frames: int = 40, size: tuple[int, int] = (48, 64)) -> Generator:
    def make(folder: Path) -> Path:
        from action.video.synthetic import encode_video

        rng = np.random.default_rng(1)
        return encode_video(rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8), folder / name, fps=10)

    return make


def avi_huge_header(name: str) -> Generator:
    """An uncompressed AVI whose header claims 100000 x 100000 pixels per frame."""

    def make(folder: Path) -> Path:
        import av

        path = folder / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream("rawvideo", rate=10)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr24"
            for _ in range(4):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
            container.mux(stream.encode())
        data = bytearray(path.read_bytes())
        strf, avih = data.find(b"strf"), data.find(b"avih")
        data[strf + 12 : strf + 20] = struct.pack("<ii", 100000, 100000)
        data[avih + 40 : avih + 48] = struct.pack("<II", 100000, 100000)
        path.write_bytes(bytes(data))
        return path

    return make


# ---- sequences ------------------------------------------------------------------------------------


def npz(name: str, **arrays: np.ndarray) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        np.savez(path, **arrays)
        return path

    return make


def csv_text(name: str, rows: list[str]) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text("\n".join(rows) + "\n")
        return path

    return make


def sensor_rows(channels: int = 3, nan_at: tuple[int, int] | None = None) -> list[str]:
    """CSV rows of 4 recordings x 5 steps (two classes), optionally with a NaN at (recording, step)."""
    names = ",".join(f"c{i}" for i in range(channels))
    rows = [f"sample,label,{names}"]
    for sample in range(4):
        for step in range(5):
            values = ["nan" if nan_at == (sample, step) and c == 0 else f"{sample + step * 0.1 + c:.2f}" for c in range(channels)]
            rows.append(f"{sample},{'ab'[sample % 2]},{','.join(values)}")
    return rows


def dataset_json(name: str, content: str) -> Generator:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text(content)
        return path

    return make


def json_text(value: object) -> str:
    return json.dumps(value)


# ---- uploads whose header points outside the upload, and decompression bombs ------------------------

#: the server file a detached header names: ``secret_file(folder)`` makes it (a plausible 64x64x16 int16 volume)
SECRET_NAME = "secret.raw"
SECRET_SHAPE = (64, 64, 16)
#: an access time far in the past: reading the file moves it to now (ext4 relatime), so a test sees any read
SECRET_ATIME = 1_577_836_800.0  # 2020-01-01


def secret_file(folder: Path) -> Path:
    """A server file outside every upload (``folder/elsewhere/secret.raw``), its atime set to :data:`SECRET_ATIME`."""
    import os

    path = folder / "elsewhere" / SECRET_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        volume = (np.indices(SECRET_SHAPE).sum(axis=0) % 50).astype("<i2")
        path.write_bytes(volume.tobytes(order="F"))
        os.utime(path, (SECRET_ATIME, path.stat().st_mtime))
    return path


def nrrd_detached(
    name: str, field: str = "data file", list_form: bool = False, relative: bool = False, blank_line: bool = False
) -> Generator:
    """A ~200-byte NRRD header whose voxels are the server's :func:`secret_file` (``field: /path``, or ``field: LIST`` then the path)."""

    def make(folder: Path) -> Path:
        secret = secret_file(folder)
        target = "../" * 40 + str(secret).lstrip("/") if relative else str(secret)
        sizes = " ".join(str(s) for s in SECRET_SHAPE)
        header = f"NRRD0004\ntype: short\ndimension: 3\nsizes: {sizes}\nspace: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,2.5)\nencoding: raw\nendian: little\n"
        header += f"{field}: LIST 3\n{target}\n" if list_form else f"{field}: {target}\n"
        path = folder / name
        path.write_text(header + ("\n" if blank_line else ""))
        return path

    return make


def metaimage_detached(name: str, element_data_file: str | None = None) -> Generator:
    """A MetaImage header whose ``ElementDataFile`` is the server's :func:`secret_file` (or ``element_data_file``, e.g. ``LIST``)."""

    def make(folder: Path) -> Path:
        secret = secret_file(folder)
        sizes = " ".join(str(s) for s in SECRET_SHAPE)
        value = element_data_file or str(secret)
        header = f"ObjectType = Image\nNDims = 3\nDimSize = {sizes}\nElementSpacing = 1 1 2.5\nElementType = MET_SHORT\nElementDataFile = {value}\n"
        if value == "LIST":
            header += f"{secret}\n"
        path = folder / name
        path.write_text(header)
        return path

    return make


def nifti_pair_header(name: str, analyze: bool = False, gzipped: bool = False) -> Generator:
    """The ``.hdr`` half of a NIfTI-1 (``ni1``) or Analyze 7.5 pair: its voxels would be in a ``.img`` beside it."""

    def make(folder: Path) -> Path:
        import gzip

        import nibabel as nib

        kind = nib.AnalyzeImage if analyze else nib.Nifti1Pair
        block = kind(np.zeros(SECRET_SHAPE, np.int16), np.eye(4)).header.binaryblock
        path = folder / name
        path.write_bytes(gzip.compress(block) if gzipped else block)
        return path

    return make


def dicom_zip_with(name: str, member: Generator, member_name: str) -> Generator:
    """A zip of a real 4-slice DICOM series plus one more member made by ``member`` (e.g. a detached header)."""

    def make(folder: Path) -> Path:
        import zipfile

        from tests.medseg.conftest import OBLIQUE, write_dicom_series

        series = write_dicom_series(np.zeros(OBLIQUE.shape, np.int16)[:, :, :4], OBLIQUE, folder / "series")
        extra = member(folder)
        path = folder / name
        with zipfile.ZipFile(path, "w") as zf:
            for slice_file in sorted(series.iterdir()):
                zf.write(slice_file, f"series/{slice_file.name}")
            zf.write(extra, f"series/{member_name}")
        extra.unlink()
        return path

    return make


def nifti_gz_bomb(name: str, shape: tuple[int, ...] = (2000, 1000, 1000), inflated_mb: int = 1000) -> Generator:
    """A ~1 MB ``.nii.gz`` whose header declares ``shape`` (2 x 10^9 int16 voxels) over ``inflated_mb`` MB of zeros."""

    def make(folder: Path) -> Path:
        import gzip

        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_data_dtype(np.int16)
        header.set_data_shape(shape)
        header.set_qform(np.eye(4), code=1)
        path = folder / name
        # gzip members may follow each other (RFC 1952), so one compressed MB of zeros repeated
        # is a valid file that inflates to ``inflated_mb`` MB, made in no time
        zeros = gzip.compress(b"\0" * (1 << 20), 9)
        path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4) + zeros * inflated_mb)
        return path

    return make


def nrrd_bomb(name: str, sizes: str = "3 20000 20000 1000", kind: str = "vector") -> Generator:
    """An attached, gzip-encoded NRRD declaring ``sizes`` (default 3 components x 4 x 10^11 voxels) over a little data."""

    def make(folder: Path) -> Path:
        import gzip

        dims = len(sizes.split())
        kinds = f"kinds: {kind} domain domain domain\n" if dims == 4 else ""
        header = f"NRRD0004\ntype: unsigned char\ndimension: {dims}\nsizes: {sizes}\n{kinds}encoding: gzip\n\n"
        path = folder / name
        path.write_bytes(header.encode() + gzip.compress(b"\0" * (8 << 20), 9))
        return path

    return make


def metaimage_bomb(name: str) -> Generator:
    """An attached MetaImage (``ElementDataFile = LOCAL``, compressed) declaring 5000^3 voxels."""

    def make(folder: Path) -> Path:
        import zlib

        header = "ObjectType = Image\nNDims = 3\nDimSize = 5000 5000 5000\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = LOCAL\n"
        path = folder / name
        path.write_bytes(header.encode() + zlib.compress(b"\0" * (8 << 20), 9))
        return path

    return make


def _rle_multiframe_ct(frames: int, size: int) -> Any:
    """The pydicom dataset of :func:`multiframe_rle_ct`: one zero RLE frame repeated ``frames`` times, with per-frame positions."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels.encoders import RLELosslessEncoder
    from pydicom.uid import RLELossless, generate_uid

    frame = RLELosslessEncoder.encode(
        np.zeros((size, size), np.uint16),
        rows=size,
        columns=size,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=16,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = RLELossless
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (generate_uid() for _ in range(3))
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    shared = Dataset()
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 0.5
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in range(frames):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, 0.5 * k]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def multiframe_rle_ct(name: str, frames: int = 1200, size: int = 512, zipped: bool = True) -> Generator:
    """One enhanced-style CT file of ``frames`` RLE-compressed ``size`` x ``size`` frames of zeros (1200 x 512^2 = 3.1 x 10^8
    voxels in about 20 KB, 17 KB zipped): the same tiny RLE frame repeated in the encapsulated pixel data, with per-frame
    positions, so it is a well-formed volume that only its size makes dangerous. Zipped by default, as it was uploaded."""

    def make(folder: Path) -> Path:
        import zipfile

        ds = _rle_multiframe_ct(frames, size)
        dcm = folder / "multiframe.dcm"
        ds.save_as(dcm, enforce_file_format=True)
        if not zipped:
            return dcm.rename(folder / name)
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(dcm, "study/multiframe.dcm")
        dcm.unlink()
        return path

    return make
