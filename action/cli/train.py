"""``medact-action train``: videos, cached features or sensor recordings, through the shared engine (one process or DDP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from action.cli.common import add_data, add_sampling, add_sequence_options, sampling_from, training_options_from


def _train_inputs(args: argparse.Namespace, kind: str) -> Any:
    """The ``inputs`` of :func:`action.train.train_model` for an input kind, from the flags."""
    if kind == "sequence":
        from action.sequences.dataset import SequenceInput

        return SequenceInput(args.normalization, args.sort_by_length, args.mat_x_var, args.mat_y_var)
    if kind == "features":
        from action.models.features import FeatureInput

        return sampling_from(args), FeatureInput(args.backbone, args.cache_dir, args.weights, args.backbone_size, args.device or "auto")
    return sampling_from(args)


def _train_process(local_rank: int, args: argparse.Namespace) -> None:
    """One training process (the only one, or one rank of a distributed run)."""
    import ignite.distributed as idist

    from action.models.factory import MODELS
    from action.train import DataSource, train_model

    source = DataSource(args.data, args.layout, args.split, args.val_fraction, args.skip_bad)
    trainer = train_model(
        source,
        args.out,
        args.model,
        options=training_options_from(args),
        inputs=_train_inputs(args, MODELS[args.model].input),
        model_kwargs=json.loads(args.model_options) if args.model_options else None,
        resume=args.resume,
        num_workers=args.num_workers,
    )
    trainer.run()
    if idist.get_rank() == 0:
        print(f"Model: {Path(args.out) / 'model.pt'} ({trainer.monitor.stop_reason}; {idist.get_world_size()} process(es))", flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train a model through the shared engine; with ``--test-data``, evaluate it after."""
    import os

    from action.evaluate import evaluate_model, item_unit
    from shared.distributed import run_parallel

    distributed = (args.nproc_per_node or 1) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        run_parallel(_train_process, args, args.nproc_per_node)
    else:
        _train_process(0, args)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun every process runs this command: rank 0 wrote the model and evaluates it
    if args.test_data:
        same = Path(args.test_data).resolve() == Path(args.data).resolve()
        report = evaluate_model(
            args.out,
            args.test_data,
            Path(args.out) / "test",
            args.layout,
            args.split,
            "test" if same else "all",
            args.skip_bad,
            mat_vars=(args.mat_x_var, args.mat_y_var),
            device=args.device or "auto",
            precision=args.precision or "fp32",
        )
        print(
            f"Test ({report['videos']} {item_unit(report)}): accuracy {report['accuracy']:.4f}, macro F1 {report['f1_macro']:.4f}; reports in {Path(args.out) / 'test'}"
        )
    return 0


def add_train_parser(sub: Any) -> None:
    """The ``train`` command's arguments."""
    from action.models.factory import MODELS
    from shared.devices import add_device_arguments

    p = sub.add_parser("train", help="train a model (shared engine: checkpoints, resume, progress figure)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset folder (UCF101/UCF50/HMDB51/one folder per class), CSV list, or a sequence file (.npz, .csv, .mat, .ts)",
    )
    p.add_argument("--test-data", help="evaluate on this after training (the same folder: its test split)")
    p.add_argument("--model", choices=sorted(MODELS), default="c3d_gru", help="model name (default c3d_gru)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--epochs", type=int, help="MaxEpochs (default 10 for videos and features, 60 for sequences)")
    p.add_argument("--batch-size", type=int, help="MiniBatchSize (default 16)")
    p.add_argument("--lr", type=float, help="InitialLearnRate (default 1e-3 for videos and features, 3e-3 for sequences)")
    p.add_argument("--gradient-threshold", type=float, help="GradientThreshold (default Inf for videos and features, 1 for sequences)")
    p.add_argument("--options", type=Path, help="TrainingOptions JSON/YAML (MATLAB names accepted)")
    p.add_argument("--seed", type=int, help="random seed of weights, order and sampling (default 0)")
    p.add_argument("--model-options", help='JSON of model options, e.g. \'{"hidden": 64, "reset_gate_mode": "before-multiplication"}\'')
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="stratified validation share of the training split (default 0.1 for videos and features, 0 for sequences, as MATLAB trains without validation data unless given)",
    )
    p.add_argument("--backbone", help="feature models: backbone name(s), '+'-joined (e.g. resnet18+efficientnet_lite0)")
    p.add_argument("--weights", help="feature models: weights file(s) for the backbone(s), '+'-joined")
    p.add_argument("--cache-dir", type=Path, help="feature models: the extract-features cache")
    p.add_argument(
        "--backbone-size", type=int, default=224, help="feature models: backbone input size in pixels, as extracted (default 224)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="spawn N training processes (PyTorch DDP; gloo on CPU, nccl on GPUs); under torchrun leave it out",
    )
    p.add_argument("--quiet", action="store_true", help="no progress table")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader worker processes decoding training clips (default 0: in the training process)",
    )
    p.add_argument("--deterministic", action="store_true", help="deterministic cuDNN kernels (slower; default: cuDNN picks the fastest)")
    add_device_arguments(p, inherited_from="the --options file's execution_environment / precision, else auto / fp32")
    add_data(p)
    add_sampling(p)
    add_sequence_options(p)
    p.set_defaults(func=cmd_train)
