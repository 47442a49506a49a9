"""Does a second channel carry what the first cannot? The two-contrast phantom, trained both ways (JSON).

    python benchmarks/medseg_multichannel.py [--seeds 0 1 2] [--threads 1] [--iterations 1000] [--work DIR]

For each seed: :func:`medseg.datasets.multicontrast.make_multicontrast_dataset` (12 training cases, 4 held out; the oedema
shows on FLAIR only), then the same recipe twice, each a bundle written by ``medseg plan`` from its own dataset.json:

- ``t1+flair``: both channels (nnU-Net v2 layout, ``case_0000`` + ``case_0001``);
- ``t1``: channel 0 only (a dataset.json listing the ``_0000`` files).

Each run trains, then evaluates on the held-out cases (``evaluate.json``). One record per run (held-out Dice per
label, training seconds, the validation curve's largest drop), then one per recipe: mean ± sd over the seeds.
Each run is a fresh process with its thread count set before PyTorch starts.
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

RECIPES = ("t1+flair", "t1")


def dataset_for(recipe: str, seed: int, work: Path) -> Path:
    """The dataset.json of ``recipe`` for ``seed`` (generated once per seed)."""
    from medseg.datasets.multicontrast import make_multicontrast_dataset, single_channel_description

    folder = work / "data" / f"s{seed}"
    if not (folder / "dataset.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        make_multicontrast_dataset(tmp, seed=seed)
        tmp.rename(folder)
    if recipe == "t1":
        return (
            single_channel_description(folder, folder / "t1_only.json")
            if not (folder / "t1_only.json").is_file()
            else folder / "t1_only.json"
        )
    return folder / "dataset.json"


def run_one(recipe: str, seed: int, threads: int, iterations: int, work: Path) -> dict[str, Any]:
    """Plan, train and evaluate once in this process."""
    import torch

    torch.set_num_threads(threads)
    from medseg.planning.bundle_writer import write_bundle
    from medseg.planning.fingerprint import fingerprint
    from medseg.planning.planner import make_plan
    from medseg.workflow import run_workflow
    from shared.metrics import largest_drop_after

    data = dataset_for(recipe, seed, work)
    bundle = work / "runs" / f"{recipe.replace('+', '_')}_s{seed}_t{threads}"
    shutil.rmtree(bundle, ignore_errors=True)
    print_ = fingerprint(data)
    write_bundle(make_plan(print_, iterations), bundle, print_, data)
    start = time.perf_counter()
    run_workflow(bundle, ["train.json"], {"dataset_dir": str(data), "seed": seed})
    seconds = time.perf_counter() - start
    run_workflow(bundle, ["train.json", "evaluate.json"], {"dataset_dir": str(data)})
    summary = json.loads((bundle / "eval" / "summary.json").read_text(encoding="utf-8"))
    rows = json.loads((bundle / "models" / "history.json").read_text(encoding="utf-8"))["rows"]
    curve = [(r["iteration"], r["val_dice"]) for r in rows if r.get("val_dice") is not None]
    return {
        "figure": "multi-contrast phantom held-out Dice",
        "recipe": recipe,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "channels": len(print_["channels"]),
        "dice": {name: entry["dice_mean"] for name, entry in summary["per_label"].items()},
        "mean_dice": summary["mean_dice"],
        "val_curve": curve,
        "largest_drop_after_0.5": largest_drop_after([d for _, d in curve]),
        "train_seconds": round(seconds, 1),
        "unit": "Dice (0-1), seconds",
    }


def summarise(recipe: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    labels = sorted(records[0]["dice"])
    return {
        "figure": "multi-contrast phantom held-out Dice, over seeds",
        "recipe": recipe,
        "runs": len(records),
        "threads": sorted({r["threads"] for r in records}),
        "dice": {name: stats([r["dice"][name] for r in records]) for name in labels},
        "train_seconds": stats([r["train_seconds"] for r in records]),
        "worst_drop_after_0.5": max(r["largest_drop_after_0.5"] for r in records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations (the plan's default: 1000)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medact_multichannel"))
    parser.add_argument("--child", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), args.threads, args.iterations, args.work)))
        return 0
    by_recipe: dict[str, list[dict[str, Any]]] = {r: [] for r in args.recipes}
    for seed in args.seeds:
        for recipe in args.recipes:
            command = [sys.executable, __file__, "--child", recipe, str(seed), "--threads", str(args.threads)]
            command += ["--iterations", str(args.iterations), "--work", str(args.work)]
            out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            record = json.loads(out.strip().splitlines()[-1])
            by_recipe[recipe].append(record)
            print(json.dumps(record), flush=True)
    for recipe, records in by_recipe.items():
        print(json.dumps(summarise(recipe, records)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
