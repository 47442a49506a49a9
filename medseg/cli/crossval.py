"""``medseg cross-validate``: every fold trained (resumable), scored on its held-out cases, pooled; the post-processing decided."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medseg.cli.common import BUNDLE_DEFAULT, device_overrides, parse_overrides


def cmd_cross_validate(args: argparse.Namespace) -> int:
    """``cross-validate``: train every fold (resumable), score each on its held-out cases, pool, decide the post-processing."""
    from medact_bundles import config_file
    from medseg.evaluation.crossval import cross_validate

    config_file(args.bundle, "train.json")  # a wrong --bundle fails here, before any training
    from medseg.planning.cascade import coarse_bundle_of

    if coarse_bundle_of(args.bundle) is not None:
        raise ValueError(
            f"{args.bundle}: a two-stage (cascade) bundle; cross-validate cannot be used with it yet (each fold would need "
            "its own coarse stage): train it whole, or plan it with --cascade off."
        )
    overrides = {**parse_overrides(args.set), **device_overrides(args)}
    if args.epochs is not None:
        overrides["options#max_epochs"] = args.epochs
    result = cross_validate(args.bundle, args.data, args.folds, overrides)
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    for fold, entry in result["folds"].items():
        print(f"fold {fold} ({entry['status']}): mean Dice {entry['mean_dice']:.4f} on {entry['cases']} cases")
    pooled = ", ".join(f"{k} {v:.4f}" for k, v in result["pooled_dice"].items())
    print(f"pooled over every held-out case: mean Dice {result['pooled_mean_dice']:.4f} ({pooled})")
    from medseg.evaluation.decide import describe

    print(f"{describe(result['postprocessing'], {})} ({args.bundle / 'postprocessing.json'})")
    return 0


def add_cross_validate_parser(sub: Any) -> None:
    """The ``cross-validate`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("cross-validate", help="train all folds (resumable), score each on its held-out cases, pool, decide post-processing")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder (from init-bundle or plan)")
    p.add_argument("--data", type=Path, required=True, help="dataset.json or dataset folder")
    p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds to run (default 0 1 2 3 4)")
    p.add_argument("--epochs", type=int, help="override options#max_epochs of every fold")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="override any config id (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    p.set_defaults(func=cmd_cross_validate)
