import gzip

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import SimpleITK as sitk

from medseg.io.volumes import Geometry, VolumeError, read_header, read_volume, write_volume
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    labels = random_labels()
    path = write_volume(labels, OBLIQUE, tmp_path / f"mask{suffix}")
    array, geometry = read_volume(path)
    np.testing.assert_array_equal(array, labels)
    assert geometry.matches(OBLIQUE) == []


def test_nifti_affine_agrees_with_nibabel(tmp_path):
    path = write_volume(random_labels(), OBLIQUE, tmp_path / "m.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, OBLIQUE.ras_affine, atol=1e-4)
    assert Geometry.from_ras_affine(nib.load(path).affine, OBLIQUE.shape).matches(OBLIQUE) == []


def test_matlab_v5_and_v73(tmp_path):
    vol = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    scipy.io.savemat(tmp_path / "v5.mat", {"V": vol, "note": "text"})
    np.testing.assert_array_equal(read_volume(tmp_path / "v5.mat")[0], vol)
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # MATLAB stores column-major: h5py sees the axes reversed
        f.create_dataset("L", data=vol.transpose(2, 1, 0))
        f.create_dataset("V", data=(2 * vol).transpose(2, 1, 0))
    np.testing.assert_array_equal(read_volume(tmp_path / "v73.mat", mat_var="V")[0], 2 * vol)
    with pytest.raises(VolumeError, match=r"v73\.mat: cannot tell which variable is the volume \(\['L', 'V'\]"):
        read_volume(tmp_path / "v73.mat")
    with pytest.raises(VolumeError, match=r"no variable 'X'; the file holds \['L', 'V'\]"):
        read_volume(tmp_path / "v73.mat", mat_var="X")


def _right_handed(geometry: Geometry) -> Geometry:
    """DICOM stacks slices along row x column; a scanner's grid is always right-handed."""
    d = geometry.direction_matrix.copy()
    d[:, 2] = np.cross(d[:, 0], d[:, 1])
    return Geometry(geometry.shape, geometry.spacing, geometry.origin, tuple(d.reshape(-1)))


def test_dicom_series_reads_with_geometry(tmp_path):
    volume = (random_labels(seed=2) * 100).astype(np.int16)
    geometry = _right_handed(OBLIQUE)
    folder = write_dicom_series(volume, geometry, tmp_path / "series")
    array, read = read_volume(folder)
    np.testing.assert_array_equal(array, volume)
    assert read.matches(geometry) == []
    assert read_header(folder).geometry.matches(geometry) == []  # header-only path agrees with the full read


def test_dicom_series_with_a_missing_slice_is_named(tmp_path):
    folder = write_dicom_series(np.zeros(OBLIQUE.shape, np.int16), _right_handed(OBLIQUE), tmp_path / "gappy", skip={5})
    with pytest.raises(VolumeError, match=r"gappy: slice gap of 5 mm between slice_004\.dcm and slice_006\.dcm.*a slice is missing"):
        read_volume(folder)


def test_huge_header_is_refused_before_reading(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.uint8)
    path = tmp_path / "huge.nii"
    with open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 64)
    with pytest.raises(VolumeError, match=r"huge\.nii: header declares 30000x30000x30000 = 2\.7e\+13 voxels.*refusing"):
        read_volume(path)


def test_truncated_gzip_is_named(tmp_path):
    path = write_volume(
        np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32),
        OBLIQUE.__class__((30, 30, 30), (1, 1, 1), (0, 0, 0), tuple(np.eye(3).reshape(-1))),
        tmp_path / "cut.nii.gz",
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: cannot read the voxel data; the file is truncated or corrupt"):
        read_volume(path)


def test_nan_voxels_survive_reading(tmp_path):
    array = np.zeros((4, 5, 6), np.float32)
    array[1, 2, 3] = np.nan
    for suffix in (".nii.gz", ".nrrd"):
        geometry = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
        back, _ = read_volume(write_volume(array, geometry, tmp_path / f"nan{suffix}"))
        assert np.isnan(back[1, 2, 3]) and np.isnan(back).sum() == 1, suffix


def test_2d_and_4d_are_errors(tmp_path):
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkUInt8), str(tmp_path / "flat.nrrd"))
    with pytest.raises(VolumeError, match=r"flat\.nrrd: 2D image \(size 8x8\); expected a single-channel 3D volume"):
        read_volume(tmp_path / "flat.nrrd")
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6, 2), np.float32), np.eye(4)), tmp_path / "time.nii.gz")
    with pytest.raises(VolumeError, match=r"time\.nii\.gz: 4D image"):
        read_volume(tmp_path / "time.nii.gz")


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VolumeError, match=r"notes\.txt: unsupported file type"):
        read_header(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match=r"Volume not found: .*absent\.nii\.gz"):
        read_header(tmp_path / "absent.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not an image at all" * 10))
    with pytest.raises(VolumeError, match=r"junk\.nii\.gz: not a readable \.nii\.gz image: its header cannot be read"):
        read_header(tmp_path / "junk.nii.gz")


def test_mat_round_trip_keeps_an_oblique_anisotropic_grid(tmp_path):
    """`medseg infer --format mat` writes ijk_to_lps beside the mask; reading it back gives the same grid, not 1 mm identity."""
    labels = random_labels(OBLIQUE.shape)
    path = write_volume(labels, OBLIQUE, tmp_path / "mask.mat")
    array, geometry = read_volume(path)
    np.testing.assert_array_equal(array, labels)
    assert geometry.matches(OBLIQUE) == [] and read_header(path).geometry.matches(OBLIQUE) == []
    assert OBLIQUE.spacing != (1.0, 1.0, 1.0) and OBLIQUE.direction != tuple(np.eye(3).reshape(-1))  # the premise
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # the same in a MATLAB v7.3 file (column-major: transposed)
        f["volume"] = labels.transpose(2, 1, 0)
        f["ijk_to_lps"] = OBLIQUE.ijk_to_lps.T
    assert read_volume(tmp_path / "v73.mat")[1].matches(OBLIQUE) == []
    scipy.io.savemat(tmp_path / "bad.mat", {"volume": labels, "ijk_to_lps": np.zeros((4, 4))})
    with pytest.raises(VolumeError, match=r"bad\.mat: 'ijk_to_lps' must be a finite, invertible 4x4"):
        read_volume(tmp_path / "bad.mat")
