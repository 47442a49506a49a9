"""Does the V-Net recipe hold up? Train and test it over seeds x thread counts, print mean ± sd (JSON).

    python benchmarks/medseg_recipe.py [--tasks demo mni] [--seeds 0 1 2] [--threads 1 2]
                                       [--epochs N] [--set KEY=VALUE ...] [--work DIR]
                                       [--eval-precisions fp32 bf16] [--eval-resample labels probabilities] [--eval-tta]

Precision (issue 24): ``--set precision='"bf16"'`` trains and infers under bf16 autocast;
``--eval-precisions fp32 bf16`` evaluates the same trained weights again at each inference precision
and records Dice and seconds per case, beside ``seconds_per_iteration`` of training.

Tasks (each run is a fresh process, so its thread count is set before PyTorch starts):

- ``demo``: the synthetic CT abdomen of ``make demo`` (12 training cases, 4 held out), the bundle
  ``bundles/vnet_seg`` as shipped, then ``evaluate.json`` on the held-out cases.
- ``mni``: the real MNI152 T1 from the ``nilearn`` wheel (``medseg.datasets.mni152``): trained on the left
  hemisphere, tested on the right one it never saw, through ``medseg plan`` (a bundle planned from
  the data, no hand-edited JSON) + ``medseg train`` + ``medseg infer``; also the three-class Otsu
  baseline inside the reference brain mask.

A seeded run repeats exactly on one machine; another thread count (or CPU) sums floats in another
order, so the spread over seeds x threads is what a user can expect. Printed records:

- one per run: held-out Dice per structure, the validation curve, its largest drop after first
  passing 0.5 (a healthy run does not collapse), training seconds;
- one per task: mean ± sd per structure over the runs, the worst drop, and (``step`` figure) the
  training step time of the bundle's recipe against the previous recipe (batch norm, Dice loss),
  measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medseg.cli.common import parse_overrides as parse_sets  # noqa: E402
from shared.metrics import largest_drop_after  # noqa: E402

BUNDLE = ROOT / "bundles" / "vnet_seg"


def validation_curve(history_json: Path) -> list[tuple[int, float]]:
    """``[(iteration, validation Dice), ...]`` from the engine's ``history.json``."""
    rows = json.loads(history_json.read_text(encoding="utf-8"))["rows"]
    return [(row["iteration"], row["val_dice"]) for row in rows if row.get("val_dice") is not None]


#: the tasks: the demo (synthetic CT), the MNI152 hemispheres' grey/white matter, the same divided into regions
TASKS = ("demo", "mni", "mni-structures")


def prepare_data(task: str, root: Path, resolution: int) -> Path:
    """The task's dataset under ``root`` (written once, reused by every run)."""
    folder = root / (task if task == "demo" else f"{task}{resolution}")
    if not (folder / "dataset.json").is_file():
        if task == "demo":
            from medseg.datasets.synthetic import make_dataset
        else:
            from functools import partial

            from medseg.datasets import mni152

            maker = mni152.make_hemisphere_dataset if task == "mni" else mni152.make_structures_dataset
            make_dataset = partial(maker, resolution=resolution)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        make_dataset(tmp)
        tmp.rename(folder)
    return folder


def _medseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "medseg", *args], check=True, cwd=ROOT)


def prepare_bundle(task: str, data: Path, bundle: Path, plan_args: list[str]) -> None:
    """The demo's shipped bundle, or (``mni``) the bundle ``medseg plan`` writes for the data."""
    shutil.rmtree(bundle, ignore_errors=True)
    if task == "demo":
        bundle.mkdir(parents=True)
        shutil.copytree(BUNDLE / "configs", bundle / "configs")
    else:
        _medseg("plan", str(data), "--out", str(bundle), *plan_args)


def run_one(task: str, seed: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train and test once in this process; returns (and writes) the run's record."""
    import torch

    torch.set_num_threads(threads)
    from medseg.workflow import run_workflow

    work = Path(args.work)
    data = prepare_data(task, Path(args.data_root) if args.data_root else work / "data", args.mni_resolution)
    tag = f"{task}_s{seed}_t{threads}"
    bundle = work / "runs" / tag / "bundle"
    prepare_bundle(task, data, bundle, args.plan_args)
    overrides = {"dataset_dir": str(data), "seed": seed, **parse_sets(args.set)}
    if args.epochs is not None:
        overrides["options#max_epochs"] = args.epochs
    start = time.perf_counter()
    run_workflow(bundle, ["train.json"], overrides)
    seconds = time.perf_counter() - start
    curve = validation_curve(bundle / "models" / "history.json")
    evaluation = {k: v for k, v in overrides.items() if k in ("dataset_dir",) or not k.startswith(("options#", "train#", "loss"))}
    run_workflow(bundle, ["train.json", "evaluate.json"], evaluation)
    summary = json.loads((bundle / "eval" / "summary.json").read_text(encoding="utf-8"))
    by_precision = {}
    variants = (
        [("precision", p, p) for p in args.eval_precisions]
        + [("segmenter#resample", r, f"resample_{r}") for r in args.eval_resample]
        + ([("segmenter#tta_axes", [0, 1, 2], "tta")] if args.eval_tta else [])
    )
    for key, value, name in variants:  # the trained weights, inferred again another way
        folder = bundle / f"eval_{name}"
        begin = time.perf_counter()
        run_workflow(bundle, ["train.json", "evaluate.json"], {**evaluation, key: value, "eval_dir": str(folder)})
        other = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        by_precision[name] = {
            "dice": {name: entry["dice_mean"] for name, entry in other["per_label"].items()},
            "mean_dice": other["mean_dice"],
            "seconds_per_case": round((time.perf_counter() - begin) / max(1, other["cases"]), 2),
        }
    record = {
        "figure": f"{task} held-out Dice",
        "task": task,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "dice": {name: entry["dice_mean"] for name, entry in summary["per_label"].items()},
        "mean_dice": summary["mean_dice"],
        "hd95_mm": {name: entry["hd95_mm_mean"] for name, entry in summary["per_label"].items()},
        "val_curve": curve,
        "largest_drop_after_0.5": largest_drop_after([d for _, d in curve]),
        "train_seconds": round(seconds, 1),
        "seconds_per_iteration": round(seconds / max(1, curve[-1][0] if curve else 1), 3),
        "overrides": parse_sets(args.set),
    }
    if by_precision:
        record["inference_at"] = by_precision
    if task == "mni":
        record["otsu"] = otsu_baseline(data)
    (work / "runs" / f"{tag}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def otsu_baseline(data: Path) -> dict[str, float]:
    """Three-class Otsu thresholds inside the reference brain mask of each test case: mean Dice per tissue."""
    import nibabel as nib
    import numpy as np
    from skimage.filters import threshold_multiotsu

    from medseg.datasets.datalists import datalist
    from medseg.evaluation.metrics import dice

    scores: dict[str, list[float]] = {"grey_matter": [], "white_matter": []}
    for item in datalist(data, "test"):
        image = nib.load(item["image"]).get_fdata()
        reference = np.asarray(nib.load(item["label"]).dataobj)
        brain = reference > 0
        low, high = threshold_multiotsu(image[brain], classes=3)
        otsu = np.zeros_like(reference)
        otsu[brain & (image > low) & (image <= high)] = 1  # grey matter is darker than white in T1
        otsu[brain & (image > high)] = 2
        for name, value in zip(scores, dice(otsu, reference, [1, 2]).values()):
            scores[name].append(float(value))
    return {name: statistics.mean(values) for name, values in scores.items()}


def step_seconds(norm: str, loss_name: str) -> float:
    """Median seconds of one training step of the bundle's network on 4 x 32^3 patches."""
    import torch
    from monai.losses import DiceCELoss, DiceLoss

    from benchmarks.common import best_of
    from medseg.networks import VNet

    torch.manual_seed(0)
    net = VNet(out_channels=4, width=4, norm=norm, dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0))
    loss = {"DiceLoss": DiceLoss, "DiceCELoss": DiceCELoss}[loss_name](to_onehot_y=True, softmax=True, batch=True)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = torch.rand(4, 1, 32, 32, 32), torch.randint(0, 4, (4, 1, 32, 32, 32))

    def step() -> None:
        optimizer.zero_grad()
        loss(net(x), y).backward()
        optimizer.step()

    return best_of(step, repeats=7, warmup=2)


def summarise(task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sd of each structure's held-out Dice over the runs, and the worst validation drop."""
    names = list(records[0]["dice"])

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4),
        }

    summary = {
        "figure": f"{task} held-out Dice over {len(records)} runs",
        "task": task,
        "runs": [{"seed": r["seed"], "threads": r["threads"]} for r in records],
        "dice": {name: stats([r["dice"][name] for r in records]) for name in names},
        "mean_dice": stats([r["mean_dice"] for r in records]),
        "largest_drop_after_0.5": max(r["largest_drop_after_0.5"] for r in records),
        "train_seconds": stats([r["train_seconds"] for r in records]),
        "seconds_per_iteration": stats([r["seconds_per_iteration"] for r in records]),
    }
    for precision in records[0].get("inference_at", {}):
        runs = [r["inference_at"][precision] for r in records]
        summary[f"inference_at_{precision}"] = {
            "mean_dice": stats([r["mean_dice"] for r in runs]),
            "dice": {name: stats([r["dice"][name] for r in runs]) for name in names},
            "seconds_per_case": stats([r["seconds_per_case"] for r in runs]),
        }
    if "otsu" in records[0]:
        summary["otsu"] = records[0]["otsu"]
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run every (task, seed, threads) in its own process, then print the per-task summaries."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["demo", "mni"], choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, help="override the bundle's max_epochs")
    parser.add_argument("--set", action="append", default=[], help="bundle config override KEY=VALUE (JSON value), repeatable")
    parser.add_argument(
        "--eval-precisions",
        nargs="+",
        default=[],
        choices=["fp32", "bf16", "fp16"],
        help="also evaluate the trained weights at these inference precisions (timed per case); train at bf16 with --set precision='\"bf16\"'",
    )
    parser.add_argument(
        "--eval-resample",
        nargs="+",
        default=[],
        choices=["labels", "probabilities"],
        help="also evaluate the trained weights with the mask resampled as labels (nearest) or as probabilities (linear, then argmax)",
    )
    parser.add_argument(
        "--eval-tta",
        action="store_true",
        help="also evaluate the trained weights with mirror test-time augmentation (3 axes, 8 passes; timed)",
    )
    parser.add_argument("--plan-args", nargs=argparse.REMAINDER, default=[], help="extra arguments for medseg plan (mni task; last)")
    parser.add_argument("--mni-resolution", type=int, default=1, choices=[1, 2], help="MNI152 template resolution in mm")
    parser.add_argument("--work", default=str(ROOT / "work" / "recipe"), help="data, bundles and run records")
    parser.add_argument("--data-root", help="where the datasets are written once (default: WORK/data)")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "SEED", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--step", action="store_true", help="only the training step time figure")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), int(args.one[2]), args)))
        return 0
    if args.step:
        return print_step_figure()
    for task in args.tasks:
        records = []
        for seed in args.seeds:
            for threads in args.threads:
                records.append(_run_in_child(task, seed, threads, argv if argv is not None else sys.argv[1:]))
                print(json.dumps(records[-1]), flush=True)
        print(json.dumps(summarise(task, records)), flush=True)
    return print_step_figure()


def _run_in_child(task: str, seed: int, threads: int, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}
    command = [sys.executable, __file__, *_without_plan_args(argv), "--one", task, str(seed), str(threads), *_plan_args(argv)]
    out = subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _plan_args(argv: list[str]) -> list[str]:
    return argv[argv.index("--plan-args") :] if "--plan-args" in argv else []


def _without_plan_args(argv: list[str]) -> list[str]:
    return argv[: argv.index("--plan-args")] if "--plan-args" in argv else list(argv)


def print_step_figure() -> int:
    """The bundle recipe's training step (instance norm, Dice + CE) against the previous one (batch norm, Dice)."""
    import torch

    from benchmarks.common import emit

    train = json.loads((BUNDLE / "configs" / "train.json").read_text(encoding="utf-8"))
    ours = step_seconds(train["norm"], train["loss"]["_target_"])
    previous = step_seconds("batch", "DiceLoss")
    emit(
        "V-Net training step, 4 x 32^3 patches, width 4",
        "s",
        ours,
        "batch norm + Dice loss (recipe 0.2.0)",
        previous,
        recipe={"norm": train["norm"], "loss": train["loss"]["_target_"]},
        torch_threads=torch.get_num_threads(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
