"""5-fold cross-validation of the demo, then the fold ensemble and mirroring on its 4 held-out cases (JSON).

    python benchmarks/medseg_crossval.py [--seeds 0 1 2] [--threads 1] [--work DIR] [--epochs N]

For each seed, in a fresh process (thread count set before PyTorch starts): the shipped bundle, ``medseg
cross-validate`` (every fold timed), then on the held-out test cases, none of which any fold saw:

- each fold alone;
- the 5-fold ensemble (probabilities averaged), raw and with the post-processing cross-validation decided;
- fold 0 with mirror test-time augmentation over the 3 axes (8 passes): Dice change and time factor.

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


def _scored(segmenter: Any, items: list[dict], out: Path) -> tuple[dict[str, float], float, float]:
    """``(Dice per label, mean Dice, seconds per case)`` of ``segmenter`` on ``items``."""
    from medseg.bundle import evaluate_cases

    start = time.perf_counter()
    summary = evaluate_cases(segmenter, items, out)
    seconds = (time.perf_counter() - start) / max(1, len(items))
    return {k: round(v["dice_mean"], 4) for k, v in summary["per_label"].items()}, round(summary["mean_dice"], 4), round(seconds, 2)


def run_one(seed: int, threads: int, work: Path, epochs: int | None) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from medact_bundles import init_bundle
    from medseg.crossval import cross_validate, train_fold
    from medseg.data import datalist
    from medseg.infer import load_segmenter
    from medseg.synthetic import make_dataset

    data = work / "data"
    if not (data / "dataset.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        make_dataset(data)
    bundle = work / f"bundle_s{seed}_t{threads}"
    if not (bundle / "configs").is_dir():
        init_bundle("vnet_seg", bundle)
    overrides: dict[str, Any] = {"seed": seed, **({"options#max_epochs": epochs} if epochs else {})}
    fold_seconds = {}
    for fold in range(5):  # timed one by one; cross_validate then finds them trained
        start = time.perf_counter()
        status = train_fold(bundle, data, fold, overrides)
        fold_seconds[fold] = round(time.perf_counter() - start, 1) if status != "done" else None
    crossval = cross_validate(bundle, data, overrides=overrides)
    test = datalist(data, "test")
    folds = {}
    for fold in range(5):
        segmenter = load_segmenter(bundle, bundle / "models" / f"fold_{fold}" / "model.pt", {"segmenter#keep_largest": False})
        folds[fold] = _scored(segmenter, test, work / "eval" / f"s{seed}_fold{fold}")
    raw = load_segmenter(bundle, overrides={"segmenter#keep_largest": False}, folds=list(range(5)))
    ensemble = _scored(raw, test, work / "eval" / f"s{seed}_ensemble")
    decided = load_segmenter(bundle, folds=list(range(5)))
    ensemble_pp = _scored(decided, test, work / "eval" / f"s{seed}_ensemble_pp")
    mirrored = load_segmenter(
        bundle, bundle / "models" / "fold_0" / "model.pt", {"segmenter#keep_largest": False, "segmenter#mirror_axes": [0, 1, 2]}
    )
    tta = _scored(mirrored, test, work / "eval" / f"s{seed}_fold0_tta")
    best = max(folds, key=lambda k: folds[k][1])
    return {
        "figure": "demo 5-fold cross-validation, ensemble on the 4 held-out cases",
        "unit": "Dice (0-1), seconds",
        "seed": seed,
        "threads": torch.get_num_threads(),
        "fold_train_seconds": fold_seconds,
        "crossval_pooled_mean_dice": round(crossval["pooled_mean_dice"], 4),
        "postprocessing_keep_largest": crossval["postprocessing"].get("keep_largest"),
        "test_fold_mean_dice": {k: v[1] for k, v in folds.items()},
        "test_fold_dice": {k: v[0] for k, v in folds.items()},
        "best_fold": best,
        "ensemble_mean_dice": ensemble[1],
        "ensemble_dice": ensemble[0],
        "ensemble_postprocessed_mean_dice": ensemble_pp[1],
        "seconds_per_case": {"fold": folds[0][2], "ensemble": ensemble[2], "fold0_tta": tta[2]},
        "tta_fold0_mean_dice": tta[1],
        "tta_fold0_change": round(tta[1] - folds[0][1], 4),
        "tta_time_factor": round(tta[2] / folds[0][2], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="override options#max_epochs (default: the bundle's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medact_crossval"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_one(args.child, args.threads, args.work, args.epochs)))
        return 0
    records = []
    for seed in args.seeds:
        command = [sys.executable, __file__, "--child", str(seed), "--threads", str(args.threads), "--work", str(args.work)]
        command += ["--epochs", str(args.epochs)] if args.epochs else []
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        records.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    summary = {
        "figure": "demo 5-fold ensemble vs best fold, over seeds",
        "runs": len(records),
        "ensemble_mean_dice": stats([r["ensemble_mean_dice"] for r in records]),
        "best_fold_mean_dice": stats([r["test_fold_mean_dice"][str(r["best_fold"])] for r in records]),
        "tta_fold0_change": stats([r["tta_fold0_change"] for r in records]),
        "tta_time_factor": stats([r["tta_time_factor"] for r in records]),
        "fold_train_seconds": stats([s for r in records for s in r["fold_train_seconds"].values() if s is not None]),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
