"""Cost per iteration of the shared engine's handlers vs a bare Ignite trainer (same model, data, run).

    python benchmarks/engine_overhead.py [--iterations 400]

Prints one JSON line per configuration: ms/iteration of ``shared.engine.build_trainer``
(validation, history, table off, checkpoints) against Ignite's ``create_supervised_trainer``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from ignite.engine import create_supervised_trainer
from monai.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, emit
from shared.engine import build_trainer
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions


def _data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32)).astype(np.float32)
    y = rng.integers(0, 4, n)
    return Dataset([{"image": x[i], "label": int(y[i])} for i in range(n)])


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=400)
    args = parser.parse_args()
    batch = 16
    train, val = _data(args.iterations * batch, 1), _data(64, 2)

    def bare() -> None:
        net = _network()
        trainer = create_supervised_trainer(
            net,
            torch.optim.Adam(net.parameters(), 1e-3),
            torch.nn.CrossEntropyLoss(),
            prepare_batch=lambda b, device, non_blocking: (b["image"], b["label"]),
        )
        trainer.run(DataLoader(train, batch_size=batch), max_epochs=1)

    def medact(**opts) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            options = TrainingOptions(max_epochs=1, mini_batch_size=batch, verbose=False, validation_frequency=50, **opts)
            if "checkpoint_path" in opts:
                options = options.replace(checkpoint_path=str(Path(tmp) / "ck"))
            metrics = {"accuracy": confusion_metric("accuracy", 4)}
            build_trainer(
                _network(), torch.nn.CrossEntropyLoss(), options, train, val, metrics=metrics, key_metric="accuracy", output_dir=tmp
            ).run()

    baseline = best_of(bare, repeats=3) / args.iterations * 1e3
    configs = {
        "engine (validation every 50, history, no table)": {},
        "engine + training-progress figure": {"plots": "training-progress"},
        "engine + checkpoint every 50 iterations": {
            "checkpoint_path": "x",
            "checkpoint_frequency": 50,
            "checkpoint_frequency_unit": "iteration",
        },
    }
    for name, opts in configs.items():
        value = best_of(lambda opts=opts: medact(**opts), repeats=3) / args.iterations * 1e3
        emit(
            f"ms per training iteration: {name}",
            "ms/iteration",
            value,
            "ignite create_supervised_trainer",
            baseline,
            iterations=args.iterations,
            batch=batch,
        )


if __name__ == "__main__":
    main()
