"""action.video.sampling: prediction's evaluation view equals what evaluation's MONAI transforms make, for any sizes."""

from __future__ import annotations

import pytest
import torch

from action.video.dataset import clip_transforms
from action.video.sampling import Sampling, centre_crop_slices, evaluation_view


@pytest.mark.parametrize("decode, size", [((72, 72), (64, 64)), ((37, 41), (32, 30)), ((36, 33), (31, 33)), ((32, 32), (32, 32))])
def test_evaluation_view_equals_the_monai_chain(decode: tuple[int, int], size: tuple[int, int]) -> None:
    sampling = Sampling(frames=3, size=size, decode_size=decode)
    clip = torch.randint(0, 256, (3, 3, *decode), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    _, finish = clip_transforms(sampling, train=False)
    expected = finish({"image": clip})["image"]
    ours = evaluation_view(clip, sampling)
    assert ours.dtype == torch.float32 and ours.shape == (3, 3, *size)
    torch.testing.assert_close(ours, expected.as_tensor() if hasattr(expected, "as_tensor") else expected, rtol=0, atol=0)


def test_centre_crop_follows_monai_not_the_naive_formula() -> None:
    # MONAI starts at size // 2 - roi // 2: for 36 -> 31 that is 3, where (36 - 31) // 2 would be 2
    assert centre_crop_slices((36,), (31,)) == (slice(3, 34),)
