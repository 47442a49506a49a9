"""shared.errors: the line a user reads is the error that names the file, whatever wraps it."""

from __future__ import annotations

import pytest
from monai.transforms import Compose

from shared.errors import one_line, unwrap


class Broken:
    def __call__(self, data):
        raise ValueError("/data/scan.nii.gz: 2D image (size 32x32); expected a single-channel 3D volume.")


def test_monai_wrappers_are_unwrapped_and_our_own_wrapping_is_kept() -> None:
    with pytest.raises(RuntimeError) as caught:
        Compose([Broken()])({"image": 1})
    assert str(caught.value).startswith("applying transform")  # the premise: MONAI wraps
    assert one_line(caught.value) == "/data/scan.nii.gz: 2D image (size 32x32); expected a single-channel 3D volume."
    try:
        try:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        except EOFError as low:
            raise ValueError("/data/a.nii.gz: cannot read the voxel data; the file is truncated") from low
    except ValueError as ours:
        assert unwrap(ours) is ours  # the cause has no file name: the message that has one is kept


def test_messages_are_folded_onto_one_line_and_bounded() -> None:
    assert one_line(RuntimeError("first line\n  second line\n")) == "first line second line"
    assert len(one_line(ValueError("x" * 5000))) == 600
    assert one_line(KeyError()) == "KeyError"
