"""Run a command-line ``main(argv)`` in this process and capture what it prints (no interpreter start-up per call).

The real entry points (``python -m medseg``/``action``) are exercised by one subprocess test each; the
rest call ``main`` directly, which is the same code minus ~10 s of imports per call.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace


def run_main(main: Callable[[Sequence[str]], int], *args: object) -> SimpleNamespace:
    """``main([str(a) for a in args])`` -> ``returncode``, ``stdout``, ``stderr`` (as ``subprocess.run`` gives)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def modules_after(module: str, *argv: str, watch: Sequence[str], cwd: str | None = None, env: dict | None = None) -> tuple[str, set[str]]:
    """Run ``python -m module argv`` in a fresh interpreter; its stdout and which of ``watch`` it imported."""
    code = (
        f"import runpy, sys\nsys.argv = {[module, *argv]!r}\ntry:\n    runpy.run_module({module!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('\\n' + repr(sorted(m for m in {list(watch)!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    output, _, last = done.stdout.rstrip().rpartition("\n")
    return output, set(json.loads(last.replace("'", '"')))
