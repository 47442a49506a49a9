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

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.budget import CPU_WIDTH, Budget, detect_budget, gpu_patch
from medseg.data import channel_names, datalist, dataset_description, label_names, load_dataset_json
from medseg.io.channels import read_channels
from medseg.io.volumes import VolumeError, read_volume

#: Decathlon / nnU-Net spellings of CT; any other modality is planned as MR-like (no absolute scale)
CT_NAMES = ("ct",)
SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case for the intensity percentiles (nnU-Net's number)
#: a case larger than this at the target spacing makes the spacing coarser (about 12 s per validation pass here)
MAX_VOXELS_PER_CASE = 192**3
MIN_PATCH_EDGE = 32
PATCH_EDGE = 32  # training patch edge (voxels): 4 patches of 32^3 per step cost 0.15-0.3 s on 2 CPU cores at width 4
ITERATIONS = 1000
ANISOTROPY = 3.0  # nnU-Net's threshold: an axis this many times coarser than the others, with few slices, is anisotropic
VAL_FRACTION = 0.2  # train.json's val_fraction: held out when dataset.json lists no validation cases
VALIDATIONS = 10  # validation passes over a training run
PALETTE = ([0.86, 0.55, 0.40], [0.72, 0.30, 0.27], [0.95, 0.85, 0.20], [0.55, 0.55, 0.85], [0.45, 0.75, 0.45], [0.80, 0.45, 0.80])


class PlanError(ValueError):
    """The dataset cannot be planned for; the message names the file or the reason."""


def modalities(dataset_json: Path) -> list[str]:
    """The modality of each input channel, in order (Decathlon ``modality`` or nnU-Net v2 ``channel_names``)."""
    names = channel_names(load_dataset_json(dataset_json))
    if not names:
        raise PlanError(
            f"{dataset_json}: has no 'modality' (Decathlon) or 'channel_names' (nnU-Net v2) mapping channel numbers to names; "
            'expected e.g. {"0": "CT"} or {"0": "T1", "1": "FLAIR"}.'
        )
    return names


def is_ct(name: str) -> bool:
    """Whether a channel's modality name means CT (absolute Hounsfield scale)."""
    return name.strip().lower() in CT_NAMES


def _ras_spacing_and_shape(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Spacing and size along R, A, S (the axes the bundle resamples to), from a RAS affine."""
    import nibabel as nib

    axes = nib.orientations.io_orientation(affine)[:, 0].astype(int)  # index axis n -> RAS axis
    spacing, size = np.zeros(3), np.zeros(3)
    spacing[axes] = np.linalg.norm(affine[:3, :3], axis=0)
    size[axes] = np.asarray(shape, dtype=float)
    return spacing, size


def _body_shape(image: np.ndarray) -> tuple[int, ...]:
    """Size of the bounding box of the non-zero voxels of any channel (``(C, i, j, k)``; what the bundle's crop to the
    body keeps for zero-background MR; CT air is not 0, so CT keeps about its full size here)."""
    image = np.asarray(image).any(axis=0) if np.ndim(image) == 4 else image
    nonzero = np.nonzero(image)
    if not nonzero[0].size:
        return tuple(image.shape)
    return tuple(int(ax.max() - ax.min() + 1) for ax in nonzero)


def fingerprint(data: str | Path, seed: int = 0) -> dict[str, Any]:
    """What :func:`make_plan` needs to know about a dataset (reads every training case once).

    Returns a dict: ``modality`` (the channels' names, joined), ``channels`` (one modality per input channel),
    ``labels`` (value -> name), ``colours``, ``cases``, ``spacings`` / ``shapes`` (per case, RAS order, mm / voxels of
    the non-zero bounding box), ``foreground`` (channel 0's foreground intensity percentiles 0.5/50/99.5, mean, sd),
    ``foreground_per_channel`` (the same for each channel), ``label_volume_ml`` (per label, mean over cases).
    """
    source = Path(data)
    description_path = dataset_description(source)
    if description_path is None:
        raise PlanError(
            f"{data}: no dataset.json; plan needs one to know the modality and the labels (Decathlon layout: imagesTr/, labelsTr/, dataset.json)."
        )
    items = datalist(description_path, "training")
    training_cases = len(items) - max(1, round(VAL_FRACTION * len(items)))  # the bundle holds out val_fraction ...
    if "validation" in json.loads(description_path.read_text(encoding="utf-8")):
        training_cases = len(items)  # ... unless dataset.json lists validation cases
        items = items + datalist(description_path, "validation")
    if len(items) < 2:
        raise PlanError(f"{description_path}: {len(items)} case(s); plan needs at least 2 (one to train on, one to validate).")
    rng = np.random.default_rng(seed)
    channels = modalities(description_path)
    spacings, shapes, samples, volumes = [], [], [[] for _ in channels], []
    names = label_names(description_path)
    for item in items:
        image, geometry = read_channels(item["image"])
        if len(image) != len(channels):
            raise PlanError(
                f"{item['image']}: {len(image)} channel(s); {description_path} declares {len(channels)} ({', '.join(channels)})."
            )
        label, _ = read_volume(item["label"])
        spacing, shape = _ras_spacing_and_shape(geometry.ras_affine, _body_shape(image))
        spacings.append(spacing.tolist())
        shapes.append(shape.tolist())
        inside = label > 0
        for c, channel in enumerate(image):
            foreground = channel[inside]
            if foreground.size:
                samples[c].append(rng.choice(foreground, min(SAMPLES_PER_CASE, foreground.size), replace=False))
        voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
        counts = np.bincount(np.asarray(label, dtype=np.int64).ravel(), minlength=max(names) + 1)
        volumes.append([float(counts[v]) * voxel_ml for v in sorted(names)])
    if not samples[0]:
        raise PlanError(f"{description_path}: no training label has a foreground voxel; nothing to learn.")
    colours = json.loads(description_path.read_text(encoding="utf-8")).get("colors", {})
    per_channel = [_intensity_summary(np.concatenate(s).astype(np.float64)) for s in samples]
    return {
        "dataset": str(description_path),
        "modality": ", ".join(channels),
        "channels": channels,
        "labels": {int(k): v for k, v in names.items()},
        "colours": colours,
        "cases": len(items),
        "training_cases": max(1, training_cases),
        "spacings": spacings,
        "shapes": shapes,
        "foreground": per_channel[0],
        "foreground_per_channel": per_channel,
        "label_volume_ml": {names[v]: float(np.mean([c[i] for c in volumes])) for i, v in enumerate(sorted(names))},
    }


def _intensity_summary(values: np.ndarray) -> dict[str, float]:
    return {
        "p0.5": float(np.percentile(values, 0.5)),
        "p50": float(np.percentile(values, 50)),
        "p99.5": float(np.percentile(values, 99.5)),
        "mean": float(values.mean()),
        "sd": float(values.std()),
    }


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


def patch_size(spacing: Sequence[float], spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[float]]) -> list[int]:
    """:data:`PATCH_EDGE` per axis, capped by the median case size at ``spacing`` (rounded up to 16), at least
    :data:`MIN_PATCH_EDGE` (instance norm needs more than one voxel per channel at V-Net's deepest, 1/16, level)."""
    extent = np.median(np.asarray(shapes) * np.asarray(spacings), axis=0)
    median_voxels = extent / np.asarray(spacing)
    return [int(max(MIN_PATCH_EDGE, min(PATCH_EDGE, math.ceil(n / 16) * 16))) for n in median_voxels]


def fit_to_budget(print_: dict[str, Any], spacing: Sequence[float], budget: Budget, mini_batch_size: int) -> tuple[dict[str, Any], str]:
    """Patch, width and batch ids for ``budget`` (:mod:`medseg.budget`), and the reason."""
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


def make_plan(
    print_: dict[str, Any], iterations: int = ITERATIONS, mini_batch_size: int = 2, budget: Budget | None = None
) -> dict[str, Any]:
    """Config values (ids of ``train.json``) and the reason for each, from a :func:`fingerprint`.

    ``budget``: the machine the plan is for (:func:`medseg.budget.parse_budget`; ``None``: the CPU).
    """
    budget = budget or Budget("cpu", source="default")
    labels = print_["labels"]
    spacing, spacing_reason = target_spacing(print_["spacings"], print_["shapes"], MAX_VOXELS_PER_CASE if budget.kind == "cpu" else None)
    fitted, fit_reason = fit_to_budget(print_, spacing, budget, mini_batch_size)
    mini_batch_size = fitted["options#mini_batch_size"]
    normalization, window, norm_reason = channel_normalization(print_)
    channels = print_.get("channels", [print_["modality"]])
    if len(channels) > 1:  # V-Net tiles its input to `width` channels for the first residual connection
        fitted["width"] = len(channels) * math.ceil(fitted["width"] / len(channels))
    per_epoch = math.ceil(print_["training_cases"] / mini_batch_size)
    epochs = max(1, math.ceil(iterations / per_epoch))
    colours = {str(v): print_["colours"].get(str(v), PALETTE[(v - 1) % len(PALETTE)]) for v in labels if v}
    values = {
        "pixdim": spacing,
        **fitted,
        "normalization": normalization,
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


def write_bundle(plan: dict[str, Any], out: str | Path, fingerprint_: dict[str, Any], dataset_dir: str | Path | None = None) -> Path:
    """Write the planned bundle to ``out`` (all files first to a temporary folder, then renamed: nothing partial).

    ``bundle_root`` stays ``"."`` (the bundle can be moved); ``dataset_dir`` becomes the planned data's absolute path.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PlanError(f"{out}: exists and is not empty; plan writes a new bundle (choose another --out or remove it).")
    from medact_bundles import template_dir

    template = template_dir("vnet_seg")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".plan-", dir=out.parent))
    try:
        shutil.copytree(template / "configs", tmp / "configs")
        shutil.copytree(template / "docs", tmp / "docs")
        shutil.copy2(template / "LICENSE", tmp / "LICENSE")
        # the plan goes into train.json only: a trained model carries its settings (models/model.json), which
        # inference.json reads; bundle_root stays ".": the bundle can be moved
        data_dir = {"dataset_dir": str(Path(dataset_dir).resolve())} if dataset_dir else {}
        set_config_values(tmp / "configs" / "train.json", {**plan["values"], **data_dir})
        set_config_values(tmp / "configs" / "inference.json", data_dir)
        _write_metadata(tmp / "configs" / "metadata.json", plan)
        (tmp / "plan.json").write_text(json.dumps({"plan": plan, "fingerprint": fingerprint_}, indent=1, default=str), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def set_config_values(config_file: Path, values: dict[str, Any]) -> None:
    """Set ``id#sub#key`` values that exist in ``config_file``; others are skipped."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for key, value in values.items():
        *path, last = key.split("#")
        node = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            node[last] = value
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_metadata(path: Path, plan: dict[str, Any]) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    labels = {str(k): v for k, v in sorted(plan["labels"].items())}
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred.update(channel_def=labels, num_channels=len(labels))
    image = meta["network_data_format"]["inputs"]["image"]
    channels = plan.get("channels", [plan["modality"]])
    all_ct = all(is_ct(c) for c in channels)
    image.update(
        modality=plan["modality"],
        format="hounsfield" if all_ct else "magnitude",
        value_range=[0, 1] if all_ct else [],
        num_channels=len(channels),
        channel_def={str(c): name for c, name in enumerate(channels)},
    )
    meta["name"] = f"V-Net planned by medseg plan ({plan['modality']})"
    meta["task"] = "3D segmentation of " + ", ".join(v for k, v in labels.items() if k != "0")
    meta["label_classes"] = "single channel: " + ", ".join(f"{k} {v}" for k, v in labels.items())
    meta["pred_classes"] = f"{len(labels)} channels (logits), argmax gives the label map"
    what = (
        f"single channel {plan['modality']}"
        if len(channels) == 1
        else f"{len(channels)} channels ({plan['modality']}), each normalised on its own"
    )
    meta["image_classes"] = f"{what}, resampled to {plan['values']['pixdim']} mm RAS, {plan['values']['normalization']} normalisation"
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def plan_dataset(data: str | Path, out: str | Path, iterations: int = ITERATIONS, budget: Budget | None = None) -> dict[str, Any]:
    """Validate, fingerprint, plan for ``budget`` (``None``: this machine) and write; returns the plan.

    Raises :class:`PlanError` / ``VolumeError``.
    """
    budget = budget or detect_budget()
    from medseg.validate import validate

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
    write_bundle(plan, out, print_, source)
    return plan


__all__ = ["PlanError", "VolumeError", "fingerprint", "make_plan", "plan_dataset", "write_bundle"]
