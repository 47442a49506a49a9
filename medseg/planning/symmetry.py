"""Along which axes the training labels allow mirroring: measured by ``medseg plan``, used as ``mirror_axes``.

nnU-Net mirrors every patch along every axis during training, so that test-time mirroring is in distribution. For
anatomy that is not symmetric along an axis (a liver is on one side of the body) that teaches the network that the
liver may be on either side, and test-time mirroring along that axis averages in a prediction for a body that does
not exist (measured on a left-right-trained brain model: ``--tta-axes 0 1 2`` dropped structure Dice from about 0.8
to 0.13). So the plan measures it, from the labels:

1. each case's label map, in RAS axis order, is cropped to its foreground's bounding box and resampled (nearest
   neighbour) to a :data:`GRID`^3 grid: position and size no longer matter, only the shape and arrangement of the
   labels;
2. along each axis, a case flipped is compared with every case (itself included): the best mean Dice over the
   foreground labels, jointly (a liver alone is symmetric; a liver and a spleen swapped sides are not);
3. that is divided by how alike the cases are unflipped (each case's best Dice with another case; 1 for a single
   case), and the median over cases is the axis's score: 1 when a mirrored case looks like a training case as much as
   the training cases look like each other.

An axis whose score is at least :data:`MIRROR_SCORE` is mirrored in training. At most :data:`MAX_CASES` cases are
compared (seeded choice): the comparison is pairwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRID = 24
MAX_CASES = 20
#: an axis is mirrored when flipped cases are at least this alike to the training cases as those are to each other
MIRROR_SCORE = 0.9


def ras_order(label: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``label`` (i, j, k) with its axes permuted and flipped to R, A, S (the bundle's ``Orientationd`` order)."""
    import nibabel as nib

    return nib.orientations.apply_orientation(np.asarray(label), nib.orientations.io_orientation(affine))


def normalised_map(label: np.ndarray, grid: int = GRID) -> np.ndarray | None:
    """The label map cropped to its foreground (label > 0) bounding box, resampled to ``grid``^3 (nearest); ``None``
    when there is no foreground."""
    nonzero = np.nonzero(label > 0)
    if not nonzero[0].size:
        return None
    index = [np.linspace(ax.min(), ax.max(), grid).round().astype(int) for ax in nonzero]
    return np.asarray(label)[np.ix_(*index)].astype(np.int16)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the foreground labels present in either map (1 when neither has any)."""
    from medseg.evaluation.metrics import dice

    per_label = dice(a, b)  # the labels present in either; none is NaN (both have the label)
    return float(np.mean(list(per_label.values()))) if per_label else 1.0


def mirror_scores(maps: Sequence[np.ndarray]) -> list[float]:
    """One score per axis (R, A, S) for :func:`normalised_map` outputs (module docstring, steps 2 and 3)."""
    n = len(maps)
    if n == 0:
        return [0.0, 0.0, 0.0]
    alike = [max((similarity(maps[i], maps[j]) for j in range(n) if j != i), default=1.0) for i in range(n)]
    scores = []
    for axis in range(3):
        ratios = []
        for i in range(n):
            flipped = np.flip(maps[i], axis)
            best = max(similarity(flipped, maps[j]) for j in range(n))
            ratios.append(best / max(alike[i], 1e-9))
        scores.append(round(float(np.median(ratios)), 3))
    return scores


def axes_to_mirror(scores: Sequence[float]) -> list[int]:
    """The axes whose score is at least :data:`MIRROR_SCORE`."""
    return [axis for axis, score in enumerate(scores) if score >= MIRROR_SCORE]


def describe(scores: Sequence[float]) -> str:
    """The reason written into the plan for ``mirror_axes``."""
    parts = ", ".join(f"{'RAS'[a]} {s:.2f}" for a, s in enumerate(scores))
    chosen = axes_to_mirror(scores)
    what = f"mirrored along {', '.join('RAS'[a] for a in chosen)}" if chosen else "no mirroring"
    return (
        f"{what}: training labels flipped along each axis, compared with the training labels (1 = as alike as the cases "
        f"are to each other; at least {MIRROR_SCORE:g} mirrors): {parts}; --tta mirrors only along these axes in distribution"
    )
