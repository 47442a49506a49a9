"""Size limits that keep the tree readable: no module over 450 lines, no function over 60 (argparse builders included).

Run it over the tree with ``python tests/test_code_limits.py`` (or ``make limits``): one line per module or function
over its limit, exit 1 when there is any. ``make test`` runs it as a test. Counted: every ``.py`` file of the
packages, the bundles, benchmarks, docs and tests; a function's lines run from its ``def`` (or first decorator) to
its last line, docstring included, nested functions counted in their parent too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("shared", "medseg", "action", "bundles", "benchmarks", "docs", "tests")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def violations(root: Path = ROOT, folders: tuple[str, ...] = FOLDERS) -> list[str]:
    """``path: N lines`` for each module over :data:`MAX_MODULE_LINES`, ``path:line name(): N lines`` for each function
    over :data:`MAX_FUNCTION_LINES`."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            name = path.relative_to(root)
            if (count := len(source.splitlines())) > MAX_MODULE_LINES:
                found.append(f"{name}: {count} lines (at most {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    if (length := node.end_lineno - first + 1) > MAX_FUNCTION_LINES:
                        found.append(f"{name}:{first} {node.name}(): {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


def test_the_checker_finds_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_FUNCTION_LINES))
    (tmp_path / "pkg" / "long.py").write_text(f"def f():\n{body}\n" + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    (tmp_path / "pkg" / "short.py").write_text("def g():\n    return 1\n", encoding="utf-8")
    assert violations(tmp_path, ("pkg",)) == [
        f"pkg/long.py: {MAX_MODULE_LINES + MAX_FUNCTION_LINES + 1} lines (at most {MAX_MODULE_LINES})",
        f"pkg/long.py:1 f(): {MAX_FUNCTION_LINES + 1} lines (at most {MAX_FUNCTION_LINES})",
    ]


def test_no_module_or_function_of_the_tree_is_over_its_limit() -> None:
    assert len(list((ROOT / "medseg").rglob("*.py"))) > 40  # the walk sees the tree
    assert violations() == []


if __name__ == "__main__":
    problems = violations()
    print("\n".join(problems) or f"every module <= {MAX_MODULE_LINES} lines, every function <= {MAX_FUNCTION_LINES}")
    sys.exit(1 if problems else 0)
