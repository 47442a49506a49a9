"""Plan a V-Net bundle from the data, as nnU-Net's experiment planning does, for a CPU budget.

``python -m medseg plan DATA --out BUNDLE_DIR`` fingerprints a dataset and writes a ready bundle:

1. **Fingerprint** (:func:`fingerprint`): modality from ``dataset.json``; each training case's
   spacing and size in RAS order; intensities of foreground (label > 0) voxels, up to
   :data:`SAMPLES_PER_CASE` per case; the volume of each label.
2. **Plan** (:func:`make_plan`): target spacing = the median spacing per axis (nnU-Net), made
   coarser when the median case would exceed :data:`MAX_VOXELS_PER_CASE` at that spacing (a CPU
   trains on what fits in a few minutes, not on 500 MB volumes); patch size = :data:`PATCH_EDGE`
   voxels per axis, capped by the median case size (a multiple of 16: V-Net halves it four times);
   intensity normalisation by modality (CT: clip to the foreground's 0.5-99.5 percentiles and
   rescale, MR and anything else: per-scan z-score inside the body); class-balanced patch centres;
   iterations and validation cadence; label names and colours.
3. **Write** (:func:`write_bundle`): the configs of the shipped bundle (``bundles/vnet_seg``) with the
   planned values, ``metadata.json`` with the labels, and ``plan.json`` (fingerprint, choices, reasons).

The planned bundle is used as any other: ``medseg train --bundle DIR --data DATA``, ``medseg infer
--bundle DIR``, ``python -m monai.bundle run --config_file DIR/configs/train.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.datasets.datalists import channel_names, datalist, dataset_description, label_names, load_dataset_json
from medseg.planning.budget import CPU_WIDTH, Budget, detect_budget, gpu_patch
from medseg.planning.bundle_writer import write_bundle
from medseg.planning.fingerprint import MAX_VOXELS_PER_CASE, PlanError, fingerprint, is_ct
from medseg.planning.symmetry import axes_to_mirror
from medseg.planning.symmetry import describe as describe_symmetry

MIN_PATCH_EDGE = 32


PATCH_EDGE = 32  # training patch edge (voxels): 4 patches of 32^3 per step cost 0.15-0.3 s on 2 CPU cores at width 4


ITERATIONS = 1000


ANISOTROPY = 3.0  # nnU-Net's threshold: an axis this many times coarser than the others, with few slices, is anisotropic


VALIDATIONS = 10  # validation passes over a training run


# Cases per step when a CPU plan is fitted to minutes (--train-minutes): 1 case x 2 patches. For the same minutes a
# step of 2 patches (0.18 s here) allows 1.6-1.8x the steps of one of 4 (0.32 s), and more, smaller steps trained the
# better model: demo, 3 minutes, seeds 0-2, 2 threads: 0.970 +- 0.002 mean Dice (about 617 iterations) against
# 0.936 +- 0.031 (about 367) with 2 cases x 2 patches. A fixed iteration count (--iterations) keeps 2 cases a step:
# there each step's patches are what is bought.
BUDGET_MINI_BATCH = 1


PALETTE = ([0.86, 0.55, 0.40], [0.72, 0.30, 0.27], [0.95, 0.85, 0.20], [0.55, 0.55, 0.85], [0.45, 0.75, 0.45], [0.80, 0.45, 0.80])


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[float]], max_voxels: float | None = MAX_VOXELS_PER_CASE
) -> tuple[list[float], str]:
    """Median spacing per axis with nnU-Net's anisotropy rule (:func:`anisotropic_axis`), then coarsened isotropically
    when the median case exceeds ``max_voxels`` (:data:`MAX_VOXELS_PER_CASE` on a CPU; ``None``, a GPU budget: as it is)."""
    all_spacings = np.asarray(spacings, dtype=float)
    spacing = np.median(all_spacings, axis=0)
    extent = np.median(np.asarray(shapes) * all_spacings, axis=0)  # mm
    reason = f"median spacing of {len(spacings)} cases"
    axis = anisotropic_axis(spacing, extent / spacing)
    if axis is not None:
        others = max(spacing[a] for a in range(3) if a != axis)
        low = max(float(np.percentile(all_spacings[:, axis], 10)), others + 1e-5)
        reason += (
            f"; axis {'RAS'[axis]} is anisotropic ({spacing[axis]:g} mm > {ANISOTROPY:g} x {others:g} mm, and its median size "
            f"x {ANISOTROPY:g} is below the others'): its target is the 10th percentile of its spacings, {low:.4g} mm (nnU-Net's rule), "
            "so thin-slice cases are not thrown away"
        )
        spacing[axis] = low
    voxels = float(np.prod(extent / spacing))
    if max_voxels is not None and voxels > max_voxels:
        factor = (voxels / max_voxels) ** (1 / 3)
        spacing = spacing * factor
        reason += f", x{factor:.2f} so the median case ({voxels / 1e6:.1f} Mvoxel) fits {max_voxels / 1e6:.1f} Mvoxel on a CPU"
    return [round(float(s), 4) for s in spacing], reason


def anisotropic_axis(spacing: Sequence[float], median_size: Sequence[float]) -> int | None:
    """The low-resolution axis when nnU-Net calls the data anisotropic, else ``None``.

    Anisotropic: the coarsest axis's median spacing is more than :data:`ANISOTROPY` times the others' largest, and
    its median size times :data:`ANISOTROPY` is smaller than the others' smallest (few thick slices).
    """
    spacing, size = np.asarray(spacing, dtype=float), np.asarray(median_size, dtype=float)
    worst = int(np.argmax(spacing))
    others = [a for a in range(3) if a != worst]
    thick = spacing[worst] > ANISOTROPY * spacing[others].max()
    few = size[worst] * ANISOTROPY < size[others].min()
    return worst if thick and few else None


def patch_size(
    spacing: Sequence[float], spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[float]], edge: int = PATCH_EDGE
) -> list[int]:
    """``edge`` (default :data:`PATCH_EDGE`) per axis, capped by the median case size at ``spacing`` (rounded up to
    16), at least :data:`MIN_PATCH_EDGE` (instance norm needs more than one voxel per channel at V-Net's deepest,
    1/16, level)."""
    extent = np.median(np.asarray(shapes) * np.asarray(spacings), axis=0)
    median_voxels = extent / np.asarray(spacing)
    return [int(max(MIN_PATCH_EDGE, min(edge, math.ceil(n / 16) * 16))) for n in median_voxels]


def fit_to_budget(print_: dict[str, Any], spacing: Sequence[float], budget: Budget, mini_batch_size: int) -> tuple[dict[str, Any], str]:
    """Patch, width and batch ids for ``budget`` (:mod:`medseg.planning.budget`), and the reason."""
    spacings, shapes = np.asarray(print_["spacings"], float), np.asarray(print_["shapes"], float)
    if budget.kind == "cpu":
        roi = patch_size(spacing, spacings, shapes)
        values = {"roi_size": roi, "sw_roi_size": roi, "width": CPU_WIDTH, "options#mini_batch_size": mini_batch_size}
        reason = f"{PATCH_EDGE}^3 voxels per patch fits the CPU step budget, capped by the median case; width {CPU_WIDTH}"
        if max(spacing) > ANISOTROPY * min(spacing):  # nnU-Net would shorten the patch along the coarse axis
            reason += (
                f"; the patch cannot follow the anisotropic spacing here: V-Net halves every axis 4 times and instance norm "
                f"needs more than one voxel at the deepest level, so no axis takes fewer than {MIN_PATCH_EDGE} voxels, and "
                "more along the fine axes costs 4x per step (a GPU budget follows the spacing)"
            )
        return values, reason
    sizes = shapes * spacings / np.asarray(spacing)  # each case in voxels at the target spacing
    roi, batch, width, reason = gpu_patch(
        np.median(sizes, axis=0), spacing, budget, len(print_["labels"]), float(np.prod(sizes, axis=1).sum())
    )
    values = {
        "roi_size": roi,
        "sw_roi_size": roi,
        "width": width,
        "options#mini_batch_size": batch,
        "train#preprocessing#num_samples": 1,  # one patch per case: a batch of `batch` different cases, as nnU-Net's
        "sw_batch_size": 2,
    }
    return values, reason


#: why plans correct MR bias fields (docs/medseg.md has the runs)
BIAS_REASON = (
    "MR channels: N4 bias-field correction (2 fitting levels) before the z-score, in training and inference alike; on the MNI152 "
    "grey/white task (15 minutes, seed 0) the unseen hemisphere under a linear bias field went from 0.924 / 0.908 to 0.954 / 0.951"
)


def make_plan(
    print_: dict[str, Any], iterations: int = ITERATIONS, mini_batch_size: int = 2, budget: Budget | None = None, spacing_scale: float = 1.0
) -> dict[str, Any]:
    """Config values (ids of ``train.json``) and the reason for each, from a :func:`fingerprint`.

    ``budget``: the machine the plan is for (:func:`medseg.planning.budget.parse_budget`; ``None``: the CPU).
    ``spacing_scale``: the target spacing times this (a cascade's coarse stage, :mod:`medseg.planning.cascade`).
    """
    budget = budget or Budget("cpu", source="default")
    labels = print_["labels"]
    spacing, spacing_reason = _planned_spacing(print_, budget, spacing_scale)
    fitted, fit_reason = fit_to_budget(print_, spacing, budget, mini_batch_size)
    mini_batch_size = fitted["options#mini_batch_size"]
    normalization, window, norm_reason = channel_normalization(print_)
    channels = print_.get("channels", [print_["modality"]])
    if len(channels) > 1:  # V-Net tiles its input to `width` channels for the first residual connection
        fitted["width"] = len(channels) * math.ceil(fitted["width"] / len(channels))
    per_epoch = math.ceil(print_["training_cases"] / mini_batch_size)
    epochs = max(1, math.ceil(iterations / per_epoch))
    colours = {str(v): print_["colours"].get(str(v), PALETTE[(v - 1) % len(PALETTE)]) for v in labels if v}
    mirror = {"mirror_axes": axes_to_mirror(print_["mirror_scores"])} if "mirror_scores" in print_ else {}
    values = {
        "pixdim": spacing,
        **fitted,
        **mirror,
        "normalization": normalization,
        "bias_correction": "zscore" in ([normalization] if isinstance(normalization, str) else normalization),
        "window": window,
        "colours": colours,
        "train#preprocessing#class_ratios": [1] * len(labels),
        "options#max_epochs": epochs,
        "options#validation_frequency": max(1, (epochs * per_epoch) // VALIDATIONS),
        "options#verbose_frequency": max(1, (epochs * per_epoch) // VALIDATIONS),
    }
    reasons = {
        "pixdim": spacing_reason,
        "roi_size": fit_reason,
        "width": (
            f"{fitted['width']} channels at the first level: "
            + ("the 2-core step budget (width 16 costs 14x width 4 per step)" if budget.kind == "cpu" else "MONAI's and the paper's V-Net")
            + (f", a multiple of the {len(channels)} input channels (V-Net tiles its input to its width)" if len(channels) > 1 else "")
        ),
        "options#mini_batch_size": (
            f"{fitted['options#mini_batch_size']} cases per step"
            + (" x 2 patches each" if budget.kind == "cpu" else ", one patch each (nnU-Net: at least 2 samples per batch)")
        ),
        "normalization": norm_reason,
        "bias_correction": BIAS_REASON if "zscore" in str(normalization) else "no MR (z-score) channel: nothing to correct",
        **({"mirror_axes": describe_symmetry(print_["mirror_scores"])} if mirror else {}),
        "train#preprocessing#class_ratios": "patch centres drawn equally from each label (small structures seen as often as large ones)",
        "options#max_epochs": f"{epochs} epochs x {per_epoch} iterations = about {epochs * per_epoch} iterations",
    }
    return {
        "values": values,
        "reasons": reasons,
        "labels": labels,
        "modality": print_["modality"],
        "channels": channels,
        "budget": budget.describe(),
    }


def _planned_spacing(print_: dict[str, Any], budget: Budget, spacing_scale: float) -> tuple[list[float], str]:
    """:func:`target_spacing` for ``budget``, times ``spacing_scale`` (a cascade's coarse stage), and the reason."""
    spacing, reason = target_spacing(print_["spacings"], print_["shapes"], MAX_VOXELS_PER_CASE if budget.kind == "cpu" else None)
    if spacing_scale == 1.0:
        return spacing, reason
    return [round(s * spacing_scale, 4) for s in spacing], reason + f", x{spacing_scale:.2f}: the coarse stage of a cascade"


def channel_normalization(print_: dict[str, Any]) -> tuple[Any, Any, str]:
    """``(normalization, window, reason)``: per channel by its modality (nnU-Net's rule): CT is clipped to its
    foreground's 0.5-99.5 percentiles and rescaled to [0, 1]; anything else (MR-like, no absolute scale) is z-scored
    inside the body, per scan. One channel: a name and a window; several: a list of each, one per channel."""
    channels = print_.get("channels", [print_["modality"]])
    foregrounds = print_.get("foreground_per_channel", [print_["foreground"]])
    names, windows, reasons = [], [], []
    for name, fg in zip(channels, foregrounds):
        if is_ct(name):
            window = [round(fg["p0.5"], 2), round(fg["p99.5"], 2)]
            names.append("minmax")
            windows.append(window)
            reasons.append(f"{name}: clip to the foreground's 0.5-99.5 percentiles {window} and rescale to [0, 1]")
        else:
            names.append("zscore")
            windows.append(None)
            reasons.append(f"{name} (MR-like, no absolute scale): per-scan z-score inside the body")
    reason = (
        "; ".join(f"channel {c} {r}" for c, r in enumerate(reasons))
        if len(channels) > 1
        else reasons[0].replace(f"{channels[0]}: ", "CT: ", 1)
    )
    if len(channels) == 1:
        return names[0], windows[0], reason
    return names, (None if all(w is None for w in windows) else windows), reason


def plan_dataset(
    data: str | Path,
    out: str | Path,
    iterations: int = ITERATIONS,
    budget: Budget | None = None,
    train_minutes: float | None = None,
    cascade: str = "auto",
) -> dict[str, Any]:
    """Validate, fingerprint, plan for ``budget`` (``None``: this machine) and write; returns the plan.

    ``train_minutes``: fit the iterations to that many minutes of this machine (:mod:`medseg.planning.time_budget`)
    instead of ``iterations``. ``cascade``: ``auto``, ``on`` or ``off``, a coarse stage whose probabilities the
    planned network takes as extra channels (:mod:`medseg.planning.cascade`; the plan's ``cascade`` and ``coarse``
    record it). Raises :class:`PlanError` / ``VolumeError``.
    """
    from medseg.planning import cascade as two_stage

    if cascade not in two_stage.MODES:
        raise PlanError(f"--cascade {cascade}: expected one of {', '.join(two_stage.MODES)}.")
    if train_minutes is not None and not (math.isfinite(train_minutes) and train_minutes > 0):
        raise PlanError(f"--train-minutes {train_minutes:g}: expected a positive number of minutes.")
    budget = budget or detect_budget()
    from medseg.datasets.validate import validate

    source = Path(data)
    if not source.exists():
        raise PlanError(f"{data}: no such dataset folder.")
    description = dataset_description(source)
    if description is not None:
        items = datalist(description, "training")
        declared = len(channel_names(load_dataset_json(description))) or None
        errors = [p for p in validate(items, sorted(label_names(description)), channels=declared) if p.level == "error"]
        if errors:
            first = errors[0]
            raise PlanError(f"{first.path}: {first.message} ({len(errors)} error(s); python -m medseg validate {data} lists them all)")
    print_ = fingerprint(source)
    plan = make_plan(print_, iterations, budget=budget)
    wanted, scale, why = two_stage.decide(cascade, print_, plan["values"])
    decided_on = list(plan["values"]["roi_size"])
    coarse = None
    if wanted:
        coarse = make_plan(print_, iterations, budget=budget, spacing_scale=scale)
        plan = two_stage.with_coarse_channels(plan)
    minutes = two_stage.split_minutes(train_minutes) if coarse and train_minutes is not None else (None, train_minutes)
    if train_minutes is not None:
        plan = plan_minutes(plan, print_, minutes[1], budget)
        coarse = plan_minutes(coarse, print_, minutes[0], budget) if coarse else None
    why = two_stage.restate_for_probed_patch(why, print_, decided_on, plan["values"])
    plan["cascade"] = {"reason": why, **(two_stage.describe(scale, two_stage.COARSE_SHARE if train_minutes else None) if coarse else {})}
    if coarse is not None:
        plan["coarse"] = {k: coarse[k] for k in ("values", "reasons", "probe") if k in coarse}
    write_bundle(plan, out, print_, source, coarse=coarse)
    return plan


def plan_minutes(plan: dict[str, Any], print_: dict[str, Any], minutes: float, budget: Budget) -> dict[str, Any]:
    """``plan`` with the patch, width, precision and iterations the probe of this machine finds best for ``minutes``
    (:mod:`medseg.planning.candidates`). A GPU budget is probed on the GPU, so it needs one here."""
    import torch

    from medseg.planning.candidates import cpu_candidates, gpu_candidates, plan_for_minutes

    values = plan["values"]
    if budget.kind == "gpu":
        if not torch.cuda.is_available():
            raise PlanError(
                f"--train-minutes {minutes:g} with a GPU budget: the probe times the GPU that trains, and this machine has "
                "no CUDA device; plan on the GPU machine, or use --iterations."
            )
        candidates = gpu_candidates(values["roi_size"], values["width"], MIN_PATCH_EDGE, torch.cuda.is_bf16_supported())
        return plan_for_minutes(plan, print_, minutes, candidates, VALIDATIONS, device="cuda")
    from medseg.planning.candidates import CPU_EDGES
    from shared.devices import cpu_bf16_is_faster

    per_case = values.get("train#preprocessing#num_samples", 2)
    values = {**values, "options#mini_batch_size": BUDGET_MINI_BATCH}
    reason = (
        f"{BUDGET_MINI_BATCH} case per step x {per_case} patches: within a time budget more, smaller steps trained the better "
        "model (demo, 3 minutes, 3 seeds: 0.970 +- 0.002 mean Dice against 0.936 +- 0.031 with 2 cases per step)"
    )
    plan = {**plan, "values": values, "reasons": {**plan["reasons"], "options#mini_batch_size": reason}}

    rois = [patch_size(values["pixdim"], print_["spacings"], print_["shapes"], edge) for edge in CPU_EDGES]
    candidates = cpu_candidates(rois, plan.get("image_channels", len(plan["channels"])), cpu_bf16_is_faster())
    return plan_for_minutes(plan, print_, minutes, candidates, VALIDATIONS)
