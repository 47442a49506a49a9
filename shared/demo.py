"""Engine demo: train a tiny GRU on synthetic sequences through the shared engine.

``python -m shared.demo --out demo_output`` generates a 4-class sequence task where two
classes differ only in temporal order (a rising vs a falling ramp), trains through
:func:`shared.engine.build_trainer` with MATLAB-style options, evaluates a held-out
set through :func:`shared.engine.build_evaluator`, prints the metrics and writes
``history.csv``, ``history.json``, ``training_progress.png``, ``model.pt`` and
``metrics.json`` to ``--out``. It needs no data files and runs in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ignite.metrics import ConfusionMatrix
from monai.data import Dataset

from shared.engine import build_evaluator, build_trainer, seed_everything
from shared.ignite_metrics import classification_output, confusion_metric
from shared.io import atomic_write_json
from shared.metrics import classification_report
from shared.options import TrainingOptions
from shared.transforms import MinMaxd

CLASSES = ("rise", "fall", "bump", "dip")


def make_sequences(n: int, length: int = 20, channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy sequences ``(n, channels, length)`` float32 and labels ``(n,)`` int64 of :data:`CLASSES`."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, length)
    shapes = {0: t, 1: 1.0 - t, 2: np.exp(-((t - 0.5) ** 2) / 0.02), 3: 1.0 - np.exp(-((t - 0.5) ** 2) / 0.02)}
    labels = rng.integers(0, len(CLASSES), size=n)
    x = rng.normal(0.0, 0.25, size=(n, channels, length))
    for i, label in enumerate(labels):
        x[i, 0] += rng.uniform(0.5, 2.0) * shapes[int(label)] + rng.uniform(-1.0, 1.0)
    return x.astype(np.float32), labels.astype(np.int64)


class SequenceClassifier(torch.nn.Module):
    """``(B, C, T)`` -> GRU(hidden) over T -> linear on the last hidden state -> ``(B, classes)`` logits."""

    def __init__(self, channels: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(channels, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x.transpose(1, 2))
        return self.head(last[-1])


def _dataset(x: np.ndarray, y: np.ndarray) -> Dataset:
    items = [{"image": x[i], "label": int(y[i])} for i in range(len(y))]
    return Dataset(items, transform=MinMaxd(keys="image", channel_wise=True))


def _metrics(classes: int) -> dict:
    return {name: confusion_metric(name, classes) for name in ("accuracy", "precision", "recall", "f1")}


def run_demo(out: Path, epochs: int = 8, verbose: bool = True) -> dict:
    """Train, validate and test; return the test report (also written to ``out/metrics.json``)."""
    seed_everything(0)
    x_train, y_train = make_sequences(768, seed=1)
    x_val, y_val = make_sequences(128, seed=2)
    x_test, y_test = make_sequences(256, seed=3)
    network = SequenceClassifier(channels=x_train.shape[1], classes=len(CLASSES))
    options = TrainingOptions(
        "adam",
        max_epochs=epochs,
        mini_batch_size=32,
        shuffle="every-epoch",
        validation_frequency=12,
        verbose_frequency=12,
        plots="training-progress",
        checkpoint_path=None,
        verbose=verbose,
    )
    trainer = build_trainer(
        network,
        torch.nn.CrossEntropyLoss(),
        options,
        _dataset(x_train, y_train),
        _dataset(x_val, y_val),
        metrics=_metrics(len(CLASSES)),
        key_metric="accuracy",
        output_dir=out,
    )
    trainer.run()
    tester = build_evaluator(
        network,
        _dataset(x_test, y_test),
        options,
        metrics={
            "accuracy": confusion_metric("accuracy", len(CLASSES)),
            "confusion": ConfusionMatrix(len(CLASSES), output_transform=classification_output()),
        },
        key_metric="accuracy",
    )
    tester.run()
    report = classification_report(tester.state.metrics["confusion"], CLASSES)
    atomic_write_json(out / "metrics.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the engine demo (``make demo-engine``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m shared.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output directory (created; default: demo_output)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--quiet", action="store_true", help="do not print the training table")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run_demo(args.out, args.epochs, verbose=not args.quiet)
    print(f"\nHeld-out test set ({sum(r['support'] for r in report['per_class'])} sequences, {len(CLASSES)} classes):")
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        print(f"  {key:<16} {report[key]:.4f}")
    print(
        f"Outputs in {args.out}/ (history.csv, history.json, training_progress.png, model.pt, metrics.json); {time.perf_counter() - start:.1f} s"
    )
    print(json.dumps({k: round(report[k], 4) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
