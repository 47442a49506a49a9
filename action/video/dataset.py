"""Clip datasets: labelled videos -> ``{"image": (3, T, H, W) float in [0, 1], "label": int}``.

A :class:`Sampling` says how a video becomes a clip (T frames spaced uniformly over the
whole video or over windows of ``clip_duration`` seconds (:func:`clip_windows`; random in
training, drawn per sample and epoch), decoded straight to ``decode_size``, cropped to ``size``). The frames are
decoded by :mod:`action.video.decode` (PyAV, only the kept frames converted); transforms are
MONAI's (``RandSpatialCropd``, ``CenterSpatialCropd``) and the one ``MinMaxd`` of
``shared.transforms`` (uint8 0..255 -> 0..1). Every video is probed when the dataset is
built, so a bad file is an error naming it before training starts, or, with
``skip_bad=True``, is listed in ``dataset.skipped`` (and in the reports) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import CenterSpatialCropd, Compose, EnsureTyped, MapTransform, RandSpatialCropd

from action.video.decode import DecodeLimits, VideoError, probe, read_frames, uniform_timestamps
from action.video.layouts import VideoList
from action.video.sampling import Sampling, clip_windows
from shared.data import EpochDraws
from shared.transforms import MinMaxd

logger = logging.getLogger(__name__)


class LoadClipd(MapTransform):
    """Decode the window ``data["start"]..data["end"]`` (seconds) of ``data["path"]`` into ``data["image"]``: uint8 torch ``(3, T, H, W)``."""

    def __init__(self, sampling: Sampling, limits: DecodeLimits = DecodeLimits()) -> None:
        super().__init__(keys=["path"])
        self.sampling, self.limits = sampling, limits

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(data)
        timestamps = uniform_timestamps(data["start"], data["end"], self.sampling.frames)
        frames = read_frames(data["path"], timestamps, self.sampling.decode_hw, self.limits)
        out["image"] = torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()
        return out


def clip_transforms(sampling: Sampling, train: bool, limits: DecodeLimits = DecodeLimits()) -> tuple[Compose, Compose]:
    """``(decode, finish)`` MONAI transforms: decode a window, then crop (random in training) + ``MinMaxd`` 0..255 -> 0..1."""
    roi = (-1, *sampling.size)  # -1: keep all T frames
    crop = RandSpatialCropd("image", roi_size=roi, random_size=False) if train else CenterSpatialCropd("image", roi_size=roi)
    normalise = MinMaxd("image", input_min=0.0, input_max=255.0)
    return Compose([LoadClipd(sampling, limits)]), Compose([crop, normalise, EnsureTyped("image", dtype=torch.float32, track_meta=False)])


def _probe_all(videos: VideoList, limits: DecodeLimits, skip_bad: bool) -> tuple[list[tuple[Path, int, float]], list[dict[str, str]]]:
    good, skipped = [], []
    for path, label in videos.items:
        try:
            good.append((path, label, probe(path, limits).duration))
        except VideoError as err:
            if not skip_bad:
                raise
            skipped.append({"path": str(path), "reason": str(err)})
            logger.warning("Skipping %s", err)
    return good, skipped


def clip_items(
    videos: VideoList, sampling: Sampling, train: bool, limits: DecodeLimits = DecodeLimits(), skip_bad: bool = False
) -> tuple[list[dict], list[dict]]:
    """One dict per clip (``path``, ``label``, ``video`` index, ``start``/``end`` s, ``duration`` s) and the skipped videos."""
    good, skipped = _probe_all(videos, limits, skip_bad)
    items = []
    for index, (path, label, duration) in enumerate(good):
        for window in clip_windows(duration, sampling, train):
            start, end = window if window is not None else (None, None)
            items.append({"path": str(path), "label": label, "video": index, "start": start, "end": end, "duration": duration})
    return items, skipped


class ClipDataset(EpochDraws, torch.utils.data.Dataset):
    """MONAI ``Dataset`` of clips; with ``cache=True`` the decoded uint8 clips stay in RAM (MONAI ``CacheDataset``).

    In training, clip ``index`` of epoch ``e`` draws its window (long videos) and crop from a
    generator seeded with ``(seed, e, index)`` (:class:`shared.data.EpochDraws`): a run repeats with its
    seed, every sample and worker process draws its own numbers, and a resumed run draws what the
    unbroken run drew, with no generator state to save. The engine seeds it (the options' seed); the
    epoch comes with each index from the engine's sampler, also into persistent worker processes.

    Attributes:
        items: the clip dicts (see :func:`clip_items`); ``videos``: paths of the usable videos.
        skipped: ``[{"path", "reason"}]`` of videos left out under ``skip_bad=True``.
    """

    #: worker processes start fresh (:func:`shared.data.make_loader`), not forked: FFmpeg's threads in the parent
    #: (swscale's slice threads after a decode, an encoder's) left a forked worker waiting for ever in ``sws_scale``
    #: (seen in the test suite: a worker stuck in ``avpriv_slicethread_execute``); the dataset is pickled to each worker
    worker_start_method = "spawn"

    def __init__(
        self,
        videos: VideoList,
        sampling: Sampling,
        train: bool,
        cache: bool = False,
        limits: DecodeLimits = DecodeLimits(),
        skip_bad: bool = False,
    ) -> None:
        self.items, self.skipped = clip_items(videos, sampling, train, limits, skip_bad)
        if not self.items:
            raise ValueError(f"No usable videos ({len(self.skipped)} skipped): nothing to train or evaluate on.")
        self.classes = list(videos.classes)
        self.videos = list(dict.fromkeys(item["path"] for item in self.items))
        self._video_index = {path: i for i, path in enumerate(self.videos)}
        self.sampling, self.train = sampling, train
        self.load, self.augment = clip_transforms(sampling, train, limits)
        random_windows = any(item["start"] is None for item in self.items)
        self._cached = CacheDataset(self.items, self.load, progress=False, num_workers=1) if cache and not random_windows else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (3, T, H, W) float32 in [0, 1], "label": int, "video": index into self.videos}``."""
        item = self.items[index]
        rng = self.draw_rng(index) if self.train else None
        if self._cached is not None:
            clip = self._cached[index]
        elif item["start"] is None:  # a random window of a long video
            start = float(rng.uniform(0.0, item["duration"] - self.sampling.clip_duration))
            clip = self.load({**item, "start": start, "end": start + self.sampling.clip_duration})
        else:
            clip = self.load(item)
        if rng is not None:
            self.augment.set_random_state(seed=int(rng.integers(2**31)))
        clip = self.augment(clip)
        return {"image": clip["image"], "label": clip["label"], "video": self._video_index[clip["path"]]}

    @property
    def labels(self) -> np.ndarray:
        return np.array([item["label"] for item in self.items])
