"""Shared by the bundle tests: the recipe table of a bundle README, resolved against its train.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def stated_recipe(bundle: Path) -> list[tuple[str, str, Any]]:
    """``(config id, value as written in docs/README.md, value in configs/train.json)`` per table row."""
    readme = (bundle / "docs" / "README.md").read_text(encoding="utf-8")
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    rows = []
    for key, written in re.findall(r"^\| `([a-z_#]+)` \| `([^`]+)` \|", readme, flags=re.M):
        node = train
        for part in key.split("#"):
            node = node[part]
        rows.append((key, written, node))
    return rows
