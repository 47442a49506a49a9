import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicerio
import torch

from medseg.inference.segmenter import Segmenter
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


def test_small_parts_are_measured_in_ml_on_the_input_grid(tmp_path):
    labels = np.zeros((20, 18, 12), np.int16)
    labels[2:10, 2:10, 2:8] = 3
    labels[15, 15, 2:4] = 3  # 2 voxels of 2 ul (1 x 1 x 2 mm): 0.004 ml
    labels[15, 2, 6:9] = 3  # 3 voxels: 0.006 ml
    geometry = Geometry(labels.shape, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    write_volume(labels, geometry, tmp_path / "c.nii.gz")
    cleaned, _ = _segmenter((1.0, 1.0, 2.0), remove_small={3: 0.005}).segment(tmp_path / "c.nii.gz")
    assert (cleaned[15, 15, 2:4] == 0).all()
    np.testing.assert_array_equal(cleaned[labels != 0][cleaned[labels != 0] == 0].size, 2)  # only those 2 voxels went


def test_output_that_would_overwrite_an_input_is_refused(tmp_path):
    image = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "a.nii.gz")
    victim = write_volume(random_labels().astype(np.int16), OBLIQUE, tmp_path / "a_seg.nii.gz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(VolumeError, match=r"a_seg\.nii\.gz would overwrite the input"):
        _segmenter((1.0, 1.0, 1.0)).segment_files([image, victim], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_output_inside_a_dicom_series_folder_is_refused_and_its_parent_allowed(tmp_path):
    """Masks written into a DICOM input folder would be read as slices of that series next time: refused (the guard once
    refused the folder's parent and let the folder itself through)."""
    from tests.medseg.conftest import write_dicom_series

    series = write_dicom_series(random_labels().astype(np.int16) * 100, OBLIQUE, tmp_path / "study" / "series")
    before = sorted(p.name for p in series.iterdir())
    for inside in (series, series / "masks"):
        with pytest.raises(VolumeError, match=r"inside the DICOM input folder .*series: the masks written there would be read"):
            _segmenter((2.0, 2.0, 2.0)).segment_files([series], inside)
    assert sorted(p.name for p in series.iterdir()) == before
    written = _segmenter((2.0, 2.0, 2.0)).segment_files([series], series.parent)  # beside the series: fine
    assert all(p.parent == series.parent for p in written[str(series)])


def test_each_network_is_prepared_once_for_all_passes(tmp_path, monkeypatch):
    """An ensemble of 2 batch-norm networks with 8 mirrored passes each folds 2 copies, not 16 (one per pass); a network
    without batch norm is used as it is, with no copy at all."""
    import medseg.inference.inferer as infer_module
    from medseg.networks import VNet

    copies = []
    real_fold = infer_module.fold_batch_norm
    monkeypatch.setattr(infer_module, "fold_batch_norm", lambda net: copies.append(net) or real_fold(net))
    geometry = Geometry((20, 18, 12), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    image = write_volume(random_labels().astype(np.int16), geometry, tmp_path / "c.nii.gz")
    nets = [VNet(out_channels=4, width=4, norm="batch", dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0)) for _ in range(2)]
    segmenter = Segmenter(nets[0], NAMES, window=(0, 3), roi_size=(16, 16, 16), ensemble=nets[1:], mirror_axes=(0, 1, 2))
    segmenter.segment(image)
    assert len(copies) == 2
    instance = VNet(out_channels=4, width=4, norm="instance")
    assert infer_module.inference_network(instance) is instance


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
    from medseg.inference.inferer import accumulation_device

    gpu = torch.device("cuda", torch.cuda.current_device())
    free, _ = torch.cuda.mem_get_info(gpu)
    assert accumulation_device((1, 1, 64, 64, 64), 3, gpu) == gpu
    edge = int((free / 4 / 4) ** (1 / 3)) + 1  # 3 classes + counts at fp32: more than the whole free memory
    assert accumulation_device((1, 1, edge, edge, edge), 3, gpu) == torch.device("cpu")
    assert accumulation_device((1, 1, edge, edge, edge), 3, torch.device("cpu")) == torch.device("cpu")


def _distances(geometry: Geometry, centre: float) -> np.ndarray:
    """Distance (mm) of each voxel centre of an axis-aligned ``geometry`` from the point (centre, centre, centre)."""
    axes = [geometry.origin[a] + np.arange(geometry.shape[a]) * geometry.spacing[a] - centre for a in range(3)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(sum(g**2 for g in grid))


def test_probabilities_resampled_to_the_input_grid_follow_a_boundary_better_than_labels() -> None:
    """nnU-Net's rule: on a coarse network grid (4 mm), resampling probabilities then taking the argmax on the 1 mm input
    grid recovers a sphere that nearest-neighbour labels staircase."""
    from medseg.evaluation.metrics import dice
    from medseg.inference.resample import argmax_on_grid, resample_labels

    eye = tuple(np.eye(3).reshape(-1))
    fine = Geometry((48, 48, 48), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), eye)
    coarse = Geometry((12, 12, 12), (4.0, 4.0, 4.0), (1.5, 1.5, 1.5), eye)
    radius, centre = 9.3, 23.5
    inside = 1 / (1 + np.exp(-(radius - _distances(coarse, centre)) / 1.5))  # a network's soft boundary
    probabilities = np.stack([1 - inside, inside]).astype(np.float32)
    truth = (_distances(fine, centre) < radius).astype(np.uint8)
    kept: list[np.ndarray] = []
    from_probabilities = argmax_on_grid(probabilities, coarse, fine, kept)
    from_labels = resample_labels(probabilities.argmax(0).astype(np.uint8), coarse, fine)
    better, worse = dice(from_probabilities, truth, (1,))[1], dice(from_labels, truth, (1,))[1]
    assert better > 0.92 and better > worse + 0.03, (better, worse)  # measured 0.943 vs 0.863
    assert len(kept) == 2 and kept[0].dtype == np.float16 and kept[0].shape == fine.shape
    np.testing.assert_allclose(kept[0].astype(np.float32) + kept[1], 1.0, atol=2e-3)  # still a distribution
    np.testing.assert_array_equal(np.stack(kept).argmax(0), from_probabilities)


def test_saved_probabilities_are_on_the_input_grid_and_give_the_mask(tmp_path: Path, untrained_bundle: Path) -> None:
    from medseg.cli import main

    image = write_volume(random_labels().astype(np.int16) * 100, OBLIQUE, tmp_path / "in" / "case3.nii.gz")
    assert (
        main(["infer", "--bundle", str(untrained_bundle), "--input", str(image), "--output", str(tmp_path / "out"), "--save-probabilities"])
        == 0
    )
    saved = np.load(tmp_path / "out" / "case3_probabilities.npz")
    mask, geometry = read_volume(tmp_path / "out" / "case3_seg.nii.gz")
    assert saved["probabilities"].dtype == np.float16 and saved["probabilities"].shape == (4, *geometry.shape)
    np.testing.assert_allclose(saved["ijk_to_lps"], read_header(image).geometry.ijk_to_lps, atol=1e-6)
    assert list(saved["names"]) == ["background", "liver", "kidney", "tumour"]
    agree = saved["probabilities"].astype(np.float32).argmax(0) == np.asarray(mask)
    assert agree.mean() > 0.999  # float16 ties aside, the saved probabilities give the mask


def test_mirror_subsets_cover_every_flip_once() -> None:
    from medseg.inference.inferer import mirror_subsets

    assert mirror_subsets(()) == [()]
    assert mirror_subsets((1, 0)) == [(), (0,), (1,), (0, 1)]
    assert len(mirror_subsets((0, 1, 2))) == 8


def _conv_net(seed: int) -> torch.nn.Module:
    """A 4-class network with random, asymmetric 3x3x3 kernels: not equivariant to flips."""
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, 4, 3, padding=1)


def test_tta_and_ensembles_average_the_probabilities_of_every_pass() -> None:
    image = torch.rand(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    a, b = _conv_net(0), _conv_net(1)
    plain = Segmenter(a, NAMES, roi_size=(16, 16, 16))
    soft = lambda net, x: torch.softmax(plain.logits(x, net), dim=0)
    mirrored = Segmenter(a, NAMES, roi_size=(16, 16, 16), mirror_axes=(0,))
    expected = (soft(a, image) + torch.flip(soft(a, torch.flip(image, [1])), [1])) / 2
    torch.testing.assert_close(mirrored.probabilities(image), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, soft(a, image), atol=1e-3)  # the flip changed something: the test can fail
    ensemble = Segmenter(a, NAMES, roi_size=(16, 16, 16), ensemble=[b])
    torch.testing.assert_close(ensemble.probabilities(image), (soft(a, image) + soft(b, image)) / 2, rtol=1e-5, atol=1e-6)
    # a pointwise network is flip-equivariant: 8 mirrored passes give what one pass gives
    oracle, oracle_tta = _segmenter((1.0, 1.0, 1.0)), _segmenter((1.0, 1.0, 1.0), mirror_axes=(0, 1, 2))
    torch.testing.assert_close(oracle_tta.probabilities(image), oracle.probabilities(image), rtol=1e-5, atol=1e-6)


def test_infer_with_folds_ensembles_them_and_refuses_a_fold_not_trained(tmp_path: Path, untrained_bundle: Path, capfd, caplog) -> None:
    import shutil

    from medseg.cli import main
    from medseg.networks import VNet
    from shared.weights import save_weights

    bundle = tmp_path / "bundle"
    shutil.copytree(untrained_bundle, bundle)
    for k in (0, 1):
        torch.manual_seed(k)
        save_weights(
            VNet(out_channels=4, width=4, norm="instance", dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0)),
            bundle / "models" / f"fold_{k}" / "model.pt",
        )
    image = write_volume(random_labels().astype(np.int16) * 100, OBLIQUE, tmp_path / "in" / "case4.nii.gz")
    capfd.readouterr()
    assert main(["infer", "--bundle", str(bundle), "--input", str(image), "--output", str(tmp_path / "missing"), "--folds", "0", "3"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Fold 3 was not trained" in err[0] and "fold_3/model.pt" in err[0], err
    assert not (tmp_path / "missing").exists()
    tta = ["infer", "--bundle", str(bundle), "--input", str(image), "--output", str(tmp_path / "out"), "--folds", "0", "1", "--tta"]
    assert main(tta) == 2  # trained without mirroring (mirror_axes []): no axes to mirror at test time
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained without mirroring (mirror_axes [])" in err[0] and not (tmp_path / "out").exists()
    assert main([*tta[:-1], "--tta-axes", "0"]) == 0  # the user's axes, whatever the training was, but said
    assert "--tta-axes mirrors along axis 0, which the model never saw mirrored in training (its mirror_axes [])" in caplog.text
    record = json.loads((bundle / "models" / "model.json").read_text(encoding="utf-8"))  # as if both folds trained mirrored
    record["settings"]["mirror_axes"] = [0, 1, 2]
    for k in (0, 1):
        (bundle / "models" / f"fold_{k}" / "model.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.rmtree(tmp_path / "out")
    assert main(tta) == 0
    assert (tmp_path / "out" / "case4_seg.nii.gz").is_file()
