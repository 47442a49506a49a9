"""Run a command-line ``main(argv)`` in this process and capture what it prints (no interpreter start-up per call).

The real entry points (``python -m medseg``/``action``) are exercised by one subprocess test each; the
rest call ``main`` directly, which is the same code minus ~10 s of imports per call.
"""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace
from typing import Callable, Sequence


def run_main(main: Callable[[Sequence[str]], int], *args: object) -> SimpleNamespace:
    """``main([str(a) for a in args])`` -> ``returncode``, ``stdout``, ``stderr`` (as ``subprocess.run`` gives)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
