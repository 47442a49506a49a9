"""Peak memory of ``action predict --timeline`` and of ``action serve`` on a 30-minute video (issue 22).

Writes a ~30-minute H.264 video (320x240, 15 fps, a moving pattern, streamed to the encoder so
that this script itself stays small), then measures the peak resident memory (``VmHWM``) of

- ``python -m action predict --model M VIDEO --timeline --json`` (a subprocess), and
- ``python -m action serve`` answering one ``POST /api/predict`` of that file (the page's request:
  top-5, thumbnails and the 2 s timeline);

the same-run baseline is the same two commands on a 10 s video of the same kind (libraries,
model and one clip: what memory costs anyway). The budget this checks: the 30-minute peak is
within 200 MB of the 10 s peak. Uses the demo's model if ``make demo`` ran, else an untrained
c3d_gru with the demo's sampling (same cost).

    python benchmarks/action_long_video.py [--minutes 29.9]
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from action.models.model_dir import ModelConfig  # noqa: E402
from action.video.sampling import Sampling  # noqa: E402
from action.video.synthetic import CLASSES  # noqa: E402
from benchmarks.common import demo_model, emit  # noqa: E402
from shared.distributed import free_port  # noqa: E402
from shared.weights import save_weights  # noqa: E402

BUDGET_MB = 200.0


def write_long_video(path: Path, seconds: float, fps: int = 15, size: tuple[int, int] = (240, 320)) -> Path:
    """A moving diagonal pattern with a bright square sweeping across, encoded frame by frame (never all in memory)."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(int(seconds * fps)):
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[..., 0] = ((xx + yy + 3 * index) % 256).astype(np.uint8)
            frame[..., 1] = ((xx - 2 * index) % 256).astype(np.uint8)
            frame[..., 2] = 80
            x = (index * 4) % (width - 40)
            frame[100:140, x : x + 40] = 255
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = index, fractions.Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path


def peak_of(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def predict_peak(model: Path, video: Path) -> tuple[float, float, int]:
    """``(peak RSS MB, seconds, timeline rows)`` of ``action predict --timeline`` in a subprocess (peak read by a wrapper)."""
    code = (
        "import sys, pathlib;"
        "sys.argv=['action','predict','--model',sys.argv[1],sys.argv[2],'--timeline','--json'];"
        "from action.cli import main\n"
        "try:\n    main(sys.argv[1:])\nfinally:\n"
        "    s=pathlib.Path('/proc/self/status').read_text();"
        "    print('PEAK', [l.split()[1] for l in s.splitlines() if l.startswith('VmHWM')][0], file=sys.stderr)"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(model), str(video)], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak = next(int(line.split()[1]) / 1024 for line in done.stderr.splitlines() if line.startswith("PEAK"))
    rows = len(json.loads(done.stdout)["timeline"])
    return peak, seconds, rows


def serve_peak(model: Path, video: Path, tmp: Path) -> tuple[float, float, int]:
    """``(peak RSS MB, seconds, timeline rows)`` of ``action serve`` answering one upload of ``video``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "action", "serve", "--model", str(model), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(url + "/api/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        start = time.perf_counter()
        with video.open("rb") as handle:
            answer = requests.post(url + "/api/predict", files={"file": ("long.mp4", handle)}, timeout=600)
        seconds = time.perf_counter() - start
        answer.raise_for_status()
        return peak_of(process.pid), seconds, len(answer.json()["timeline"])
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=29.9, help="length of the long video (default 29.9: the server's limit is 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = demo_model()
        if model is None:
            model = tmp / "model"
            config = ModelConfig("c3d_gru", list(CLASSES), Sampling(decode_size=(72, 72)).to_dict())
            config.save(model)
            save_weights(config.build(seed=0), model / "model.pt")
        start = time.perf_counter()
        long_video = write_long_video(tmp / "long.mp4", args.minutes * 60)
        encode_s = time.perf_counter() - start
        video_mb = long_video.stat().st_size / 2**20
        short_video = write_long_video(tmp / "short.mp4", 10.0)
        short_cli, long_cli = predict_peak(model, short_video), predict_peak(model, long_video)
        short_web, long_web = serve_peak(model, short_video, tmp), serve_peak(model, long_video, tmp)
    emit(
        f"peak RSS of action predict --timeline on a {args.minutes:g}-minute 320x240 15 fps video",
        "MB",
        long_cli[0],
        "the same command on a 10 s video",
        short_cli[0],
        cli_seconds=round(long_cli[1], 2),
        cli_timeline_windows=long_cli[2],
        serve_peak_mb=round(long_web[0], 1),
        serve_peak_mb_10s_video=round(short_web[0], 1),
        serve_seconds=round(long_web[1], 2),
        serve_timeline_windows=long_web[2],
        video_mb=round(video_mb, 1),
        encode_seconds=round(encode_s, 1),
        budget_mb_over_10s=BUDGET_MB,
        within_budget=bool(long_cli[0] - short_cli[0] <= BUDGET_MB and long_web[0] - short_web[0] <= BUDGET_MB),
        model=str(model),
    )


if __name__ == "__main__":
    main()
