"""``medact-seg`` / ``python -m medseg``: validate, plan, init-bundle, train, cross-validate, infer, evaluate, serve,
make-demo-data. One module per stage of the pipeline builds its commands' arguments and runs them.

No default path depends on the working directory: commands that use a bundle take ``--bundle DIR``
(a folder written by ``init-bundle`` or ``plan``), and the templates come from the installed package.

Every command prints a one-line reason and exits non-zero on failure (1: the data has
problems, 2: the command could not run), and offers ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from medseg.cli import crossval, data, evaluate, infer, plan, serve, train
from shared.cli import add_version_argument, run_command

# the order of ``--help``: the pipeline's
PARSERS = (
    data.add_validate_parser,
    plan.add_plan_parser,
    plan.add_init_bundle_parser,
    train.add_train_parser,
    crossval.add_cross_validate_parser,
    infer.add_infer_parser,
    evaluate.add_evaluate_parser,
    serve.add_serve_parser,
    data.add_make_demo_data_parser,
)


def build_parser(prog: str = "medact-seg") -> argparse.ArgumentParser:
    """The medseg argument parser (also renders the CLI reference of the docs)."""
    parser = argparse.ArgumentParser(prog=prog, description="3D segmentation with V-Net: from scans to masks that open in 3D Slicer.")
    add_version_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    parser.set_defaults(prog=prog)  # what a command calls its program in the next steps it prints
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "medact-seg") -> int:
    """Run the medseg command line with ``argv``; returns the exit code (2 with a one-line error)."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(args)
