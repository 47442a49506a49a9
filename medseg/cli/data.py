"""``medseg validate`` (a dataset's problems, one line each) and ``medseg make-demo-data``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_validate(args: argparse.Namespace) -> int:
    """``validate``: one line per problem of a dataset; exit 1 when any is an error."""
    from medseg.datasets.datalists import channel_names, datalist, dataset_description, label_names, load_dataset_json
    from medseg.datasets.validate import validate

    items = datalist(args.data, args.split)
    allowed: list[int] | None = None  # no dataset.json and no --labels: report the values present instead
    description = dataset_description(args.data)
    if args.labels:
        allowed = [int(v) for v in args.labels.split(",")]
    elif description is not None:
        allowed = sorted(label_names(args.data))
    channels = len(channel_names(load_dataset_json(description))) or None if description is not None else None
    seen: set[int] = set()
    problems = validate(items, allowed, args.allow_resample, (args.mat_image_var, args.mat_label_var), seen_labels=seen, channels=channels)
    errors = sum(p.level == "error" for p in problems)
    found = f"label values present: {sorted(seen)} (no dataset.json and no --labels: not checked against declared labels)"
    if args.json:
        report = {"cases": len(items), "errors": errors, "warnings": len(problems) - errors, "problems": [p.__dict__ for p in problems]}
        print(json.dumps(report if allowed is not None else {**report, "labels_found": sorted(seen)}))
    else:
        for problem in problems:
            print(problem)
        print(
            f"{len(items)} cases checked: {errors} errors, {len(problems) - errors} warnings."
            + ("" if allowed is not None else f" {found[0].upper()}{found[1:]}.")
        )
    return 1 if errors else 0


def cmd_make_demo_data(args: argparse.Namespace) -> int:
    """``make-demo-data``: write the synthetic CT-like dataset (or, ``--multi-contrast``, the two-channel MR phantom)."""
    if args.multi_contrast:
        from medseg.datasets.multicontrast import make_multicontrast_dataset as make_dataset
    else:
        from medseg.datasets.synthetic import make_dataset

    path = make_dataset(args.out, args.train, args.test, args.seed)
    print(f"Wrote {args.train} training and {args.test} test cases; {path}")
    return 0


def add_validate_parser(sub: Any) -> None:
    """The ``validate`` command's arguments."""
    p = sub.add_parser("validate", help="check a dataset before training (one line per problem)")
    p.add_argument("data", type=Path, help="dataset.json, a folder with imagesTr/labelsTr, or one volume")
    p.add_argument("--split", default="training", help="dataset.json list to check (default: training)")
    p.add_argument("--labels", help="allowed label values, e.g. 0,1,2 (default: the labels of dataset.json)")
    p.add_argument(
        "--allow-resample", action="store_true", help="report label/image geometry differences as warnings (labels will be resampled)"
    )
    p.add_argument("--mat-image-var", help="variable holding the image in MATLAB .mat files")
    p.add_argument("--mat-label-var", help="variable holding the label in MATLAB .mat files")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    p.set_defaults(func=cmd_validate)


def add_make_demo_data_parser(sub: Any) -> None:
    """The ``make-demo-data`` command's arguments."""
    p = sub.add_parser("make-demo-data", help="write the synthetic CT-like demo dataset (NIfTI + NRRD + dataset.json)")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--train", type=int, default=12, help="training cases (default 12)")
    p.add_argument("--test", type=int, default=4, help="test cases with labels (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--multi-contrast",
        action="store_true",
        help="the two-channel MR phantom instead (T1 + FLAIR, oedema visible on FLAIR only; nnU-Net v2 layout)",
    )
    p.set_defaults(func=cmd_make_demo_data)
