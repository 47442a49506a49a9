"""MONAI ``ImageReader`` over :func:`medseg.io.volumes.read_volume` (kept apart so ``medseg.io.volumes`` imports without MONAI)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.transforms import LoadImaged
from monai.utils import MetaKeys, SpaceKeys

from medseg.io.channels import read_channels
from medseg.io.volumes import MAX_VOXELS, _suffix_ok, check_finite, read_header, read_volume


class VolumeReader(ImageReader):
    """MONAI ``ImageReader`` over :func:`read_volume`, for ``LoadImage(reader=VolumeReader())``.

    Args:
        mat_var: variable name for ``.mat`` files (images and labels usually differ: use one
            reader per key).
        max_voxels: size limit checked on the header.

    A list of paths is one case's channel files, stacked channels first (``original_channel_dim`` 0).
    Metadata follow MONAI's ITK reader: ``affine``/``original_affine`` in RAS, ``spatial_shape``,
    ``spacing``, ``filename_or_obj``.
    """

    def __init__(self, mat_var: str | None = None, max_voxels: int = MAX_VOXELS) -> None:
        super().__init__()
        self.mat_var, self.max_voxels = mat_var, max_voxels

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(Path(n).is_dir() or _suffix_ok(Path(n)) for n in names)

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> Any:
        """One 3D volume, or one case's channels (a 4D file or several 3D files, :func:`medseg.io.channels.read_channels`)."""
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if len(names) == 1 and read_header(names[0], self.mat_var, self.max_voxels).ndim != 4:
            array, geometry = read_volume(names[0], self.mat_var, self.max_voxels)
            channel_dim = float("nan")
        else:
            array, geometry = read_channels(names if len(names) > 1 else names[0], self.mat_var, self.max_voxels)
            channel_dim = 0
        for name, channel in zip(names, array if channel_dim == 0 and len(names) > 1 else [array]):
            check_finite(name, channel)
        return (str(names[0]), array, geometry, channel_dim)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        path, array, geometry, channel_dim = img
        meta = {
            MetaKeys.ORIGINAL_AFFINE: geometry.ras_affine,
            MetaKeys.AFFINE: geometry.ras_affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(geometry.shape),
            MetaKeys.ORIGINAL_CHANNEL_DIM: channel_dim,  # NaN: no channel axis (EnsureChannelFirstd adds one); 0: channels first
            MetaKeys.SPACE: SpaceKeys.RAS,
            "spacing": np.asarray(geometry.spacing),
            "filename_or_obj": path,
        }
        return array, meta


class LoadVolumed(LoadImaged):
    """``LoadImaged`` that reads with :class:`VolumeReader` and nothing else.

    Given a reader, MONAI's ``LoadImage`` still tries its other readers (ITK, nibabel, ...) when that
    one fails, so the error naming the file was swallowed and a 2D image or a truncated ``.nii.gz``
    reached the network through another reader. A reader passed at call time is used alone.
    """

    def __init__(self, keys: str | Sequence[str], mat_var: str | None = None) -> None:
        self.volume_reader = VolumeReader(mat_var)
        # MONAI's LoadImage builds every reader it knows, ours aside; with pydicom installed (highdicom brings it) that
        # includes NvImgCodecPydicomReader, which warns and logs on every construction when nvImageCodec is absent.
        # Those readers are never used here (a reader passed at call time is used alone): their noise is muted here only.
        plugin_log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
        level = plugin_log.level
        plugin_log.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
                super().__init__(keys=keys, reader=self.volume_reader, image_only=True, dtype=None)
        finally:
            plugin_log.setLevel(level)

    def __call__(self, data: Any, reader: ImageReader | None = None) -> Any:
        return super().__call__(data, reader or self.volume_reader)
