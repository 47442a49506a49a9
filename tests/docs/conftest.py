"""The docs tooling (``docs/hooks.py``, ``docs/tutorials.py``) is not a package: load it from its files."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_docs_module(name: str):
    """Import ``docs/<name>.py`` (its siblings importable, as when MkDocs or ``make tutorials`` runs it)."""
    if str(ROOT / "docs") not in sys.path:
        sys.path.insert(0, str(ROOT / "docs"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
