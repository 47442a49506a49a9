"""Context or iterations: for the same minutes of training, which patch and width train the better model here.

    python benchmarks/medseg_budget.py [--task demo|mni|mni-structures] [--minutes 20] [--candidates 32x4 48x4 32x8]
                                       [--seeds 0] [--threads 2] [--cascade off|on|auto] [--work DIR]
                                       [--set ID=VALUE] [--also-with ID=VALUE] [--plan BUNDLE]

``medseg plan DATA --train-minutes M`` chooses the most context (patch voxels), then width, among the candidates that
fit enough iterations in M minutes (1000 steps of 4 patches, on a CPU 2000 of 2: ``medseg/planning/candidates.py``);
that a larger patch at fewer iterations beats a smaller one at more is the rule's assumption. This measures it: the
plan for M minutes, then for each candidate (``EDGExWIDTH``, or ``plan``: as planned) and seed the same bundle trained
with that patch and width for the same M minutes (the run fits its iterations and learning-rate decay to the budget
itself, ``TrainingOptions.max_minutes``), inferred on the test images and scored by ``medseg evaluate``. One JSON line
per run, then one per candidate (mean ± sd over seeds), the plan's own choice marked. Each run is its own process with
``--threads`` threads; the machine should be idle.
``--cascade on`` plans two stages (``medseg plan --cascade``): both are trained within the same minutes, and an
``EDGExWIDTH`` candidate's patch and width apply to both (``plan`` keeps each stage's own). ``--also-with ID=VALUE``
trains each candidate and seed a second time, under the same plan, with that override too: a paired comparison;
``--plan WORK/plan`` trains an earlier run's plan instead of probing anew (the probe's choice varies between runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.medseg_recipe import TASKS, prepare_data  # noqa: E402
from benchmarks.peers_nnunet import _run, _scores, _test_images  # noqa: E402

MEDSEG = [sys.executable, "-m", "medseg"]
#: the candidate that trains the planned bundle as it is
PLANNED = "plan"


def train_candidate(
    plan_bundle: Path, data: Path, work: Path, candidate: str, seed: int, env: dict[str, str], extra: list[str] = ()
) -> dict[str, Any]:
    """Copy of the planned bundle trained for the plan's minutes with ``candidate``: ``EDGExWIDTH`` (an ``EDGE``^3
    patch at ``WIDTH``, in both stages of a two-stage plan) or ``plan`` (as planned, each stage its own patch and
    width); ``extra``: more ``--set ID=VALUE`` overrides, a recipe being measured. The record."""
    tag = f"{candidate}_s{seed}" + (f"_{hashlib.sha1(' '.join(extra).encode()).hexdigest()[:8]}" if extra else "")
    bundle = work / tag / "bundle"
    shutil.rmtree(work / tag, ignore_errors=True)
    shutil.copytree(plan_bundle, bundle, ignore=shutil.ignore_patterns("models"))
    sets = [f"seed={seed}", *extra]
    if candidate != PLANNED:
        edge, width = (int(x) for x in candidate.split("x"))
        roi = json.dumps([edge] * 3)
        sets = [f"roi_size={roi}", f"sw_roi_size={roi}", f"width={width}", *sets]
    train = [*MEDSEG, "train", "--bundle", str(bundle), "--data", str(data)]
    train_s = _run([*train, *(x for s in sets for x in ("--set", s))], env, work / tag / "train.log")
    images = [str(p) for p in _test_images(data)]
    masks = work / tag / "masks"
    _run(
        [*MEDSEG, "infer", "--bundle", str(bundle), "--input", *images, "--output", str(masks), "--format", "nifti"],
        env,
        work / tag / "infer.log",
    )
    return {
        "candidate": candidate + "".join(f" + {x}" for x in extra),
        "seed": seed,
        "iterations": iterations_trained(bundle),
        **({"coarse_iterations": iterations_trained(bundle / "coarse")} if (bundle / "coarse").is_dir() else {}),
        "train_command_seconds": round(train_s, 1),
        **_scores(masks, data, work / tag / "report", env),
    }


def iterations_trained(bundle: Path) -> int:
    """The iterations a trained bundle's run reached (its ``models/history.csv``)."""
    history = (bundle / "models" / "history.csv").read_text(encoding="utf-8").strip().splitlines()
    return int(history[-1].split(",")[1]) if len(history) > 1 else 0


def summarise(records: list[dict[str, Any]], chosen: str) -> list[dict[str, Any]]:
    """Per candidate: mean ± sd of the mean Dice and of each structure's, over the seeds."""
    rows = []
    for candidate in dict.fromkeys(r["candidate"] for r in records):
        runs = [r for r in records if r["candidate"] == candidate]

        def spread(values: list[float]) -> list[float]:
            return [round(statistics.mean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0]

        rows.append(
            {
                "candidate": candidate,
                "chosen_by_plan": candidate in (chosen, PLANNED),
                "seeds": len(runs),
                "iterations": spread([r["iterations"] for r in runs]),
                "mean_dice": spread([r["mean_dice"] for r in runs]),
                "dice": {k: spread([r["dice"][k] for r in runs]) for k in runs[0]["dice"]},
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="demo", choices=TASKS)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--candidates", nargs="+", default=["32x4", "48x4", "32x8"], help=f"EDGExWIDTH, e.g. 48x4, or {PLANNED} (as planned)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mni-resolution", type=int, default=1, choices=[1, 2])
    parser.add_argument("--cascade", default="auto", choices=["off", "on", "auto"], help="medseg plan --cascade")
    parser.add_argument("--work", default=str(ROOT / "work" / "budget"))
    parser.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="more train overrides for every run (a recipe)")
    parser.add_argument("--plan", help="a planned bundle (an earlier run's WORK/plan) to train instead of planning anew")
    parser.add_argument(
        "--also-with",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="train each candidate and seed twice under the same plan, the second time with these overrides too (a paired comparison)",
    )
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), PYTHONHASHSEED="0")
    data = prepare_data(args.task, work / "data", args.mni_resolution)
    plan_bundle = work / "plan"
    shutil.rmtree(plan_bundle, ignore_errors=True)
    if args.plan:  # an earlier run's plan: the same patch, width and minutes as that run's
        shutil.copytree(args.plan, plan_bundle, ignore=shutil.ignore_patterns("models", "coarse_channels"))
    else:
        plan = [*MEDSEG, "plan", str(data), "--out", str(plan_bundle), "--train-minutes", f"{args.minutes:g}", "--cascade", args.cascade]
        _run(plan, env, work / "plan.log")
    values = json.loads((plan_bundle / "plan.json").read_text(encoding="utf-8"))["plan"]["values"]
    two_stages = (plan_bundle / "coarse").is_dir()  # then EDGExWIDTH sets both stages, which the plan sizes apart
    chosen = PLANNED if two_stages else f"{values['roi_size'][0]}x{values['width']}"
    common = {
        "figure": f"{args.task}: test Dice after {args.minutes:g} minutes of training",
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "two_stages": two_stages,
    }
    records = []
    for seed in args.seeds:
        for candidate in args.candidates:
            for extra in [args.set, *([args.set + args.also_with] if args.also_with else [])]:
                records.append(train_candidate(plan_bundle, data, work, candidate, seed, env, extra))
                print(
                    json.dumps(
                        {**common, **records[-1], "overrides": extra, "chosen_by_plan": records[-1]["candidate"] in (chosen, PLANNED)}
                    ),
                    flush=True,
                )
    for row in summarise(records, chosen):
        print(json.dumps({**common, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
