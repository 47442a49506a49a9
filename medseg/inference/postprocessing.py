"""Post-processing decided by cross-validation (nnU-Net's way): keep the largest connected component of a label only
where it raised that label's pooled Dice; ``postprocessing.json`` in the bundle records the choice and both scores."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

POSTPROCESSING = "postprocessing.json"


def keep_largest(mask: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """``mask`` with only the largest connected component (26-connected) of each of ``labels`` kept."""
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    if not labels:
        return mask
    keep = KeepLargestConnectedComponent(applied_labels=list(labels), independent=True)
    # a copy: MONAI's transform writes into its input, and torch.from_numpy shares the caller's array
    return np.asarray(keep(torch.from_numpy(np.array(mask, copy=True))[None])[0].numpy(), dtype=mask.dtype)


def decide_postprocessing(pairs: Iterable[tuple[np.ndarray, np.ndarray]], labels: Sequence[int]) -> dict[str, Any]:
    """Which labels gain from keep-largest, over ``(prediction, reference)`` pairs: mean Dice per label with and without."""
    from medseg.evaluation.metrics import dice

    plain = {label: [] for label in labels}
    kept = {label: [] for label in labels}
    for pred, ref in pairs:
        for label in labels:
            plain[label].append(dice(pred, ref, (label,))[label])
            kept[label].append(dice(keep_largest(pred, [label]), ref, (label,))[label])
    without = {label: float(np.nanmean(plain[label])) if not np.all(np.isnan(plain[label])) else float("nan") for label in labels}
    with_ = {label: float(np.nanmean(kept[label])) if not np.all(np.isnan(kept[label])) else float("nan") for label in labels}
    chosen = [label for label in labels if with_[label] > without[label]]
    return {
        "keep_largest": chosen,
        "dice_without": {str(k): v for k, v in without.items()},
        "dice_with": {str(k): v for k, v in with_.items()},
    }


def read_postprocessing(bundle: str | Path) -> list[int] | None:
    """The labels ``postprocessing.json`` keeps the largest component of, or ``None`` without the file."""
    path = Path(bundle) / POSTPROCESSING
    if not path.is_file():
        return None
    try:
        return [int(v) for v in json.loads(path.read_text(encoding="utf-8"))["keep_largest"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f'{path}: expected {{"keep_largest": [labels]}} ({err}).') from None
