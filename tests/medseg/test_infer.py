import nibabel as nib
import numpy as np
import pytest
import slicerio
import torch

from medseg.infer import Segmenter
from medseg.io.volumes import Geometry, VolumeError, read_header, read_volume, write_volume
from tests.medseg.conftest import OBLIQUE, random_labels

NAMES = {0: "background", 1: "a", 2: "b", 3: "c"}


class IntensityOracle(torch.nn.Module):
    """Logits peaked at intensity k/3 for class k: segments an image whose intensity encodes its label."""

    def forward(self, x):
        centres = torch.arange(4, dtype=x.dtype).reshape(1, 4, 1, 1, 1) / 3
        return -((x - centres) ** 2) * 1000


def _segmenter(pixdim, **kwargs):
    return Segmenter(IntensityOracle(), NAMES, pixdim=pixdim, window=(0, 3), roi_size=(16, 16, 16), **kwargs)


def test_lps_volume_comes_back_exactly_on_its_grid(tmp_path):
    # axis-aligned LPS grid, target spacing = input spacing: only the orientation is undone
    geometry = Geometry((20, 18, 12), (1.0, 1.0, 2.0), (10.0, -5.0, 3.0), tuple(np.eye(3).reshape(-1)))
    labels = random_labels()
    write_volume(labels.astype(np.int16), geometry, tmp_path / "case1.nrrd")
    mask, out_geometry = _segmenter((1.0, 1.0, 2.0)).segment(tmp_path / "case1.nrrd")
    np.testing.assert_array_equal(mask, labels)
    assert out_geometry.matches(geometry) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_oblique_anisotropic_input_exports_on_the_input_grid(tmp_path, suffix):
    labels = random_labels()
    image = write_volume(labels.astype(np.int16), OBLIQUE, tmp_path / "in" / f"case7{suffix}")
    written = _segmenter((1.5, 1.5, 1.5)).segment_files([image], tmp_path / "out", ["nifti", "seg.nrrd"])[str(image)]
    assert [p.name for p in written] == ["case7_seg.nii.gz", "case7_seg.ctbl", "case7.seg.nrrd"]
    reference = read_header(image).geometry
    nifti, nifti_geometry = read_volume(written[0])
    assert nifti.dtype == np.uint8 and nifti_geometry.matches(reference) == []
    np.testing.assert_allclose(nib.load(written[0]).affine, reference.ras_affine, atol=1e-4)  # RAS view agrees
    seg = slicerio.read_segmentation(str(written[2]))
    np.testing.assert_allclose(seg["ijkToLPS"], reference.ijk_to_lps, atol=1e-4)  # LPS view agrees
    np.testing.assert_array_equal(seg["voxels"], nifti)
    # resampled to 1.5 mm and back: most voxels keep their label (boundaries may move by one voxel)
    assert (nifti == labels).mean() > 0.9


def test_largest_component_option(tmp_path):
    labels = random_labels()
    labels[0, 0, 0] = 1  # a stray island of label 1
    geometry = Geometry(labels.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    write_volume(labels.astype(np.int16), geometry, tmp_path / "c.nii.gz")
    kept, _ = _segmenter((1.0, 1.0, 1.0), keep_largest=True).segment(tmp_path / "c.nii.gz")
    assert kept[0, 0, 0] == 0 and (kept == 1).sum() == (labels == 1).sum() - 1


def test_output_that_would_overwrite_an_input_is_refused(tmp_path):
    image = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "a.nii.gz")
    victim = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "a_seg.nii.gz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(VolumeError, match=r"a_seg\.nii\.gz would overwrite the input"):
        _segmenter((1.0, 1.0, 1.0)).segment_files([image, victim], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_any_window_size_works_with_vnet(tmp_path):
    """A 20x18x12 window (no multiple of 16) is padded, run and cropped back exactly where MONAI's own padding puts it."""
    from medseg.networks import VNet

    geometry = Geometry((20, 18, 12), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    write_volume(random_labels().astype(np.int16), geometry, tmp_path / "c.nii.gz")
    torch.manual_seed(0)
    network = VNet(out_channels=4, width=4)
    odd = Segmenter(network, NAMES, pixdim=(2.0, 2.0, 2.0), window=(0, 3), roi_size=(20, 18, 12))
    mask, _ = odd.segment(tmp_path / "c.nii.gz")
    assert mask.shape == (20, 18, 12)
    image = odd._transforms(None)({"image": str(tmp_path / "c.nii.gz")})["image"]
    # one 32x32x16 window: MONAI's sliding window pads the volume itself (symmetrically, zeros) and crops back
    whole = Segmenter(network, NAMES, pixdim=(2.0, 2.0, 2.0), window=(0, 3), roi_size=(32, 32, 16)).logits(image)
    torch.testing.assert_close(odd.logits(image), whole, rtol=1e-4, atol=1e-4)
    labels = torch.argmax(whole, dim=0).numpy()  # on the network's (RAS, foreground) grid; the mask is on the input's grid
    assert np.array_equal(np.bincount(mask.ravel(), minlength=4)[1:], np.bincount(labels.ravel(), minlength=4)[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sums_of_a_volume_too_large_for_the_gpu_stay_on_the_cpu() -> None:
    from medseg.infer import accumulation_device

    gpu = torch.device("cuda", torch.cuda.current_device())
    free, _ = torch.cuda.mem_get_info(gpu)
    assert accumulation_device((1, 1, 64, 64, 64), 3, gpu) == gpu
    edge = int((free / 4 / 4) ** (1 / 3)) + 1  # 3 classes + counts at fp32: more than the whole free memory
    assert accumulation_device((1, 1, edge, edge, edge), 3, gpu) == torch.device("cpu")
    assert accumulation_device((1, 1, edge, edge, edge), 3, torch.device("cpu")) == torch.device("cpu")
