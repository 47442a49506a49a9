"""Figures, drawn with matplotlib's object API (no pyplot global state, no display needed).

Every figure is saved through :func:`save_figure`, which writes a temporary PNG and
renames it, so a viewer refreshing the file during training never sees half an image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.io import atomic_path

TRAIN_COLOURS = {"metric": ("#9ecae1", "#08519c"), "loss": ("#fdae6b", "#d94801")}


def smooth(values: Sequence[float], factor: float = 0.6) -> np.ndarray:
    """Bias-corrected exponential moving average (NaNs skipped), as the smoothed curves of MATLAB's plot.

    Args:
        values: raw per-iteration values.
        factor: weight of the past in [0, 1); 0 returns the input.
    """
    out = np.full(len(values), np.nan)
    running, weight = 0.0, 0.0
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            continue
        running = factor * running + (1 - factor) * value
        weight = factor * weight + (1 - factor)
        out[i] = running / weight
    return out


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if row.get(key) is None else float(row[key]) for row in rows], dtype=float)


def _draw_panel(ax: Any, rows: Sequence[Mapping[str, Any]], what: str, train_key: str, val_key: str, label: str) -> None:
    iterations = _column(rows, "iteration")
    train = _column(rows, train_key)
    raw_colour, smooth_colour = TRAIN_COLOURS[what]
    if np.isfinite(train).any():
        ax.plot(iterations, train, color=raw_colour, linewidth=0.8, label="Training")
        ax.plot(iterations, smooth(train), color=smooth_colour, linewidth=1.6, label="Training (smoothed)")
    val = _column(rows, val_key)
    seen = np.isfinite(val)
    if seen.any():
        ax.plot(iterations[seen], val[seen], "--o", color="black", markersize=3, linewidth=1.0, label="Validation")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def _mark_epochs(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    epochs = _column(rows, "epoch")
    iterations = _column(rows, "iteration")
    for i in range(1, len(rows)):
        if epochs[i] != epochs[i - 1]:
            ax.axvline(iterations[i - 1] + 0.5, color="0.85", linewidth=0.8, zorder=0)


def training_progress_figure(
    rows: Sequence[Mapping[str, Any]],
    key_metric: str | None,
    info: Mapping[str, Any] | None = None,
) -> Figure:
    """MATLAB's "training-progress" window as a figure.

    Args:
        rows: history rows with ``iteration``, ``epoch``, ``train_loss``, ``val_loss`` and,
            when ``key_metric`` is set, ``train_<key_metric>`` / ``val_<key_metric>`` (NaN or
            missing where not measured).
        key_metric: name of the metric for the top panel (``None``: loss only).
        info: lines for the side panel, e.g. ``{"Epoch": "3 of 30", "Elapsed": "00:01:12"}``.
    """
    panels = 2 if key_metric else 1
    fig = Figure(figsize=(11, 3.2 * panels + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(panels, 2, width_ratios=[4, 1])
    axes = [fig.add_subplot(grid[i, 0]) for i in range(panels)]
    if key_metric:
        _draw_panel(axes[0], rows, "metric", f"train_{key_metric}", f"val_{key_metric}", key_metric)
    _draw_panel(axes[-1], rows, "loss", "train_loss", "val_loss", "Loss")
    for ax in axes:
        _mark_epochs(ax, rows)
    axes[-1].set_xlabel("Iteration")
    side = fig.add_subplot(grid[:, 1])
    side.axis("off")
    lines = [f"{k}: {v}" for k, v in (info or {}).items()]
    side.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace", transform=side.transAxes)
    fig.suptitle("Training progress")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
