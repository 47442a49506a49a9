"""Reading and writing volumes with their exact geometry: NIfTI, NRRD, MHA/MHD, DICOM series, MATLAB .mat.

One reading path serves validation, training (through :class:`medseg.io.reader.VolumeReader`, a
MONAI ``ImageReader``) and inference, so all three see the same voxels and geometry. It is
written here because MONAI's readers lack three things we need: MATLAB ``.mat`` files
(v5 and v7.3), refusing absurd headers before any voxel is read, and naming the file
(and the missing slice) when a DICOM series or a file is broken.

Conventions: arrays are indexed ``[i, j, k]`` in file order; :class:`Geometry` holds the
ITK/DICOM physical frame (LPS, millimetres); ``ras_affine`` is MONAI's and nibabel's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from shared.io import atomic_path

#: Refuse volumes with more voxels than this before reading any data (2**31: 8 GiB as float32).
MAX_VOXELS = 2**31
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".mat")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: the ``.mat`` variable holding the 4x4 voxel-index -> LPS mm matrix (written by :func:`write_volume`, read back)
MAT_GEOMETRY_VAR = "ijk_to_lps"
# ITK prints warnings straight to stderr (e.g. GDCM's "No Series were found" for every folder that is
# checked for DICOM files). Our errors say what is wrong; a stray C++ warning only confuses.
sitk.ProcessObject_SetGlobalWarningDisplay(False)


class VolumeError(ValueError):
    """A volume that cannot be used; the message names the file, what was found and what was expected."""


class VolumeTooLarge(VolumeError):
    """A header that declares more voxels than allowed (refused before any voxel is read)."""


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Voxel grid in physical space (LPS, mm), as ITK and DICOM define it.

    Attributes:
        shape: voxels along i, j, k.
        spacing: mm per voxel along i, j, k.
        origin: LPS position of voxel (0, 0, 0), mm.
        direction: 3x3, column n = LPS unit vector of index axis n.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]  # row-major 3x3

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def ijk_to_lps(self) -> np.ndarray:
        """4x4 voxel-index -> LPS mm (3D Slicer's ``ijkToLPS``)."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    @property
    def ras_affine(self) -> np.ndarray:
        """4x4 voxel-index -> RAS mm (nibabel's and MONAI's ``affine``)."""
        return LPS_TO_RAS @ self.ijk_to_lps

    @classmethod
    def from_ras_affine(cls, affine: np.ndarray, shape: Sequence[int]) -> Geometry:
        return cls.from_ijk_to_lps(LPS_TO_RAS @ np.asarray(affine, dtype=float), shape)

    @classmethod
    def from_ijk_to_lps(cls, matrix: np.ndarray, shape: Sequence[int]) -> Geometry:
        """The grid of a 4x4 voxel-index -> LPS mm matrix (what :func:`write_volume` stores in ``.mat`` files)."""
        lps = np.asarray(matrix, dtype=float)
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        direction = lps[:3, :3] / spacing
        return cls(tuple(int(s) for s in shape), tuple(spacing.tolist()), tuple(lps[:3, 3].tolist()), tuple(direction.reshape(-1).tolist()))

    @classmethod
    def of_dicom(cls, volume: Any) -> Geometry:
        """The grid of a :class:`medseg.io.dicom_read.DicomVolume`."""
        return cls(volume.shape, volume.spacing, volume.origin, volume.direction)

    @classmethod
    def of_sitk(cls, image: Any) -> Geometry:
        """Geometry of a SimpleITK image or ``ImageFileReader`` after ``ReadImageInformation``."""
        return cls(tuple(int(s) for s in image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def matches(self, other: Geometry, tol: float = 1e-4) -> list[str]:
        """Differences from ``other`` beyond ``tol`` (mm for origin and spacing, cosine for direction)."""
        problems = []
        if tuple(self.shape) != tuple(other.shape):
            problems.append(f"shape {self.shape} vs {other.shape}")
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if a.shape != b.shape or not np.allclose(a, b, atol=tol, rtol=0):
                problems.append(f"{name} {np.round(a, 4).tolist()} vs {np.round(b, 4).tolist()}")
        return problems


@dataclasses.dataclass(frozen=True)
class Header:
    """What a file declares, read without its voxels."""

    path: str
    geometry: Geometry
    ndim: int
    components: int
    pixel_type: str


def strip_suffix(name: str) -> str:
    """``"case7.nii.gz"`` -> ``"case7"``; ``"case7.seg.nrrd"`` -> ``"case7"``; ``"ct.dcm"`` (one DICOM file) -> ``"ct"``."""
    lower = name.lower()
    for suffix in (".seg.nrrd", *sorted(VOLUME_SUFFIXES, key=len, reverse=True), ".dcm", ".dicom"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_dicom_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding DICOM files (a series to read with ITK)."""
    return Path(path).is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def _suffix_ok(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def _check_size(path: Any, shape: Sequence[int], max_voxels: int, components: int = 1) -> None:
    """Values (voxels x components per voxel) the header declares, against ``max_voxels``; :class:`VolumeTooLarge` over it."""
    count = float(np.prod([int(s) for s in shape], dtype=np.float64)) * max(int(components), 1)
    if count > max_voxels:
        what = "x".join(str(int(s)) for s in shape) + (f" x {components} components" if components > 1 else "")
        raise VolumeTooLarge(
            f"{path}: header declares {what} = {count:.3g} voxels, more than the limit {max_voxels:.3g}; refusing to read it (corrupt header?)."
        )


def read_header(path: str | os.PathLike, mat_var: str | None = None, max_voxels: int = MAX_VOXELS) -> Header:
    """Read a volume's header (shape, geometry, components) without reading voxels.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VolumeError: unsupported type, unreadable header, or more than ``max_voxels`` voxels.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Volume not found: {path}")
    if is_dicom_input(path):
        geometry = Geometry.of_dicom(inspect_dicom_volume(path, max_voxels))
        return Header(str(path), geometry, 3, 1, "dicom")
    if not _suffix_ok(path):
        raise VolumeError(f"{path}: unsupported file type; expected one of {', '.join(VOLUME_SUFFIXES)} or a DICOM series directory.")
    if path.stat().st_size == 0:
        raise VolumeError(f"{path}: the file is empty (0 bytes); expected a {_kind(path)} image.")
    if path.name.lower().endswith(".mat"):
        _, array_shape, dtype = _mat_variable_name(path, mat_var)
        _check_size(path, array_shape, max_voxels)
        return Header(str(path), _mat_geometry(path, tuple(array_shape[:3])), len(array_shape), 1, dtype)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise VolumeError(
            f"{path}: not a readable {_kind(path)} image: its header cannot be read (truncated, corrupt or another file type; {_itk_reason(err)})."
        ) from None
    _check_size(path, reader.GetSize(), max_voxels, reader.GetNumberOfComponents())
    return Header(
        str(path),
        _geometry_3d(reader),
        reader.GetDimension(),
        reader.GetNumberOfComponents(),
        sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )


def _geometry_3d(reader: Any) -> Geometry:
    """Geometry of a header's first three axes: a 2D input padded so it can be reported rather than crash, a 4D one
    (channels or time last, MSD's multi-modal NIfTI) cut to its spatial grid."""
    if reader.GetDimension() == 3:
        return Geometry.of_sitk(reader)
    n = reader.GetDimension()
    k = min(n, 3)
    direction = np.asarray(reader.GetDirection()).reshape(n, n)
    square = np.eye(3)
    square[:k, :k] = direction[:k, :k]
    size, spacing, origin = (tuple(v)[:k] for v in (reader.GetSize(), reader.GetSpacing(), reader.GetOrigin()))
    return Geometry(size, spacing, origin, tuple(square.reshape(-1)))


def read_volume(path: str | os.PathLike, mat_var: str | None = None, max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, Geometry]:
    """Read a 3D volume as ``(array[i, j, k], Geometry)``; any other dimensionality is an error.

    Args:
        path: NIfTI, NRRD, MHA/MHD, MATLAB ``.mat`` (v5 or v7.3) or a DICOM series directory.
        mat_var: the ``.mat`` variable to read (default: the only 3D numeric one).
        max_voxels: refuse larger volumes before reading their data.
    """
    header = read_header(path, mat_var, max_voxels)
    if header.ndim != 3 or header.components != 1:
        what = f"{header.ndim}D" + (f" with {header.components} components per voxel" if header.components != 1 else "")
        raise VolumeError(f"{path}: {what} image (size {'x'.join(map(str, header.geometry.shape))}); expected a single-channel 3D volume.")
    path = Path(path)
    if is_dicom_input(path):
        from medseg.io.dicom_read import DicomInputError, decode

        volume = inspect_dicom_volume(path, max_voxels)
        try:
            return decode(volume), Geometry.of_dicom(volume)
        except DicomInputError as err:
            raise VolumeError(str(err)) from None
    if path.name.lower().endswith(".mat"):
        return _read_mat(path, mat_var), header.geometry
    elif path.name.lower().endswith((".nii", ".nii.gz")):
        return _read_nifti_voxels(path, header.geometry), header.geometry
    else:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise VolumeError(f"{path}: cannot read the voxel data; the file is truncated or corrupt ({_first_line(err)}).") from err
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0)), Geometry.of_sitk(image)


def _read_nifti_voxels(path: Path, geometry: Geometry) -> np.ndarray:
    """NIfTI voxels through nibabel; the geometry stays ITK's (the same header reading as every other format).

    SimpleITK 2.5's NIfTI reader was measured to return a truncated ``.nii.gz`` silently
    zero-filled and to turn NaN voxels into 0; nibabel raises on the first and keeps the second.
    """
    import nibabel as nib

    try:
        array = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:
        raise VolumeError(f"{path}: cannot read the voxel data; the file is truncated or corrupt ({type(err).__name__}: {err}).") from err
    if tuple(array.shape) != tuple(geometry.shape):
        raise VolumeError(f"{path}: voxel array {array.shape} does not match the header size {geometry.shape}.")
    return np.ascontiguousarray(array)


def _kind(path: Path) -> str:
    """``".nii.gz"``, ``".nrrd"``, ...: the volume suffix of ``path`` as the user wrote it."""
    name = path.name.lower()
    return next((s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True) if name.endswith(s)), path.suffix)


def _itk_reason(err: Exception) -> str:
    """ITK's reason in user terms, without the path it repeats."""
    text = _first_line(err)
    if "Unable to determine ImageIO reader" in text:
        return "no image reader recognises its content"
    return text.split(": ", 1)[-1] if text.startswith("sitk::ERROR") else text


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(err).__name__


def check_finite(path: str | os.PathLike, array: np.ndarray) -> None:
    """A volume with NaN or Inf voxels is a :class:`VolumeError` naming the file and the counts (check before resampling spreads them)."""
    if array.dtype.kind != "f" or bool(np.isfinite(array).all()):
        return
    n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    raise VolumeError(
        f"{path}: {n_nan} NaN and {n_inf} Inf voxels (of {array.size}); every voxel must be a finite number (fix or replace them, e.g. with the background value)."
    )


def is_dicom_input(path: Path) -> bool:
    """A folder (a DICOM series, read by :mod:`medseg.io.dicom_read`), or one DICOM file (``.dcm`` or the DICOM magic)."""
    from medseg.io.dicom_read import is_dicom_file

    return path.is_dir() or path.name.lower().endswith((".dcm", ".dicom")) or (not _suffix_ok(path) and is_dicom_file(path))


def inspect_dicom_volume(path: Path, max_voxels: float = MAX_VOXELS) -> Any:
    """:func:`medseg.io.dicom_read.inspect_dicom` with its refusals as :class:`VolumeError` (too large: :class:`VolumeTooLarge`)."""
    from medseg.io.dicom_read import DicomInputError, DicomTooLarge, inspect_dicom

    try:
        return inspect_dicom(path, max_voxels)
    except DicomTooLarge as err:
        raise VolumeTooLarge(str(err)) from None
    except DicomInputError as err:
        raise VolumeError(str(err)) from None


def dicom_series_files(directory: str | os.PathLike) -> list[str]:
    """Files of the one DICOM volume in ``directory`` (a series, or one multi-frame file), in stacking order."""
    return [str(f) for f in inspect_dicom_volume(Path(directory)).files]


def _mat_variables(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Variable name -> (shape, dtype) of a .mat file, without loading the arrays."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3
        out = {}
        with h5py.File(path, "r") as f:
            for name, item in f.items():
                if isinstance(item, h5py.Dataset) and not name.startswith("#"):
                    out[name] = (tuple(reversed(item.shape)), str(item.dtype))  # MATLAB is column-major
        return out
    try:
        return {name: (tuple(shape), dtype) for name, shape, dtype in scipy.io.whosmat(str(path))}
    except Exception as err:
        raise VolumeError(f"{path}: not a readable MATLAB .mat file ({_first_line(err)}).") from err


_MAT_NUMERIC = (
    "double",
    "single",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "logical",
    "float",
    "int",
    "bool",
)


def _mat_variable_name(path: Path, var: str | None) -> tuple[str, tuple[int, ...], str]:
    """``(name, shape, dtype)`` of the volume variable: ``var``, or the only numeric 3D one."""
    variables = _mat_variables(path)
    if var is not None:
        if var not in variables:
            raise VolumeError(f"{path}: no variable '{var}'; the file holds {sorted(variables)}.")
        return (var, *variables[var])
    candidates = [n for n, (shape, dtype) in variables.items() if len(shape) == 3 and any(t in dtype for t in _MAT_NUMERIC)]
    if len(candidates) != 1:
        raise VolumeError(
            f"{path}: cannot tell which variable is the volume ({sorted(variables)} found, {len(candidates)} numeric 3D); name it with the .mat variable option."
        )
    return (candidates[0], *variables[candidates[0]])


def _mat_geometry(path: Path, shape: tuple[int, ...]) -> Geometry:
    """The grid stored beside the volume as ``ijk_to_lps`` (4x4, :func:`write_volume`), else 1 mm voxels in LPS axes."""
    import h5py
    import scipy.io

    if MAT_GEOMETRY_VAR in _mat_variables(path):
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                matrix = np.asarray(f[MAT_GEOMETRY_VAR]).T  # MATLAB is column-major
        else:
            matrix = scipy.io.loadmat(str(path), variable_names=[MAT_GEOMETRY_VAR])[MAT_GEOMETRY_VAR]
        matrix = np.asarray(matrix, dtype=float)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise VolumeError(
                f"{path}: '{MAT_GEOMETRY_VAR}' must be a finite, invertible 4x4 voxel-to-LPS matrix; got shape {matrix.shape}."
            )
        return Geometry.from_ijk_to_lps(matrix, shape)
    return Geometry(shape, (1.0,) * 3, (0.0,) * 3, tuple(np.eye(3).reshape(-1)))


def _read_mat(path: Path, var: str | None) -> np.ndarray:
    import h5py
    import scipy.io

    name = _mat_variable_name(path, var)[0]
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return np.ascontiguousarray(np.asarray(f[name]).transpose(2, 1, 0))
    return np.ascontiguousarray(scipy.io.loadmat(str(path), variable_names=[name])[name])


def write_volume(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write ``array[i, j, k]`` with ``geometry`` as NIfTI/NRRD/MHA (by suffix) or ``.mat``, atomically."""
    path = Path(path)
    array = np.asarray(array)
    if tuple(array.shape) != tuple(geometry.shape):
        raise VolumeError(f"{path}: array shape {array.shape} does not match the geometry {geometry.shape}.")
    if path.name.lower().endswith(".mat"):
        import scipy.io

        with atomic_path(path) as tmp:
            scipy.io.savemat(str(tmp), {"volume": array, "spacing": np.asarray(geometry.spacing), MAT_GEOMETRY_VAR: geometry.ijk_to_lps})
        return path
    image = geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0))))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def mask_dtype(num_labels: int) -> type:
    """uint8 up to 255 labels, else uint16 (nnU-Net's rule)."""
    if num_labels > 65535:
        raise ValueError(f"{num_labels} labels do not fit a uint16 label map.")
    return np.uint8 if num_labels <= 255 else np.uint16
