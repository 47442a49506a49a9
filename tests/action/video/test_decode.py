"""action.video.decode: header probing, timestamp sampling on real encoded files, and every bad input named."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from action.video.decode import DecodeLimits, VideoError, probe, read_frames, read_uniform_clip, uniform_timestamps
from action.video.synthetic import encode_video
from tests.action.conftest import frame_index, numbered_frames


@pytest.mark.parametrize("suffix, codec", [(".avi", "mpeg4"), (".mp4", "h264")])
def test_probe_reads_the_header(tmp_path: Path, suffix: str, codec: str) -> None:
    path = encode_video(numbered_frames(30), tmp_path / f"v{suffix}", fps=10)
    info = probe(path)
    assert (info.width, info.height, info.frames, info.codec) == (64, 48, 30, codec)
    assert info.fps == pytest.approx(10.0) and info.duration == pytest.approx(3.0, abs=0.11)


def test_uniform_timestamps_are_segment_centres() -> None:
    np.testing.assert_allclose(uniform_timestamps(0.0, 4.0, 4), [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="num_frames"):
        uniform_timestamps(0.0, 1.0, 0)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_uniform_clip_returns_the_frames_showing_at_each_time(tmp_path: Path, suffix: str) -> None:
    path = encode_video(numbered_frames(40), tmp_path / f"v{suffix}", fps=10)  # 4 s, frame i shows during [i/10, (i+1)/10)
    clip = read_uniform_clip(path, 8)
    assert clip.shape == (8, 48, 64, 3) and clip.dtype == np.uint8
    expected = [int(t * 10) for t in uniform_timestamps(0.0, 4.0, 8)]  # 2, 7, 12, ...
    assert [frame_index(f) for f in clip] == expected


def test_resize_while_decoding(tmp_path: Path) -> None:
    path = encode_video(numbered_frames(10), tmp_path / "v.mp4")
    assert read_frames(path, [0.1, 0.2], size=(16, 20)).shape == (2, 16, 20, 3)


def test_seeking_far_ahead_gives_the_same_frames_as_decoding_through(tmp_path: Path) -> None:
    path = encode_video(numbered_frames(40), tmp_path / "v.avi", fps=10)
    times = [0.05, 1.95, 3.85]
    through = [frame_index(f) for f in read_frames(path, times, seek_gap=100.0)]
    seeking = [frame_index(f) for f in read_frames(path, times, seek_gap=0.5)]
    assert through == seeking == [0, 19, 38]


def test_short_video_repeats_frames_instead_of_padding(tmp_path: Path) -> None:
    path = encode_video(numbered_frames(5), tmp_path / "short.mp4", fps=10)
    indices = [frame_index(f) for f in read_uniform_clip(path, 20)]
    assert indices == sorted(indices) and set(indices) == {0, 1, 2, 3, 4} and len(indices) == 20


def test_variable_frame_rate_is_sampled_by_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    times_ms = [0, 100, 150, 900, 1000, 1900]  # irregular presentation times
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(numbered_frames(i + 1)[i], format="rgb24")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    got = [frame_index(f) for f in read_frames(path, [0.05, 0.5, 0.95, 1.5, 1.95])]
    assert got == [0, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "empty \\(0 bytes\\)"),
        ("random", "not a readable video container"),
        ("truncated", "not a readable video container"),
        ("audio_only", "has no video stream \\(streams: audio\\)"),
        ("one_frame", "has 1 frame\\(s\\).*at least 2 frames"),
        ("huge_resolution", "8000x8000 pixels.*refused before decoding"),
        ("huge_duration", "duration of .* s; the limit .*refused before decoding"),
    ],
)
def test_bad_video_is_refused_naming_the_file(bad_videos: dict[str, Path], kind: str, message: str) -> None:
    path = bad_videos[kind]
    with pytest.raises(VideoError, match=f"{path.name}.*{message}"):
        read_uniform_clip(path, 20)


def test_truncated_stream_is_an_error_not_a_short_clip(tmp_path: Path) -> None:
    good = encode_video(numbered_frames(40), tmp_path / "full.avi", fps=10)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.5)])
    with pytest.raises(VideoError, match="cut.avi.*(truncated|damaged)"):
        read_uniform_clip(cut, 20)


def test_missing_file_and_disallowed_format(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nope.mp4: no such video file"):
        probe(tmp_path / "nope.mp4")
    path = encode_video(numbered_frames(5), tmp_path / "v.mp4")
    with pytest.raises(VideoError, match="not an allowed video format"):
        probe(path, DecodeLimits(formats=frozenset({"avi"})))


def test_decode_time_budget_stops_a_slow_read(tmp_path: Path) -> None:
    path = encode_video(numbered_frames(40), tmp_path / "v.mp4", fps=10)
    with pytest.raises(VideoError, match="v.mp4: decoding stopped .* over the time budget"):
        read_frames(path, [3.5], limits=DecodeLimits(max_decode_seconds=0.0))


@pytest.mark.parametrize("name", ["late.ts", "late.mp4"])
def test_a_stream_that_starts_late_is_sampled_from_its_own_start(tmp_path: Path, name: str) -> None:
    """Streams whose first timestamp is 1.4 s: times count from the first frame, with and without seeking.

    (MPEG-TS: its demuxer's seeks land after their target, so the reader decodes through; MP4 seeks exactly.)
    """
    path = encode_video(numbered_frames(40), tmp_path / name, fps=10, start=1.4)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.start_time * stream.time_base) == pytest.approx(1.4, abs=0.01)  # the premise of the test
    info = probe(path)
    assert info.duration == pytest.approx(4.0, abs=0.11)
    expected = [int(t * 10) for t in uniform_timestamps(0.0, 4.0, 8)]
    assert [frame_index(f) for f in read_uniform_clip(path, 8)] == expected
    times = [0.05, 1.95, 3.85]
    assert [frame_index(f) for f in read_frames(path, times, seek_gap=0.5)] == [0, 19, 38]
    assert [frame_index(f) for f in read_frames(path, times, seek_gap=100.0)] == [0, 19, 38]
