"""action.predict: streaming window classification equals classifying each window alone, in memory that does not grow with the video."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from action.models.model_dir import ModelConfig
from action.predict import Predictor
from action.video.decode import read_frames, uniform_timestamps
from action.video.sampling import Sampling
from action.video.synthetic import encode_video
from shared.weights import save_weights


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """An untrained c3d_gru on 8 x 32 x 32 clips (its numbers need not be good, only reproducible)."""
    out = tmp_path_factory.mktemp("model")
    config = ModelConfig("c3d_gru", ["a", "b", "c"], Sampling(frames=8, size=(32, 32)).to_dict())
    config.save(out)
    save_weights(config.build(seed=0), out / "model.pt")
    return Predictor.load(out)


def _noise_video(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (24, 32)) -> Path:
    rng = np.random.default_rng(int(seconds))
    frames = rng.integers(0, 256, (int(seconds * fps), *size, 3), dtype=np.uint8)
    return encode_video(frames, path, fps=fps)


def test_streamed_windows_equal_each_window_classified_alone(predictor: Predictor, tmp_path: Path) -> None:
    video = _noise_video(tmp_path / "v.mp4", 6.0)
    windows = [(0.0, 6.0), (0.0, 2.0), (1.0, 3.0), (2.5, 2.6), (4.0, 6.0), (0.0, 2.0)]  # overlapping, tiny, repeated
    probs, kept = predictor.window_probabilities(video, windows, batch_size=4, keep=[0])
    sampling = predictor.config.clip_sampling
    for w, (start, end) in enumerate(windows):
        clip = read_frames(video, uniform_timestamps(start, end, sampling.frames), sampling.decode_hw)
        alone = predictor.probabilities(predictor._network_inputs(clip[None]))[0]
        np.testing.assert_allclose(probs[w], alone, atol=1e-5)
        if w == 0:
            np.testing.assert_array_equal(kept[0], clip)
    assert set(kept) == {0} and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _traced_peak_mb(predictor: Predictor, video: Path) -> float:
    tracemalloc.start()
    try:
        result = predictor.analyse(video, timeline_window=2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result["timeline"]) > 10
    return peak / 2**20


def test_memory_does_not_grow_with_the_length_of_the_video(predictor: Predictor, tmp_path: Path) -> None:
    """A 4-minute video's timeline (239 windows) holds no more frame buffers than a 1-minute one's (59).

    Holding every window's clips at once, as before, took ~4x more for 4x the length (numpy
    buffers, which tracemalloc sees; the decoder's own buffers are per frame either way).
    """
    _traced_peak_mb(predictor, _noise_video(tmp_path / "warm-up.mp4", 30.0))  # first-call imports (pytorchvideo's sampler) are not frames
    short = _traced_peak_mb(predictor, _noise_video(tmp_path / "short.mp4", 60.0))
    long = _traced_peak_mb(predictor, _noise_video(tmp_path / "long.mp4", 240.0))
    assert long < 1.3 * short + 0.5 and long < 4, f"peak {short:.2f} MB for 1 min, {long:.2f} MB for 4 min"
