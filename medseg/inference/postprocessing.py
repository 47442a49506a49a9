"""Post-processing decided on held-out cases (nnU-Net's way), recorded in ``postprocessing.json`` and applied by inference.

Three steps per label, each kept only where it raised that label's mean Dice on cases the model never trained on
(the pooled folds of ``medseg cross-validate``, or the validation cases at the end of ``medseg train``):

- **keep the largest** connected component (nnU-Net's): stray islands far from the organ go;
- **remove small parts**: components under :data:`SMALL_PART_SHARE` of the smallest part of that label in the
  training references go. nnU-Net has no such step; we add it because a short CPU training run leaves single
  stray voxels of a small structure, and in a case without that structure one voxel scores Dice 0 (measured on the
  demo after 3 minutes: a tumour-free case got 1-14 stray tumour voxels, 0.008-0.112 ml, in 2 of 3 seeds; the
  smallest training tumour is 1.6 ml). The threshold comes from the training labels, so a dataset of tiny
  lesions gets a tiny threshold.
- **remove detached parts**: where the training labels show one structure inside another (a liver tumour in the
  liver: every training part touches it, and most of a typical part's surface borders it; at least
  :data:`MIN_ENCLOSED_PARTS` parts), predicted parts of it that touch none of its enclosing structure go, and so do
  parts that border it with less than :data:`ATTACHED_FRACTION` of the share of their shell that the least enclosed
  training part has in it (:func:`attached_shares`). nnU-Net has no such step (its region-based training
  encodes nesting in the loss instead); we add it because a 3-minute CPU run draws false tumours in plain body tissue
  50 mm from the liver (measured on the demo: 3 of 18 runs at 2 threads, each one's test Dice 0.88-0.89 with it and
  0.96-0.97 without), and keep-largest keeps such a part whenever it is the only one; and, once in six runs, one
  beside the liver (38% of its shell in it, where every training tumour has 100%; the 120 true tumour parts that 8
  models predicted on 20 cases had 95.5-100%).

Components are 26-connected (MONAI's ``KeepLargestConnectedComponent`` default); volumes are in ml so that one
threshold holds on every input grid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

POSTPROCESSING = "postprocessing.json"

#: a part smaller than this share of the label's smallest training part is taken for noise
SMALL_PART_SHARE = 0.2

#: a label lies within another when every training part of it touches that label and a typical (median) part has at
#: least this share of its outer shell (the 26-neighbour layer around it) in it: nesting, not a chance contact
ENCLOSED_SHARE = 0.5

#: fewer training parts than this are too little evidence of nesting
MIN_ENCLOSED_PARTS = 3

#: a predicted part of an enclosed label is attached when this fraction of the least enclosed training part's share
#: of its shell (in the enclosing labels) lies in them too: half, so that a part along the border of its structure
#: (a tumour under the liver's capsule, when the training tumours include such) stays, and tissue beside it goes
ATTACHED_FRACTION = 0.5

_CUBE = np.ones((3, 3, 3), bool)  # 26-connectivity


def keep_largest(mask: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """``mask`` with only the largest connected component (26-connected) of each of ``labels`` kept."""
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    if not labels:
        return mask
    keep = KeepLargestConnectedComponent(applied_labels=list(labels), independent=True)
    # a copy: MONAI's transform writes into its input, and torch.from_numpy shares the caller's array
    return np.asarray(keep(torch.from_numpy(np.array(mask, copy=True))[None])[0].numpy(), dtype=mask.dtype)


def part_volumes_ml(mask: np.ndarray, label: int, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """``(components, volumes)``: the 26-connected components of ``label`` in ``mask`` (``scipy.ndimage.label``
    numbering, 0 = elsewhere) and each one's volume in ml (index ``n - 1`` for component ``n``)."""
    from scipy import ndimage

    components, count = ndimage.label(mask == label, structure=np.ones((3, 3, 3), bool))
    voxels = np.bincount(components.ravel(), minlength=count + 1)[1:]
    return components, voxels * float(voxel_ml)


def remove_small_parts(mask: np.ndarray, min_ml: Mapping[int, float], voxel_ml: float) -> np.ndarray:
    """A copy of ``mask`` where each label's components smaller than ``min_ml[label]`` ml are background (0)."""
    out = np.array(mask, copy=True)
    for label, least in min_ml.items():
        components, volumes = part_volumes_ml(out, int(label), voxel_ml)
        small = np.concatenate([[False], volumes < float(least)])  # by component number (0: not this label)
        if small.any():
            out[small[components]] = 0
    return out


def smallest_parts_ml(references: Iterable[tuple[np.ndarray, float]], labels: Sequence[int]) -> dict[int, float]:
    """The volume (ml) of the smallest connected part of each label over ``(reference, voxel_ml)`` pairs; labels
    never present are left out."""
    smallest: dict[int, float] = {}
    for ref, voxel_ml in references:
        for label in labels:
            _, volumes = part_volumes_ml(ref, label, voxel_ml)
            if volumes.size:
                smallest[label] = min(smallest.get(label, np.inf), float(volumes.min()))
    return smallest


def part_shells(mask: np.ndarray, label: int) -> Iterator[np.ndarray]:
    """For each connected part of ``label`` in ``mask``: the labels of the voxels of its outer shell (the 26-neighbour
    layer around it, inside the volume), a 1-D array."""
    from scipy import ndimage

    yield from component_shells(mask, ndimage.label(mask == label, structure=_CUBE)[0])


def component_shells(mask: np.ndarray, components: np.ndarray) -> Iterator[np.ndarray]:
    """:func:`part_shells` of labelled ``components`` (``scipy.ndimage.label`` numbering), in that order."""
    from scipy import ndimage

    for number, box in enumerate(ndimage.find_objects(components), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # numpy clips the stop at the edge
        part = components[grown] == number
        yield mask[grown][ndimage.binary_dilation(part, structure=_CUBE) & ~part]


def _enclosure_shares(references: Iterable[tuple[np.ndarray, float]], labels: Sequence[int]) -> dict[int, dict[int, list[float]]]:
    """child -> parent -> the share of each training part's shell of ``child`` that is ``parent``."""
    shares: dict[int, dict[int, list[float]]] = {child: {parent: [] for parent in labels if parent != child} for child in labels}
    for ref, *_ in references:
        for child in labels:
            for shell in part_shells(ref, child):
                for parent, found in shares[child].items():
                    found.append(float(np.mean(shell == parent)) if shell.size else 0.0)
    return shares


def enclosure(references: Iterable[tuple[np.ndarray, float]], labels: Sequence[int]) -> tuple[dict[int, list[int]], dict[int, float]]:
    """``(enclosing, least_share)`` over ``(reference, voxel_ml)`` pairs: label -> the labels it lies within in every
    reference (:data:`ENCLOSED_SHARE`, :data:`MIN_ENCLOSED_PARTS`; labels within none are left out), and label -> the
    smallest share of a training part's shell that lies in those labels (0-1)."""
    shares = _enclosure_shares(references, labels)
    enclosed, least = {}, {}
    for child, by_parent in shares.items():
        parents = [
            parent
            for parent, found in by_parent.items()
            if len(found) >= MIN_ENCLOSED_PARTS and min(found) > 0 and float(np.median(found)) >= ENCLOSED_SHARE
        ]
        if parents:
            enclosed[child] = parents
            least[child] = float(np.min(np.sum([by_parent[p] for p in parents], axis=0)))
    return enclosed, least


def enclosing_labels(references: Iterable[tuple[np.ndarray, float]], labels: Sequence[int]) -> dict[int, list[int]]:
    """label -> the labels it lies within in every ``(reference, voxel_ml)`` (:func:`enclosure`)."""
    return enclosure(references, labels)[0]


def remove_detached_parts(
    mask: np.ndarray, enclosing: Mapping[int, Sequence[int]], attached_share: Mapping[int, float] | None = None
) -> np.ndarray:
    """A copy of ``mask`` where each part of a label in ``enclosing`` that touches (26-neighbours) none of that
    label's enclosing labels is background (0), and each part with less than ``attached_share[label]`` (0-1) of its
    shell in them (:func:`attached_shares`; missing: touching is enough). Every label is judged on ``mask`` as given."""
    from scipy import ndimage

    out = np.array(mask, copy=True)
    for child, parents in enclosing.items():
        components, count = ndimage.label(mask == int(child), structure=_CUBE)
        if not count:
            continue
        needed = float((attached_share or {}).get(int(child), 0.0))
        inside = [int(p) for p in parents]
        shares = np.array([np.isin(shell, inside).mean() if shell.size else 0.0 for shell in component_shells(mask, components)])
        attached = np.concatenate([[True], (shares > 0) & (shares >= needed)])  # by component number (0: not this label)
        out[~attached[components]] = 0
    return out


def attached_shares(least_share: Mapping[int, float]) -> dict[int, float]:
    """label -> the share of a predicted part's shell that must lie in its enclosing labels: :data:`ATTACHED_FRACTION`
    of the least enclosed training part's (``least_share``, :func:`enclosure`), for the labels whose every training
    part has at least :data:`ENCLOSED_SHARE` of its shell in them. Where some training part has less (a fragment of
    the MNI152 deep grey among cortical regions, 8% in the white matter), a part's share does not tell true from
    false (there, on 6 test cases, it took 83-100 voxels of true deep grey in 2), and touching stays enough."""
    return {int(k): ATTACHED_FRACTION * float(v) for k, v in least_share.items() if float(v) >= ENCLOSED_SHARE}


def _mean(values: list[float]) -> float:
    return float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else float("nan")


STEPS = ("plain", "kept", "small", "detached")  # the raw argmax, and each step alone


def _step_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    voxel_ml: float | None,
    labels: Sequence[int],
    limits: Mapping[int, float],
    enclosing: Mapping[int, Sequence[int]],
    attached: Mapping[int, float],
) -> dict[str, dict[int, float]]:
    """step -> label -> Dice of one case, for the labels each step applies to."""
    from medseg.evaluation.metrics import dice

    scores: dict[str, dict[int, float]] = {step: {} for step in STEPS}
    for label in labels:
        scores["plain"][label] = dice(pred, ref, (label,))[label]
        scores["kept"][label] = dice(keep_largest(pred, [label]), ref, (label,))[label]
        if voxel_ml is not None and label in limits:
            scores["small"][label] = dice(remove_small_parts(pred, {label: limits[label]}, voxel_ml), ref, (label,))[label]
        if label in enclosing:
            cleaned = remove_detached_parts(pred, {label: enclosing[label]}, attached)
            scores["detached"][label] = dice(cleaned, ref, (label,))[label]
    return scores


def decide_postprocessing(
    pairs: Iterable[tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, float]],
    labels: Sequence[int],
    smallest_ml: Mapping[int, float] | None = None,
    enclosing: Mapping[int, Sequence[int]] | None = None,
    least_share: Mapping[int, float] | None = None,
) -> dict[str, Any]:
    """Which labels gain from keep-largest, from removing small parts and from removing detached parts, over held-out
    ``(prediction, reference[, voxel_ml])`` pairs: each label's mean Dice without and with each step; keep-largest
    is chosen where it is higher, the removals where it is not lower (NaN, no case with the label or its prediction:
    not lower).

    ``smallest_ml``: each label's smallest part in the training references (:func:`smallest_parts_ml`); without it
    (or without ``voxel_ml`` in the pairs) small-part removal is not tried. ``enclosing``: the labels each label lies
    within in the training references (:func:`enclosure`); without it detached parts are not tried. ``least_share``:
    the least enclosed training part's share of its shell in them (:func:`enclosure`); without it touching is enough.
    """
    enclosing = {int(k): [int(p) for p in v] for k, v in (enclosing or {}).items() if int(k) in labels}
    limits = {int(k): SMALL_PART_SHARE * float(v) for k, v in (smallest_ml or {}).items() if int(k) in labels}
    attached = {k: v for k, v in attached_shares(least_share or {}).items() if k in enclosing}
    scores: dict[str, dict[int, list[float]]] = {step: {label: [] for label in labels} for step in STEPS}
    sized = True  # every pair gave its voxel size: small-part removal was scored
    for pair in pairs:
        voxel_ml = pair[2] if len(pair) > 2 else None
        sized = sized and voxel_ml is not None
        for step, by_label in _step_scores(pair[0], pair[1], voxel_ml, labels, limits, enclosing, attached).items():
            for label, value in by_label.items():
                scores[step][label].append(value)
    if not sized:
        limits = {}
    means = {step: {label: _mean(values) for label, values in by_label.items()} for step, by_label in scores.items()}
    without, with_, small, detached = means["plain"], means["kept"], means["small"], means["detached"]
    return {
        "keep_largest": [label for label in labels if with_[label] > without[label]],
        # >=: a tie means no true part was touched on held-out cases, and the parts it removes are far smaller than
        # any the training labels have; a case without the structure (where a stray voxel scores 0) may not be among them
        "remove_smaller_than_ml": {str(k): v for k, v in limits.items() if not small[k] < without[k]},
        # >=: likewise; what it removes lies where no training part ever was, outside the structure it always lies in
        "remove_detached": {str(k): v for k, v in enclosing.items() if not detached[k] < without[k]},
        "attached_share": {str(k): v for k, v in attached.items() if not detached[k] < without[k]},
        "dice_without": {str(k): v for k, v in without.items()},
        "dice_with": {str(k): v for k, v in with_.items()},
        "dice_without_small_parts": {str(k): small[k] for k in limits},
        "dice_without_detached_parts": {str(k): detached[k] for k in enclosing},
        "smallest_training_part_ml": {str(k): float(v) for k, v in (smallest_ml or {}).items()},
        "small_part_share": SMALL_PART_SHARE,
        "enclosed_in_training": {str(k): v for k, v in enclosing.items()},
        "least_enclosed_training_share": {str(k): float(v) for k, v in (least_share or {}).items() if int(k) in enclosing},
    }


def apply_postprocessing(
    mask: np.ndarray,
    keep: Sequence[int],
    min_ml: Mapping[int, float],
    voxel_ml: float,
    enclosing: Mapping[int, Sequence[int]] | None = None,
    attached_share: Mapping[int, float] | None = None,
) -> np.ndarray:
    """Small parts removed (``min_ml``), then detached parts (``enclosing``, ``attached_share``), then the largest
    component of each of ``keep`` kept."""
    if min_ml:
        mask = remove_small_parts(mask, min_ml, voxel_ml)
    if enclosing:
        mask = remove_detached_parts(mask, enclosing, attached_share)
    return keep_largest(mask, list(keep)) if keep else mask


def read_postprocessing_file(path: Path) -> dict[str, Any] | None:
    """``{"keep_largest": [labels], "remove_smaller_than_ml": {label: ml}, "remove_detached": {label: [labels]},
    "attached_share": {label: share}}`` of one ``postprocessing.json`` (the removals ``{}`` where an older file lacks
    them; without ``attached_share`` a part that touches its enclosing labels stays), or ``None``."""
    if not path.is_file():
        return None
    try:
        decision = json.loads(path.read_text(encoding="utf-8"))
        return {
            "keep_largest": [int(v) for v in decision["keep_largest"]],
            "remove_smaller_than_ml": {int(k): float(v) for k, v in decision.get("remove_smaller_than_ml", {}).items()},
            "remove_detached": {int(k): [int(p) for p in v] for k, v in decision.get("remove_detached", {}).items()},
            "attached_share": {int(k): float(v) for k, v in decision.get("attached_share", {}).items()},
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f'{path}: expected {{"keep_largest": [labels], "remove_smaller_than_ml": {{label: ml}}, "remove_detached": {{label: [labels]}}, optional "attached_share": {{label: share}}}} ({err}).'
        ) from None


def read_postprocessing(bundle: str | Path) -> list[int] | None:
    """The labels the bundle's ``postprocessing.json`` (cross-validation) keeps the largest component of, or ``None``."""
    decision = read_postprocessing_file(Path(bundle) / POSTPROCESSING)
    return None if decision is None else decision["keep_largest"]
