"""A dataset's fingerprint, as nnU-Net's experiment planning takes it: modality, spacings, sizes, foreground intensities, label volumes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.datasets.datalists import channel_names, datalist, dataset_description, label_names, load_dataset_json
from medseg.datasets.splits import validation_count
from medseg.io.channels import read_channels
from medseg.io.volumes import read_volume
from medseg.planning.symmetry import MAX_CASES, mirror_scores, normalised_map, ras_order

#: Decathlon / nnU-Net spellings of CT; any other modality is planned as MR-like (no absolute scale)
CT_NAMES = ("ct",)


SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case for the intensity percentiles (nnU-Net's number)


#: a case larger than this at the target spacing makes the spacing coarser (about 12 s per validation pass here)
MAX_VOXELS_PER_CASE = 192**3


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


def _planned_cases(data: str | Path) -> tuple[Path, list[dict[str, Any]], int]:
    """``(dataset.json, every case to fingerprint, how many of them the bundle trains on)``."""
    source = Path(data)
    description_path = dataset_description(source)
    if description_path is None:
        raise PlanError(
            f"{data}: no dataset.json; plan needs one to know the modality and the labels (Decathlon layout: imagesTr/, labelsTr/, dataset.json)."
        )
    items = datalist(description_path, "training")
    training_cases = len(items) - validation_count(len(items))  # the bundle holds out val_fraction (the one rule) ...
    if "validation" in json.loads(description_path.read_text(encoding="utf-8")):
        training_cases = len(items)  # ... unless dataset.json lists validation cases
        items = items + datalist(description_path, "validation")
    if len(items) < 2:
        raise PlanError(f"{description_path}: {len(items)} case(s); plan needs at least 2 (one to train on, one to validate).")
    return description_path, items, training_cases


def fingerprint(data: str | Path, seed: int = 0) -> dict[str, Any]:
    """What :func:`make_plan` needs to know about a dataset (reads every training case once).

    Returns a dict: ``modality`` (the channels' names, joined), ``channels`` (one modality per input channel),
    ``labels`` (value -> name), ``colours``, ``cases``, ``spacings`` / ``shapes`` (per case, RAS order, mm / voxels of
    the non-zero bounding box), ``foreground`` (channel 0's foreground intensity percentiles 0.5/50/99.5, mean, sd),
    ``foreground_per_channel`` (the same for each channel), ``label_volume_ml`` (per label, mean over cases),
    ``mirror_scores`` (per RAS axis: how alike the labels flipped along it are to the labels,
    :mod:`medseg.planning.symmetry`), ``label_overlap`` (:func:`label_intensity_overlap`).
    """
    description_path, items, training_cases = _planned_cases(data)
    rng = np.random.default_rng(seed)
    channels = modalities(description_path)
    spacings, shapes, samples, volumes = [], [], [[] for _ in channels], []
    by_label: dict[int, list[list[np.ndarray]]] = {}
    label_rng = np.random.default_rng([seed, 1])  # its own stream: the intensity percentiles draw what they drew before
    names = label_names(description_path)
    compared = set(rng.permutation(len(items))[:MAX_CASES].tolist())  # the symmetry measure is pairwise: a sample
    maps = []
    for index, item in enumerate(items):
        image, geometry = read_channels(item["image"])
        if len(image) != len(channels):
            raise PlanError(
                f"{item['image']}: {len(image)} channel(s); {description_path} declares {len(channels)} ({', '.join(channels)})."
            )
        label, label_geometry = read_volume(item["label"])
        if index in compared:
            maps.append(normalised_map(ras_order(label, label_geometry.ras_affine)))
        spacing, shape = _ras_spacing_and_shape(geometry.ras_affine, _body_shape(image))
        spacings.append(spacing.tolist())
        shapes.append(shape.tolist())
        inside = label > 0
        for c, channel in enumerate(image):
            foreground = channel[inside]
            if foreground.size:
                samples[c].append(rng.choice(foreground, min(SAMPLES_PER_CASE, foreground.size), replace=False))
        _sample_each_label(image, label, names, label_rng, by_label)
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
        "mirror_scores": mirror_scores([m for m in maps if m is not None]),
        "label_overlap": label_intensity_overlap(by_label, names),
    }


def _sample_each_label(image: np.ndarray, label: np.ndarray, names: dict[int, str], rng: np.random.Generator, into: dict) -> None:
    """Append up to ``SAMPLES_PER_CASE / labels`` intensities of each foreground label, per channel, to ``into[value]``."""
    foreground = [v for v in sorted(names) if v]
    per_label = max(1, SAMPLES_PER_CASE // max(1, len(foreground)))
    flat = np.asarray(label).ravel()
    for value in foreground:
        where = np.flatnonzero(flat == value)
        if where.size:
            chosen = rng.choice(where, min(per_label, where.size), replace=False)
            into.setdefault(value, [[] for _ in image])
            for c, channel in enumerate(image):
                into[value][c].append(np.asarray(channel).ravel()[chosen])


def label_intensity_overlap(by_label: dict[int, list[list[np.ndarray]]], names: dict[int, str]) -> list[dict[str, Any]]:
    """How alike two foreground labels look voxel by voxel: for each pair, the overlap of their intensity histograms
    (sum of the bin-wise minimum of the two normalised 64-bin histograms over the labels' common 0.5-99.5 percentile
    range; 1 = the same distribution, 0 = apart), the smallest over the channels (one channel that tells them apart
    is enough). Pairs sorted from most alike; ``[{"labels": [a, b], "overlap": x}, ...]``.

    Labels that look the same (grey-matter regions) can only be told apart by where they lie, which a small patch does
    not see: :func:`medseg.planning.cascade.decide` gives those a coarse stage.
    """
    values = {v: [np.concatenate(c).astype(np.float64) for c in chans] for v, chans in by_label.items() if chans and chans[0]}
    pairs = []
    keys = sorted(values)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            overlap = min(_histogram_overlap(x, y) for x, y in zip(values[a], values[b], strict=True))
            pairs.append({"labels": [names[a], names[b]], "overlap": round(overlap, 3)})
    return sorted(pairs, key=lambda p: -p["overlap"])


def _histogram_overlap(x: np.ndarray, y: np.ndarray, bins: int = 64) -> float:
    lo, hi = np.percentile(np.concatenate([x, y]), [0.5, 99.5])
    if hi <= lo:
        return 1.0  # both constant at one value: alike
    edges = np.linspace(lo, hi, bins + 1)
    hx = np.histogram(np.clip(x, lo, hi), edges)[0] / x.size
    hy = np.histogram(np.clip(y, lo, hi), edges)[0] / y.size
    return float(np.minimum(hx, hy).sum())


def _intensity_summary(values: np.ndarray) -> dict[str, float]:
    return {
        "p0.5": float(np.percentile(values, 0.5)),
        "p50": float(np.percentile(values, 50)),
        "p99.5": float(np.percentile(values, 99.5)),
        "mean": float(values.mean()),
        "sd": float(values.std()),
    }
