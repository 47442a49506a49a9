"""The documentation site: builds offline with zero warnings, and its reference covers the code."""

import argparse
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import ROOT, load_docs_module

PACKAGES = ("shared", "medseg", "action")


def _defines_something(path: Path) -> bool:
    import ast

    return any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.parse(path.read_text(encoding="utf-8")).body)


def _modules() -> list[str]:
    """Every module of the packages, sub-packages' modules included; a sub-package only when its ``__init__`` defines
    something (the command lines: ``medseg.cli``, ``action.cli``), as the others hold only a docstring."""
    names = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if info.name.endswith("__main__"):
                continue
            if not info.ispkg or _defines_something(ROOT.joinpath(*info.name.split("."), "__init__.py")):
                names.append(info.name)
    return sorted(names)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def test_site_builds_offline_with_every_page(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for expected in (
        "index.html",
        "getting-started/index.html",
        "reference/cli/index.html",
        "reference/metrics/index.html",
        "reference/bundles/index.html",
        "tutorials/03-mni152/index.html",
        "reference/api/action/index.html",
    ):
        assert expected in pages
    # offline: no page asks a font or script CDN for anything (theme.font is off)
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(encoding="utf-8"), page


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PROGRAMS = {"medseg": "medact-seg", "action": "medact-action"}  # the console scripts (python -m medseg / action alike)


@pytest.mark.parametrize("module", ["medseg", "action"])
def test_cli_reference_lists_every_command_and_option(site, module):
    html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    parser = importlib.import_module(f"{module}.cli").build_parser()
    for name, sub in _subcommands(parser).items():
        assert f"{PROGRAMS[module]} {name}" in html, name
        for action in sub._actions:
            for option in action.option_strings:
                assert option in html, f"{module} {name} {option}"


def test_every_module_is_in_the_api_reference():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)$", text, re.M))
    assert documented == set(_modules()), set(_modules()) ^ documented


@pytest.mark.parametrize("module_name", _modules())
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    missing = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
            missing.append(name)
    assert not missing, f"{module_name}: no docstring for {missing}"


def test_api_pages_render_the_docstrings(site):
    html = (site / "reference" / "api" / "shared" / "index.html").read_text(encoding="utf-8")
    assert "build_trainer" in html and "MATLAB" in html and "TrainingOptions" in html


def test_quoted_numbers_render_as_the_number_with_its_tolerance():
    hooks = load_docs_module("hooks")
    out = hooks.on_page_markdown("Dice {{ 0.92 ± 0.05 from a/summary.json#mean_dice }}.", None, None, None)
    assert out.startswith('Dice <abbr title="checked by the tests: the tutorial&#x27;s run gives 0.92 ± 0.05') and out.endswith(
        ">0.92</abbr>."
    )
