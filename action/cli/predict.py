"""``medact-action predict``: classify videos (top-k, a timeline of windows) or the recordings of sequence files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from action.cli.common import add_sequence_input


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


def add_predict_parser(sub: Any) -> None:
    """The ``predict`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("predict", help="classify videos (top-k, optional per-window timeline) or the recordings of sequence files")
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument("videos", nargs="+", help="video files, or sequence files (.npz/.csv/.mat/.ts) for sequence models")
    p.add_argument("--top-k", type=int, default=5, help="how many of the most probable classes to list per input (default 5)")
    p.add_argument("--timeline", action="store_true", help="per-window predictions along each video")
    p.add_argument("--window", type=float, help="timeline window in seconds (default: the model's clip duration or 2)")
    p.add_argument("--stride", type=float, help="timeline stride in seconds (default window/2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_device_arguments(p)
    add_sequence_input(p)
    p.set_defaults(func=cmd_predict)
