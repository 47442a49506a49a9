"""``medseg train`` (one process or DDP) and ``medseg cross-validate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medseg.cli.common import BUNDLE_DEFAULT, device_overrides, parse_overrides


def _train_process(local_rank: int, args: argparse.Namespace) -> None:
    """Run the bundle's train.json in this process (the only one, or one rank: the engine shards and wraps DDP)."""
    from medseg.workflow import run_workflow, training_overrides

    given = parse_overrides(args.set)
    if args.epochs is not None:
        given["options#max_epochs"] = args.epochs
    if args.fold is not None:
        given["fold"] = args.fold
    given.update(device_overrides(args))
    overrides = {"dataset_dir": str(args.data), **training_overrides(given)}
    if args.resume:
        overrides["trainer#resume"] = True
    run_workflow(args.bundle, ["train.json"], overrides)


def _train_cascade(args: argparse.Namespace, parallel: bool) -> None:
    """A cascade bundle (``medseg plan --cascade``): the coarse stage on the data, its probabilities of every case
    written beside the images (``BUNDLE/coarse_channels``), then the fine stage on those. ``--set`` and ``--epochs``
    apply to both stages."""
    import json

    from medact_bundles import config_file
    from medseg.inference.cascade import write_coarse_dataset  # a cascade only: its training runs the coarse stage's inference
    from medseg.planning.cascade import coarse_bundle_of

    unsupported = [
        flag for flag, given in (("--resume", args.resume), ("--fold", args.fold is not None), ("--nproc-per-node", parallel)) if given
    ]
    if unsupported:
        raise ValueError(
            f"{args.bundle}: a two-stage (cascade) bundle; {' and '.join(unsupported)} cannot be used with it yet (train it whole, "
            "in one process, or plan it with --cascade off)."
        )
    coarse = coarse_bundle_of(args.bundle)
    print(f"Stage 1 of 2: the coarse stage ({coarse})")
    _train_process(0, argparse.Namespace(**{**vars(args), "bundle": coarse}))
    meta = json.loads(config_file(args.bundle, "metadata.json").read_text(encoding="utf-8"))
    channel_def = meta["network_data_format"]["inputs"]["image"]["channel_def"]
    channels = [channel_def[k] for k in sorted(channel_def, key=int)]
    data = write_coarse_dataset(coarse, args.data, args.bundle / "coarse_channels", channels)
    print(f"Stage 2 of 2: the fine stage, on the images and the coarse stage's probabilities ({data})")
    _train_process(0, argparse.Namespace(**{**vars(args), "data": data}))


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: run the bundle's train.json (in one process or ``--nproc-per-node`` DDP processes)."""
    import os

    from medact_bundles import config_file
    from shared.distributed import run_parallel

    config_file(args.bundle, "train.json")  # a wrong --bundle fails here, before any process starts

    from medseg.planning.cascade import coarse_bundle_of

    parallel = (args.nproc_per_node or 1) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if coarse_bundle_of(args.bundle) is not None:
        _train_cascade(args, parallel)
    elif parallel:
        run_parallel(_train_process, args, args.nproc_per_node)
    else:
        _train_process(0, args)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process runs this command
        folder = args.bundle / "models" / (f"fold_{args.fold}" if args.fold is not None else "")
        print(f"Model: {folder / 'model.pt'}" + (f" (fold {args.fold} of {args.bundle / 'splits.json'})" if args.fold is not None else ""))
    return 0


def add_train_parser(sub: Any) -> None:
    """The ``train`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("train", help="train the bundle's train.json on a dataset (validated first)")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder (from init-bundle or plan)")
    p.add_argument("--data", type=Path, required=True, help="dataset.json or dataset folder")
    p.add_argument("--epochs", type=int, help="override options#max_epochs")
    p.add_argument("--resume", action="store_true", help="continue from the bundle's newest checkpoint (error if none)")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="spawn N training processes (PyTorch DDP; gloo on CPU, nccl on GPUs); under torchrun leave it out",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="ID=VALUE", help="override any config id, e.g. --set width=16 (repeatable)"
    )
    p.add_argument(
        "--fold",
        type=int,
        help="train cross-validation fold K of the bundle's splits.json (made on first use: 5 folds by case, nnU-Net's format, editable) into models/fold_K",
    )
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (default: the bundle's num_workers key)")
    p.add_argument("--deterministic", action="store_true", help="deterministic cuDNN kernels (default: the bundle's deterministic key)")
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    p.set_defaults(func=cmd_train)
