"""Per-frame backbone features, cached once on disk, for the deep-GRU model (paper 002).

``python -m action extract-features --data D --cache-dir C --backbone resnet18+efficientnet_lite0``
decodes each video once (the evaluation sampling: T uniform frames, centre crop), runs the
backbone(s) on every frame, concatenates their features (paper 002 fuses two CNNs this
way) and writes ``C/features/<key>.npy`` (float32 ``(T, F)``) atomically. The key hashes
the video's absolute path, size and modification time, so an edited video is re-extracted.
``C/manifest.json`` records the backbones, their weights' SHA-256, input size, sampling and
F: a cache made with other backbones or sampling is refused with an error, never reused.
Training ``feature_gru`` reads the cache (extracting whatever is missing first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from action.models.backbones import Backbone, load_backbone
from action.training_data import DataSource, TrainingData, count_test_videos
from action.video.dataset import ClipDataset, Sampling
from action.video.decode import DecodeLimits
from action.video.layouts import VideoList, read_videos, split_videos
from shared.devices import resolve_device
from shared.io import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def feature_sampling(sampling: Sampling | None) -> Sampling:
    """Features are computed on centre views decoded straight to ``size`` (no crop margin, no augmentation)."""
    sampling = sampling or Sampling()
    return Sampling(sampling.frames, sampling.size, None, sampling.clip_duration, sampling.clips_per_video)


def load_backbones(names: str, weights: str | None = None, input_size: int = 224) -> list[Backbone]:
    """``"a+b"`` -> backbones a and b; ``weights`` is ``"fileA+fileB"`` (an empty entry: the default file)."""
    parts = names.split("+")
    files = (weights or "").split("+") if weights else [""] * len(parts)
    if len(files) != len(parts):
        raise ValueError(f"--weights lists {len(files)} files for {len(parts)} backbones {parts}.")
    return [load_backbone(name, file or None, input_size) for name, file in zip(parts, files)]


class FrameFeatures(nn.Module):
    """Clips ``(B, 3, T, H, W)`` in [0, 1] -> concatenated per-frame features ``(B, T, F)``."""

    def __init__(self, backbones: list[Backbone]) -> None:
        super().__init__()
        self.backbones = nn.ModuleList(backbones)
        self.features = sum(b.features for b in backbones)

    @torch.no_grad()
    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        return torch.cat([backbone(frames) for backbone in self.backbones], dim=1).reshape(b, t, -1)


def describe(backbones: list[Backbone], sampling: Sampling) -> dict[str, Any]:
    """The manifest of a cache: what produced its features."""
    return {
        "backbones": [b.name for b in backbones],
        "sha256": [b.sha256 for b in backbones],
        "input_size": backbones[0].input_size,
        "sampling": sampling.to_dict(),
        "features": sum(b.features for b in backbones),
    }


def open_cache(cache_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Create the cache or check that its manifest equals ``manifest`` (ValueError naming the difference)."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        found["sampling"] = Sampling.from_dict(found.get("sampling", {})).to_dict()
        diff = sorted(k for k in manifest if found.get(k) != manifest[k])
        if diff:
            details = "; ".join(f"{k}: cache has {found.get(k)!r}, requested {manifest[k]!r}" for k in diff)
            raise ValueError(f"Feature cache {cache_dir} was made differently ({details}); use another --cache-dir or delete it.")
    else:
        (cache_dir / "features").mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, manifest)
    return cache_dir


def feature_file(cache_dir: Path, video: str | Path) -> Path:
    """Where the features of ``video`` live (key: absolute path, size, modification time)."""
    stat = Path(video).stat()
    key = hashlib.sha1(f"{Path(video).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir / "features" / f"{key}.npy"


def _extract_list(
    videos: VideoList,
    cache_dir: Path,
    extractor: FrameFeatures,
    sampling: Sampling,
    skip_bad: bool,
    limits: DecodeLimits,
    device: Any = "auto",
) -> dict[str, Any]:
    todo = VideoList([item for item in videos.items if not feature_file(cache_dir, item[0]).is_file()], videos.classes)
    summary = {"cache": str(cache_dir), "written": 0, "reused": len(videos.items) - len(todo.items), "skipped": []}
    if not todo.items:
        return summary
    dataset = ClipDataset(todo, sampling, train=False, cache=False, limits=limits, skip_bad=skip_bad)
    summary["skipped"] = dataset.skipped
    # always fp32: a cache must not depend on the machine that filled it (bf16 features differ by ~1e-2)
    device = resolve_device(device)
    extractor = extractor.to(device)
    for index in range(len(dataset)):
        item = dataset[index]
        features = extractor(item["image"][None].to(device))[0].float().cpu().numpy()
        with atomic_path(feature_file(cache_dir, dataset.videos[item["video"]])) as tmp:
            np.save(tmp, features)
        summary["written"] += 1
    return summary


def extract_features(
    data: str | Path,
    cache_dir: str | Path,
    backbone: str,
    weights: str | None = None,
    sampling: Sampling | None = None,
    layout: str = "auto",
    split: int = 1,
    skip_bad: bool = False,
    input_size: int = 224,
    limits: DecodeLimits = DecodeLimits(),
    device: Any = "auto",
) -> dict[str, Any]:
    """Cache features of every video of ``data`` (train and test lists) on ``device``; returns counts written/reused/skipped."""
    sampling = feature_sampling(sampling)
    backbones = load_backbones(backbone, weights, input_size)
    cache = open_cache(cache_dir, describe(backbones, sampling))
    videos = read_videos(data, layout, split, "all")
    return _extract_list(videos, cache, FrameFeatures(backbones), sampling, skip_bad, limits, device)


class FeatureDataset(torch.utils.data.Dataset):
    """Cached features: ``{"image": (T, F) float32, "label": int, "video": index}``."""

    def __init__(self, videos: VideoList, cache_dir: Path) -> None:
        files = [(path, feature_file(cache_dir, path), label) for path, label in videos.items]  # one stat per video
        self.items = [(file, label) for _, file, label in files if file.is_file()]
        self.videos = [str(path) for path, file, _ in files if file.is_file()]
        self.skipped = [
            {"path": str(path), "reason": "no cached features (skipped at extraction)"} for path, file, _ in files if not file.is_file()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.items[index]
        return {"image": torch.from_numpy(np.load(path)), "label": label, "video": index}


@dataclasses.dataclass(frozen=True)
class FeatureInput:
    """The backbone(s) whose cached per-frame features a feature model reads.

    Args:
        backbone: backbone name(s), ``"+"``-joined (e.g. ``"resnet18+efficientnet_lite0"``).
        cache_dir: the ``extract-features`` cache (missing features are extracted first).
        weights: weights file(s), ``"+"``-joined (``None``: each backbone's default file).
        input_size: backbone input size in pixels, as extracted.
        device: where missing features are extracted (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    """

    backbone: str | None = None
    cache_dir: str | Path | None = None
    weights: str | None = None
    input_size: int = 224
    device: str = "auto"


def feature_data(source: DataSource, sampling: Sampling | None, features: FeatureInput, seed: int = 0) -> TrainingData:
    """Cached features of the training split of ``source`` (extracting what is missing) and the backbone record."""
    if not features.backbone or features.cache_dir is None:
        raise ValueError("Feature models need --backbone NAME[+NAME] and --cache-dir DIR (see python -m action extract-features).")
    sampling = feature_sampling(sampling)
    backbones = load_backbones(features.backbone, features.weights, features.input_size)
    manifest = describe(backbones, sampling)
    cache = open_cache(features.cache_dir, manifest)
    videos = read_videos(source.path, source.layout, source.split, "train", seed=seed)
    _extract_list(videos, cache, FrameFeatures(backbones), sampling, skip_bad=False, limits=source.limits, device=features.device)
    train, val, report = split_videos(videos, source.held_out("features"), seed)
    record = {"names": features.backbone, "weights": features.weights, **manifest}
    val_set = FeatureDataset(val, cache) if val else None
    # predict must sample frames exactly as the cache did: the record's sampling is the cache's
    return TrainingData(
        "features",
        FeatureDataset(train, cache),
        val_set,
        list(videos.classes),
        sampling=record["sampling"],
        in_features=manifest["features"],
        backbone=record,
        split_report=report,
        test_count=count_test_videos(source, seed),
    )


class FeatureClassifier(nn.Module):
    """Backbones + a trained feature head: clips ``(B, 3, T, H, W)`` -> logits, for predict and evaluate."""

    def __init__(self, extractor: FrameFeatures, head: nn.Module) -> None:
        super().__init__()
        self.extractor, self.head = extractor, head

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(clip))


def with_backbone(head: nn.Module, config: Any) -> FeatureClassifier:
    """Prepend the backbones recorded in ``config.backbone`` (weights checked against their SHA-256)."""
    record = config.backbone or {}
    backbones = load_backbones(record["names"], record.get("weights"), record.get("input_size", 224))
    found = [b.sha256 for b in backbones]
    if found != record.get("sha256"):
        raise ValueError(f"Backbone weights differ from those the model was trained on (SHA-256 {found} vs {record.get('sha256')}).")
    return FeatureClassifier(FrameFeatures(backbones), head)
