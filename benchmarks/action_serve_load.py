"""Bounded load test of `python -m action serve` on loopback, waitress against Werkzeug: 8 concurrent clients for 60 s each.

Each client posts a 2 s synthetic video (H.264 .mp4, 160x120) to /api/predict in a loop; one in
eight requests is a broken file (expects 422) and one in four asks /api/predict-url to fetch the same
video from a local link server (the server runs with --allow-url-host 127.0.0.1 and --allow-url-port for its port). Prints p50/p95 latency, throughput and the 5xx
count of the production server (waitress, the default) with the same run on Werkzeug's threaded
development server (``--server werkzeug``, what served before) as the baseline, and one client
alone for 15 s on each. Uses the demo's model if ``make demo``
ran, else an untrained c3d_gru (same cost).

    python benchmarks/action_serve_load.py [--clients 8] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from action.models.model_dir import ModelConfig  # noqa: E402
from action.video.sampling import Sampling  # noqa: E402
from action.video.synthetic import CLASSES, encode_video, render_video  # noqa: E402
from benchmarks.common import demo_model, emit  # noqa: E402
from shared.distributed import free_port  # noqa: E402
from shared.weights import save_weights  # noqa: E402
from tests.action.link_server import LinkServer  # noqa: E402


def start_server(model: Path, tmp: Path, link_port: int, server: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [
        "--model",
        str(model),
        "--port",
        str(port),
        "--allow-url-host",
        "127.0.0.1",
        "--allow-url-port",
        str(link_port),
        "--server",
        server,
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "action", "serve", *args],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(url + "/api/health", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def hammer(url: str, video: bytes, clients: int, seconds: float, link: str) -> dict:
    latencies, codes, lock = [], [], threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        n = 0
        while time.monotonic() < stop:
            broken, linked = (n + index) % 8 == 0, (n + index) % 4 == 1
            body = b"not a video" * 50 if broken else video
            start = time.perf_counter()
            if linked:
                code = requests.post(url + "/api/predict-url", json={"url": link}, timeout=120).status_code
            else:
                code = requests.post(url + "/api/predict", files={"file": ("clip.mp4", body)}, timeout=120).status_code
            with lock:
                latencies.append(time.perf_counter() - start)
                codes.append(code)
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    begin = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - begin
    quantiles = statistics.quantiles(latencies, n=20)
    return {
        "p50_s": statistics.median(latencies),
        "p95_s": quantiles[18],
        "throughput_rps": len(codes) / elapsed,
        "requests": len(codes),
        "http_5xx": sum(c >= 500 for c in codes),
        "http_200": codes.count(200),
        "http_422": codes.count(422),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = demo_model()
        if model is None:
            model = tmp / "model"
            config = ModelConfig("c3d_gru", list(CLASSES), Sampling(decode_size=(72, 72)).to_dict())
            config.save(model)
            save_weights(config.build(seed=0), model / "model.pt")
        video = encode_video(render_video("Wave", np.random.default_rng(0))[:50], tmp / "clip.mp4").read_bytes()
        links = LinkServer(tmp / "clip.mp4")
        try:
            runs = {server: run_one(server, model, tmp, video, links, args) for server in ("werkzeug", "waitress")}
        finally:
            links.stop()
        leftovers = [p for p in tmp.glob("medact-uploads-*")]
    new, old = runs["waitress"], runs["werkzeug"]
    emit(
        f"serve /api/predict + /api/predict-url on waitress, {args.clients} concurrent clients for {args.seconds:g} s on loopback",
        "s (p50 latency)",
        new["loaded"]["p50_s"],
        "the same load on Werkzeug's threaded server (before)",
        old["loaded"]["p50_s"],
        **{f"waitress_{k}": round(v, 4) if isinstance(v, float) else v for k, v in new["loaded"].items()},
        **{f"werkzeug_{k}": round(v, 4) if isinstance(v, float) else v for k, v in old["loaded"].items()},
        waitress_single_client_p50_s=round(new["single"]["p50_s"], 4),
        werkzeug_single_client_p50_s=round(old["single"]["p50_s"], 4),
        upload_dirs_left=len(leftovers),
        model=str(model),
    )


def run_one(server: str, model: Path, tmp: Path, video: bytes, links: LinkServer, args: argparse.Namespace) -> dict:
    """One client alone for up to 15 s, then ``args.clients`` for ``args.seconds``, against a fresh server process."""
    process, url = start_server(model, tmp, links.port, server)
    try:
        return {
            "single": hammer(url, video, 1, min(15.0, args.seconds), links.url + "/good.mp4"),
            "loaded": hammer(url, video, args.clients, args.seconds, links.url + "/good.mp4"),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
