"""5-fold cross-validation of the demo, then the fold ensemble and mirroring on its 4 held-out cases (JSON).

    python benchmarks/medseg_crossval.py [--seeds 0 1 2] [--threads 1] [--work DIR] [--epochs N] [--set KEY=VALUE ...]

For each seed, in a fresh process (thread count set before PyTorch starts): the shipped bundle, ``medseg
cross-validate`` (every fold timed), then on the held-out test cases, none of which any fold saw:

- each fold alone, and mirrored (test-time augmentation: the bundle's ``mirror_axes`` when it was trained mirrored,
  ``--set mirror_axes=[0,1,2]``, else all 3 axes; 8 passes): Dice change and time factor;
- the 5-fold ensemble (probabilities averaged): raw, with the post-processing cross-validation decided, and mirrored.

One record per seed, then mean ± sd over seeds of the ensemble, the best fold and the TTA change.
"""

from __future__ import annotations

import argparse
import json
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


def _scored(segmenter: Any, items: list[dict], out: Path) -> tuple[dict[str, float], float, float]:
    """``(Dice per label, mean Dice, seconds per case)`` of ``segmenter`` on ``items``."""
    from medseg.evaluation.report import evaluate_cases

    start = time.perf_counter()
    summary = evaluate_cases(segmenter, items, out)
    seconds = (time.perf_counter() - start) / max(1, len(items))
    return {k: round(v["dice_mean"], 4) for k, v in summary["per_label"].items()}, round(summary["mean_dice"], 4), round(seconds, 2)


def _prepared(work: Path, seed: int, threads: int, values: dict[str, Any]) -> tuple[Path, Path]:
    """The demo data (made once) and this seed's bundle with ``values`` written into its train.json."""
    from medact_bundles import config_file, init_bundle
    from medseg.datasets.synthetic import make_dataset
    from medseg.planning.bundle_writer import set_config_values

    data = work / "data"
    if not (data / "dataset.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        make_dataset(data)
    bundle = work / f"bundle_s{seed}_t{threads}"
    if not (bundle / "configs").is_dir():
        init_bundle("vnet_seg", bundle)
        set_config_values(config_file(bundle, "train.json"), values)  # each fold's model.json carries them to inference
    return data, bundle


def _train_folds(bundle: Path, data: Path, overrides: dict[str, Any]) -> dict[int, float | None]:
    """Train the 5 folds one by one (cross_validate then finds them trained): seconds each, ``None`` if already done."""
    from medseg.evaluation.crossval import train_fold

    fold_seconds = {}
    for fold in range(5):
        start = time.perf_counter()
        status = train_fold(bundle, data, fold, overrides)
        fold_seconds[fold] = round(time.perf_counter() - start, 1) if status != "done" else None
    return fold_seconds


def run_one(seed: int, threads: int, work: Path, epochs: int | None, values: dict[str, Any], inference: dict[str, Any]) -> dict[str, Any]:
    """One seed: cross-validation, then every fold, each fold mirrored, and the ensemble (raw, post-processed, mirrored)
    on the test cases. ``values``: config ids written into the bundle's train.json (``--set``; each fold's model.json carries them);
    ``inference``: inference.json ids overridden for the test-case evaluations only (``--eval-set``), so trained folds
    can be evaluated again another way without training."""
    import torch

    torch.set_num_threads(threads)
    from medseg.datasets.datalists import datalist
    from medseg.evaluation.crossval import cross_validate
    from medseg.inference.segmenter import load_segmenter

    data, bundle = _prepared(work, seed, threads, values)
    overrides: dict[str, Any] = {"seed": seed, **({"options#max_epochs": epochs} if epochs else {})}
    fold_seconds = _train_folds(bundle, data, overrides)
    crossval = cross_validate(bundle, data, overrides=overrides)
    test = datalist(data, "test")
    raw = {**inference, "segmenter#keep_largest": False}
    scores = work / "eval" / ("_".join(f"{k}={v}" for k, v in inference.items()) or "bundle")
    # mirroring: the bundle's axes when it was trained mirrored (--tta), else all three (--tta-axes 0 1 2)
    mirror = {**raw, **({"tta": True} if values.get("mirror_axes") else {"tta_axes": [0, 1, 2]})}
    folds, mirrored = {}, {}
    for fold in range(5):
        weights = bundle / "models" / f"fold_{fold}" / "model.pt"
        folds[fold] = _scored(load_segmenter(bundle, weights, raw), test, scores / f"s{seed}_fold{fold}")
        mirrored[fold] = _scored(load_segmenter(bundle, weights, mirror), test, scores / f"s{seed}_fold{fold}_tta")
    every = list(range(5))
    ensemble = _scored(load_segmenter(bundle, overrides=raw, folds=every), test, scores / f"s{seed}_ensemble")
    ensemble_pp = _scored(load_segmenter(bundle, overrides=inference, folds=every), test, scores / f"s{seed}_ensemble_pp")
    ensemble_tta = _scored(load_segmenter(bundle, overrides=mirror, folds=every), test, scores / f"s{seed}_ensemble_tta")
    best = max(folds, key=lambda k: folds[k][1])
    fold_case = statistics.mean(v[2] for v in folds.values())
    return {
        "figure": "demo 5-fold cross-validation, ensemble on the 4 held-out cases",
        "unit": "Dice (0-1), seconds",
        "seed": seed,
        "threads": torch.get_num_threads(),
        "config_values": values,
        "inference_values": inference,
        "fold_train_seconds": fold_seconds,
        "crossval_pooled_mean_dice": round(crossval["pooled_mean_dice"], 4),
        "postprocessing_keep_largest": crossval["postprocessing"].get("keep_largest"),
        "test_fold_mean_dice": {k: v[1] for k, v in folds.items()},
        "test_fold_dice": {k: v[0] for k, v in folds.items()},
        "test_fold_tta_mean_dice": {k: v[1] for k, v in mirrored.items()},
        "best_fold": best,
        "ensemble_mean_dice": ensemble[1],
        "ensemble_dice": ensemble[0],
        "ensemble_postprocessed_mean_dice": ensemble_pp[1],
        "ensemble_tta_mean_dice": ensemble_tta[1],
        "ensemble_tta_dice": ensemble_tta[0],
        "seconds_per_case": {
            "fold": round(fold_case, 2),
            "fold_tta": round(statistics.mean(v[2] for v in mirrored.values()), 2),
            "ensemble": ensemble[2],
            "ensemble_tta": ensemble_tta[2],
        },
        "tta_fold_change": round(statistics.mean(mirrored[k][1] - folds[k][1] for k in folds), 4),
        "tta_time_factor": round(statistics.mean(v[2] for v in mirrored.values()) / fold_case, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="override options#max_epochs (default: the bundle's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medact_crossval"))
    parser.add_argument("--set", action="append", default=[], help="config id KEY=VALUE (JSON value) written into train.json, repeatable")
    parser.add_argument(
        "--eval-set", action="append", default=[], help="inference.json id KEY=VALUE for the test-case evaluations only, repeatable"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_one(args.child, args.threads, args.work, args.epochs, parse_sets(args.set), parse_sets(args.eval_set))))
        return 0
    records = []
    for seed in args.seeds:
        command = [sys.executable, __file__, "--child", str(seed), "--threads", str(args.threads), "--work", str(args.work)]
        command += ["--epochs", str(args.epochs)] if args.epochs else []
        command += [f"--set={pair}" for pair in args.set] + [f"--eval-set={pair}" for pair in args.eval_set]
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        records.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)

    def stats(values: list[float]) -> dict[str, float] | None:
        if not values:  # e.g. no fold trained in this run (--eval-set on trained folds): no training time
            return None
        return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    summary = {
        "figure": "demo 5-fold ensemble vs best fold, over seeds",
        "runs": len(records),
        "ensemble_mean_dice": stats([r["ensemble_mean_dice"] for r in records]),
        "best_fold_mean_dice": stats([r["test_fold_mean_dice"][str(r["best_fold"])] for r in records]),
        "ensemble_tta_mean_dice": stats([r["ensemble_tta_mean_dice"] for r in records]),
        "tta_fold_change": stats([r["tta_fold_change"] for r in records]),
        "tta_time_factor": stats([r["tta_time_factor"] for r in records]),
        "fold_train_seconds": stats([s for r in records for s in r["fold_train_seconds"].values() if s is not None]),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
