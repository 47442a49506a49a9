"""``python -m medseg``: validate, plan, init-bundle, train, infer, evaluate, serve, make-demo-data.

No default path depends on the working directory: commands that use a bundle take ``--bundle DIR``
(a folder written by ``init-bundle`` or ``plan``), and the templates come from the installed package.

Every command prints a one-line reason and exits non-zero on failure (1: the data has
problems, 2: the command could not run), and offers ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _bundle_names(bundle: Path) -> dict[int, str]:
    from medact_bundles import config_file

    meta = json.loads(config_file(bundle, "metadata.json").read_text(encoding="utf-8"))
    return {int(k): v for k, v in meta["network_data_format"]["outputs"]["pred"]["channel_def"].items()}


def cmd_validate(args: argparse.Namespace) -> int:
    """``validate``: one line per problem of a dataset; exit 1 when any is an error."""
    from medseg.data import channel_names, datalist, dataset_description, label_names, load_dataset_json
    from medseg.validate import validate

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


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["options#max_epochs=5"]`` -> ``{"options#max_epochs": 5}`` (values parsed as JSON when they are)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE (config id, e.g. options#max_epochs=5), got {pair!r}.")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


BUNDLE_DEFAULT = "the bundle's device / precision keys (auto / fp32 in the templates)"


def device_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The bundle ids that ``--device``, ``--precision``, ``--num-workers`` and ``--deterministic`` set (only those given)."""
    given = {
        "device": getattr(args, "device", None),
        "precision": getattr(args, "precision", None),
        "num_workers": getattr(args, "num_workers", None),
        "deterministic": True if getattr(args, "deterministic", False) else None,
    }
    return {key: value for key, value in given.items() if value is not None}


def _train_process(local_rank: int, args: argparse.Namespace) -> None:
    """Run the bundle's train.json in this process (the only one, or one rank: the engine shards and wraps DDP)."""
    from medseg.bundle import run_workflow, training_overrides

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


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: run the bundle's train.json (in one process or ``--nproc-per-node`` DDP processes)."""
    import os

    from medact_bundles import config_file
    from shared.distributed import run_parallel

    config_file(args.bundle, "train.json")  # a wrong --bundle fails here, before any process starts

    if (args.nproc_per_node or 1) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        run_parallel(_train_process, args, args.nproc_per_node)
    else:
        _train_process(0, args)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process runs this command
        folder = args.bundle / "models" / (f"fold_{args.fold}" if args.fold is not None else "")
        print(f"Model: {folder / 'model.pt'}" + (f" (fold {args.fold} of {args.bundle / 'splits.json'})" if args.fold is not None else ""))
    return 0


def cmd_cross_validate(args: argparse.Namespace) -> int:
    """``cross-validate``: train every fold (resumable), score each on its held-out cases, pool, decide the post-processing."""
    from medact_bundles import config_file
    from medseg.crossval import cross_validate

    config_file(args.bundle, "train.json")  # a wrong --bundle fails here, before any training
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
    kept = result["postprocessing"]["keep_largest"]
    print(f"post-processing: keep the largest component of labels {kept or 'none'} ({args.bundle / 'postprocessing.json'})")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    """``infer``: segment volumes into masks on the inputs' own grids, in the requested formats."""
    from medseg.infer import load_segmenter
    from medseg.io.channels import cases_from_inputs

    overrides: dict[str, Any] = parse_overrides(args.set)  # model ids are checked against the model's record
    if args.keep_largest:
        overrides["keep_largest"] = True
    if args.overlap is not None:
        overrides["overlap"] = args.overlap
    overrides.update(device_overrides(args))
    if args.tta_axes:  # the user's choice
        overrides["tta_axes"] = sorted(set(args.tta_axes))
    elif args.tta:  # the axes the model was trained to see mirrored (its record's mirror_axes); none: refused
        overrides["tta"] = True
    if args.folds and args.weights:
        raise ValueError("--folds and --weights both name weights; give one of them.")
    from medact_bundles import config_file
    from medseg.io.volumes import read_header

    config_file(args.bundle, "inference.json")  # a wrong --bundle first, in one line
    for path in args.input:  # then an unusable input (an RT plan, a lone DICOM slice, a bad header) fails before the model loads
        read_header(path, args.mat_image_var)
    segmenter = load_segmenter(args.bundle, args.weights, overrides, folds=args.folds)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    cases = cases_from_inputs(args.input, segmenter.in_channels)  # several channels: case_0000, case_0001, ... are one case
    written = segmenter.segment_files(cases, args.output, formats, args.mat_image_var, with_probabilities=args.save_probabilities)
    if args.json:
        print(json.dumps({src: [str(p) for p in files] for src, files in written.items()}))
    else:
        for src, files in written.items():
            print(f"{src} -> {', '.join(str(p) for p in files)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: per-case metrics, MATLAB tables and figures of predictions against references."""
    from medseg.data import label_names
    from medseg.report import evaluate_folders

    if args.dataset is None and args.bundle is None:
        raise ValueError("evaluate needs the label names: give --dataset (a dataset.json) or --bundle (its metadata's channel_def).")
    names = label_names(args.dataset) if args.dataset else _bundle_names(args.bundle)
    summary = evaluate_folders(args.pred, args.label, args.out, names, args.images, args.history)
    if args.json:
        print(json.dumps({k: summary[k] for k in ("cases", "mean_dice", "counts", "per_label")}, default=float))
        return 0
    print(f"{summary['cases']} cases, mean Dice {summary['mean_dice']:.4f}")
    for name, entry in summary["per_label"].items():
        print(
            f"  {name:<12} Dice {entry['dice_mean']:.4f} ± {entry['dice_std']:.4f}  IoU {entry['iou_mean']:.4f}  HD95 {entry['hd95_mm_mean']:.2f} mm"
            f"  (missed {entry['missed']}, false positive {entry['false_positive']}, empty {entry['empty']})"
        )
    dataset = summary["matlab"]["DataSetMetrics"]
    print("  DataSetMetrics: " + ", ".join(f"{k} {v:.4f}" for k, v in dataset.items()))
    print(f"Report in {args.out}/")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: fingerprint a dataset and write a ready bundle (nnU-Net-style planning for a CPU)."""
    from medseg.budget import parse_budget
    from medseg.plan import plan_dataset

    budget = parse_budget(args.budget)
    plan = plan_dataset(args.data, args.out, **({"iterations": args.iterations} if args.iterations else {}), budget=budget)
    if args.json:
        print(json.dumps(plan, default=str))
        return 0
    print(f"Planned a V-Net bundle for {args.data} ({plan['modality']}, labels {', '.join(plan['labels'].values())}):")
    print(f"  budget: {plan['budget']}")
    for key, value in plan["values"].items():
        reason = plan["reasons"].get(key)
        print(f"  {key:<36} {json.dumps(value)}" + (f"   ({reason})" if reason else ""))
    print(
        f"Bundle: {args.out} (fingerprint and reasons in {args.out / 'plan.json'}). Next: python -m medseg train --bundle {args.out} --data {args.data}"
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
    print(f"Bundle: {bundle} (the vnet_seg template). Next: python -m medseg train --bundle {bundle} --data {data}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: run the scan page and JSON API until interrupted."""
    import signal

    from medseg.web.server import serve
    from shared.web import server_options

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    serve(
        args.bundle,
        args.host,
        args.port,
        server=server_options(args, args.max_upload_mb),
        max_upload_mb=args.max_upload_mb,
        keep_minutes=args.keep_minutes,
        workers=args.workers,
        max_voxels=int(args.max_voxels),
        max_transfers=args.max_transfers,
        transfer_wait_s=args.transfer_wait,
        device_overrides=device_overrides(args),
        monai_label=args.monai_label,
    )
    return 0


def cmd_make_demo_data(args: argparse.Namespace) -> int:
    """``make-demo-data``: write the synthetic CT-like dataset (or, ``--multi-contrast``, the two-channel MR phantom)."""
    if args.multi_contrast:
        from medseg.multicontrast import make_multicontrast_dataset as make_dataset
    else:
        from medseg.synthetic import make_dataset

    path = make_dataset(args.out, args.train, args.test, args.seed)
    print(f"Wrote {args.train} training and {args.test} test cases; {path}")
    return 0


def _medact_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("medact")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m medseg`` argument parser (also renders the CLI reference of the docs)."""
    from shared.devices import add_device_arguments
    from shared.web import add_server_arguments

    parser = argparse.ArgumentParser(
        prog="python -m medseg", description="3D segmentation with V-Net: from scans to masks that open in 3D Slicer."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (medact {_medact_version()})")
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("plan", help="fingerprint a dataset and write a ready bundle for it (spacing, patch, normalisation, labels)")
    p.add_argument("data", type=Path, help="dataset folder with dataset.json (its modality and labels) and imagesTr/labelsTr")
    p.add_argument("--out", type=Path, required=True, help="new bundle directory (must not exist or be empty)")
    p.add_argument(
        "--iterations", type=int, default=None, help="training iterations the bundle runs (default: the plan's, see medseg.plan.ITERATIONS)"
    )
    p.add_argument(
        "--budget",
        default=None,
        help="the machine to plan for: cpu (the 2-core step-time budget) or gpu:<GiB> (the largest patch that fits; e.g. gpu:24) "
        "(default: this machine)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("init-bundle", help="write the V-Net bundle template (configs, docs, licence) into a new folder")
    p.add_argument("dir", type=Path, help="new bundle folder (must not exist or be empty)")
    p.add_argument("--data", type=Path, help="dataset the bundle trains on by default (its dataset_dir; default: given at train time)")
    p.set_defaults(func=cmd_init_bundle)

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

    p = sub.add_parser("cross-validate", help="train all folds (resumable), score each on its held-out cases, pool, decide post-processing")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder (from init-bundle or plan)")
    p.add_argument("--data", type=Path, required=True, help="dataset.json or dataset folder")
    p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds to run (default 0 1 2 3 4)")
    p.add_argument("--epochs", type=int, help="override options#max_epochs of every fold")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="override any config id (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    p.set_defaults(func=cmd_cross_validate)

    p = sub.add_parser("infer", help="segment volumes into masks with the input's exact geometry")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder (from init-bundle or plan)")
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="volume files or DICOM series folders; a model with several channels takes each case as one 4D file or as "
        "its channel files case_0000.nii.gz case_0001.nii.gz ... (grouped by name)",
    )
    p.add_argument("--output", type=Path, required=True, help="output directory (must not be an input's folder if names collide)")
    p.add_argument(
        "--format",
        default="nifti,seg.nrrd",
        help="comma list of nifti, seg.nrrd, nrrd, mat, dicom-seg (a DICOM SEG of a DICOM series input; default: nifti,seg.nrrd)",
    )
    p.add_argument(
        "--weights", type=Path, help="weights file (default: <bundle>/models/model.pt; its model.json beside it gives the settings)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="set an inference.json id, e.g. --set sw_batch_size=4 (repeatable); the model's own settings (width, pixdim, window, "
        "...) come from models/model.json and a value that contradicts them is refused",
    )
    p.add_argument("--keep-largest", action="store_true", help="keep only the largest connected component of each label")
    p.add_argument("--overlap", type=float, help="sliding-window overlap (default: the bundle's)")
    p.add_argument("--mat-image-var", help="variable holding the image in MATLAB .mat inputs")
    p.add_argument(
        "--folds", nargs="+", type=int, help="ensemble of cross-validation folds (models/fold_K/model.pt), probabilities averaged"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average the probabilities over every mirroring of the axes the bundle was trained "
        "mirrored along (its mirror_axes; all 3: 8 passes); refused for a bundle trained without mirroring (see --tta-axes)",
    )
    p.add_argument(
        "--tta-axes",
        nargs="+",
        type=int,
        choices=[0, 1, 2],
        help="mirror these axes at test time whatever the bundle was trained with (0 1 2: RAS x, y, z); measured to help on "
        "the MNI152 hemispheres (+0.02 Dice) and to hurt on the demo abdomen (-0.05): check on your validation cases",
    )
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write <case>_probabilities.npz: float16 class probabilities (C, i, j, k) on the input grid, its ijk_to_lps and label names",
    )
    p.add_argument("--json", action="store_true", help="print written files as JSON")
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("evaluate", help="compare predictions with references: per-case metrics, MATLAB tables, figures")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted label maps (<case>_seg.nii.gz or <case>.nii.gz)")
    p.add_argument("--label", type=Path, required=True, help="folder of reference label maps (<case>.*)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--images", type=Path, help="folder of the images, for the overlay figure")
    p.add_argument("--dataset", type=Path, help="dataset.json giving label names (default: the bundle's channel_def)")
    p.add_argument("--bundle", type=Path, help="bundle whose metadata names the labels (or give --dataset)")
    p.add_argument("--history", type=Path, help="training output folder whose training_progress.png to include")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="web page + JSON API: upload a scan, see the mask on three views, download it for 3D Slicer")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder with trained weights (models/model.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8001, help="port (0: any free port; default 8001)")
    p.add_argument("--max-upload-mb", type=float, default=500, help="upload size limit in MB (default 500)")
    p.add_argument("--keep-minutes", type=float, default=30, help="minutes results stay downloadable (default 30)")
    p.add_argument("--workers", type=int, default=1, help="segmentations running at once (default 1)")
    p.add_argument(
        "--monai-label",
        action="store_true",
        help="also answer MONAI Label's /info/, /datastore/ and /infer/ (3D Slicer's MONAILabel module; docs/slicer-monailabel.md)",
    )
    p.add_argument(
        "--max-voxels",
        type=float,
        default=300e6,
        help="voxels an uploaded scan's header may declare, checked before any voxel is read (default 3e8)",
    )
    p.add_argument(
        "--max-transfers", type=int, default=4, help="uploads handled at once; more wait --transfer-wait s, then get 503 (default 4)"
    )
    p.add_argument(
        "--transfer-wait", type=float, default=10.0, help="seconds a request waits for a free transfer slot before 503 (default 10)"
    )
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m medseg`` with ``argv``; returns the exit code (2 with a one-line error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from shared.devices import check_device_arguments

        check_device_arguments(args)  # an unusable --device fails here, in one line, before any work
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        from shared.errors import one_line

        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
