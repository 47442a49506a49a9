"""Run the tutorials' code exactly as the pages show it, then check the numbers they quote.

A tutorial page (``docs/tutorials/NN-*.md``) is executed block by block, in order:

- ```` ```bash ```` blocks run in ``bash -euo pipefail`` with the project's Python first on ``PATH``;
- ```` ```python ```` blocks run in one Python process per page (later blocks see earlier names,
  as in a notebook);
- a block whose first line is ``# not run: <reason>`` is shown but skipped (say why);
- any other language (``matlab``, ``text``, ``json``) is display only.

All pages run in one work folder that mirrors a fresh clone (``bundles/`` configs copied, no trained
models), so a later tutorial can use an earlier one's outputs, as a reader would. After a page runs:

- every ``{{ VALUE ± TOL from FILE#KEY }}`` (see ``docs/hooks.py``) must match ``KEY`` (dot path)
  of JSON ``FILE`` in the work folder within ``TOL``, every ``{{ >= FLOOR from FILE#KEY }}`` must be
  at least ``FLOOR``;
- every ``![...](img/X.png "from SOURCE")`` must have been written at ``SOURCE`` by the page's
  code; ``--update-figures`` copies it to ``docs/tutorials/img/X.png``.

Usage: ``python docs/tutorials.py [--work DIR] [--update-figures] [NN ...]`` (``make tutorials``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hooks import FIGURE, QUOTE, ROOT

TUTORIALS = ROOT / "docs" / "tutorials"
# a fenced block, possibly indented (inside a content tab); the closing fence has the same indent
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclasses.dataclass
class Quote:
    value: float
    tol: float
    file: str
    key: str
    floor: bool = False  # ``{{ >= VALUE from ... }}``: the run must give at least ``value``

    def holds(self, actual: float) -> bool:
        return math.isfinite(actual) and (actual >= self.value if self.floor else abs(actual - self.value) <= self.tol)

    def actual(self, work: Path) -> float:
        """The value at ``key`` (dot path; list indices allowed) of the JSON ``file`` in ``work``."""
        path = work / self.file
        if not path.is_file():
            raise AssertionError(f"quoted number {self.value} comes from {self.file}, which the tutorial did not write")
        node = json.loads(path.read_text(encoding="utf-8"))
        for part in self.key.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return float(node)


def pages(names: list[str] | None = None) -> list[Path]:
    """The tutorial pages in order, optionally only those whose file name starts with one of ``names``."""
    found = sorted(p for p in TUTORIALS.glob("[0-9][0-9]-*.md"))
    return [p for p in found if not names or any(p.name.startswith(n) for n in names)]


def script(markdown: str) -> str:
    """The page's runnable blocks as one Python program (bash blocks become ``_bash(...)`` calls)."""
    lines = [
        "import subprocess as _subprocess",
        "def _bash(code):",
        "    _subprocess.run(['bash', '-euo', 'pipefail', '-c', code], check=True)",
        "",
    ]
    for match in FENCE.finditer(markdown):
        lang, code = match["lang"], textwrap.dedent(match["code"])
        if lang not in ("bash", "python") or code.lstrip().startswith("# not run:"):
            continue
        lines.append(f"_bash({code!r})" if lang == "bash" else code)
    return "\n".join(lines) + "\n"


def quotes(markdown: str) -> list[Quote]:
    return [
        Quote(float(m["floor"]), 0.0, m["file"], m["key"], floor=True)
        if m["floor"] is not None
        else Quote(float(m["value"]), float(m["tol"]), m["file"], m["key"])
        for m in QUOTE.finditer(markdown)
    ]


def figures(markdown: str) -> list[tuple[str, str]]:
    """(image path under docs/tutorials, source path in the work folder) of every figure."""
    return [(m["image"], m["source"]) for m in FIGURE.finditer(markdown)]


def prepare_work(work: Path) -> None:
    """A work folder that looks like a fresh clone's root: bundle configs, schema and docs, no models."""
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("models", "eval", "__pycache__")
    shutil.copytree(ROOT / "bundles", work / "bundles", ignore=ignore, dirs_exist_ok=True)


def run_page(page: Path, work: Path, timeout: float = 900) -> float:
    """Execute one page in ``work``; returns seconds. Raises ``CalledProcessError`` with the output on failure."""
    program = work / f".{page.stem}.py"
    program.write_text(script(page.read_text(encoding="utf-8")), encoding="utf-8")
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT), MPLBACKEND="Agg"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, program.name], cwd=work, env=env, check=True, timeout=timeout, capture_output=True, text=True)
    return time.perf_counter() - start


def check_page(page: Path, work: Path) -> list[str]:
    """Problems with the page's quoted numbers and figures after it ran (empty list: all good)."""
    markdown = page.read_text(encoding="utf-8")
    problems = []
    for quote in quotes(markdown):
        actual = quote.actual(work)
        if not quote.holds(actual):
            stated = f">= {quote.value}" if quote.floor else f"{quote.value} ± {quote.tol}"
            problems.append(f"{page.name}: quotes {stated} for {quote.file}#{quote.key}, the run gave {actual:.4f}")
    for image, source in figures(markdown):
        if not (work / source).is_file():
            problems.append(f"{page.name}: figure {image} should come from {source}, which the tutorial did not write")
        elif not (TUTORIALS / image).is_file():
            problems.append(f"{page.name}: {image} is missing from docs/tutorials (run make tutorials)")
    return problems


def update_figures(page: Path, work: Path) -> None:
    for image, source in figures(page.read_text(encoding="utf-8")):
        target = TUTORIALS / image
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / source, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="tutorial numbers to run, e.g. 01 04 (default: all, in order)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "tutorials", help="work folder (default work/tutorials)")
    parser.add_argument("--update-figures", action="store_true", help="copy the figures the run wrote into docs/tutorials/img/")
    args = parser.parse_args(argv)
    prepare_work(args.work)
    failed = False
    for page in pages(args.names):
        try:
            seconds = run_page(page, args.work)
        except subprocess.CalledProcessError as err:
            print(f"FAILED {page.name}\n{err.stdout}\n{err.stderr}", file=sys.stderr)
            return 1
        if args.update_figures:
            update_figures(page, args.work)
        problems = check_page(page, args.work)
        failed |= bool(problems)
        print(f"{page.name}: {seconds:.0f} s" + "".join(f"\n  {p}" for p in problems))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
