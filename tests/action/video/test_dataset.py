"""action.video.dataset: clip datasets from real files, windows, and bad videos failing loudly or counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from action.video.dataset import ClipDataset, Sampling, clip_windows
from action.video.decode import VideoError
from action.video.layouts import VideoList, read_videos
from action.video.synthetic import encode_video
from tests.action.conftest import frame_index, numbered_frames


def test_clips_are_normalised_channel_first_tensors(tiny_videos: Path) -> None:
    videos = read_videos(tiny_videos, subset="test")
    train = ClipDataset(videos, Sampling(frames=6, size=(32, 32), decode_size=(40, 40)), train=True, cache=True)
    item = train[0]
    assert item["image"].shape == (3, 6, 32, 32) and item["image"].dtype == torch.float32
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert item["label"] == videos.items[0][1] and train.videos[item["video"]] == str(videos.items[0][0])
    crops = set()
    for epoch in range(1, 9):
        train.set_epoch(epoch)
        crops.add(tuple(train[0]["image"][0, 0, :2, :2].flatten().tolist()))
    assert len(crops) > 1  # random crops in training, a new one each epoch
    torch.testing.assert_close(train[0]["image"], train[0]["image"])  # and the same one within an epoch
    evaluation = ClipDataset(videos, Sampling(frames=6, size=(32, 32), decode_size=(40, 40)), train=False)
    torch.testing.assert_close(evaluation[3]["image"], evaluation[3]["image"])  # centre crop: deterministic


def test_windows_for_long_videos() -> None:
    sampling = Sampling(frames=4, clip_duration=2.0, clips_per_video=3)
    windows = clip_windows(10.0, sampling, train=False)
    assert len(windows) == 3 and windows[0][0] == 0.0 and windows[-1][1] == pytest.approx(10.0)
    assert all(e - s == pytest.approx(2.0) for s, e in windows)
    assert clip_windows(10.0, sampling, train=True) == [None]  # a random window per epoch
    assert clip_windows(1.5, sampling, train=False) == [(0.0, 1.5)]  # shorter than a window: the whole video


def _first_frames(batches) -> list[int]:
    return [frame_index((clip[:, 0].permute(1, 2, 0).numpy() * 255).round()) for batch in batches for clip in batch["image"]]


def test_windows_take_the_frames_of_their_seconds(tmp_path: Path) -> None:
    """A 4 s video whose frame i shows during [i/10, (i+1)/10): evaluation windows at 0, 1.6 and 3.2 s, 0.8 s each."""
    video = encode_video(numbered_frames(40), tmp_path / "n.mp4", fps=10)
    sampling = Sampling(frames=4, size=(16, 16), decode_size=(24, 32), clip_duration=0.8, clips_per_video=3)
    data = ClipDataset(VideoList([(video, 0)], ["a"]), sampling, train=False)
    indices = [[frame_index((data[i]["image"][:, t].permute(1, 2, 0).numpy() * 255).round()) for t in range(4)] for i in range(3)]
    assert indices == [[1, 3, 5, 7], [17, 19, 21, 23], [33, 35, 37, 39]]  # segment centres 0.1, 0.3, ... s after each start
    train = ClipDataset(VideoList([(video, 0)], ["a"]), sampling, train=True)
    for epoch in range(1, 6):
        train.set_epoch(epoch)
        frames = [frame_index((train[0]["image"][:, t].permute(1, 2, 0).numpy() * 255).round()) for t in range(4)]
        assert frames == sorted(frames) and frames[-1] - frames[0] <= 8  # one 0.8 s window: at most 8 frames apart


def test_random_windows_and_crops_follow_the_options_seed_per_sample_and_worker(tmp_path: Path) -> None:
    """Training draws depend on (seed, epoch, sample) only: equal with 0 or 2 worker processes, new for another seed or epoch."""
    from shared.data import make_loader, set_data_epoch
    from shared.options import TrainingOptions

    video = encode_video(numbered_frames(40), tmp_path / "n.mp4", fps=10)
    sampling = Sampling(frames=4, size=(16, 16), decode_size=(24, 32), clip_duration=0.8)

    def first_frames(seed: int, workers: int, epoch: int = 1) -> list[int]:
        data = ClipDataset(VideoList([(video, 0)] * 8, ["a"]), sampling, train=True)
        loader = make_loader(data, TrainingOptions(mini_batch_size=2, shuffle="never", seed=seed), train=True, num_workers=workers)
        loader.sampler.set_epoch(epoch)  # as the engine does at each epoch start
        set_data_epoch(data, epoch)
        return _first_frames(loader)

    one = first_frames(1, 0)
    assert len(set(one)) > 2  # every sample draws its own window
    assert first_frames(1, 2) == one  # worker processes draw what one process draws, none repeats another's
    assert first_frames(2, 0) != one  # the options' seed reaches the windows
    assert first_frames(1, 0, epoch=2) != one  # a new epoch, new windows


def test_bad_video_fails_naming_it_or_is_skipped_and_counted(tiny_videos: Path, bad_videos: dict[str, Path], tmp_path: Path) -> None:
    videos = read_videos(tiny_videos, subset="test")
    broken = tmp_path / "broken.avi"
    shutil.copy(bad_videos["random"], broken)
    mixed = VideoList([*videos.items, (broken, 0)], videos.classes)
    with pytest.raises(VideoError, match="broken.avi: not a readable video container"):
        ClipDataset(mixed, Sampling(frames=4, size=(32, 32)), train=False)
    data = ClipDataset(mixed, Sampling(frames=4, size=(32, 32)), train=False, skip_bad=True)
    assert len(data) == len(videos.items) and [s["path"] for s in data.skipped] == [str(broken)]


def test_sampling_validation() -> None:
    with pytest.raises(ValueError, match="decode_size"):
        Sampling(size=(64, 64), decode_size=(32, 32))
    assert Sampling.from_dict(Sampling(decode_size=(72, 72)).to_dict()) == Sampling(decode_size=(72, 72))
    assert np.array_equal(np.array(Sampling().size), [64, 64])


def test_persistent_workers_draw_new_windows_every_epoch(tmp_path: Path) -> None:
    """With 2 persistent worker processes (the engine's setting for --num-workers 2) epoch 2's windows are new, and equal
    to what one process draws for that epoch (before, the workers' copies replayed epoch 1 for ever)."""
    from tests.shared.test_data import epoch_draws

    video = encode_video(numbered_frames(40), tmp_path / "n.mp4", fps=10)
    sampling = Sampling(frames=4, size=(16, 16), decode_size=(24, 32), clip_duration=0.8)
    data = ClipDataset(VideoList([(video, 0)] * 6, ["a"]), sampling, train=True)
    two = [_first_frames(epoch) for epoch in epoch_draws(data, workers=2)]
    assert two[0] != two[1]
    assert two == [_first_frames(epoch) for epoch in epoch_draws(data, workers=0)]


def test_video_loader_workers_are_spawned_not_forked(tiny_videos: Path) -> None:
    """FFmpeg's threads do not survive a fork (a forked worker hung in ``sws_scale``), so the engine's loader starts
    a video dataset's workers by spawn."""
    from shared.data import make_loader
    from shared.options import TrainingOptions

    data = ClipDataset(read_videos(tiny_videos), Sampling(frames=4, size=(16, 16)), train=True)
    loader = make_loader(data, TrainingOptions(mini_batch_size=2), train=True, num_workers=2)
    assert loader.multiprocessing_context.get_start_method() == "spawn"
