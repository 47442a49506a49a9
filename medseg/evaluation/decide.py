"""The post-processing of one trained model, decided on its validation cases at the end of ``medseg train``.

``train.json`` runs :func:`decide_after_training` after the trainer: the saved model segments the validation cases
(raw argmax, as ``medseg infer --no-postprocessing``), :func:`medseg.inference.postprocessing.decide_postprocessing`
scores keep-largest, small-part and detached-part removal per label against their references, and the choice goes to
``postprocessing.json`` beside ``model.pt``, where ``medseg infer``, the bundle's ``inference.json``, ``evaluate.json``
and ``medseg serve`` read it. nnU-Net decides the same on its pooled cross-validation folds (``medseg
cross-validate`` still does that, for the fold ensemble); a single training run has only its validation cases, so
the evidence is thinner, and each step is kept only where those cases do not contradict it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def label_volumes(items: Iterable[Mapping[str, Any]]) -> Iterator[tuple[np.ndarray, float]]:
    """``(label map, ml per voxel)`` of each item's ``"label"`` file, one at a time."""
    from medseg.io.volumes import read_volume

    for item in items:
        labels, geometry = read_volume(item["label"])
        yield np.asarray(labels), float(np.prod(geometry.spacing)) / 1000


def smallest_training_parts(items: Sequence[Mapping[str, Any]], labels: Sequence[int]) -> dict[int, float]:
    """Each label's smallest connected part (ml) over the training references."""
    from medseg.inference.postprocessing import smallest_parts_ml

    return smallest_parts_ml(label_volumes(items), labels)


def enclosing_training_labels(items: Sequence[Mapping[str, Any]], labels: Sequence[int]) -> dict[int, list[int]]:
    """Each label's enclosing labels in the training references (:func:`medseg.inference.postprocessing.enclosing_labels`)."""
    return training_enclosure(items, labels)[0]


def training_enclosure(items: Sequence[Mapping[str, Any]], labels: Sequence[int]) -> tuple[dict[int, list[int]], dict[int, float]]:
    """Each label's enclosing labels in the training references, and the least enclosed part's share of its shell in
    them (:func:`medseg.inference.postprocessing.enclosure`)."""
    from medseg.inference.postprocessing import enclosure

    return enclosure(label_volumes(items), labels)


def decide_after_training(
    bundle_root: str | Path,
    models_dir: str | Path,
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    device: str = "auto",
    precision: str = "fp32",
) -> dict[str, Any] | None:
    """Decide and write ``models_dir/postprocessing.json`` for ``models_dir/model.pt``; returns the decision
    (``None`` in the other processes of a distributed run, or when the run saved no model)."""
    import ignite.distributed as idist  # the rank as the engine and checkpoints see it (0 outside a distributed run)

    from medseg.inference.postprocessing import POSTPROCESSING, decide_postprocessing
    from medseg.inference.segmenter import CascadeSegmenter, load_segmenter
    from shared.io import atomic_write_json

    weights = Path(models_dir) / "model.pt"
    if idist.get_rank() != 0 or not weights.is_file():
        return None
    raw = {"device": device, "precision": precision, "keep_largest": False, "remove_small": {}, "remove_detached": {}}
    segmenter = load_segmenter(bundle_root, weights, raw)
    if isinstance(segmenter, CascadeSegmenter):  # a fine stage: its validation items already carry the coarse probabilities
        segmenter = segmenter.fine
    labels = [v for v in segmenter.names if v]
    smallest, (enclosing, least_share) = smallest_training_parts(train_items, labels), training_enclosure(train_items, labels)
    pairs = []
    for item, (ref, voxel_ml) in zip(val_items, label_volumes(val_items)):
        mask, _ = segmenter.segment(item["image"])
        pairs.append((mask, ref, voxel_ml))
    decision = {**decide_postprocessing(pairs, labels, smallest, enclosing, least_share), "decided_on": f"{len(pairs)} validation case(s)"}
    atomic_write_json(Path(models_dir) / POSTPROCESSING, decision)
    print(describe(decision, segmenter.names), flush=True)
    return decision


def describe(decision: Mapping[str, Any], names: Mapping[int, str]) -> str:
    """One line: what was chosen and the validation Dice it moved."""
    kept = [names.get(int(k), f"label {k}") for k in decision["keep_largest"]]

    def name(label: Any) -> str:
        return names.get(int(label), f"label {label}")

    small = [f"{name(k)} < {v:.3g} ml" for k, v in decision["remove_smaller_than_ml"].items()]
    shares = decision.get("attached_share", {})
    detached = [
        f"{name(k)} touching no {' or '.join(name(p) for p in v)}"
        + (f" or under {shares[k]:.0%} of their surface in it" if shares.get(k) else "")
        for k, v in decision.get("remove_detached", {}).items()
    ]
    steps = "; ".join(
        filter(
            None,
            [
                f"keep the largest part of {', '.join(kept)}" if kept else "",
                f"remove parts {', '.join(small)}" if small else "",
                f"remove parts of {', '.join(detached)}" if detached else "",
            ],
        )
    )
    return f"Post-processing, decided on {decision.get('decided_on', 'held-out cases')}: {steps or 'none'}."
