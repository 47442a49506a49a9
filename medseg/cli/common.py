"""What every medseg command shares: config overrides from ``--set``, the device flags, the bundle's label names."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def bundle_names(bundle: Path) -> dict[int, str]:
    """The label names of a bundle\'s metadata (``channel_def`` of its ``pred`` output): value -> name."""
    from medact_bundles import config_file

    meta = json.loads(config_file(bundle, "metadata.json").read_text(encoding="utf-8"))
    return {int(k): v for k, v in meta["network_data_format"]["outputs"]["pred"]["channel_def"].items()}


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
