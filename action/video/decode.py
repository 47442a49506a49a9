"""Video files in, uint8 frames out: probing with limits, and timestamp sampling with PyAV.

The papers feed T frames (20) spaced uniformly over the whole video, resized to 64x64.
Decoding a 320x240 frame is cheap; converting it to RGB costs ~3x the decode and the float
conversion more, which is where ``pytorchvideo``'s ``EncodedVideo.get_clip`` spends its time
(it converts every frame of the clip). So :func:`read_frames` decodes in presentation order,
converts *only the frames it keeps* (resized by swscale while still YUV/uint8), and seeks by
timestamp across gaps of more than a few frames as long as seeking pays off (with sparse
keyframes a seek re-decodes the same GOP, so it then decodes through; see ``benchmarks/``).

Nothing is dropped silently: a file that cannot be opened, has no video stream, claims an
absurd size or duration (refused before any frame is decoded), has fewer than ``min_frames``
frames or ends before its header says it should is a :class:`VideoError` naming the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import monotonic

import av
import numpy as np

#: Containers we open; decided from the content (PyAV/FFmpeg probing), never from the file name.
ALLOWED_FORMATS = frozenset({"avi", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpeg", "mpegts", "flv", "ogg", "gif"})


class VideoError(ValueError):
    """A video file that cannot be used; the message names the file and what was expected."""


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """What a video header may claim before we refuse to decode it.

    Args:
        max_pixels: width x height per frame (default 8K UHD, 33 Mpixel).
        max_duration: seconds (default 4 h).
        min_frames: fewer frames than this is an error (a still image is not an action).
        formats: allowed container formats (FFmpeg demuxer names).
        max_decode_seconds: wall-clock budget of one :func:`read_frames` call (the web server
            sets one so that a hostile upload cannot stall it).
    """

    max_pixels: int = 7680 * 4320
    max_duration: float = 4 * 3600.0
    min_frames: int = 2
    formats: frozenset[str] = ALLOWED_FORMATS
    max_decode_seconds: float = math.inf


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container header says (``duration`` in seconds, ``fps`` frames per second)."""

    path: str
    width: int
    height: int
    fps: float
    duration: float
    frames: int
    codec: str
    container: str


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError(f"{path}: no such video file.")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes); expected an encoded video.")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoError(f"{path}: not a readable video container ({err.__class__.__name__}: {err}).") from None


def _header(path: Path, container: av.container.InputContainer, limits: DecodeLimits) -> VideoInfo:
    formats = set(container.format.name.split(","))
    if not formats & limits.formats:
        raise VideoError(f"{path}: container format {container.format.name!r} is not an allowed video format {sorted(limits.formats)}.")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{path}: has no video stream (streams: {', '.join(kinds)}); expected a video.")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0 or width * height > limits.max_pixels:
        raise VideoError(
            f"{path}: header claims {width}x{height} pixels per frame; the limit is {limits.max_pixels} pixels (refused before decoding)."
        )
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    duration = _duration(stream, container)
    if not math.isfinite(duration) or duration > limits.max_duration:
        raise VideoError(
            f"{path}: header claims a duration of {duration:.0f} s; the limit is {limits.max_duration:.0f} s (refused before decoding)."
        )
    frames = int(stream.frames) or (round(duration * fps) if fps else 0)
    if stream.frames and fps and stream.frames / fps > 1.25 * duration + 2 / fps:
        # e.g. an AVI cut off mid-file: its header still counts every frame, FFmpeg measures what is left
        raise VideoError(
            f"{path}: the header declares {stream.frames} frames ({stream.frames / fps:.1f} s) but the stream holds {duration:.1f} s; the file is truncated."
        )
    return VideoInfo(str(path), width, height, fps, duration, frames, stream.codec_context.name, container.format.name)


def _duration(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # microseconds (AV_TIME_BASE)
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return 0.0


def probe(path: str | Path, limits: DecodeLimits = DecodeLimits()) -> VideoInfo:
    """Read the header of ``path`` (no frame decoded) and check it against ``limits``.

    Raises:
        VideoError: missing/empty/unreadable file, no video stream, format not allowed,
            resolution or duration over the limits, or fewer than ``limits.min_frames`` frames.
    """
    path = Path(path)
    with _open(path) as container:
        info = _header(path, container, limits)
    if 0 < info.frames < limits.min_frames or info.duration <= 0:
        raise VideoError(f"{path}: has {info.frames} frame(s) ({info.duration:.3f} s); at least {limits.min_frames} frames are needed.")
    return info


def uniform_timestamps(start: float, end: float, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of ``[start, end)`` seconds (TSN-style sampling).

    Videos shorter than ``num_frames`` frames get repeated frames (each timestamp takes the
    frame showing at that time), which is the documented loop/pad rule: the clip is
    stretched in time, never padded with black frames.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    step = (end - start) / num_frames
    return start + step * (np.arange(num_frames) + 0.5)


def _frame_time(frame: av.VideoFrame, start: float = 0.0) -> float:
    """Seconds since the stream's first timestamp ``start``: times that callers ask for count from there."""
    return float(frame.time) - start if frame.time is not None else float("nan")


def _stream_start(stream) -> float:
    """The stream's first timestamp in seconds: 0 for most files, 1.4 s for FFmpeg's MPEG-TS, anything for cameras."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def read_frames(
    path: str | Path,
    timestamps: Sequence[float],
    size: tuple[int, int] | None = None,
    limits: DecodeLimits = DecodeLimits(),
    seek_gap: float | None = None,
) -> np.ndarray:
    """The frames showing at ``timestamps`` (seconds, ascending), as uint8 ``(T, H, W, 3)`` RGB.

    Args:
        size: ``(height, width)`` to resize to while decoding (None: the file's size).
        seek_gap: seek instead of decoding through when the next timestamp is this many seconds
            ahead (``None``: automatic, see :class:`_SeekPolicy`).

    Raises:
        VideoError: see :func:`probe`; also a stream that ends (or breaks) before the last
            timestamp, e.g. a truncated file.
    """
    out = None
    for index, frame in enumerate(iter_frames(path, timestamps, size, limits, seek_gap)):
        if out is None:
            out = np.empty((len(timestamps), *frame.shape), dtype=np.uint8)
        out[index] = frame
    return out


def iter_frames(
    path: str | Path,
    timestamps: Sequence[float],
    size: tuple[int, int] | None = None,
    limits: DecodeLimits = DecodeLimits(),
    seek_gap: float | None = None,
) -> Iterator[np.ndarray]:
    """:func:`read_frames` one frame at a time: uint8 ``(H, W, 3)`` per timestamp, in order, from one open file.

    Memory stays one frame whatever the number of timestamps (a 30-minute video's timeline asks
    for ~18,000). ``limits.max_decode_seconds`` counts the time spent decoding only, not the time
    the caller spends between frames (e.g. running a network on them).

    Raises:
        VideoError: as :func:`read_frames`, when the stream ends before the last timestamp.
    """
    path = Path(path)
    wanted = np.asarray(timestamps, dtype=float)
    if wanted.ndim != 1 or len(wanted) == 0 or np.any(np.diff(wanted) < 0):
        raise ValueError(f"timestamps must be a non-empty ascending 1-D sequence, got {timestamps!r}.")
    clock, headers = _DecodeClock(limits.max_decode_seconds), []
    given = 0
    try:
        for frame in _frames_of_file(path, wanted, size, limits, seek_gap, clock, headers, skip=0):
            given += 1
            yield frame
    except _SeekMissed:  # e.g. MPEG-TS, whose demuxer lands after the target: decode through instead
        for frame in _frames_of_file(path, wanted, size, limits, math.inf, clock, headers, skip=given):
            given += 1
            yield frame
    if given < len(wanted):
        info = headers[-1]
        raise VideoError(
            f"{path}: the stream ends at frame {given} of {len(wanted)} requested (last timestamp {wanted[-1]:.2f} s, "
            f"header duration {info.duration:.2f} s); the file may be truncated."
        )


class _DecodeClock:
    """Decoding time spent by one reader, paused while its caller holds a frame; over ``budget`` s is an error."""

    def __init__(self, budget: float) -> None:
        self.budget, self.spent, self.resumed = budget, 0.0, monotonic()

    def over(self) -> bool:
        return self.spent + (monotonic() - self.resumed) > self.budget

    def pause(self) -> None:
        self.spent += monotonic() - self.resumed

    def resume(self) -> None:
        self.resumed = monotonic()


def _frames_of_file(
    path: Path,
    wanted: np.ndarray,
    size: tuple[int, int] | None,
    limits: DecodeLimits,
    seek_gap: float | None,
    clock: _DecodeClock,
    headers: list[VideoInfo],
    skip: int,
) -> Iterator[np.ndarray]:
    """Open ``path``, check its header (appended to ``headers``) and yield the frames of ``wanted[skip:]``."""
    with _open(path) as container:
        info = _header(path, container, limits)
        headers.append(info)
        height, width = size or (info.height, info.width)
        frames = _decode_frames(path, container, container.streams.video[0], wanted, (height, width), seek_gap, clock, skip)
        for frame in frames:
            clock.pause()
            yield frame
            clock.resume()


class _SeekMissed(Exception):
    """A seek landed after its target or on no frame at all: this file must be decoded through."""


class _SeekPolicy:
    """When to seek instead of decoding through: across gaps over ``gap`` seconds, while seeks pay off.

    ``gap=None`` (auto) seeks across gaps of more than 4 frame periods. Whatever the gap, a
    seek that lands on a keyframe before the frame already decoded (sparse keyframes: it
    re-decodes frames already decoded) ends seeking for the rest of the file. (A seek is never
    issued twice for one target, so a seek cannot repeat itself.)
    """

    def __init__(self, gap: float | None, period: float) -> None:
        self.gap = 4 * period if gap is None else gap
        self.period = period

    def wants(self, current: float, target: float) -> bool:
        return target - current > self.gap

    def landed(self, before: float | None, at: float) -> None:
        if before is not None and at < before - self.period / 2:  # went backwards: re-decoding a GOP already decoded
            self.gap = math.inf


def _decode_frames(
    path: Path, container, stream, wanted: np.ndarray, size: tuple[int, int], seek_gap: float | None, clock: _DecodeClock, skip: int = 0
) -> Iterator[np.ndarray]:
    """Yield the last frame at or before each wanted time (uint8 ``size + (3,)``), from index ``skip`` on.

    Frames before ``skip`` are decoded but not converted (a retry after :class:`_SeekMissed`
    decodes through, so it never seeks past them). Times count from the stream's first timestamp. Raises :class:`_SeekMissed` when a seek lands
    after its target or on nothing (the caller then decodes the file through). Stops early (the
    caller counts) when the stream ends before the last wanted time.
    """
    height, width = size
    rgb = lambda frame: frame.to_ndarray(format="rgb24", width=width, height=height)
    start = _stream_start(stream)  # wanted times count from the first frame; frame.time and seek targets are absolute
    policy = _SeekPolicy(seek_gap, _frame_period(stream))
    filled, previous, position = 0, None, None  # position: time of the last decoded frame
    seek, sought = policy.wants(0.0, wanted[0]), -1  # sought: the target index of the last seek (one seek per target)
    try:
        while filled < len(wanted):
            if seek:
                sought = filled
                container.seek(int((wanted[filled] + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
            landing, seek = seek, False
            for frame in container.decode(stream):
                if clock.over():
                    raise VideoError(
                        f"{path}: decoding stopped at frame time {_frame_time(frame, start):.1f} s: over the time budget of this reader."
                    )
                time = _frame_time(frame, start)
                if landing:
                    if time > wanted[filled] + policy.period / 2:
                        raise _SeekMissed
                    policy.landed(position, time)
                    landing = False
                while filled < len(wanted) and time > wanted[filled] + 1e-6 and previous is not None:
                    if filled >= skip:
                        yield rgb(previous)
                    filled += 1
                if filled == len(wanted):
                    break
                position = time
                if previous is not None and sought != filled and policy.wants(time, wanted[filled]):
                    previous, seek = None, True
                    break
                previous = frame
            else:
                if landing:
                    raise _SeekMissed
                break  # end of stream
    except av.error.FFmpegError as err:
        raise VideoError(f"{path}: decoding failed after {filled} of {len(wanted)} frames ({err}); the file is damaged.") from None
    if filled < len(wanted) and previous is not None and _frame_time(previous, start) + _frame_period(stream) * 2 >= wanted[-1]:
        last = rgb(previous)  # the last frame shows until the end
        for index in range(filled, len(wanted)):
            if index >= skip:
                yield last


def _frame_period(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.1


def read_uniform_clip(
    path: str | Path, num_frames: int, size: tuple[int, int] | None = None, limits: DecodeLimits = DecodeLimits()
) -> np.ndarray:
    """``num_frames`` frames spaced uniformly over the whole video, uint8 ``(T, H, W, 3)``."""
    info = probe(path, limits)
    return read_frames(path, uniform_timestamps(0.0, info.duration, num_frames), size, limits)
