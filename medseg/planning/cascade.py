"""A two-stage plan, nnU-Net's cascade on CPU terms: a coarse stage sees the anatomy, the fine stage the detail.

On a CPU the patch is small (32^3 voxels: 3.2 cm at 1 mm), so a patch often cannot tell which of several similar
structures it is in (cortex of one lobe or the next, one kidney or the other). The coarse stage is the same V-Net
trained at a coarser spacing (:func:`coarse_scale`: its patch covers a quarter of the median case, nnU-Net's
``lowres_creation_threshold``); its class probabilities, resampled to each image's grid, enter the fine stage as
extra input channels (:func:`with_coarse_channels`), so the fine stage sees, at every voxel, what the whole
neighbourhood looks like. ``medseg plan --cascade auto`` plans it when the fine patch covers less than a quarter of
the median case and the coarse stage would have at least half as many voxels less (nnU-Net's two conditions), and
two foreground labels look alike voxel by voxel (:data:`ALIKE_OVERLAP`: only where they lie tells them apart; a
cascade did not help labels that intensity separates, the demo's organs); ``on`` always, ``off`` never. ``medseg train`` trains both stages, ``medseg infer`` runs both
(:mod:`medseg.inference.cascade`).

With ``--train-minutes M`` the coarse stage gets :data:`COARSE_SHARE` of the minutes and the fine stage the rest;
each probes its own candidates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: nnU-Net's threshold: a fine patch covering less than this share of the median case's voxels gets a coarse stage
LOWRES_COVERAGE = 0.25
#: nnU-Net drops the low-resolution stage when it has fewer than 2x fewer voxels than the full-resolution one
MIN_VOXEL_REDUCTION = 2.0
#: the coarse spacing is at most this many times the fine one per axis (a 32^3 patch then spans 128 fine voxels)
MAX_SCALE = 4.0
#: two foreground labels whose intensity histograms overlap this much look alike voxel by voxel
#: (:func:`medseg.planning.fingerprint.label_intensity_overlap`); measured on the MNI152 tasks with their bias-field
#: variant: grey-matter regions 0.71-0.90 against each other, grey against white 0.46-0.57; the demo's organs 0.00-0.10
ALIKE_OVERLAP = 0.65
#: the share of a time budget the coarse stage trains for (it learns where things are, not their edges)
COARSE_SHARE = 1 / 3
#: the fine stage's training settings: how many trailing input channels are coarse probabilities, whether to perturb them
COARSE_CHANNELS, COARSE_AUGMENTATION = "train#preprocessing#coarse_channels", "train#preprocessing#coarse_augmentation"
#: whether a plan perturbs them: nnU-Net's cascade does, but measured on the MNI152 structures (15 minutes, the same
#: plan, seed 1) it lowered every structure (mean test Dice 0.923 against 0.940): within a CPU budget the coarse stage
#: scores its own training cases no better than unseen ones (docs/medseg.md, two stages), so there is nothing to undo
AUGMENT_COARSE = False
#: the folder of a fine bundle that holds its coarse stage
COARSE_DIR = "coarse"
MODES = ("auto", "on", "off")


def median_voxels(print_: dict[str, Any], pixdim: Sequence[float]) -> float:
    """Voxels of the median training case at ``pixdim`` (mm)."""
    extent = np.median(np.asarray(print_["shapes"], float) * np.asarray(print_["spacings"], float), axis=0)
    return float(np.prod(extent / np.asarray(pixdim, float)))


def patch_coverage(print_: dict[str, Any], values: dict[str, Any]) -> float:
    """Share of the median case's voxels that the planned patch covers (above 1 when the patch is larger)."""
    return float(np.prod(values["roi_size"])) / median_voxels(print_, values["pixdim"])


def coarse_scale(print_: dict[str, Any], values: dict[str, Any], coverage: float | None = None) -> float:
    """Factor on the fine spacing at which the fine patch covers :data:`LOWRES_COVERAGE` of the median case
    (at most :data:`MAX_SCALE`); 1.0 when it already does. ``coverage``: :func:`patch_coverage`, if known."""
    coverage = patch_coverage(print_, values) if coverage is None else coverage
    return float(min(MAX_SCALE, max(1.0, (LOWRES_COVERAGE / coverage) ** (1 / 3))))


def decide(mode: str, print_: dict[str, Any], values: dict[str, Any]) -> tuple[bool, float, str]:
    """``(two stages?, coarse spacing factor, reason)`` for ``--cascade mode``."""
    if mode not in MODES:
        raise ValueError(f"--cascade {mode!r}: expected one of {', '.join(MODES)}.")
    coverage = patch_coverage(print_, values)
    scale = coarse_scale(print_, values, coverage)
    facts = (
        f"the {'x'.join(map(str, values['roi_size']))} patch covers {coverage:.1%} of the median case; a coarse stage at "
        f"{scale:.2f}x the spacing has {scale**3:.1f}x fewer voxels"
    )
    if mode == "off":
        return False, scale, f"one stage (--cascade off); {facts}"
    if mode == "on":  # at least half the voxels, even where the patch sees the whole case: the user asked for two stages
        scale = max(scale, MIN_VOXEL_REDUCTION ** (1 / 3))
        return True, scale, f"two stages (--cascade on); {facts}; the coarse stage at {scale:.2f}x"
    alike = most_alike_labels(print_)
    wanted = coverage < LOWRES_COVERAGE and scale**3 >= MIN_VOXEL_REDUCTION and alike is not None and alike["overlap"] >= ALIKE_OVERLAP
    rule = (
        f"nnU-Net's rule: a patch under {LOWRES_COVERAGE:.0%} of the case, a coarse stage at least {MIN_VOXEL_REDUCTION:g}x "
        f"smaller; and labels that look alike (intensity overlap >= {ALIKE_OVERLAP:g}), told apart only by where they lie"
    )
    looks = "one foreground label" if alike is None else f"most alike: {' and '.join(alike['labels'])}, overlap {alike['overlap']:.2f}"
    return wanted, scale, f"{'two stages' if wanted else 'one stage'} ({rule}): {facts}; {looks}"


def restate_for_probed_patch(reason: str, print_: dict[str, Any], decided_on: Sequence[int], values: dict[str, Any]) -> str:
    """``reason`` with the patch the time probe chose, where it is not the one the decision weighed.

    ``decide`` runs before the probe (whether there are two stages sets each stage's minutes, and so its patch), on
    the planned patch ``decided_on``; a plan that then names only that patch would misreport the bundle's.
    """
    if list(decided_on) == list(values["roi_size"]):
        return reason
    before, after = ("x".join(map(str, roi)) for roi in (decided_on, values["roi_size"]))
    return f"{reason}; weighed on the {before} patch planned before the time probe, whose {after} patch covers {patch_coverage(print_, values):.1%}"


def most_alike_labels(print_: dict[str, Any]) -> dict[str, Any] | None:
    """The fingerprint's most alike pair of foreground labels (``{"labels": [a, b], "overlap": x}``), or ``None``."""
    pairs = print_.get("label_overlap") or []
    return max(pairs, key=lambda p: p["overlap"]) if pairs else None


def with_coarse_channels(plan: dict[str, Any]) -> dict[str, Any]:
    """The fine stage's plan: the image channels, then one coarse probability per foreground label (a new dict).

    The probabilities lie in [0, 1] already: min-max with the window [0, 1] leaves them as they are. ``image_channels``
    records how many channels are images (the width rule of multi-channel images counts only those).
    """
    values = dict(plan["values"])
    images = list(plan["channels"])
    labels = [name for value, name in sorted(plan["labels"].items(), key=lambda kv: int(kv[0])) if int(value) != 0]
    names = values["normalization"] if isinstance(values["normalization"], list) else [values["normalization"]] * len(images)
    windows = values["window"] if len(images) > 1 else [values["window"]]
    windows = windows if windows is not None else [None] * len(images)
    values["normalization"] = [*names, *(["minmax"] * len(labels))]
    values["window"] = [*windows, *([[0.0, 1.0]] * len(labels))]
    values[COARSE_CHANNELS] = len(labels)
    values[COARSE_AUGMENTATION] = AUGMENT_COARSE
    reasons = dict(plan["reasons"])
    reasons["normalization"] = (
        f"{reasons.get('normalization', '')}; then {len(labels)} coarse-stage probabilities (one per label), already in [0, 1]"
    )
    reasons[COARSE_CHANNELS] = f"the last {len(labels)} input channels are the coarse stage's probabilities"
    reasons[COARSE_AUGMENTATION] = (
        "not perturbed in training (nnU-Net's cascade perturbs them, medseg.coarse_augmentation): on the MNI152 structures "
        "in 15 minutes the coarse stage scored its own training cases no better than unseen ones, and perturbing them "
        "lowered every structure (mean test Dice 0.923 against 0.940, the same plan and seed)"
    )
    return {
        **plan,
        "values": values,
        "reasons": reasons,
        "channels": [*images, *(f"coarse {n}" for n in labels)],
        "image_channels": len(images),
    }


def split_minutes(minutes: float) -> tuple[float, float]:
    """``(coarse, fine)`` minutes of a budget."""
    coarse = minutes * COARSE_SHARE
    return coarse, minutes - coarse


def describe(scale: float, share: float | None) -> dict[str, Any]:
    """What ``plan.json`` records of the cascade."""
    record: dict[str, Any] = {"coarse": COARSE_DIR, "spacing_scale": round(scale, 3)}
    if share is not None:
        record["coarse_share"] = round(share, 3)
    return record


def coarse_bundle_of(bundle: str | os.PathLike) -> Path | None:
    """The coarse stage's bundle folder of a cascade bundle, or ``None`` for a one-stage bundle."""
    folder = Path(bundle) / COARSE_DIR
    return folder if (folder / "configs" / "train.json").is_file() else None
