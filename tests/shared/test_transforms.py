import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from shared.transforms import MinMax, MinMaxd

MAGIC3 = np.array([[8.0, 1, 6], [3, 5, 7], [4, 9, 2]])


def test_matlab_rescale_vector_to_unit_interval():
    np.testing.assert_allclose(MinMax()(np.arange(1.0, 6.0)), [0, 0.25, 0.5, 0.75, 1])


def test_matlab_rescale_to_minus_one_one():
    np.testing.assert_allclose(MinMax(-1, 1)(np.arange(1.0, 6.0)), [-1, -0.5, 0, 0.5, 1])


def test_matlab_rescale_columns_with_row_vector_bounds():
    # MATLAB: Rcol = rescale(A, "InputMin", min(A), "InputMax", max(A)) with A = magic(3)
    out = MinMax(input_min=MAGIC3.min(0, keepdims=True), input_max=MAGIC3.max(0, keepdims=True))(MAGIC3)
    np.testing.assert_allclose(out, [[1, 0, 0.8], [0, 0.5, 1], [0.2, 1, 0]], atol=1e-7)


def test_matlab_rescale_rows_with_column_vector_bounds():
    out = MinMax(input_min=MAGIC3.min(1, keepdims=True), input_max=MAGIC3.max(1, keepdims=True))(MAGIC3)
    np.testing.assert_allclose(out, [[1, 0, 5 / 7], [0, 0.5, 1], [2 / 7, 1, 0]], atol=1e-7)


def test_input_window_clips_like_a_ct_window():
    hu = np.array([-3000.0, -1000, -300, 400, 3000])
    np.testing.assert_allclose(MinMax(input_min=-1000, input_max=400)(hu), [0, 0, 0.5, 1, 1], atol=1e-7)
    # only one bound given: the other comes from the data
    np.testing.assert_allclose(MinMax(input_min=0)(np.array([-5.0, 0, 5, 10])), [0, 0, 0.5, 1])


def test_volume_channel_wise_and_global():
    rng = np.random.default_rng(0)
    vol = np.stack([rng.uniform(0, 10, (4, 5, 6)), rng.uniform(-100, -50, (4, 5, 6))])
    per_channel = MinMax(channel_wise=True)(vol)
    assert per_channel.shape == vol.shape and per_channel.dtype == np.float32
    for c in range(2):
        assert per_channel[c].min() == pytest.approx(0) and per_channel[c].max() == pytest.approx(1)
    together = MinMax()(vol)
    assert together.min() == pytest.approx(0) and together.max() == pytest.approx(1)
    assert together[1].max() < 0.5 < together[0].min() + 1  # channel 1 stays low in a global rescale
    # per-channel input window given as one value per channel
    windowed = MinMax(input_min=[0, -100], input_max=[10, -50])(vol)
    np.testing.assert_allclose(
        windowed, (vol - np.array([0, -100])[:, None, None, None]) / np.array([10, 50])[:, None, None, None], atol=1e-6
    )


def test_video_clip_torch_uint8_in_float_out():
    clip = torch.randint(0, 256, (3, 20, 8, 8), dtype=torch.uint8)
    clip[0, 0, 0, 0], clip[0, 0, 0, 1] = 0, 255
    out = MinMax()(clip)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == clip.shape
    torch.testing.assert_close(out, clip.float() / 255)


def test_metatensor_keeps_its_affine():
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    img = MetaTensor(torch.arange(8.0).reshape(1, 2, 2, 2), affine=affine)
    out = MinMax()(img)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, affine.double() if out.affine.dtype == torch.float64 else affine)
    torch.testing.assert_close(out.as_tensor(), torch.arange(8.0).reshape(1, 2, 2, 2) / 7)


def test_float64_kept_when_dtype_none():
    assert MinMax(dtype=None)(np.array([1.0, 2.0])).dtype == np.float64


def test_constant_input_gives_lower_and_names_the_key():
    with pytest.warns(UserWarning, match=r'"ct" is constant'):
        out = MinMaxd(keys="ct", lower=-1, upper=1)({"ct": np.full((1, 3, 3, 3), 7.0)})["ct"]
    assert np.all(out == -1) and not np.isnan(out).any()


def test_constant_channel_in_channel_wise_mode():
    vol = np.stack([np.full((2, 2, 2), 5.0), np.arange(8.0).reshape(2, 2, 2)])
    with pytest.warns(UserWarning, match=r'channel\(s\) \[0\] of "image" is constant'):
        out = MinMax(channel_wise=True)(vol)
    assert np.all(out[0] == 0) and out[1].max() == 1


def test_nan_and_inf_raise_naming_the_key():
    data = {"t1": np.array([[0.0, np.nan, 1.0, np.inf]])}
    with pytest.raises(ValueError, match=r'"t1" contains 1 NaN and 1 Inf values'):
        MinMaxd(keys="t1")(data)


def test_nan_policy_omit_is_matlab_like():
    out = MinMax(nan_policy="omit")(np.array([0.0, np.nan, 2.0, 4.0, np.inf, -np.inf]))
    np.testing.assert_allclose(out, [0, np.nan, 0.5, 1, 1, 0])


def test_nan_policy_lower_leaves_no_nan():
    out = MinMax(lower=-1, nan_policy="lower")(np.array([0.0, np.nan, 2.0, np.inf]))
    np.testing.assert_allclose(out, [-1, -1, 1, -1])


def test_all_nan_is_an_error_even_when_omitting():
    with pytest.raises(ValueError, match='"image" has no finite values'):
        MinMax(nan_policy="omit")(np.full(4, np.nan))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lower": 1, "upper": 0}, "need finite lower < upper"),
        ({"nan_policy": "zero"}, "nan_policy='zero' is invalid"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MinMax(**kwargs)


def test_bad_windows():
    with pytest.raises(ValueError, match="input_min must not exceed input_max"):
        MinMax(input_min=5, input_max=1)(np.arange(4.0))
    with pytest.raises(ValueError, match=r"input_min of shape \(2, 2\) does not broadcast"):
        MinMax(input_min=np.zeros((2, 2)))(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match='"image" is empty'):
        MinMax()(np.zeros((0, 3)))


def test_dict_version_copies_and_handles_missing_keys():
    data = {"image": np.array([0.0, 5.0]), "label": np.array([0, 1])}
    out = MinMaxd(keys=["image"])(data)
    assert out is not data and data["image"][1] == 5.0  # caller's dict and array untouched
    np.testing.assert_allclose(out["image"], [0, 1])
    assert out["label"] is data["label"]
    with pytest.raises(KeyError):
        MinMaxd(keys=["image", "t2"])(data)
    assert "t2" not in MinMaxd(keys=["image", "t2"], allow_missing_keys=True)(data)
