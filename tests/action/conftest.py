"""Shared fixtures: a tiny synthetic UCF101-style dataset and hand-made bad video files."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from action.video.synthetic import encode_video, make_dataset


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 classes x 3 groups x 2 clips = 48 real encoded videos (.avi MPEG-4 and .mp4 H.264), UCF101 layout."""
    return make_dataset(tmp_path_factory.mktemp("videos") / "ucf", groups=3, clips=2, seed=5)


def numbered_frames(n: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """``n`` (<= 42) frames whose grey level is ``6 * index`` (index readable back after lossy coding)."""
    return np.stack([np.full((*size, 3), 6 * i, dtype=np.uint8) for i in range(n)])


def frame_index(frame: np.ndarray) -> int:
    """Inverse of :func:`numbered_frames` for a decoded frame."""
    return round(float(frame.mean()) / 6)


def write_raw_avi(path: Path, width: int, height: int, frames: int = 5, fps: int = 10) -> Path:
    """An uncompressed AVI (frame size comes only from the header, so it can be patched)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr24"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return path


def patch_avi(path: Path, width: int | None = None, height: int | None = None, frames: int | None = None) -> Path:
    """Rewrite the AVI header's frame size (``strf``/``avih``) or frame count (``strh``/``avih``) in place."""
    data = bytearray(path.read_bytes())
    strf, avih, strh = data.find(b"strf"), data.find(b"avih"), data.find(b"strh")
    if width is not None:
        data[strf + 12 : strf + 20] = struct.pack("<ii", width, height)
        data[avih + 40 : avih + 48] = struct.pack("<II", width, height)
    if frames is not None:
        data[strh + 40 : strh + 44] = struct.pack("<I", frames)
        data[avih + 24 : avih + 28] = struct.pack("<I", frames)
    path.write_bytes(bytes(data))
    return path


def write_audio_only(path: Path) -> Path:
    """An .mp4 holding one second of AAC audio and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture
def bad_videos(tmp_path: Path) -> dict[str, Path]:
    """One file per kind of bad input the readers must name."""
    good = encode_video(numbered_frames(40), tmp_path / "good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    rng = np.random.default_rng(0)
    files = {
        "empty": tmp_path / "empty.avi",
        "random": tmp_path / "random.mp4",
        "truncated": truncated,
        "audio_only": write_audio_only(tmp_path / "audio.mp4"),
        "one_frame": encode_video(numbered_frames(1), tmp_path / "one.avi"),
        "huge_resolution": patch_avi(write_raw_avi(tmp_path / "huge.avi", 32, 24), width=8000, height=8000),
        "huge_duration": patch_avi(write_raw_avi(tmp_path / "long.avi", 32, 24), frames=2**31 - 1),
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return files
