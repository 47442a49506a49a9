"""``medseg evaluate``: predictions against references, per-case metrics, MATLAB tables, figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medseg.cli.common import bundle_names


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: per-case metrics, MATLAB tables and figures of predictions against references."""
    from medseg.datasets.datalists import label_names
    from medseg.evaluation.report import evaluate_folders

    if args.dataset is None and args.bundle is None:
        raise ValueError("evaluate needs the label names: give --dataset (a dataset.json) or --bundle (its metadata's channel_def).")
    names = label_names(args.dataset) if args.dataset else bundle_names(args.bundle)
    summary = evaluate_folders(args.pred, args.label, args.out, names, args.images, args.history)
    if args.json:
        print(json.dumps({k: summary[k] for k in ("cases", "mean_dice", "counts", "per_label")}, default=float))
        return 0
    print(f"{summary['cases']} cases, mean Dice {summary['mean_dice']:.4f}")
    for name, entry in summary["per_label"].items():
        print(
            f"  {name:<12} Dice {entry['dice_mean']:.4f} ± {entry['dice_std']:.4f}  IoU {entry['iou_mean']:.4f}  HD95 {entry['hd95_mm_mean']:.2f} mm"
            f"  (missed {entry['missed']}, false positive {entry['false_positive']}, empty {entry['empty']})"
        )
    dataset = summary["matlab"]["DataSetMetrics"]
    print("  DataSetMetrics: " + ", ".join(f"{k} {v:.4f}" for k, v in dataset.items()))
    print(f"Report in {args.out}/")
    return 0


def add_evaluate_parser(sub: Any) -> None:
    """The ``evaluate`` command's arguments."""
    p = sub.add_parser("evaluate", help="compare predictions with references: per-case metrics, MATLAB tables, figures")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted label maps (<case>_seg.nii.gz or <case>.nii.gz)")
    p.add_argument("--label", type=Path, required=True, help="folder of reference label maps (<case>.*)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--images", type=Path, help="folder of the images, for the overlay figure")
    p.add_argument("--dataset", type=Path, help="dataset.json giving label names (default: the bundle's channel_def)")
    p.add_argument("--bundle", type=Path, help="bundle whose metadata names the labels (or give --dataset)")
    p.add_argument("--history", type=Path, help="training output folder whose training_progress.png to include")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_evaluate)
