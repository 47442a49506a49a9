"""The medseg demo: synthetic CT -> validate -> train the V-Net bundle -> segment held-out scans -> report.

``python -m medseg.demo`` runs the same bundle configs a user runs with ``python -m monai.bundle``:
data in ``demo_data/medseg``, the bundle written from the installed template into
``demo_output/medseg/vnet_seg`` (``init-bundle``), the trained model in its ``models/model.pt`` (used
by ``inference.json`` and ``medseg infer``), the evaluation report and the Slicer files of the
held-out cases in its ``eval/``. Both folders are under the working directory, where the demo is
run. Run again, it resumes an interrupted training and skips a finished one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medseg.datasets.datalists import datalist, dataset_description, label_names
from medseg.datasets.validate import validate


def run_demo(data: Path, bundle: Path, epochs: int | None = None) -> dict:
    """All steps; returns the evaluation summary of the held-out cases."""
    import json

    from medact_bundles import init_bundle
    from medseg.datasets.synthetic import make_dataset
    from medseg.workflow import run_workflow

    start = time.perf_counter()
    if not (bundle / "configs").is_dir():
        init_bundle("vnet_seg", bundle)
    if dataset_description(data) is None:
        print(f"[1/4] Writing the synthetic dataset to {data} ...", flush=True)
        make_dataset(data)
    items = datalist(data)
    problems = validate(items, sorted(label_names(data)))
    print(
        f"[2/4] Validated {len(items)} training cases: {sum(p.level == 'error' for p in problems)} errors, {sum(p.level == 'warning' for p in problems)} warnings.",
        flush=True,
    )
    overrides: dict = {"dataset_dir": str(data)}
    if epochs is not None:
        overrides["options#max_epochs"] = epochs
    if any((bundle / "models" / "checkpoints").glob("checkpoint_*.pt")):
        overrides["resume"] = True  # continue an interrupted demo; a finished one is not retrained
    print(f"[3/4] Training the V-Net bundle ({bundle}/configs/train.json) ...", flush=True)
    run_workflow(bundle, ["train.json"], overrides)
    print("[4/4] Segmenting the held-out cases and evaluating ...", flush=True)
    run_workflow(bundle, ["train.json", "evaluate.json"], {"dataset_dir": str(data)})
    summary = json.loads((bundle / "eval" / "summary.json").read_text(encoding="utf-8"))
    summary["seconds"] = time.perf_counter() - start
    return summary


def print_summary(summary: dict, bundle: Path) -> None:
    """Print the held-out evaluation: per-label Dice, IoU, HD95 and MATLAB's DataSetMetrics."""
    print(f"\nHeld-out evaluation ({summary['cases']} cases), mean Dice {summary['mean_dice']:.4f}:")
    for name, entry in summary["per_label"].items():
        print(
            f"  {name:<8} Dice {entry['dice_mean']:.4f} ± {entry['dice_std']:.4f}   IoU {entry['iou_mean']:.4f}   "
            f"HD95 {entry['hd95_mm_mean']:.2f} mm   missed {entry['missed']}, false positive {entry['false_positive']}, empty {entry['empty']}"
        )
    print("  MATLAB DataSetMetrics: " + ", ".join(f"{k} {v:.4f}" for k, v in summary["matlab"]["DataSetMetrics"].items()))
    print(f"Model: {bundle}/models/model.pt; report, masks and Slicer files: {bundle}/eval/ ({summary['seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    """Run the segmentation demo (``make demo-medseg``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m medseg.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data/medseg"), help="dataset folder (generated when missing)")
    parser.add_argument(
        "--bundle", type=Path, default=Path("demo_output/medseg/vnet_seg"), help="bundle folder (written from the template when missing)"
    )
    parser.add_argument("--epochs", type=int, help="override the bundle's max_epochs")
    args = parser.parse_args(argv)
    print_summary(run_demo(args.data, args.bundle, args.epochs), args.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
