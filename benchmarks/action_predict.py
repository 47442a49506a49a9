"""End-to-end prediction time per frame (decode included) of the 3D-CNN+GRU model (c3d_gru).

``Predictor.predict`` on a UCF101-like video (320x240, 25 fps, MPEG-4 AVI, 7 s): probe,
decode 20 uniformly spaced frames resized to 72x72, centre crop 64, MinMax, forward. Per
frame = seconds / 20 model frames (the stricter count; per video frame is also printed).
Reference: paper 001 reports 0.0719 s/frame on a K80 GPU; target <= 0.007 s on 2 CPU cores.
Same-run baseline: the same model fed by pytorchvideo ``EncodedVideo.get_clip`` of the whole video.

    python benchmarks/action_predict.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action.models.model_dir import ModelConfig
from action.predict import Predictor
from action.video.dataset import Sampling
from action.video.decode import probe
from benchmarks.action_sampling import make_video, pytorchvideo_uniform
from benchmarks.common import best_of, emit
from shared.weights import save_weights


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "ucf_like.avi", 7)
        frames_in_video = probe(video).frames
        config = ModelConfig("c3d_gru", [f"class{i}" for i in range(101)], Sampling(decode_size=(72, 72)).to_dict())
        config.save(tmp / "model")
        save_weights(config.build(), tmp / "model" / "model.pt")
        predictor = Predictor.load(tmp / "model")
        seconds = best_of(lambda: predictor.predict(video), repeats=7)

        def baseline() -> None:
            clip = torch.from_numpy(pytorchvideo_uniform(video)) / 255.0  # (3, 20, 240, 320)
            clip = torch.nn.functional.interpolate(clip.transpose(0, 1), size=(64, 64), mode="bilinear").transpose(0, 1)
            predictor.probabilities(clip[None])

        base = best_of(baseline, repeats=3)
        emit(
            "c3d_gru predict, decode included, UCF101-like 7 s 320x240 AVI, 101 classes",
            "s/frame",
            seconds / 20,
            "pytorchvideo get_clip(whole video) + the same model",
            base / 20,
            seconds_per_video=round(seconds, 4),
            s_per_video_frame=round(seconds / frames_in_video, 6),
            paper_001_k80_s_per_frame=0.0719,
            target_s_per_frame=0.007,
        )


if __name__ == "__main__":
    main()
