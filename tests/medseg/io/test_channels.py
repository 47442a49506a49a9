"""Multi-channel images: 4D files and nnU-Net's one-file-per-channel cases, read on one grid or refused by name."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.io.channels import case_name, cases_from_inputs, channel_headers, group_channels, read_channels, split_channel
from medseg.io.volumes import Geometry, VolumeError, read_volume, write_volume
from tests.medseg.conftest import OBLIQUE


def _channels(folder: Path, case: str = "case", count: int = 2, geometry: Geometry = OBLIQUE) -> list[Path]:
    rng = np.random.default_rng(len(case) + count)
    return [
        write_volume(rng.normal(size=geometry.shape).astype(np.float32) + 10 * c, geometry, folder / f"{case}_{c:04d}.nii.gz")
        for c in range(count)
    ]


def test_channel_files_stack_in_order_on_channel_0s_grid(tmp_path: Path) -> None:
    files = _channels(tmp_path, count=3)
    array, geometry = read_channels([str(f) for f in files])
    assert array.shape == (3, *OBLIQUE.shape) and not geometry.matches(OBLIQUE)
    for c, file in enumerate(files):
        np.testing.assert_array_equal(array[c], read_volume(file)[0])
    assert channel_headers(files)[1] == 3


def test_a_4d_nifti_is_read_channels_first_with_its_spatial_grid(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(7, 6, 5, 4)).astype(np.float32)
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = [10, -20, 30]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "brats.nii.gz")
    array, geometry = read_channels(tmp_path / "brats.nii.gz")
    np.testing.assert_array_equal(array, np.moveaxis(data, 3, 0))
    assert geometry.shape == (7, 6, 5) and np.allclose(geometry.ras_affine, affine)
    assert channel_headers(tmp_path / "brats.nii.gz")[1] == 4


def test_a_plain_volume_is_one_channel(tmp_path: Path) -> None:
    (file,) = _channels(tmp_path, count=1)
    array, _ = read_channels(file)
    assert array.shape == (1, *OBLIQUE.shape)


def test_channels_on_different_grids_are_refused_naming_the_file(tmp_path: Path) -> None:
    first = _channels(tmp_path, count=1)[0]
    moved = Geometry(OBLIQUE.shape, OBLIQUE.spacing, (5.0, 0.0, 0.0), OBLIQUE.direction)
    second = write_volume(np.zeros(OBLIQUE.shape, np.float32), moved, tmp_path / "case_0001.nii.gz")
    with pytest.raises(VolumeError, match=r"case_0001\.nii\.gz: its grid differs from channel 0 \(case_0000\.nii\.gz\): origin"):
        read_channels([first, second])


def test_a_missing_channel_file_is_named(tmp_path: Path) -> None:
    files = _channels(tmp_path, count=2)
    with pytest.raises(FileNotFoundError, match=r"case_0002\.nii\.gz: channel file not found"):
        channel_headers([*files, tmp_path / "case_0002.nii.gz"])


def test_grouping_by_nnunet_suffix(tmp_path: Path) -> None:
    files = sorted(_channels(tmp_path, "a", 2) + _channels(tmp_path, "b", 2))
    assert group_channels(files) == [("a", [str(files[0]), str(files[1])]), ("b", [str(files[2]), str(files[3])])]
    assert group_channels(files, channels=2) == group_channels(files)
    # one channel each (nnU-Net's single-modality naming): cases of their own, named by their file
    single = sorted(_channels(tmp_path / "one", "c", 1) + _channels(tmp_path / "one", "d", 1))
    assert group_channels(single) == [("c_0000", str(single[0])), ("d_0000", str(single[1]))]


def test_names_that_only_look_like_channels_stay_cases_when_nothing_is_declared(tmp_path: Path) -> None:
    files = [write_volume(np.zeros(OBLIQUE.shape, np.int16), OBLIQUE, tmp_path / f"patient_{y}.nii.gz") for y in (2019, 2020)]
    assert [case for case, _ in group_channels(files)] == ["patient_2019", "patient_2020"]


def test_grouping_names_every_missing_or_unexpected_file(tmp_path: Path) -> None:
    files = sorted(_channels(tmp_path, "a", 2) + _channels(tmp_path, "b", 1))
    with pytest.raises(VolumeError, match=r"b_0001\.nii\.gz is missing"):
        group_channels(files, channels=2)
    stray = write_volume(np.zeros(OBLIQUE.shape, np.int16), OBLIQUE, tmp_path / "scan.nii.gz")
    with pytest.raises(VolumeError, match=r"scan\.nii\.gz has no channel suffix _0000\.\._0001"):
        group_channels([*sorted(_channels(tmp_path, "a", 2)), stray], channels=2)


def test_command_line_inputs_become_cases(tmp_path: Path) -> None:
    files = _channels(tmp_path, "a", 2)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "whole.nii.gz")
    cases = cases_from_inputs([tmp_path / "whole.nii.gz", *files], channels=2)
    assert cases == [str(tmp_path / "whole.nii.gz"), [str(f) for f in files]]
    assert cases_from_inputs(files, channels=1) == [str(f) for f in files]
    assert [case_name(c) for c in cases] == ["whole", "a"] and split_channel("la_003_0001") == ("la_003", 1)
