"""How a video becomes clips, without MONAI: :class:`Sampling`, the windows of a video, and the evaluation view.

Training reads clips through MONAI transforms (:mod:`action.video.dataset`); prediction must see exactly
what evaluation sees but start fast, so the evaluation view (centre crop, then the one min-max
rescale ``shared.rescale.MinMax``) is written here with the same arithmetic as MONAI's
``CenterSpatialCropd`` and ``shared.transforms.MinMaxd`` (tested to be equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from shared.rescale import MinMax


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How a video becomes one or more clips.

    Args:
        frames: T, frames per clip (the papers: 20).
        size: ``(H, W)`` the model sees (the papers: 64x64).
        decode_size: ``(H, W)`` frames are resized to while decoding (default ``size``);
            larger than ``size`` gives random crops in training and centre crops otherwise.
        clip_duration: seconds per clip; ``None`` = the whole video is one clip.
        clips_per_video: clips per video at evaluation (windows spread over the video).
    """

    frames: int = 20
    size: tuple[int, int] = (64, 64)
    decode_size: tuple[int, int] | None = None
    clip_duration: float | None = None
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if self.decode_size is not None:
            object.__setattr__(self, "decode_size", tuple(int(v) for v in self.decode_size))
            if any(d < s for d, s in zip(self.decode_size, self.size)):
                raise ValueError(f"decode_size {self.decode_size} must be >= size {self.size}.")
        if self.frames < 1 or self.clips_per_video < 1 or (self.clip_duration is not None and self.clip_duration <= 0):
            raise ValueError(f"Invalid sampling {self}: frames and clips_per_video >= 1, clip_duration > 0.")

    @property
    def decode_hw(self) -> tuple[int, int]:
        return self.decode_size or self.size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sampling:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def clip_windows(duration: float, sampling: Sampling, train: bool) -> list[tuple[float, float] | None]:
    """Windows ``(start, end)`` in seconds for one video (``None`` = pick at random at load time).

    Evaluation windows start at ``linspace(0, duration - clip_duration, clips_per_video)``, so
    the first begins at 0 and the last ends at the video's end. Not pytorchvideo's
    ``ConstantClipsPerVideoSampler``: it starts clip k at ``k / K`` of the range, so the last
    ``1 / K`` of every video is never evaluated (e.g. 2.7 s of a 10 s video with K = 3).
    """
    if sampling.clip_duration is None or sampling.clip_duration >= duration:
        return [(0.0, duration)]
    if train:
        return [None]
    starts = np.linspace(0.0, duration - sampling.clip_duration, sampling.clips_per_video)
    return [(float(s), float(s) + sampling.clip_duration) for s in starts]


def centre_crop_slices(size: tuple[int, ...], roi: tuple[int, ...]) -> tuple[slice, ...]:
    """MONAI ``CenterSpatialCrop``'s window: start ``size // 2 - roi // 2`` on each axis (not ``(size - roi) // 2``)."""
    return tuple(slice(s // 2 - r // 2, s // 2 - r // 2 + r) for s, r in zip(size, roi))


def evaluation_view(clip: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """uint8 ``(3, T, H, W)`` decoded at ``decode_size`` -> float32 ``(3, T, h, w)`` in [0, 1]: centre crop, then min-max 0..255 -> 0..1."""
    crop = centre_crop_slices(tuple(clip.shape[2:]), sampling.size)
    return MinMax(input_min=0.0, input_max=255.0)(clip[(slice(None), slice(None), *crop)])
