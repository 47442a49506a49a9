"""Uniform 20-frame sampling (action.video.decode) vs pytorchvideo EncodedVideo.get_clip of the whole video (same run).

A UCF101-like file: 320x240, 25 fps, MPEG-4 Part 2 in AVI, 10 s (250 frames) and 60 s.
Target: >= 5x faster than decoding the whole clip with pytorchvideo and picking 20 frames.

    python benchmarks/action_sampling.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action.video.decode import probe, read_uniform_clip
from action.video.synthetic import encode_video, render_video
from benchmarks.common import best_of, emit


def make_video(path: Path, seconds: int) -> Path:
    rng = np.random.default_rng(0)
    frames = np.concatenate([render_video("Wave", rng, size=(240, 320)) for _ in range(seconds)])[: seconds * 25]
    while len(frames) < seconds * 25:
        frames = np.concatenate([frames, frames])[: seconds * 25]
    return encode_video(frames, path, fps=25)


def pytorchvideo_uniform(path: Path, num_frames: int = 20) -> np.ndarray:
    """The pytorchvideo way: decode the whole video to a float tensor, then index T frames."""
    from pytorchvideo.data.encoded_video import EncodedVideo

    video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
    clip = video.get_clip(0, float(video.duration))["video"]  # (C, T_all, H, W) float32
    index = np.linspace(0, clip.shape[1] - 1, num_frames).round().astype(int)
    video.close()
    return clip[:, index].numpy()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (10, 60):
            path = make_video(Path(tmp) / f"ucf_like_{seconds}s.avi", seconds)
            info = probe(path)
            ours = best_of(lambda path=path: read_uniform_clip(path, 20), repeats=5)
            ours_small = best_of(lambda path=path: read_uniform_clip(path, 20, size=(64, 64)), repeats=5)
            theirs = best_of(lambda path=path: pytorchvideo_uniform(path), repeats=3)
            emit(
                f"uniform 20 frames of a {seconds} s 320x240 MPEG-4 AVI ({info.frames} frames)",
                "ms/video",
                ours * 1e3,
                "pytorchvideo EncodedVideo.get_clip(whole video) + index",
                theirs * 1e3,
                speedup=round(theirs / ours, 2),
                ms_resized_to_64x64_while_decoding=round(ours_small * 1e3, 2),
                target_speedup=5.0,
            )


if __name__ == "__main__":
    main()
