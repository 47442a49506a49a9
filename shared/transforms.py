"""``MinMax`` / ``MinMaxd``: MATLAB ``rescale`` parity, the one intensity normalisation of medact.

``MinMax`` (the arithmetic, :mod:`shared.rescale`, no MONAI) and ``MinMaxd``, its MONAI dictionary
transform for transform chains.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import TransformBackends

from shared.rescale import NAN_POLICIES, Bound, MinMax

__all__ = ["NAN_POLICIES", "Bound", "MinMax", "MinMaxd"]


class MinMaxd(MapTransform):
    """Dictionary version of :class:`MinMax`: rescales each of ``keys`` with its own range.

    Args:
        keys: keys of the items to rescale (images only; never label maps).
        allow_missing_keys: skip keys that are absent instead of raising ``KeyError``.

    All other arguments as :class:`MinMax`. The input dict is not modified.
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **options: Any) -> None:
        """``options``: ``lower``, ``upper``, ``input_min``, ``input_max``, ``channel_wise``, ``nan_policy``, ``dtype`` (see :class:`MinMax`)."""
        super().__init__(keys, allow_missing_keys)
        self.minmax = MinMax(**options)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.minmax(d[key], name=str(key))
        return d
