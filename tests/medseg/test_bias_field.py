"""N4 bias-field correction (medseg.bias_field) on the real MNI152 T1, under the scanner variant's own bias field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.bias_field import N4Correct, N4Corrected
from medseg.datasets.mni152 import LABELS, scanner_variant, template_and_labels
from medseg.transforms import ChannelRecipe


@pytest.fixture(scope="module")
def mni() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T1, the same under seed 3's linear bias field, white-matter mask)``, 2 mm, float32."""
    t1, labels = template_and_labels(resolution=2)
    plain = t1.get_fdata().astype(np.float32)
    return plain, scanner_variant(plain, seed=3, parts=("bias",)).astype(np.float32), labels == LABELS["white_matter"]


def _spread(values: np.ndarray) -> float:
    """Coefficient of variation (sd / mean)."""
    return float(values.std() / values.mean())


def test_n4_removes_most_of_a_linear_bias_field_from_a_real_t1(mni) -> None:
    """The scanner variant multiplies the T1 by a field of up to +-45% corner to corner: the variant's white matter
    varies far more than the plain one's. After N4 on both, the ratio of the two corrected scans over the brain (what
    is left of the field, up to one gain) varies under a quarter of what the field did (measured: 0.058 -> 0.010), and
    the corrected variant's white matter is more uniform than the uncorrected plain T1's (0.046 against 0.049)."""
    plain, variant, white = mni
    brain = plain > 0.3
    assert _spread(variant[white]) > 1.3 * _spread(plain[white])
    n4 = N4Correct(shrink=4)
    fixed_plain, fixed_variant = (n4(MetaTensor(torch.from_numpy(v[None]))).numpy()[0] for v in (plain, variant))
    assert np.isfinite(fixed_variant).all() and fixed_variant.shape == plain.shape
    before = _spread(variant[brain] / plain[brain])
    after = _spread(fixed_variant[brain] / fixed_plain[brain])
    assert after < before / 4, (before, after)
    assert _spread(fixed_variant[white]) < _spread(plain[white])


def test_n4_leaves_a_flat_image_and_a_single_slice_alone_and_keeps_the_type() -> None:
    flat = np.full((1, 16, 16, 16), 5.0, dtype=np.float32)
    out = N4Correct()(flat)
    assert isinstance(out, np.ndarray) and np.array_equal(out, flat)
    rng = np.random.default_rng(0)
    one_slice = (rng.random((1, 64, 64, 1)) * 100 + 100).astype(np.float32)  # ITK's 3D filter refuses zero extent
    assert np.array_equal(N4Correct()(one_slice), one_slice)


def test_n4_corrects_only_the_mr_channels(mni) -> None:
    """Two channels, z-score (MR) and min-max (CT): the MR one changes, the CT one is returned untouched."""
    plain, variant, _ = mni
    image = MetaTensor(torch.from_numpy(np.stack([variant, plain])), meta={"filename_or_obj": "two.nii.gz"})
    out = N4Corrected(ChannelRecipe(["zscore", "minmax"], [None, (0, 1)]), shrink=4)({"image": image})["image"]
    assert out.shape == image.shape
    assert torch.equal(out[1], image[1])
    assert not torch.allclose(out[0], image[0])


def test_preprocessing_with_bias_correction_sees_the_variant_as_the_plain_scan(mni, tmp_path) -> None:
    """The inference chain (resample, N4, crop, z-score) on the T1 and on the T1 under a bias field: with
    ``bias_correction`` the two z-scored brains differ by a fraction of what they differ by without it."""
    import nibabel as nib

    from medseg.transforms import preprocessing

    plain, variant, _ = mni
    affine = template_and_labels(resolution=2)[0].affine
    files = {}
    for name, data in (("plain", plain), ("variant", variant)):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), files[name])
    gaps = {}
    for corrected in (False, True):
        chain = preprocessing((2, 2, 2), None, roi_size=None, with_label=False, normalization="zscore", bias_correction=corrected)
        a, b = (chain({"image": str(files[n])})["image"].numpy()[0] for n in ("plain", "variant"))
        assert a.shape == b.shape
        brain = a > 0
        gaps[corrected] = float(np.abs(a[brain] - b[brain]).mean())
    assert gaps[True] < gaps[False] / 3, gaps
