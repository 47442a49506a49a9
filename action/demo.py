"""``make demo`` (action half): synthetic videos -> 3D-CNN+GRU -> evaluation -> prediction.

1. renders the synthetic UCF101-style dataset (``action.video.synthetic``) into ``demo_data/action``
   unless it is already there;
2. trains ``c3d_gru`` on split 1's training list (10 epochs) into ``demo_output/action/c3d_gru``;
3. evaluates it on split 1's held-out groups (confusion chart, per-class CSV, summary);
4. trains the order-blind ``frame_average`` baseline the same way and reports both models'
   accuracy on the time-reversed class pairs: the GRU separates them, frame averaging cannot;
5. predicts one held-out video, with a per-window timeline.

A second run reuses the data and resumes the finished runs (nothing retrained).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from action.evaluate import evaluate_model
from action.predict import Predictor
from action.train import train_model
from action.video.synthetic import REVERSED_PAIRS, make_dataset
from shared.io import atomic_write_json


def pair_accuracy(report: dict[str, Any], pairs=REVERSED_PAIRS) -> dict[str, float]:
    """Accuracy on the videos of each time-reversed pair ``"A/B"`` (chance is 0.5 between the two)."""
    cm, classes = np.asarray(report["confusion"]), report["classes"]
    out = {}
    for a, b in pairs:
        i, j = classes.index(a), classes.index(b)
        out[f"{a}/{b}"] = float((cm[i, i] + cm[j, j]) / max(1, cm[i].sum() + cm[j].sum()))
    return out


def _train_and_evaluate(data: Path, out: Path, model: str, epochs: int, verbose: bool) -> dict[str, Any]:
    resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("*.pt"))
    trainer = train_model(data, out, model, options={"max_epochs": epochs, "mini_batch_size": 8, "verbose": verbose}, resume=resume)
    trainer.run()
    report = evaluate_model(out, data, out / "test", subset="test")
    report["reversed_pairs"] = pair_accuracy(report)
    return report


def run_demo(data: Path, out: Path, epochs: int = 10, baseline_epochs: int = 6, verbose: bool = True) -> dict[str, Any]:
    """Run the five steps; returns (and writes to ``out/demo_summary.json``) the headline numbers."""
    start = time.perf_counter()
    if not (data / "ucfTrainTestlist" / "testlist01.txt").is_file():
        print(f"Rendering the synthetic action videos into {data} ...", flush=True)
        make_dataset(data)
    summary: dict[str, Any] = {"data": str(data)}
    for model, n in (("c3d_gru", epochs), ("frame_average", baseline_epochs)):
        print(f"\nTraining {model} ({n} epochs) ...", flush=True)
        report = _train_and_evaluate(data, out / model, model, n, verbose)
        summary[model] = {
            k: report[k] for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "top5_accuracy", "videos", "reversed_pairs")
        }
    video = sorted((data / "SitDown").glob("*_g01_c01.*"))[0]
    predictor = Predictor.load(out / "c3d_gru")
    summary["prediction"] = {**predictor.predict(video, top_k=3), "timeline": predictor.timeline(video, window=1.0, stride=0.5)}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(out / "demo_summary.json", summary)
    return summary


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """Print both models' held-out results, including recall on the time-reversed class pairs."""
    print(f"\nHeld-out test set: {summary['c3d_gru']['videos']} videos of 8 classes (split 1, groups never seen in training)")
    print(f"{'model':<15}{'accuracy':>10}{'macro P':>10}{'macro R':>10}{'macro F1':>10}   reversed pairs (chance 0.5)")
    for model in ("c3d_gru", "frame_average"):
        row = summary[model]
        pairs = ", ".join(f"{k} {v:.2f}" for k, v in row["reversed_pairs"].items())
        print(
            f"{model:<15}{row['accuracy']:>10.4f}{row['precision_macro']:>10.4f}{row['recall_macro']:>10.4f}{row['f1_macro']:>10.4f}   {pairs}"
        )
    p = summary["prediction"]
    print(
        f"\npredict {p['video']}: {p['label']} ({p['confidence']:.3f}); timeline: "
        + ", ".join(f"{r['start_s']:.1f}-{r['end_s']:.1f}s {r['label']}" for r in p["timeline"])
    )
    print(
        f"Outputs in {out}/ (per model: model.pt, history.csv, training_progress.png, test/confusion_chart.png, test/summary.json); {summary['seconds']} s"
    )
    print(
        json.dumps(
            {
                m: {"accuracy": round(summary[m]["accuracy"], 4), "f1_macro": round(summary[m]["f1_macro"], 4)}
                for m in ("c3d_gru", "frame_average")
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the action demo (``make demo-action``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m action.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data/action"))
    parser.add_argument("--out", type=Path, default=Path("demo_output/action"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = run_demo(args.data, args.out, args.epochs, verbose=not args.quiet)
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
