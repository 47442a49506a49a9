"""Slice views for the scan page: axial, coronal and sagittal slices with the mask overlaid, as PNG.

The image and mask are turned to the closest RAS axes (nibabel's orientation maths on the scan's
own affine), so every scan shows the same way: radiological convention (the patient's right on
the screen's left), anterior and superior up, and each slice stretched to its physical aspect
ratio (a 0.78 x 0.78 x 6.5 mm scan is not squashed).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.io.volumes import Geometry

AXES = ("axial", "coronal", "sagittal")
MAX_SIDE = 384  # pixels: the longer side of a rendered slice
ALPHA = 0.45


def save_views(
    path: Path, image: np.ndarray, mask: np.ndarray, geometry: Geometry, colours: Mapping[int, Sequence[float]]
) -> dict[str, int]:
    """Write the display copy of ``image``/``mask`` (``[i, j, k]`` on ``geometry``) to ``path`` (.npz); returns slices per axis."""
    from nibabel.orientations import apply_orientation, io_orientation

    orientation = io_orientation(geometry.ras_affine)  # to the closest RAS+ axes
    low, high = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    grey = np.clip((image.astype(np.float32) - low) / max(float(high - low), 1e-6) * 255, 0, 255).astype(np.uint8)
    canonical = apply_orientation(grey, orientation)
    labels = apply_orientation(mask.astype(np.uint8), orientation)
    spacing = np.asarray(geometry.spacing, dtype=float)[orientation[:, 0].astype(int)]
    table = np.zeros((256, 3), dtype=np.uint8)
    for value, rgb in colours.items():
        table[int(value)] = np.round(np.asarray(rgb[:3], dtype=float) * 255)
    np.savez_compressed(path, image=canonical, mask=labels, spacing=spacing, colours=table)
    return dict(zip(AXES, (canonical.shape[2], canonical.shape[1], canonical.shape[0])))


def slice_png(path: Path, axis: str, index: int) -> bytes:
    """Slice ``index`` along ``axis`` of the views in ``path``, mask overlaid, as PNG bytes (IndexError when out of range)."""
    from PIL import Image

    with np.load(path) as data:
        image, mask, spacing, table = data["image"], data["mask"], data["spacing"], data["colours"]
    if axis not in AXES:
        raise KeyError(axis)
    # rows run superior/anterior -> down, columns patient right -> left (radiological)
    pick = {
        "axial": lambda a: a[::-1, ::-1, index].T,
        "coronal": lambda a: a[::-1, index, ::-1].T,
        "sagittal": lambda a: a[index, ::-1, ::-1].T,
    }[axis]
    size = {"axial": image.shape[2], "coronal": image.shape[1], "sagittal": image.shape[0]}[axis]
    if not 0 <= index < size:
        raise IndexError(f"{axis} slice {index} outside 0..{size - 1}")
    grey, labels = pick(image).astype(np.float32), pick(mask)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colour = table[labels].astype(np.float32)
    on = labels > 0
    rgb[on] = (1 - ALPHA) * rgb[on] + ALPHA * colour[on]
    (row_mm, col_mm) = {"axial": (spacing[1], spacing[0]), "coronal": (spacing[2], spacing[0]), "sagittal": (spacing[2], spacing[1])}[axis]
    height, width = grey.shape[0] * row_mm, grey.shape[1] * col_mm
    scale = MAX_SIDE / max(height, width)
    picture = Image.fromarray(rgb.astype(np.uint8)).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
