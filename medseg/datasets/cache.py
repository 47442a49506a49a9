"""Datasets that cache the deterministic part of preprocessing, within a RAM budget (MONAI's cached datasets)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def estimated_bytes(items: Sequence[dict[str, str]], pixdim: Sequence[float]) -> int:
    """Bytes the preprocessed cases take in RAM (float32 image channels + label), from headers only."""
    from medseg.io.channels import channel_headers

    total = 0
    for item in items:
        headers, channels = channel_headers(item["image"])
        geometry = headers[0].geometry
        extent = np.asarray(geometry.shape) * np.asarray(geometry.spacing)
        voxels = float(np.prod(np.ceil(extent / np.asarray(pixdim))))
        total += int(voxels * (4 * channels + (4 if "label" in item else 0)))
    return total


def make_dataset(
    items: Sequence[dict[str, str]],
    transform: Any,
    cache: str = "auto",
    ram_budget_gb: float = 4.0,
    cache_dir: str | os.PathLike | None = None,
    pixdim: Sequence[float] = (2.0, 2.0, 2.0),
) -> Any:
    """MONAI Dataset with caching of the deterministic transforms that cannot exhaust RAM.

    Args:
        cache: ``"ram"`` (MONAI ``CacheDataset``), ``"disk"`` (``PersistentDataset`` in ``cache_dir``),
            ``"none"``, or ``"auto"``: RAM when the header-based estimate fits ``ram_budget_gb``,
            else disk when ``cache_dir`` is given, else no cache. MONAI's ``CacheDataset`` alone
            loads everything and can run a machine out of memory (MONAI issue #5930).
    """
    from monai.data import CacheDataset, Dataset, PersistentDataset

    if cache == "auto":
        needed = estimated_bytes(items, pixdim) / 2**30
        cache = "ram" if needed <= ram_budget_gb else ("disk" if cache_dir else "none")
        logger.info("Cache: %s (estimated %.2f GiB for %d cases, budget %.1f GiB).", cache, needed, len(items), ram_budget_gb)
    if cache == "ram":
        # copy_cache=False: MONAI deep-copies a cached case before its random transforms by default, 64 ms a case of 8
        # channels on a 1 mm brain hemisphere (1 thread), as long as half a training step; ours crop first and change
        # no cached value in place (tests/medseg/datasets/test_cache.py checks the cache after every augmentation)
        return CacheDataset(list(items), transform, cache_rate=1.0, num_workers=0, progress=False, copy_cache=False)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs cache_dir.")
        from monai.data.utils import pickle_hashing

        # the cache's names hash the deterministic transforms too (MONAI's default hashes the items only): a cache_dir
        # reused after a preprocessing setting changed (spacing, window, bias_correction) must not serve the old volumes
        return PersistentDataset(list(items), transform, cache_dir=cache_dir, hash_transform=pickle_hashing)
    if cache == "none":
        return Dataset(list(items), transform)
    raise ValueError(f"cache={cache!r} is invalid; expected 'auto', 'ram', 'disk' or 'none'.")
