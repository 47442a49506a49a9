"""The annotation loop's timings: a real ``medseg serve --monai-label --datastore`` process driven by MONAI Label's own
client, on the demo data (64^3 scans, the vnet_seg template with fresh weights).

Figures: fine-tuning on 2 saved labels for 2 epochs (from ``POST /train/`` to ``GET /train/`` saying done, the
comparison on the validation case and the swap included) and ``next_sample("uncertainty")`` over 1 unlabelled image
(first call: segments it; second: cached), each against one ``/infer/`` of the same image in the same run.

    python benchmarks/annotation_loop.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import emit
from medact_bundles import template_dir
from medseg.datasets.synthetic import make_dataset
from medseg.workflow import copy_with_fresh_weights

with warnings.catch_warnings():  # the client imports cgi, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from monailabel.client import MONAILabelClient


def start_server(bundle: Path, store: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "medseg", "serve", "--bundle", str(bundle), "--port", str(port), "--monai-label"]
    process = subprocess.Popen([*command, "--datastore", str(store)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(log.read_text())


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="medact-loop-bench-"))
    data = make_dataset(work / "data", n_train=3, n_test=1, seed=0).parent
    bundle = copy_with_fresh_weights(template_dir("vnet_seg"), work / "vnet_seg")
    port = 18000 + os.getpid() % 1000
    server = start_server(bundle, work / "store", port, work / "server.log")
    try:
        client = MONAILabelClient(f"http://127.0.0.1:{port}", tmpdir=str(work))
        scans = sorted((data / "imagesTr").iterdir())[:3]
        for n, scan in enumerate(scans):
            client.upload_image(str(scan), f"case_{n}")
        for n in (0, 1):
            client.save_label(f"case_{n}", str(data / "labelsTr" / scans[n].name), tag="final")
        infer_s, _ = timed(lambda: client.infer("vnet_seg", "case_2", {"result_extension": ".nii.gz"}))
        client.train_start("vnet_seg", {"max_epochs": 2})
        start = time.perf_counter()
        while client.train_status(check_if_running=True):
            time.sleep(0.5)
        train_s, status = time.perf_counter() - start, client.train_status()
        first_s, chosen = timed(lambda: client.next_sample("uncertainty", {}))
        cached_s, _ = timed(lambda: client.next_sample("uncertainty", {}))
    finally:
        server.terminate()
        server.wait(timeout=60)
    extra = {"state": status["state"], "replaced": status.get("replaced"), "dice": status.get("dice"), "next": chosen.get("id")}
    emit("fine-tune on 2 labels, 2 epochs (POST /train/ to done)", "s", train_s, "one /infer/ of a 64^3 scan", infer_s, **extra)
    emit("next_sample(uncertainty), 1 unlabelled image, first call", "s", first_s, "one /infer/ of a 64^3 scan", infer_s)
    emit("next_sample(uncertainty), cached", "s", cached_s, "one /infer/ of a 64^3 scan", infer_s)


if __name__ == "__main__":
    main()
