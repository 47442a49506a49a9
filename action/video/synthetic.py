"""Synthetic action videos as real encoded files, in the UCF101 layout.

``python -m action make-demo-data OUT`` renders a moving articulated stick figure doing one
of :data:`CLASSES`, with random size, position, speed, pauses, colours, background and
noise, and encodes each video with PyAV: even clips as ``.avi`` (MPEG-4 Part 2, as UCF101)
and odd clips as ``.mp4`` (H.264). Three classes pairs are *time reversals* of each other
(sit-down / stand-up, raise-arms / lower-arms, walk-left / walk-right): every frame of one
is equally likely in the other, so a model that averages frames cannot separate them and a
temporal model must. Layout (UCF101)::

    OUT/<Class>/v_<Class>_g<GG>_c<CC>.avi|.mp4
    OUT/ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt  (N = 1..3, split by group)
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from shared.io import atomic_path, atomic_write_text

#: Class names in ``classInd.txt`` order (1-based there).
CLASSES = ("SitDown", "StandUp", "RaiseArms", "LowerArms", "WalkLeft", "WalkRight", "Wave", "Jump")
#: Pairs whose videos differ only in temporal order.
REVERSED_PAIRS = (("SitDown", "StandUp"), ("RaiseArms", "LowerArms"), ("WalkLeft", "WalkRight"))
FRAME_SIZE = (120, 160)  # (height, width), a quarter of UCF101's 240x320
FPS = 25


@dataclasses.dataclass
class Pose:
    """Stick-figure pose in figure units (1 = body height; y points up from the feet).

    ``hip_drop`` lowers the hips (0 standing, 0.35 seated), ``arm`` is the shoulder angle
    in degrees from hanging down (0) to straight up (180), ``forearm`` bends the elbow,
    ``stride`` swings the legs (radians), ``lift`` raises the whole figure (jumps).
    """

    hip_drop: float = 0.0
    arm_left: float = 15.0
    arm_right: float = 15.0
    forearm: float = 0.0
    stride: float = 0.0
    lift: float = 0.0
    shift: float = 0.0


def _progress(n: int, rng: np.random.Generator) -> np.ndarray:
    """Monotone 0 -> 1 over ``n`` frames with random pauses before and after (smooth-step)."""
    pause_a, pause_b = rng.uniform(0.0, 0.25, size=2)
    t = np.linspace(0.0, 1.0, n)
    s = np.clip((t - pause_a) / max(1.0 - pause_a - pause_b, 0.2), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _poses(name: str, n: int, rng: np.random.Generator) -> list[Pose]:
    s = _progress(n, rng)
    if name in ("StandUp", "LowerArms", "WalkRight"):
        s = s[::-1]  # the reversed twin: the same frames in the opposite order
    cycles = rng.uniform(1.5, 3.0)
    phase = np.sin(2 * math.pi * cycles * np.linspace(0, 1, n) + rng.uniform(0, 2 * math.pi))
    if name in ("SitDown", "StandUp"):
        return [Pose(hip_drop=0.35 * v, arm_left=15 + 50 * v, arm_right=15 + 50 * v) for v in s]
    if name in ("RaiseArms", "LowerArms"):
        return [Pose(arm_left=15 + 160 * v, arm_right=15 + 160 * v) for v in s]
    if name in ("WalkLeft", "WalkRight"):
        # walking: position follows s; legs swing with s so the reversed video is the other walk
        swing = np.sin(2 * math.pi * cycles * s)
        return [Pose(stride=0.45 * w, arm_left=15 + 20 * w, arm_right=15 - 20 * w, shift=0.6 - 1.2 * v) for v, w in zip(s, swing)]
    if name == "Wave":
        return [Pose(arm_right=150, forearm=40 * p) for p in phase]
    if name == "Jump":
        return [Pose(lift=0.12 * max(p, 0.0), arm_left=60 + 60 * max(p, 0), arm_right=60 + 60 * max(p, 0)) for p in phase]
    raise ValueError(f"Unknown class {name!r}; expected one of {CLASSES}.")


def _limb(origin: tuple[float, float], angle_deg: float, length: float) -> tuple[float, float]:
    """End of a segment from ``origin`` at ``angle_deg`` (0 = straight down, 90 = right, 180 = up)."""
    a = math.radians(angle_deg)
    return origin[0] + length * math.sin(a), origin[1] - length * math.cos(a)


def _knee(hip: tuple[float, float], foot: tuple[float, float], segment: float) -> tuple[float, float]:
    """Two-link inverse kinematics: the knee between ``hip`` and ``foot``, bending forward (+x)."""
    dx, dy = foot[0] - hip[0], foot[1] - hip[1]
    dist = min(math.hypot(dx, dy), 2 * segment - 1e-6)
    h = math.sqrt(segment**2 - (dist / 2) ** 2)
    nx, ny = -dy / (math.hypot(dx, dy) or 1.0), dx / (math.hypot(dx, dy) or 1.0)
    if nx < 0:
        nx, ny = -nx, -ny
    return hip[0] + dx / 2 + h * nx, hip[1] + dy / 2 + h * ny


def _draw_figure(draw: ImageDraw.ImageDraw, pose: Pose, x: float, ground: float, scale: float, colour: tuple, width: int) -> None:
    """Draw in pixels: ``(x, ground)`` is the point between the feet, ``scale`` the body height."""

    def px(u: float, v: float) -> tuple[float, float]:  # figure units -> pixels (y down)
        return x + (u + pose.shift) * scale, ground - (v + pose.lift) * scale

    hip, shoulder = (0.0, 0.5 - pose.hip_drop), (0.0, 0.85 - pose.hip_drop)
    for sign in (1, -1):
        foot = (0.05 * sign + 0.3 * pose.stride * sign, 0.0)
        draw.line([px(*hip), px(*_knee(hip, foot, 0.26)), px(*foot)], fill=colour, width=width)
    draw.line([px(*hip), px(*shoulder)], fill=colour, width=width)
    for arm, sign in ((pose.arm_left, -1), (pose.arm_right, 1)):
        elbow = _limb(shoulder, sign * arm, 0.17)
        hand = _limb(elbow, sign * (arm + pose.forearm), 0.17)
        draw.line([px(*shoulder), px(*elbow), px(*hand)], fill=colour, width=width)
    cx, cy = px(0.0, 0.97 - pose.hip_drop)
    r = 0.08 * scale
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def render_video(name: str, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """One random video of class ``name``: uint8 ``(T, H, W, 3)``, T in 30..60 frames (1.2-2.4 s at 25 fps)."""
    height, width = size
    n = int(rng.integers(30, 61))
    scale = rng.uniform(0.55, 0.8) * height
    x = rng.uniform(0.35, 0.65) * width
    ground = rng.uniform(0.85, 0.97) * height
    top, bottom = rng.integers(0, 256, size=(2, 3))
    gradient = np.linspace(0, 1, height)[:, None, None]
    background = (top * (1 - gradient) + bottom * gradient) * np.ones((1, width, 1))
    # the figure contrasts with the background: dark on bright backgrounds, bright on dark ones
    bright = background.mean() < 128
    colour = tuple(int(c) for c in (rng.integers(190, 256, size=3) if bright else rng.integers(0, 66, size=3)))
    line = max(2, int(scale / 14))
    noise = rng.uniform(2.0, 10.0)
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for i, pose in enumerate(_poses(name, n, rng)):
        image = Image.fromarray(background.astype(np.uint8))
        _draw_figure(ImageDraw.Draw(image), pose, x, ground, scale, colour, line)
        noisy = np.asarray(image, dtype=np.float32) + noise * rng.standard_normal(size=(height, width, 3), dtype=np.float32)
        frames[i] = noisy.clip(0, 255).astype(np.uint8)
    return frames


#: first timestamp of ``.ts`` files written by :func:`encode_video`, seconds
TS_START = 1.4


def encode_video(frames: np.ndarray, path: str | Path, fps: int = FPS, start: float | None = None) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` frames to ``path``, atomically.

    ``.avi``: MPEG-4 Part 2; ``.mp4``: H.264; ``.ts``: H.264 in MPEG-TS with timestamps that start
    at ``TS_START`` seconds, not at 0 (as broadcast recordings and many camera files do).
    ``start``: first timestamp in seconds (default ``TS_START`` for ``.ts``, else 0).
    """
    path = Path(path)
    codec, container_format = {".avi": ("mpeg4", "avi"), ".mp4": ("libx264", "mp4"), ".ts": ("libx264", "mpegts")}.get(
        path.suffix, (None, None)
    )
    if codec is None:
        raise ValueError(f"{path}: expected a .avi, .mp4 or .ts file name.")
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"} if codec == "libx264" else {}
        if codec == "mpeg4":
            stream.bit_rate = 800_000
        first = round((TS_START if start is None and container_format == "mpegts" else start or 0.0) * fps)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = first + index, fractions.Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_dataset(
    out: str | Path, groups: int = 9, clips: int = 4, seed: int = 0, classes=CLASSES, progress: Callable[[str], None] | None = None
) -> Path:
    """Write ``len(classes) * groups * clips`` videos and UCF101 split files under ``out``.

    Split N (1..3) tests on every third group starting at group N, trains on the others,
    as UCF101 holds out groups (clips of one group share actor and background there).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    listing: dict[int, list[str]] = {}
    for ci, name in enumerate(classes):
        (out / name).mkdir(parents=True, exist_ok=True)
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                relative = f"{name}/v_{name}_g{g:02d}_c{c:02d}.{'avi' if c % 2 else 'mp4'}"
                encode_video(render_video(name, rng), out / relative)
                listing.setdefault(g, []).append(f"{relative} {ci + 1}")
        if progress:
            progress(name)
    lists = out / "ucfTrainTestlist"
    lists.mkdir(exist_ok=True)
    atomic_write_text(lists / "classInd.txt", "".join(f"{i + 1} {name}\n" for i, name in enumerate(classes)))
    for split in (1, 2, 3):
        test_groups = {g for g in range(1, groups + 1) if (g - split) % 3 == 0}
        train = [line for g, lines in sorted(listing.items()) if g not in test_groups for line in lines]
        test = [line.rsplit(" ", 1)[0] for g, lines in sorted(listing.items()) if g in test_groups for line in lines]
        atomic_write_text(lists / f"trainlist{split:02d}.txt", "\n".join(train) + "\n")
        atomic_write_text(lists / f"testlist{split:02d}.txt", "\n".join(test) + "\n")
    return out
