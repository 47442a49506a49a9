"""``medact-action`` / ``python -m action``: make-demo-data, init-bundle, train, evaluate, predict, extract-features,
serve. One module per stage builds its commands' arguments and runs them.

Every command prints a one-line reason and exits 2 when it cannot run (bad input named),
and ``evaluate``/``predict`` offer ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from action.cli import data, evaluate, predict, serve, train
from shared.cli import add_version_argument, run_command

# the order of ``--help``: the pipeline's
PARSERS = (
    train.add_train_parser,
    evaluate.add_evaluate_parser,
    predict.add_predict_parser,
    data.add_init_bundle_parser,
    data.add_make_demo_data_parser,
    serve.add_serve_parser,
    data.add_extract_features_parser,
)


def build_parser(prog: str = "medact-action") -> argparse.ArgumentParser:
    """The action argument parser (also renders the CLI reference of the docs)."""
    parser = argparse.ArgumentParser(prog=prog, description="GRU action recognition from video (medact).")
    add_version_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    parser.set_defaults(prog=prog)  # what a command calls its program in the next steps it prints
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "medact-action") -> int:
    """Run the action command line with ``argv``; returns the exit code (2 with a one-line error)."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(args)
