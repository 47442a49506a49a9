"""What both command lines share: ``--version`` and the one way a command fails (a one-line reason, exit code 2)."""

from __future__ import annotations

import argparse
import sys


def medact_version() -> str:
    """The installed medact's version (``unknown (not installed)`` when run from a checkout without installing)."""
    from importlib import metadata

    try:
        return metadata.version("medact")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program's name and medact's version."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (medact {medact_version()})")


def run_command(args: argparse.Namespace) -> int:
    """``args.func(args)`` after checking ``--device``; an error a user can act on becomes ``error: <one line>`` and 2."""
    try:
        from shared.devices import check_device_arguments

        check_device_arguments(args)  # an unusable --device fails here, in one line, before any work
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        from shared.errors import one_line

        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
