"""Cross-validation folds of a dataset, saved once as ``splits.json`` beside the bundle (nnU-Net's ``splits_final.json``).

The file is a list of ``{"train": [case ids], "val": [case ids]}``, one entry per fold, in nnU-Net's format, so a
split made by nnU-Net can be dropped in and one made here can be used by nnU-Net. A case id is the image file's
name without its suffix (``liver_003.nii.gz`` -> ``liver_003``). The folds are made once, by case (every case in
exactly one validation fold), from a seeded shuffle, and then read back on every run: the same fold holds the same
cases across runs, machines and library versions, and a user may edit the file (it is checked against the dataset).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.io.channels import case_name
from shared.io import atomic_write_json

FOLDS = 5
SEED = 12345  # nnU-Net's seed for its default 5-fold split


class FoldError(ValueError):
    """A fold or splits file that does not fit the dataset; the message names the file and the reason."""


def case_id(item: dict[str, Any]) -> str:
    """The id of a datalist item: its image's file name without the suffix (a DICOM folder: its name; channel files:
    the case without the ``_0000`` suffix)."""
    return case_name(item["image"])


def make_splits(case_ids: Sequence[str], folds: int = FOLDS, seed: int = SEED) -> list[dict[str, list[str]]]:
    """``folds`` folds by case: a seeded shuffle dealt round-robin, so fold sizes differ by at most one."""
    ids = sorted(case_ids)
    if len(ids) < folds:
        raise FoldError(f"{len(ids)} training cases cannot make {folds} folds (each fold validates on at least one case).")
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise FoldError(f"case ids must be unique to split by case; repeated: {duplicates[:5]}")
    order = ids[:]
    random.Random(seed).shuffle(order)
    val = [sorted(order[k::folds]) for k in range(folds)]
    return [{"train": sorted(set(ids) - set(v)), "val": v} for v in val]


def read_splits(path: Path, case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """Read and check ``splits.json`` against the dataset's ``case_ids``; raises :class:`FoldError` naming the file."""
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FoldError(f"{path}: not a readable splits file ({err}).") from None
    if not isinstance(splits, list) or not splits or not all(isinstance(f, dict) and {"train", "val"} <= set(f) for f in splits):
        raise FoldError(f'{path}: expected a list of {{"train": [...], "val": [...]}}, one per fold (nnU-Net\'s splits_final.json).')
    known = set(case_ids)
    for k, fold in enumerate(splits):
        unknown = sorted((set(fold["train"]) | set(fold["val"])) - known)
        if unknown:
            raise FoldError(f"{path}: fold {k} names cases the dataset does not have: {unknown[:5]}")
        if not fold["val"] or set(fold["train"]) & set(fold["val"]):
            raise FoldError(f"{path}: fold {k} must validate on at least one case, none of them also in its training list.")
    return splits


def fold_splits(path: str | Path, case_ids: Sequence[str], folds: int = FOLDS, fold: int | None = None) -> list[dict[str, list[str]]]:
    """The splits in ``path``, written there first (atomically) when it does not exist yet.

    ``fold``: the fold about to be used; one that the splits cannot have is refused before anything is written.
    """
    path = Path(path)
    if path.is_file():
        return read_splits(path, case_ids)
    if fold is not None and not 0 <= fold < folds:
        raise FoldError(f"fold {fold}: {path} will have folds 0 to {folds - 1}.")
    splits = make_splits(case_ids, folds)
    atomic_write_json(path, splits)
    return splits


def select_fold(items: Sequence[dict[str, Any]], splits: Sequence[dict[str, list[str]]], fold: int, path: Path) -> tuple[list, list]:
    """``(training items, validation items)`` of ``fold``, in dataset order."""
    if not 0 <= fold < len(splits):
        raise FoldError(f"fold {fold}: {path} has folds 0 to {len(splits) - 1}.")
    train, val = set(splits[fold]["train"]), set(splits[fold]["val"])
    return [i for i in items if case_id(i) in train], [i for i in items if case_id(i) in val]
