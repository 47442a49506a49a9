"""Label colours of the exports (``.seg.nrrd``, colour tables, DICOM SEG, overlays): the bundle's, else distinct hues."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence


def default_colours(labels: Sequence[int]) -> dict[int, tuple[float, float, float]]:
    """Distinct RGB colours (0-1) for labels without one: evenly spaced hues."""
    foreground = [label for label in labels if label != 0]
    return {label: colorsys.hsv_to_rgb(n / max(1, len(foreground)), 0.65, 0.95) for n, label in enumerate(foreground)}


def label_colours(names: Mapping[int, str], colours: Mapping[int, Sequence[float]] | None) -> dict[int, tuple[float, ...]]:
    """Label value -> RGB (0-1) for every foreground label of ``names``: ``colours`` where given, distinct hues elsewhere."""
    chosen = default_colours(sorted(names))
    for label, rgb in (colours or {}).items():
        chosen[int(label)] = tuple(float(c) for c in rgb)
    return chosen
