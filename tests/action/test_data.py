"""action.data: clip datasets from real files, windows, and bad videos failing loudly or counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from action.data import ClipDataset, Sampling, clip_windows
from action.layouts import VideoList, read_videos
from action.video import VideoError


def test_clips_are_normalised_channel_first_tensors(tiny_videos: Path) -> None:
    videos = read_videos(tiny_videos, subset="test")
    train = ClipDataset(videos, Sampling(frames=6, size=(32, 32), decode_size=(40, 40)), train=True, cache=True)
    item = train[0]
    assert item["image"].shape == (3, 6, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"] == videos.items[0][1] and train.videos[item["video"]] == str(videos.items[0][0])
    crops = {tuple(train[0]["image"][0, 0, :2, :2].flatten().tolist()) for _ in range(8)}
    assert len(crops) > 1  # random crops in training
    evaluation = ClipDataset(videos, Sampling(frames=6, size=(32, 32), decode_size=(40, 40)), train=False)
    torch.testing.assert_close(evaluation[3]["image"], evaluation[3]["image"])  # centre crop: deterministic


def test_windows_for_long_videos() -> None:
    sampling = Sampling(frames=4, clip_duration=2.0, clips_per_video=3)
    windows = clip_windows(10.0, sampling, train=False)
    assert len(windows) == 3 and windows[0][0] == 0.0 and windows[-1][1] == pytest.approx(10.0)
    assert all(e - s == pytest.approx(2.0) for s, e in windows)
    assert clip_windows(10.0, sampling, train=True) == [None]  # a random window per epoch
    assert clip_windows(1.5, sampling, train=False) == [(0.0, 1.5)]  # shorter than a window: the whole video


def test_random_windows_in_training(tiny_videos: Path) -> None:
    videos = read_videos(tiny_videos, subset="test")
    data = ClipDataset(videos, Sampling(frames=4, size=(32, 32), clip_duration=0.8), train=True)
    assert data[0]["image"].shape == (3, 4, 32, 32)


def test_bad_video_fails_naming_it_or_is_skipped_and_counted(tiny_videos: Path, bad_videos: dict[str, Path], tmp_path: Path) -> None:
    videos = read_videos(tiny_videos, subset="test")
    broken = tmp_path / "broken.avi"
    shutil.copy(bad_videos["random"], broken)
    mixed = VideoList(videos.items + [(broken, 0)], videos.classes)
    with pytest.raises(VideoError, match="broken.avi: not a readable video container"):
        ClipDataset(mixed, Sampling(frames=4, size=(32, 32)), train=False)
    data = ClipDataset(mixed, Sampling(frames=4, size=(32, 32)), train=False, skip_bad=True)
    assert len(data) == len(videos.items) and [s["path"] for s in data.skipped] == [str(broken)]


def test_sampling_validation() -> None:
    with pytest.raises(ValueError, match="decode_size"):
        Sampling(size=(64, 64), decode_size=(32, 32))
    assert Sampling.from_dict(Sampling(decode_size=(72, 72)).to_dict()) == Sampling(decode_size=(72, 72))
    assert np.array_equal(np.array(Sampling().size), [64, 64])
