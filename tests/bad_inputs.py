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
            from medseg.io import Geometry, write_volume

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
        from action.synthetic import encode_video

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
