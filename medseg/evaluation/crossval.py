"""``medseg cross-validate``: every fold trained (resumable), scored on its held-out cases, pooled, and the
post-processing that cross-validation shows to help written to ``postprocessing.json`` (nnU-Net's way).

For fold K the bundle trains into ``models/fold_K`` (``medseg train --fold K``; :mod:`medseg.datasets.splits`), a fold whose
``model.pt`` exists is taken as done and one with checkpoints but no model resumes, so an interrupted
cross-validation continues where it stopped. Each fold's model segments that fold's validation cases into
``crossval/fold_K`` with a report; ``crossval/summary.json`` has the per-fold and the pooled Dice (all validation
cases together, each predicted by the one model that never saw it).

Post-processing: for each label, "keep the largest connected component" and "remove parts far smaller than any
in the training labels" are scored on the pooled predictions (:func:`medseg.inference.postprocessing.decide_postprocessing`;
``postprocessing.json``: the chosen labels and every score). ``medseg infer --folds`` applies it; ``--keep-largest``
forces keep-largest for every label, ``--no-postprocessing`` turns both off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.datasets.datalists import datalist
from medseg.datasets.splits import FOLDS
from medseg.evaluation.decide import smallest_training_parts, training_enclosure
from medseg.inference.postprocessing import POSTPROCESSING, decide_postprocessing

logger = logging.getLogger(__name__)


def train_fold(bundle: Path, data: Path, fold: int, overrides: Mapping[str, Any]) -> str:
    """Train ``fold`` unless its ``model.pt`` exists (``"done"``), resuming from its checkpoints if any; returns what it did."""
    from medseg.workflow import run_workflow, training_overrides

    folder = bundle / "models" / f"fold_{fold}"
    if (folder / "model.pt").is_file():
        return "done"
    resume = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").glob("*.pt"))
    values = {"dataset_dir": str(data), **training_overrides({"fold": fold, **overrides})}
    if resume:
        values["trainer#resume"] = True
    run_workflow(bundle, ["train.json"], values)
    return "resumed" if resume else "trained"


def cross_validate(
    bundle: str | Path, data: str | Path, folds: Sequence[int] = tuple(range(FOLDS)), overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Train, score and pool ``folds``; decide the post-processing. Returns (and writes) ``crossval/summary.json``."""
    from medseg.datasets.splits import split_cases
    from medseg.evaluation.report import evaluate_cases
    from medseg.inference.segmenter import load_segmenter
    from shared.io import atomic_write_json

    bundle, data = Path(bundle), Path(data)
    overrides = dict(overrides or {})
    device = {k: v for k, v in overrides.items() if k in ("device", "precision")}
    per_fold, pairs = {}, []
    for fold in folds:
        status = train_fold(bundle, data, fold, overrides)
        _, val = split_cases(data, fold=fold, splits_file=bundle / "splits.json", check=False)
        segmenter = load_segmenter(bundle, bundle / "models" / f"fold_{fold}" / "model.pt", device)
        # scored raw: the post-processing is decided from these
        segmenter.keep_largest, segmenter.remove_small, segmenter.remove_detached = False, {}, {}
        out = bundle / "crossval" / f"fold_{fold}"
        summary = evaluate_cases(segmenter, val, out)
        per_fold[str(fold)] = {
            "status": status,
            "cases": summary["cases"],
            "mean_dice": summary["mean_dice"],
            "per_label": summary["per_label"],
        }
        pairs += _prediction_pairs(out / "pred", val)
        logger.info("Fold %d (%s): mean Dice %.4f on %d cases", fold, status, summary["mean_dice"], summary["cases"])
    labels = [v for v in segmenter.names if v]
    training = datalist(data, "training")  # every case trains some fold
    smallest, (enclosing, least_share) = smallest_training_parts(training, labels), training_enclosure(training, labels)
    decision = decide_postprocessing(_read_pairs(pairs), labels, smallest, enclosing, least_share)  # one case in memory at a time
    atomic_write_json(bundle / POSTPROCESSING, decision)
    pooled = {str(k): v for k, v in decision["dice_without"].items()}
    result = {
        "folds": per_fold,
        "pooled_dice": pooled,
        "pooled_mean_dice": float(np.nanmean(list(pooled.values()))),
        "postprocessing": decision,
    }
    atomic_write_json(bundle / "crossval" / "summary.json", result)
    return result


def _prediction_pairs(pred_dir: Path, items: Sequence[dict]) -> list[tuple[Path, Path]]:
    from medseg.io.channels import case_name

    return [(pred_dir / f"{case_name(i['image'])}_seg.nii.gz", Path(i["label"])) for i in items]


def _read_pairs(pairs: Sequence[tuple[Path, Path]]) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """``(prediction, reference, ml per voxel)``, one case at a time."""
    from medseg.io.volumes import read_volume

    for pred, ref in pairs:
        reference, geometry = read_volume(ref)
        yield np.asarray(read_volume(pred)[0]), np.asarray(reference), float(np.prod(geometry.spacing)) / 1000
