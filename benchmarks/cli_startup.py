"""Start-up of the command-line tools, against ``python -c "import torch"`` measured in the same run.

Figures (median of ``--repeats`` fresh processes each):
- ``action predict`` on a 1.7 s clip (an untrained c3d_gru at the demo's 20 x 64x64): target within
  ``import torch`` + 1.5 s, and no MONAI imported;
- ``medseg validate`` on a 4-case dataset (no torch, no MONAI needed);
- ``medseg infer`` of one scan with the bundle's V-Net (MONAI's transforms and inferer are needed:
  ``import monai`` alone loads its whole package, about 3.4 s here);
- ``action serve``: until the server answers ``/api/health``.

Usage: ``python benchmarks/cli_startup.py [--repeats 3] [--code DIR]``; prints one JSON record per figure.
``--code`` runs the commands from another checkout (e.g. an older commit, for before/after figures).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import emit
from tests.cli_run import modules_after

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


CODE: dict[str, str | None] = {"cwd": None}  # the checkout whose `python -m` packages run (``--code``)


def seconds(command: list[str], repeats: int) -> float:
    """Median wall-clock seconds of ``command`` in fresh processes (it must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=CODE["cwd"])
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-500:]}")
    return statistics.median(times)


def imports_monai(module: str, argv: list[str]) -> bool:
    """Whether running ``python -m module argv`` leaves ``monai`` in ``sys.modules``."""
    return "monai" in modules_after(module, *argv, watch=("monai",), cwd=CODE["cwd"], env=ENV)[1]


def serve_seconds(model: Path, repeats: int) -> float:
    """Median seconds from starting ``action serve`` to its first answer on /api/health."""
    import requests

    times = []
    for _ in range(repeats):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "action", "serve", "--model", str(model), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
            cwd=CODE["cwd"],
        )
        try:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.02)
            times.append(time.perf_counter() - start)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return statistics.median(times)


def fixtures(root: Path) -> dict[str, Path]:
    """A demo-sized clip model and 1.7 s clip, a 4-case scan dataset and a bundle with (untrained) weights."""
    from action.models.model_dir import ModelConfig
    from action.video.sampling import Sampling
    from action.video.synthetic import encode_video
    from medseg.datasets.synthetic import make_dataset
    from medseg.workflow import copy_with_fresh_weights
    from shared.weights import save_weights

    config = ModelConfig("c3d_gru", ["a", "b"], Sampling(decode_size=(72, 72)).to_dict())
    config.save(root / "model")
    save_weights(config.build(seed=0), root / "model" / "model.pt")
    clip = encode_video(np.random.default_rng(0).integers(0, 256, (17, 240, 320, 3), dtype=np.uint8), root / "clip.mp4", fps=10)
    dataset = make_dataset(root / "scans", n_train=3, n_test=1, seed=0).parent
    bundle = copy_with_fresh_weights(Path(__file__).resolve().parents[1] / "bundles" / "vnet_seg", root / "bundle")
    return {"model": root / "model", "clip": clip, "scans": dataset, "scan": sorted((dataset / "imagesTs").iterdir())[0], "bundle": bundle}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, help="run the commands from this checkout (default: this one)")
    args = parser.parse_args()
    CODE["cwd"] = str(args.code.resolve()) if args.code else None
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        f = fixtures(Path(tmp))
        torch_s = seconds([py, "-c", "import torch"], args.repeats)
        monai_s = seconds([py, "-c", "import monai"], args.repeats)
        predict = [py, "-m", "action", "predict", "--model", str(f["model"]), str(f["clip"])]
        predict_s = seconds(predict, args.repeats)
        emit(
            "action predict start-to-end, 1.7 s clip",
            "s",
            predict_s,
            "python -c 'import torch'",
            torch_s,
            over_import_torch_s=round(predict_s - torch_s, 3),
            target_over_import_torch_s=1.5,
            imports_monai=imports_monai("action", predict[3:]),
        )
        validate_s = seconds([py, "-m", "medseg", "validate", str(f["scans"])], args.repeats)
        emit(
            "medseg validate, 4 cases",
            "s",
            validate_s,
            "python -c 'import torch'",
            torch_s,
            imports_monai=imports_monai("medseg", ["validate", str(f["scans"])]),
        )
        infer_s = seconds(
            [
                py,
                "-m",
                "medseg",
                "infer",
                "--bundle",
                str(f["bundle"]),
                "--input",
                str(f["scan"]),
                "--output",
                str(Path(tmp) / "masks"),
                "--format",
                "nifti",
            ],
            args.repeats,
        )
        emit("medseg infer start-to-end, one scan", "s", infer_s, "python -c 'import monai'", monai_s, import_torch_s=round(torch_s, 3))
        emit("action serve until /api/health answers", "s", serve_seconds(f["model"], args.repeats), "python -c 'import torch'", torch_s)


if __name__ == "__main__":
    main()
