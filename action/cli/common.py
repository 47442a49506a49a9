"""What the action commands share: clip sampling and training options from flags, and the flags of data and sequences."""

from __future__ import annotations

import argparse
from typing import Any

from action.video.layouts import LAYOUTS


def parse_size(text: str) -> tuple[int, int]:
    """``"64"`` or ``"112x96"`` -> ``(H, W)`` in pixels (argparse ``type`` of ``--size`` / ``--decode-size``)."""
    parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def sampling_from(args: argparse.Namespace) -> Any:
    """The clip :class:`~action.video.sampling.Sampling` of ``--frames``, ``--size``, ``--decode-size``, ``--clip-duration``, ``--clips-per-video``."""
    from action.video.sampling import Sampling

    decode = args.decode_size or (args.size[0] + args.size[0] // 8, args.size[1] + args.size[1] // 8)
    return Sampling(args.frames, args.size, decode, args.clip_duration, args.clips_per_video)


def training_options_from(args: argparse.Namespace) -> Any:
    """The :class:`~shared.TrainingOptions` of ``--options`` (a file) overridden by the flags given (``--epochs``, ``--lr``, ...)."""
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


def add_sampling(p: argparse.ArgumentParser) -> None:
    """The clip-sampling flags of the commands that decode videos."""
    p.add_argument("--frames", type=int, default=20, help="frames per clip, spaced uniformly (default 20)")
    p.add_argument("--size", type=parse_size, default=(64, 64), help="model input HxW, e.g. 64 or 112x112 (default 64)")
    p.add_argument("--decode-size", type=parse_size, default=None, help="decode size before cropping (default size * 9/8)")
    p.add_argument("--clip-duration", type=float, default=None, help="seconds per clip (default: the whole video)")
    p.add_argument("--clips-per-video", type=int, default=1, help="evaluation clips per video (with --clip-duration)")


def add_sequence_input(p: argparse.ArgumentParser) -> None:
    """The flags that read sequence files (MATLAB variable names)."""
    p.add_argument(
        "--mat-x-var", help="sequences in a .mat: the variable holding the cell array of C x T recordings (default: found by shape)"
    )
    p.add_argument("--mat-y-var", help="sequences in a .mat: the variable holding the labels (default: found by shape)")


def add_sequence_options(p: argparse.ArgumentParser) -> None:
    """MATLAB's sequence options (length, padding, normalisation) for sequence models."""
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
    add_sequence_input(g)


def add_data(p: argparse.ArgumentParser) -> None:
    """The dataset flags: layout, split, skipping undecodable videos."""
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="dataset layout (default: detected)")
    p.add_argument("--split", type=int, default=1, help="UCF101/HMDB51 split (1-3) or UCF50 test group (default 1)")
    p.add_argument("--skip-bad", action="store_true", help="skip undecodable videos (listed in the report) instead of failing")
