"""DICOM as it comes from scanners and archives: what an object is, decided from its header, before any pixel is decoded.

A folder (or one file) becomes a volume only when it is one: the grayscale slices of one series with their
positions (CT, MR, PET ...), or one multi-frame object with per-frame positions (enhanced CT/MR: the frames are
placed by their own ``PlanePositionSequence``, not by a constant spacing). Everything else gets one line naming
the file and why: no pixel data (RT plan, structure set, SR, waveform), a colour picture (RGB/YBR/palette secondary
captures, ultrasound), a dose grid, a lone 2D image, frames or slices that cannot be placed in space, a truncated or
undecodable file. The voxel count (frames x rows x columns x samples, over every file) is checked against the limit
from the headers alone: a 17 KB zip declaring 1200 RLE frames of 512 x 512 is refused before a frame is decoded.

Headers are read with pydicom (values over 1 KB deferred: pixel data is never read here); pixels are decoded by
SimpleITK's GDCM, which reads every transfer syntax of the standard's common ones (JPEG baseline, extended, lossless,
JPEG-LS, JPEG 2000, RLE, deflate, big endian) and applies the modality rescale (HU for CT).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: photometric interpretations of a scalar (grayscale) image
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: modalities whose "images" are not pictures of the patient's anatomy
NOT_ANATOMY = {"RTDOSE": "an RT dose grid (radiation dose, not an image of the patient)"}
#: modalities whose objects hold no image to segment (a SEG is a result, an SR a report, ...), pixel data or not;
#: a SEG's frames are masks drawn on another series: segmenting them would segment a segmentation
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "DOC", "REG", "OT_DOC"})
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class DicomInputError(ValueError):
    """Raised as :class:`medseg.io.volumes.VolumeError` by the callers; kept apart so this module imports nothing heavy."""


class DicomTooLarge(DicomInputError):
    """More voxels declared than allowed (raised as :class:`medseg.io.volumes.VolumeTooLarge` by the callers)."""


@dataclasses.dataclass
class DicomVolume:
    """What a DICOM input holds, from its headers: its files in stacking order, frame order (multi-frame) and grid."""

    source: Path
    files: list[Path]
    frame_order: list[int] | None
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def multiframe(self) -> bool:
        return self.frame_order is not None


def is_dicom_file(path: Path) -> bool:
    """``DICM`` at byte 128, or a preamble-less file whose first element is a group 0008 (or 0002) tag."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00")  # group 0008 in either byte order


def _kind(ds: Any) -> str:
    """``"RT Plan"``, ``"Secondary Capture Image"``, ... from the SOP class (``"DICOM object"`` when unnamed)."""
    uid = getattr(ds, "SOPClassUID", None)
    name = getattr(uid, "name", "") or ""
    return name.removesuffix(" Storage").strip() or "DICOM object"


def _read_headers(path: Path, files: list[Path]) -> list[tuple[Path, Any]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    found = []
    for file in files:
        try:
            with warnings.catch_warnings():  # pydicom warns about every oddity of real files; the reasons below say what matters
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(file, defer_size=1024, force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, OverflowError) as err:
            if len(files) > 1 and not is_dicom_file(file):
                continue  # a README or thumbnail beside the series
            raise DicomInputError(f"{file}: not a readable DICOM file (truncated or damaged: {type(err).__name__}).") from None
        if not len(ds) or ("SOPClassUID" not in ds and not any(t in ds for t in PIXEL_TAGS)):
            if len(files) > 1 and not is_dicom_file(file):
                continue
            raise DicomInputError(
                f"{file}: a DICOM data set with no SOP class and no pixel data (truncated, damaged or a fragment; not an image to segment)."
            )
        found.append((file, ds))
    if not found:
        raise DicomInputError(f"{path}: no DICOM files found.")
    return found


def _modality(ds: Any) -> str:
    return str(getattr(ds, "Modality", "")).strip().upper()


def _refuse_non_images(datasets: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """The objects with grayscale pixel data, results (SEG: masks) left out; one line for the first that has none
    (when none has), is a result alone, or is in colour. A SEG or a structure set beside its series is left out."""
    images = [(f, ds) for f, ds in datasets if any(t in ds for t in PIXEL_TAGS)]
    if not images:
        file, ds = datasets[0]
        raise DicomInputError(f"{file}: {_kind(ds)}, no pixel data (not an image to segment).")
    results = NON_IMAGE_MODALITIES - NOT_ANATOMY.keys()  # an RT dose grid is refused below, by name
    scans = [(f, ds) for f, ds in images if _modality(ds) not in results]
    if not scans:
        file, ds = images[0]
        raise DicomInputError(
            f"{file}: {_kind(ds)} ({_modality(ds)}: a result drawn on another series), not a scan; give the image series it was drawn on."
        )
    images = scans
    for file, ds in images:
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        if samples != 1 or photometric not in GRAYSCALE:
            colour = "RGB" if photometric == "RGB" else photometric
            raise DicomInputError(
                f"{file}: {colour} {_kind(ds)}, not a scan (a colour picture; segmentation takes grayscale CT/MR images)."
            )
        modality = _modality(ds)
        if modality in NOT_ANATOMY:
            raise DicomInputError(f"{file}: {NOT_ANATOMY[modality]}; segmentation takes CT/MR images.")
    return images


def _one_series(images: list[tuple[Path, Any]], path: Path) -> list[tuple[Path, Any]]:
    series = sorted({str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in images})
    if len(series) > 1:
        raise DicomInputError(
            f"{path}: holds {len(series)} DICOM series ({', '.join(series)}); expected one. Put each series in its own directory."
        )
    return images


def _frames(ds: Any) -> int:
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def _check_voxels(path: Path, images: list[tuple[Path, Any]], max_voxels: float) -> None:
    total = sum(float(ds.Rows) * float(ds.Columns) * _frames(ds) * int(getattr(ds, "SamplesPerPixel", 1) or 1) for _, ds in images)
    if total > max_voxels:
        ds = images[0][1]
        what = f"{_frames(ds)} frames of {ds.Rows}x{ds.Columns}" if len(images) == 1 else f"{len(images)} images of {ds.Rows}x{ds.Columns}"
        raise DicomTooLarge(
            f"{path}: header declares {what} = {total:.3g} voxels, more than the limit {max_voxels:.3g}; refusing to decode it."
        )


def inspect_dicom(path: str | Path, max_voxels: float = 2**31) -> DicomVolume:
    """The volume a DICOM folder or file holds, from headers only (no pixel is decoded).

    Raises:
        DicomInputError: one line naming the file and why it is not a volume to segment.
        DicomTooLarge: more voxels declared than ``max_voxels``.
    """
    path = Path(path)
    with warnings.catch_warnings():  # pydicom warns on values it converts lazily (odd UIDs, VRs); the refusals say what matters
        warnings.simplefilter("ignore")
        return _inspect(path, max_voxels)


def _inspect(path: Path, max_voxels: float) -> DicomVolume:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    images = _one_series(_refuse_non_images(_read_headers(path, files)), path)
    for file, ds in images:
        if "Rows" not in ds or "Columns" not in ds:
            raise DicomInputError(f"{file}: no Rows/Columns: the image size is unknown (damaged header).")
    _check_voxels(path, images, max_voxels)
    multi = [(f, ds) for f, ds in images if _frames(ds) > 1]
    if multi:
        if len(images) > 1:
            raise DicomInputError(
                f"{multi[0][0]}: a multi-frame image beside {len(images) - 1} other file(s) of its series; give it alone."
            )
        return _multiframe_volume(path, *multi[0])
    if len(images) == 1:
        file, ds = images[0]
        raise DicomInputError(
            f"{file}: one {ds.Rows}x{ds.Columns} image, not a volume: give all the slices of its series (their folder, or a zip of them)."
        )
    return _series_volume(path, images)


def _vector(value: Any, n: int, file: Path, name: str) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise DicomInputError(f"{file}: {name} is {value!r}; expected {n} numbers: the images cannot be placed in space.")
    return array


def _frame_attribute(ds: Any, index: int, sequence: str, name: str) -> Any:
    """``name`` of functional group ``sequence`` for frame ``index``: per-frame, else shared, else ``None``."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = getattr(ds, groups, None)
        if items is not None and len(items) > i and sequence in items[i] and len(items[i][sequence].value):
            value = getattr(items[i][sequence].value[0], name, None)
            if value is not None:
                return value
    return None


def _multiframe_volume(path: Path, file: Path, ds: Any) -> DicomVolume:
    """An enhanced (or any functional-group) multi-frame image, each frame placed by its own position."""
    frames = _frames(ds)
    orientation = _frame_attribute(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient") or getattr(
        ds, "ImageOrientationPatient", None
    )
    spacing = _frame_attribute(ds, 0, "PixelMeasuresSequence", "PixelSpacing") or getattr(ds, "PixelSpacing", None)
    positions = [_frame_attribute(ds, k, "PlanePositionSequence", "ImagePositionPatient") for k in range(frames)]
    if orientation is None or spacing is None or any(p is None for p in positions):
        raise DicomInputError(
            f"{file}: {_kind(ds)} of {frames} frames without a position, orientation and pixel spacing for every frame "
            "(no functional groups): its frames cannot be placed in space, so it is not a volume to segment."
        )
    orient = _vector(orientation, 6, file, "ImageOrientationPatient")
    pixel = _vector(spacing, 2, file, "PixelSpacing")
    points = np.stack([_vector(p, 3, file, f"frame {k + 1}'s ImagePositionPatient") for k, p in enumerate(positions)])
    order, step, normal = _stack(file, orient, points, [f"frame {k + 1}" for k in range(frames)])
    return _volume(path, [file], order, ds, orient, pixel, points[order[0]], step, normal)


def _series_volume(path: Path, images: list[tuple[Path, Any]]) -> DicomVolume:
    first_file, first = images[0]
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in images}
    if len(sizes) > 1:
        raise DicomInputError(f"{path}: its images have different sizes {sorted(sizes)}; a volume's slices share one.")
    for file, ds in images:
        for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if getattr(ds, name, None) is None:
                raise DicomInputError(f"{file}: no {name}: the slices cannot be placed in space (not a tomographic series).")
    orient = _vector(first.ImageOrientationPatient, 6, first_file, "ImageOrientationPatient")
    points = np.stack([_vector(ds.ImagePositionPatient, 3, f, "ImagePositionPatient") for f, ds in images])
    order, step, normal = _stack(path, orient, points, [f.name for f, _ in images])
    pixel = _vector(first.PixelSpacing, 2, first_file, "PixelSpacing")
    files = [images[i][0] for i in order]
    return _volume(path, files, None, first, orient, pixel, points[order[0]], step, normal)


def _stack(where: Path, orient: np.ndarray, points: np.ndarray, names: list[str]) -> tuple[list[int], float, np.ndarray]:
    """Order along the slice normal, the median step, and the stacking direction; a gap (a missing slice) is refused."""
    normal = np.cross(orient[:3], orient[3:])
    distance = points @ normal
    order = [int(i) for i in np.argsort(distance, kind="stable")]
    steps = np.diff(distance[order])
    if len(steps) and (steps <= 1e-4).any():
        n = int(np.argmax(steps <= 1e-4))
        raise DicomInputError(f"{where}: {names[order[n]]} and {names[order[n + 1]]} lie at the same position: not one volume.")
    typical = float(np.median(steps)) if len(steps) else 1.0
    for n, step in enumerate(steps if len(steps) > 1 else []):
        if abs(step - typical) > 0.25 * typical:
            raise DicomInputError(
                f"{where}: slice gap of {step:.3g} mm between {names[order[n]]} and {names[order[n + 1]]}, "
                f"where the series steps {typical:.3g} mm: a slice is missing (or the series is irregular)."
            )
    direction = points[order[-1]] - points[order[0]]
    return order, typical, direction / np.linalg.norm(direction)


def _volume(
    path: Path,
    files: list[Path],
    order: list[int] | None,
    ds: Any,
    orient: np.ndarray,
    pixel: np.ndarray,
    origin: np.ndarray,
    step: float,
    stack: np.ndarray,
) -> DicomVolume:
    direction = np.column_stack([orient[:3], orient[3:], stack])
    count = len(order) if order is not None else len(files)
    return DicomVolume(
        path,
        files,
        order,
        (int(ds.Columns), int(ds.Rows), count),
        (float(pixel[1]), float(pixel[0]), float(step)),  # PixelSpacing: between rows, then between columns
        tuple(float(v) for v in origin),
        tuple(float(v) for v in direction.reshape(-1)),
    )


def decode(volume: DicomVolume) -> np.ndarray:
    """The voxels ``[i, j, k]`` (modality rescale applied) in the stacking order of :func:`inspect_dicom`.

    Raises:
        DicomInputError: GDCM cannot decode a file (its transfer syntax named).
    """
    import SimpleITK as sitk

    try:
        if volume.multiframe:
            image = sitk.ReadImage(str(volume.files[0]))
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in volume.files])
            image = reader.Execute()
    except RuntimeError as err:
        raise DicomInputError(f"{volume.source}: cannot decode the pixel data ({_syntax(volume.files[0])}; {_reason(err)}).") from None
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    if image.GetNumberOfComponentsPerPixel() != 1 or array.ndim != 3:
        raise DicomInputError(
            f"{volume.source}: decoded to {array.shape} with {image.GetNumberOfComponentsPerPixel()} components; expected grayscale frames."
        )
    if volume.multiframe:
        array = array[volume.frame_order]
    if array.shape != (volume.shape[2], volume.shape[1], volume.shape[0]):
        raise DicomInputError(f"{volume.source}: decoded {array.shape[::-1]} voxels where the headers declare {volume.shape}.")
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def _syntax(file: Path) -> str:
    import pydicom

    try:
        uid = pydicom.dcmread(file, stop_before_pixels=True, force=True).file_meta.TransferSyntaxUID
        return f"transfer syntax {uid.name}"
    except Exception:  # noqa: BLE001 - only the message's detail
        return "transfer syntax unknown"


def _reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:160]
