"""The docs tooling (``docs/hooks.py``, ``docs/tutorials.py``) is not a package: load it from its files.

Also the shared part of the two tutorial test files: a work folder per file and the run-and-check step.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_tutorial_and_check_its_numbers(tutorials, page: Path, work: Path) -> None:
    """Run ``page`` in ``work`` as a reader would; fail with its output, or with every quoted number that does not hold."""
    try:
        tutorials.run_page(page, work, timeout=1500)  # 03-mni152 took 780 s on a slower 2-core host
    except subprocess.CalledProcessError as err:
        pytest.fail(f"{page.name} failed:\n{err.stdout[-3000:]}\n{err.stderr[-5000:]}")
    problems = tutorials.check_page(page, work)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder per test file, laid out like a fresh clone (the pages of a file build on each other)."""
    folder = tmp_path_factory.mktemp("tutorials")
    load_docs_module("tutorials").prepare_work(folder)
    return folder
