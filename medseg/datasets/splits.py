"""Which cases train and which validate: the one rule of medseg (``medseg train``, ``plan``, ``cross-validate``).

Without folds (:func:`split_cases`): the ``validation`` list of ``dataset.json`` when present, else a seeded
:data:`VAL_FRACTION` of the training cases (:func:`validation_count`, at least one) held out. ``plan`` counts the
training cases with the same function, so the plan and the run agree.

With folds: cross-validation folds of a dataset, saved once as ``splits.json`` beside the bundle (nnU-Net's
``splits_final.json``). The file is a list of ``{"train": [case ids], "val": [case ids]}``, one entry per fold, in
nnU-Net's format, so a split made by nnU-Net can be dropped in and one made here can be used by nnU-Net. A case id
is the image file's name without its suffix (``liver_003.nii.gz`` -> ``liver_003``). The folds are made once, by
case (every case in exactly one validation fold), from a seeded shuffle, and then read back on every run: the same
fold holds the same cases across runs, machines and library versions, and a user may edit the file (it is checked
against the dataset).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.datasets.datalists import datalist, dataset_description, label_names
from medseg.datasets.validate import validate
from medseg.io.channels import case_name
from medseg.io.volumes import VolumeError
from shared.io import atomic_write_json

FOLDS = 5
VAL_FRACTION = 0.2  # held out when dataset.json lists no validation cases (train.json's val_fraction)
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


def validation_count(cases: int, fraction: float = VAL_FRACTION) -> int:
    """How many of ``cases`` training cases :func:`split_cases` holds out at ``fraction``: at least one."""
    return max(1, round(fraction * cases))


logger = logging.getLogger(__name__)


def split_cases(
    dataset_dir: str | Path,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    labels: Sequence[int] | None = None,
    check: bool = True,
    fold: int | None = None,
    splits_file: str | Path | None = None,
    channels: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Training and validation cases of a dataset, after checking them (``medseg validate``).

    With ``fold``: that fold of ``splits_file`` (:mod:`medseg.datasets.splits`; made there, 5 folds by case, when missing).
    Otherwise the ``validation`` list of ``dataset.json`` when present, else ``val_fraction`` of the training
    cases (at least one) held out, chosen with ``seed``. ``channels``: the bundle's input channels; every case must have them.

    Raises:
        VolumeError: the dataset has errors (all listed, one per line), or too few cases.
    """
    items = datalist(dataset_dir, "training")
    if check:
        allowed = list(labels) if labels is not None else list(label_names(dataset_dir, None))
        problems = validate(items, allowed, channels=channels, channel_origin="the bundle's network takes")
        for problem in problems:
            (logger.error if problem.level == "error" else logger.warning)(str(problem))
        errors = [str(p) for p in problems if p.level == "error"]
        if errors:
            raise VolumeError(f"Dataset {dataset_dir} failed validation ({len(errors)} errors):\n" + "\n".join(errors))
    if fold is not None:
        if splits_file is None:
            raise VolumeError("fold given without splits_file (the bundle's splits.json).")
        splits = fold_splits(splits_file, [case_id(i) for i in items], fold=int(fold))
        return select_fold(items, splits, int(fold), Path(splits_file))
    description = dataset_description(dataset_dir)
    if description is not None and "validation" in json.loads(description.read_text(encoding="utf-8")):
        return items, datalist(dataset_dir, "validation")
    if len(items) < 2:
        raise VolumeError(f"Dataset {dataset_dir} has {len(items)} training case(s); need at least 2 to hold one out for validation.")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = validation_count(len(items), val_fraction)
    val_idx = set(order[:n_val])
    return [items[i] for i in range(len(items)) if i not in val_idx], [items[i] for i in sorted(val_idx)]
