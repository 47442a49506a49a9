"""Helpers for benchmark scripts: timing and the JSON record every benchmark prints."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def best_of(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started or since :func:`reset_peak_rss`, MiB.

    Reads Linux's ``VmHWM``: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a child started by a
    large parent would report the parent's peak. Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset the peak to the current resident size (Linux ``clear_refs`` 5); no-op where unsupported."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def emit(figure: str, unit: str, value: float, baseline_name: str, baseline: float, **extra: Any) -> dict:
    """Print one JSON record: the figure, its same-run baseline and the machine context."""
    record = {
        "figure": figure,
        "unit": unit,
        "value": round(value, 6),
        "baseline": {"name": baseline_name, "value": round(baseline, 6)},
        "ratio_to_baseline": round(value / baseline, 4) if baseline else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        **extra,
    }
    print(json.dumps(record))
    return record


def demo_model() -> Path | None:
    """The action demo's trained model folder in this checkout (``make demo``), else ``None``."""
    folder = Path(__file__).resolve().parents[1] / "demo_output" / "action" / "c3d_gru"
    return folder if (folder / "action_model.json").is_file() and (folder / "model.pt").is_file() else None
