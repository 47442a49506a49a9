"""Sequence classification on real recordings with the default command line, over seeds (JSON lines).

    python benchmarks/action_sequences.py [--part accuracy|step|all] [--seeds 0 1 2] [--threads 1 2]
                                          [--datasets JapaneseVowels BasicMotions PickupGestureWiimoteZ] [--set FLAG=VALUE ...]

Data: the UEA/UCR files inside the ``aeon`` wheel (nothing downloaded), each with its published
train/test split:

- ``JapaneseVowels``: 9 speakers, 12 LPC features, 270 + 370 utterances of 7-29 steps (MATLAB's
  "Sequence Classification Using Deep Learning" example, about 0.95 there);
- ``BasicMotions``: a wrist-worn accelerometer + gyroscope (6 channels, 100 steps), 4 activities,
  40 + 40 recordings;
- ``PickupGestureWiimoteZ``: a Wii remote's z acceleration, 10 gestures, 50 + 50 recordings of
  29-361 steps; also trained on an equal-length copy (each recording linearly resampled to the
  longest length), which is what users did by hand when unequal lengths could not go in.

Figures:

1. ``accuracy``: ``python -m action train --data TRAIN --model gru --test-data TEST`` (the defaults,
   nothing tuned per dataset) for every seed x thread count: test accuracy mean ± sd and training
   seconds per dataset; ``--set`` passes other flags (``--set lr=0.01``) for recipe comparisons.
2. ``step``: milliseconds per training iteration of ``action train`` on 100 sequences x 100 steps x 6
   channels, mini-batch 16 (engine included), against a plain ``torch.nn.GRU(6, 128)`` + linear
   layer training loop on the same batches in the same process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASETS = ("JapaneseVowels", "BasicMotions", "PickupGestureWiimoteZ")


def aeon_file(name: str, split: str) -> Path:
    """``<aeon>/datasets/data/<name>/<name>_<split>.ts`` (found without importing aeon)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the aeon wheel is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name / f"{name}_{split}.ts"


def resampled_copy(source: Path, out: Path, length: int) -> Path:
    """``source`` with every recording linearly resampled to ``length`` steps, as ``.npz`` ``X (N, T, C)`` + ``y``."""
    from action.sequences.readers import read_sequences

    seqs = read_sequences(source)
    grid = np.linspace(0, 1, length)
    x = np.stack([np.stack([np.interp(grid, np.linspace(0, 1, len(s)), s[:, c]) for c in range(s.shape[1])], axis=1) for s in seqs.x])
    np.savez(out, X=x.astype(np.float32), y=np.array([seqs.classes[i] for i in seqs.y]))
    return out


def train_and_test(train: Path, test: Path, seed: int, threads: int, flags: list[str], work: Path) -> dict:
    """One ``action train --test-data`` run in a fresh process; returns accuracy and seconds."""
    out = work / f"{train.stem}_s{seed}_t{threads}"
    command = [
        sys.executable,
        "-m",
        "action",
        "train",
        "--data",
        str(train),
        "--model",
        "gru",
        "--out",
        str(out),
        "--test-data",
        str(test),
        "--quiet",
        "--seed",
        str(seed),
        *flags,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "test" / "summary.json").read_text(encoding="utf-8"))
    return {"accuracy": summary["accuracy"], "seconds": round(seconds, 1)}


def accuracy_figures(datasets: list[str], seeds: list[int], threads: list[int], flags: list[str]) -> None:
    """Print one record per dataset (and per resampled copy): test accuracy mean ± sd over seeds x threads."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pairs = [(name, aeon_file(name, "TRAIN"), aeon_file(name, "TEST")) for name in datasets]
        if "PickupGestureWiimoteZ" in datasets:
            from action.sequences.readers import read_sequences

            longest = int(max(read_sequences(p).lengths.max() for p in pairs[datasets.index("PickupGestureWiimoteZ")][1:]))
            pairs.append(
                (
                    "PickupGestureWiimoteZ resampled to equal length",
                    resampled_copy(pairs[-1][1], work / "pg_eq_train.npz", longest),
                    resampled_copy(pairs[-1][2], work / "pg_eq_test.npz", longest),
                )
            )
        for name, train, test in pairs:
            runs = [dict(train_and_test(train, test, s, t, flags, work), seed=s, threads=t) for s in seeds for t in threads]
            accuracies = [r["accuracy"] for r in runs]
            print(
                json.dumps(
                    {
                        "figure": f"{name}: test accuracy, action train --model gru (defaults)",
                        "unit": "accuracy",
                        "mean": round(statistics.mean(accuracies), 4),
                        "sd": round(statistics.stdev(accuracies), 4) if len(runs) > 1 else 0.0,
                        "min": round(min(accuracies), 4),
                        "train_seconds_mean": round(statistics.mean(r["seconds"] for r in runs), 1),
                        "flags": flags,
                        "runs": runs,
                    }
                ),
                flush=True,
            )


def step_figure(iterations: int = 30) -> None:
    """ms per training iteration of ``action train`` (engine) vs a plain GRU loop, 16 x 100 steps x 6 channels."""
    import torch

    from action.train import DataSource, train_model
    from benchmarks.common import emit

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 100, 6)).astype(np.float32), rng.integers(0, 4, 100)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "seq.npz"
        np.savez(data, X=x, y=y)
        epochs = max(1, iterations // 7)  # 100 sequences / 16 = 7 iterations per epoch
        trainer = train_model(
            DataSource(data, val_fraction=0.0),
            Path(tmp) / "m",
            "gru",
            {"max_epochs": epochs, "verbose": False, "plots": "none", "checkpoint_path": None},
        )
        start = time.perf_counter()
        trainer.run()
        engine_ms = 1000 * (time.perf_counter() - start) / trainer.state.iteration
    torch.manual_seed(0)
    gru, head = torch.nn.GRU(6, 128, batch_first=True), torch.nn.Linear(128, 4)
    optimizer = torch.optim.Adam([*gru.parameters(), *head.parameters()], 3e-3)
    batches = [(torch.from_numpy(x[i : i + 16]), torch.from_numpy(y[i : i + 16])) for i in range(0, 100, 16)]
    start, steps = time.perf_counter(), 0
    while steps < epochs * len(batches):
        for xb, yb in batches:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(head(gru(xb)[0][:, -1]), yb).backward()
            optimizer.step()
            steps += 1
    plain_ms = 1000 * (time.perf_counter() - start) / steps
    emit(
        "action train gru: one iteration of 16 sequences x 100 steps x 6 channels",
        "ms",
        engine_ms,
        "plain torch.nn.GRU(6, 128) + linear loop",
        plain_ms,
        target_ms=20,
    )


def main() -> None:
    """Run the chosen figures and print their JSON records."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("accuracy", "step", "all"), default="all")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--set", action="append", default=[], help="extra action train flag FLAG=VALUE (e.g. lr=0.01), repeatable")
    args = parser.parse_args()
    flags = [part for item in args.set for part in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1])]
    if args.part in ("step", "all"):
        step_figure()
    if args.part in ("accuracy", "all"):
        accuracy_figures(args.datasets, args.seeds, args.threads, flags)


if __name__ == "__main__":
    main()
