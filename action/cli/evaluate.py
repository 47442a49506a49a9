"""``medact-action evaluate``: accuracy, top-5, precision/recall/F1 and the confusion chart of a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from action.cli.common import add_data, add_sequence_input


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: accuracy, top-5, precision/recall/F1 and reports of a model on a dataset's test split."""
    from action.evaluate import evaluate_model, item_unit

    report = evaluate_model(
        args.model,
        args.data,
        args.out,
        args.layout,
        args.split,
        args.subset,
        args.skip_bad,
        args.batch_size,
        mat_vars=(args.mat_x_var, args.mat_y_var),
        device=args.device,
        precision=args.precision,
    )
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k not in ("per_class", "confusion")}))
        return 0
    print(f"{report['model']} on {report['videos']} {item_unit(report)} ({report['clips']} clips, {len(report['skipped'])} skipped):")
    for key in (
        "accuracy",
        "top5_accuracy",
        "mean_class_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "clip_accuracy",
        "video_accuracy",
    ):
        print(f"  {key:<20} {report[key]:.4f}")
    if args.out:
        print(f"Reports: {args.out}/summary.json, per_class.csv, predictions.csv, confusion_chart.png")
    return 0


def add_evaluate_parser(sub: Any) -> None:
    """The ``evaluate`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("evaluate", help="accuracy, top-5, precision/recall/F1, confusion chart")
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument("--data", required=True, help="dataset (its test split) or sequences file")
    p.add_argument("--subset", choices=("train", "test", "all"), default="test", help="which part of the split (default test)")
    p.add_argument("--out", type=Path, help="write summary.json, per_class.csv, predictions.csv, confusion_chart.png here")
    p.add_argument(
        "--batch-size", type=int, default=8, help="videos or recordings per forward pass (default 8; lower it if memory runs out)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_device_arguments(p)
    add_data(p)
    add_sequence_input(p)
    p.set_defaults(func=cmd_evaluate)
