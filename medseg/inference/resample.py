"""Label maps and class probabilities from the network grid back onto the input file's own grid (its header)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.io.volumes import Geometry


def resample_labels(labels: np.ndarray, grid: Geometry, target: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of a label map from ``grid`` onto ``target`` (outside: 0).

    This replaces MONAI's ``Invertd`` on the way back: ``Invertd`` materialises a float32
    sampling grid of the full input size (measured: +3.4 GiB peak RSS for a 512x512x300 CT),
    while SimpleITK's resampler streams into a uint8 output. Both map through physical space,
    so the result is the same label for every voxel whose centre is not on a label boundary.
    """
    source = grid.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0))))
    # the output grid as parameters, not as a reference image: a reference would be one more
    # full-resolution buffer (75 MiB for a 512x512x300 CT) allocated only to be read for its header
    out = sitk.Resample(
        source,
        [int(s) for s in target.shape],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        target.origin,
        target.spacing,
        target.direction,
        0,
        source.GetPixelID(),
    )
    # (k, j, i) C-order -> an (i, j, k) view: Fortran order, as NIfTI stores voxels; no copy
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def argmax_on_grid(probabilities: np.ndarray, grid: Geometry, target: Geometry, keep: list[np.ndarray] | None = None) -> np.ndarray:
    """Resample each class's probabilities ``(C, *grid.shape)`` linearly onto ``target`` and take the argmax there.

    One class at a time with a running maximum (peak: two float32 volumes of the input's size, not C), outside
    the network grid: background. ``keep``: a list that receives each class's resampled probabilities as float16
    (``--save-probabilities``), in class order.
    """
    best = labels = None
    for c, channel in enumerate(probabilities):
        outside = 1.0 if c == 0 else 0.0  # beyond the network grid there is only background
        source = grid.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(channel.transpose(2, 1, 0), dtype=np.float32)))
        size = [int(n) for n in target.shape]
        resampled = sitk.Resample(
            source, size, sitk.Transform(), sitk.sitkLinear, target.origin, target.spacing, target.direction, outside, sitk.sitkFloat32
        )
        prob = sitk.GetArrayViewFromImage(resampled).transpose(2, 1, 0)
        if keep is not None:
            keep.append(prob.astype(np.float16))
        if best is None:
            best, labels = prob.copy(), np.zeros(prob.shape, dtype=np.uint8)
        else:
            better = prob > best
            labels[better], best[better] = c, prob[better]
    return labels
