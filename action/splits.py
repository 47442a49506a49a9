"""The validation hold-out of training data: whole groups when the data has them, else a stratified share.

Clips of one UCF101/UCF50 group (``_gNN_``) share their actor and scene, clips of one HMDB51 source film their
people and setting, recordings of one subject their body and sensor placement: a validation set that shares a
group with training measures memory of the group, not recognition (nnU-Net and torchvision's references split
by case and by group the same way). So when every item has a group, whole groups are held out; otherwise a
stratified share of each class. The asked fraction is honoured as nearly as whole groups (or whole items per
class) allow, and the report says what was asked and what was held out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class HoldOut:
    """A validation hold-out: ``val`` boolean ``(N,)`` mask, the held-out ``groups`` (empty: by item), and a one-line ``report``."""

    val: np.ndarray
    groups: list[str]
    report: str


def hold_out(labels: Sequence[int], groups: Sequence[str] | None, fraction: float, seed: int = 0, unit: str = "videos") -> HoldOut:
    """Choose the validation items of ``labels`` (one class index per item) for ``fraction`` of them.

    Args:
        labels: class index per item.
        groups: group name per item (actor, scene, subject) or ``None``; with two or more groups, whole groups
            are held out: ``round(fraction * groups)`` of them (at least 1, at most all but one), chosen with ``seed``.
        fraction: asked validation share (0: none).
        unit: what an item is called in the report (``"videos"``, ``"recordings"``).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if fraction <= 0 or n < 2:
        return HoldOut(np.zeros(n, dtype=bool), [], f"{n} training {unit}, no validation hold-out (fraction {fraction:g})")
    if groups is not None and len(set(groups)) >= 2:
        return _by_group(labels, list(groups), fraction, seed, unit)
    mask = _stratified(labels, fraction, seed)
    missing = sorted(set(labels.tolist()) - set(labels[mask].tolist()))
    note = "" if groups is None else " (one group only: held out by item, so validation shares it with training)"
    report = _report(mask, fraction, unit) + " stratified by class" + note
    if missing:
        report += f"; classes {missing} have no validation {unit} (too few to spare one)"
    return HoldOut(mask, [], report)


def _by_group(labels: np.ndarray, groups: list[str], fraction: float, seed: int, unit: str) -> HoldOut:
    names = sorted(set(groups))
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    order = np.random.default_rng(seed).permutation(len(names))
    held = sorted(names[i] for i in order[:count])
    mask = np.isin(np.asarray(groups, dtype=object), held)
    report = _report(mask, fraction, unit) + f": whole groups {', '.join(held)} ({count} of {len(names)}; no group in both)"
    missing = sorted(set(labels.tolist()) - set(labels[mask].tolist()))
    if missing:
        report += f"; classes {missing} have no validation {unit} in those groups"
    return HoldOut(mask, held, report)


def _stratified(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``max(1, round(fraction * N))`` items, shared among the classes by largest remainder, one item of each class kept
    for training. (Before, each class gave at least one: 16 videos of 8 classes at 0.1 held out 8, not 2.)"""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    total = min(int(counts.sum() - len(classes)), max(1, round(fraction * len(labels))))
    quota = fraction * counts
    take = np.minimum(np.floor(quota).astype(int), counts - 1)
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):  # largest remainders first
        if take.sum() >= total:
            break
        if take[c] < counts[c] - 1:
            take[c] += 1
    mask = np.zeros(len(labels), dtype=bool)
    for label, k in zip(classes, take):
        members = np.flatnonzero(labels == label)
        mask[rng.permutation(members)[:k]] = True
    return mask


def _report(mask: np.ndarray, fraction: float, unit: str) -> str:
    n, held = len(mask), int(mask.sum())
    share = held / n if n else math.nan
    return f"{n - held} training and {held} validation {unit} (asked {fraction:.0%}, held out {share:.0%})"
