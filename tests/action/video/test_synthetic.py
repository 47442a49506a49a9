"""action.video.synthetic: the demo videos are real files, and the reversed pairs really are time reversals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from action.video.decode import probe
from action.video.synthetic import CLASSES, REVERSED_PAIRS, render_video


def test_reversed_twin_is_the_same_video_backwards() -> None:
    for forward, backward in REVERSED_PAIRS:
        a = render_video(forward, np.random.default_rng(3)).astype(float)
        b = render_video(backward, np.random.default_rng(3)).astype(float)
        # the same frames in the opposite order: identical mean frame (what an order-blind model sees) ...
        assert np.abs(a.mean(axis=0) - b.mean(axis=0)).max() < 1.0, forward
        # ... while the videos themselves differ (the figure moves the other way)
        assert np.abs(a - b).max() > 100, forward


def test_dataset_files_are_mpeg4_avi_and_h264_mp4(tiny_videos: Path) -> None:
    codecs = {p.suffix: probe(p).codec for p in sorted(tiny_videos.glob("*/*"))[:4]}
    assert codecs == {".avi": "mpeg4", ".mp4": "h264"}
    assert sorted(p.name for p in tiny_videos.iterdir() if p.is_dir()) == sorted([*CLASSES, "ucfTrainTestlist"])
