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


MAX_EPOCH_LINES = 40  # beyond this (e.g. 1000 one-iteration epochs of a planned bundle) the lines hide the curves


def _mark_epochs(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    epochs = _column(rows, "epoch")
    iterations = _column(rows, "iteration")
    ends = [iterations[i - 1] for i in range(1, len(rows)) if epochs[i] != epochs[i - 1]]
    if len(ends) > MAX_EPOCH_LINES:
        return
    for end in ends:
        ax.axvline(end + 0.5, color="0.85", linewidth=0.8, zorder=0)


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


def metric_bars_figure(per_group: Mapping[str, Mapping[str, float]], metrics: Sequence[str], title: str = "") -> Figure:
    """Grouped bars: one group per class (keys of ``per_group``), one bar per metric, with ``<metric>_std`` error bars.

    Args:
        per_group: ``{"liver": {"dice_mean": 0.9, "dice_std": 0.02, ...}, ...}``.
        metrics: metric stems to draw, e.g. ``["dice", "iou"]`` (reads ``<stem>_mean`` / ``<stem>_std``).
    """
    groups = list(per_group)
    fig = Figure(figsize=(max(5, 1.4 * len(groups) * len(metrics) / 2 + 2), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(groups))
    for n, metric in enumerate(metrics):
        means = [per_group[g].get(f"{metric}_mean", np.nan) for g in groups]
        stds = [per_group[g].get(f"{metric}_std", 0.0) for g in groups]
        ax.bar(x + (n - (len(metrics) - 1) / 2) * width, np.nan_to_num(means), width, yerr=np.nan_to_num(stds), capsize=3, label=metric)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.05)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(metrics))
    ax.set_title(title)
    return fig


def overlay_figure(panels: Sequence[Mapping[str, Any]], colours: Mapping[int, Sequence[float]]) -> Figure:
    """Slices with reference (solid) and predicted (dashed) label contours, one column per panel.

    Args:
        panels: ``[{"title": str, "image": (H, W), "reference": (H, W) ints, "prediction": (H, W) ints}, ...]``.
        colours: label value -> RGB (0-1).
    """
    fig = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    for n, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        ax.imshow(np.asarray(panel["image"]).T, cmap="gray", origin="lower")
        for label, rgb in colours.items():
            for key, style in (("reference", "solid"), ("prediction", "dashed")):
                mask = (np.asarray(panel[key]) == int(label)).T
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[tuple(rgb)], linestyles=style, linewidths=1.2)
        ax.set_title(panel["title"], fontsize=9)
        ax.axis("off")
    fig.suptitle("reference: solid, prediction: dashed", fontsize=9)
    return fig


def confusion_chart_figure(counts: np.ndarray, class_names: Sequence[str], normalise: bool = False, title: str = "") -> Figure:
    """MATLAB ``confusionchart``: counts (rows = true class), with row summaries (recall) and column summaries (precision)."""
    counts = np.asarray(counts, dtype=float)
    n = len(class_names)
    fig = Figure(figsize=(2.0 + 0.7 * n, 1.6 + 0.7 * n), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=[n, 1.3], height_ratios=[n, 1.3])
    ax = fig.add_subplot(grid[0, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = counts / counts.sum(axis=1, keepdims=True) if normalise else counts
        recall = np.diag(counts) / counts.sum(axis=1)
        precision = np.diag(counts) / counts.sum(axis=0)
    ax.imshow(np.nan_to_num(shown), cmap="Blues")
    for i in range(n):
        for j in range(n):
            value = shown[i, j]
            text = "" if counts[i, j] == 0 else (f"{100 * value:.1f}%" if normalise else f"{int(value)}")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if np.nan_to_num(shown)[i, j] > 0.6 * np.nanmax(np.nan_to_num(shown)) else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    rows = fig.add_subplot(grid[0, 1])
    rows.imshow(np.nan_to_num(recall)[:, None], cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for i, value in enumerate(recall):
        rows.text(0, i, "" if np.isnan(value) else f"{100 * value:.1f}%", ha="center", va="center", fontsize=8)
    rows.set_xticks([0], ["recall"])
    rows.set_yticks([])
    cols = fig.add_subplot(grid[1, 0])
    cols.imshow(np.nan_to_num(precision)[None, :], cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for j, value in enumerate(precision):
        cols.text(j, 0, "" if np.isnan(value) else f"{100 * value:.1f}%", ha="center", va="center", fontsize=8)
    cols.set_yticks([0], ["precision"])
    cols.set_xticks([])
    fig.suptitle(title or "Confusion chart")
    return fig
