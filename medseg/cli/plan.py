"""``medseg plan`` (a ready bundle from a dataset's fingerprint) and ``medseg init-bundle`` (the template)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: fingerprint a dataset and write a ready bundle (nnU-Net-style planning for a CPU)."""
    from medseg.planning.budget import parse_budget
    from medseg.planning.planner import plan_dataset

    budget = parse_budget(args.budget)
    if args.iterations and args.train_minutes is not None:
        raise ValueError("give --iterations or --train-minutes, not both (--train-minutes chooses the iterations).")
    chosen = {"iterations": args.iterations} if args.iterations else {}
    plan = plan_dataset(args.data, args.out, **chosen, budget=budget, train_minutes=args.train_minutes, cascade=args.cascade)
    if args.json:
        print(json.dumps(plan, default=str))
        return 0
    print(f"Planned a V-Net bundle for {args.data} ({plan['modality']}, labels {', '.join(plan['labels'].values())}):")
    print(f"  budget: {plan['budget']}")
    if "probe" in plan:
        found = plan["probe"]
        print(
            f"  probe: training step {found['step_s']:.3f} s, sliding-window batch {found['window_batch_s']:.3f} s, "
            f"validation pass {found['validation_s']:.1f} s ({found['threads']} threads) "
            f"-> {found['iterations']} iterations in {plan['values']['options#max_minutes']:g} minutes"
        )
        for trial in found.get("candidates", []):
            timing = f"step {trial['step_s']:.3f} s, {trial['iterations']} iterations" if "step_s" in trial else ""
            mark = "*" if trial["candidate"] == found.get("chosen") else " "
            print(f"   {mark} {trial['candidate']:<32} {timing or trial['outcome']}")
    for key, value in plan["values"].items():
        reason = plan["reasons"].get(key)
        print(f"  {key:<36} {json.dumps(value)}" + (f"   ({reason})" if reason else ""))
    print(f"  {'cascade':<36} {plan['cascade']['reason']}")
    if "coarse" in plan:
        coarse = plan["coarse"]["values"]
        print(
            f"  coarse stage ({args.out / 'coarse'}): pixdim {json.dumps(coarse['pixdim'])}, patch {json.dumps(coarse['roi_size'])}, "
            f"width {coarse['width']}, {coarse['options#max_epochs']} epochs"
            + (f", {coarse['options#max_minutes']:g} minutes" if "options#max_minutes" in coarse else "")
        )
    print(
        f"Bundle: {args.out} (fingerprint and reasons in {args.out / 'plan.json'}). Next: {args.prog} train --bundle {args.out} --data {args.data}"
    )
    return 0


def cmd_init_bundle(args: argparse.Namespace) -> int:
    """``init-bundle``: write the V-Net bundle template into a new folder (as ``monai.bundle init_bundle`` does)."""
    from medact_bundles import config_file, init_bundle

    if args.data is not None and not args.data.exists():
        raise FileNotFoundError(f"{args.data}: no such dataset (--data names the dataset the bundle trains on).")
    bundle = init_bundle("vnet_seg", args.dir)
    if args.data is not None:
        for name in ("train.json", "inference.json"):
            path = config_file(bundle, name)
            config = json.loads(path.read_text(encoding="utf-8"))
            config["dataset_dir"] = str(args.data.resolve())
            path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    data = args.data or "DATA"
    print(f"Bundle: {bundle} (the vnet_seg template). Next: {args.prog} train --bundle {bundle} --data {data}")
    return 0


def add_plan_parser(sub: Any) -> None:
    """The ``plan`` command's arguments."""
    p = sub.add_parser("plan", help="fingerprint a dataset and write a ready bundle for it (spacing, patch, normalisation, labels)")
    p.add_argument("data", type=Path, help="dataset folder with dataset.json (its modality and labels) and imagesTr/labelsTr")
    p.add_argument("--out", type=Path, required=True, help="new bundle directory (must not exist or be empty)")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="training iterations the bundle runs (default: the plan's, see medseg.planning.planner.ITERATIONS)",
    )
    p.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        metavar="M",
        help="fit training to M minutes of this machine: a probe of a few seconds times the planned network here and "
        "sets the iterations, the validation cadence and a stop at M minutes (default: a fixed number of iterations)",
    )
    p.add_argument(
        "--budget",
        default=None,
        help="the machine to plan for: cpu (the 2-core step-time budget) or gpu:<GiB> (the largest patch that fits; e.g. gpu:24) "
        "(default: this machine)",
    )
    p.add_argument(
        "--cascade",
        choices=["auto", "on", "off"],
        default="auto",
        help="two stages: a coarse V-Net whose probabilities the planned one takes as extra channels (nnU-Net's cascade): "
        "auto plans it when the patch covers under a quarter of the median case and two labels look alike, so that only "
        "where they lie tells them apart (default: auto)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)


def add_init_bundle_parser(sub: Any) -> None:
    """The ``init-bundle`` command's arguments."""
    p = sub.add_parser("init-bundle", help="write the V-Net bundle template (configs, docs, licence) into a new folder")
    p.add_argument("dir", type=Path, help="new bundle folder (must not exist or be empty)")
    p.add_argument("--data", type=Path, help="dataset the bundle trains on by default (its dataset_dir; default: given at train time)")
    p.set_defaults(func=cmd_init_bundle)
