"""The training patch's augmentations after the crop and mirroring: nnU-Net v2's intensity augmentations
(:func:`intensity_augmentations`, with a faster blur, :class:`RandGaussianBlurd`) and an MR scan's gain seen through
its own z-score (:class:`RandScanGaind`); :func:`medseg.transforms.preprocessing` adds them when asked.

Patches may be views of the cached case (``medseg.datasets.cache.make_dataset`` draws from the RAM cache without a
copy), so every transform here returns new arrays and never writes into its input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform

#: the data key beside an image that holds where each channel's raw 0 lies after its z-score (``ChannelNormalized``)
RAW_ZERO_SUFFIX = "_raw_zero"


def intensity_augmentations(key: str) -> list[Any]:
    """nnU-Net v2's default intensity augmentations (``nnUNetTrainer.get_training_transforms``), as MONAI transforms,
    with its probabilities and ranges, for a normalised image patch (``key``; each channel alike):

    - Gaussian noise, p 0.1, standard deviation drawn from [0, 0.1] of the normalised scale;
    - Gaussian blur, p 0.2, sigma 0.5-1 voxel;
    - brightness x 0.75-1.25, p 0.15;
    - contrast x 0.75-1.25 about the patch's mean, range kept, p 0.15;
    - lower resolution: down by 0.5-1 (nearest) and back up (trilinear), p 0.25;
    - gamma 0.7-1.5 on the patch rescaled to [0, 1], mean and sd kept, p 0.3, and the same on the inverted patch, p 0.1.

    A smooth MR bias field is about a constant gain over a patch of a few cm, which brightness and contrast cover.
    """
    from monai import transforms as T

    return [
        T.RandGaussianNoised(keys=key, prob=0.1, std=0.1, sample_std=True),
        RandGaussianBlurd(key, sigma=(0.5, 1.0), prob=0.2),
        T.RandScaleIntensityd(keys=key, factors=0.25, prob=0.15),
        T.RandScaleIntensityFixedMeand(keys=key, factors=0.25, fixed_mean=True, preserve_range=True, prob=0.15),
        T.RandSimulateLowResolutiond(keys=key, zoom_range=(0.5, 1.0), prob=0.25),
        T.RandAdjustContrastd(keys=key, gamma=(0.7, 1.5), invert_image=True, retain_stats=True, prob=0.1),
        T.RandAdjustContrastd(keys=key, gamma=(0.7, 1.5), invert_image=False, retain_stats=True, prob=0.3),
    ]


class RandGaussianBlurd(RandomizableTransform, MapTransform):
    """Gaussian blur of ``keys`` with one sigma (voxels) drawn from ``sigma`` per call, with probability ``prob``;
    each channel on its own, spatial axes only.

    Written here because MONAI's ``RandGaussianSmoothd`` (torch convolutions with a kernel built for each sigma drawn)
    was measurably slow on CPU patches: at p 0.2 on 32^3 patches it cost 15 ms a patch on average (about 75 ms a blur),
    this 0.23 ms (SciPy's separable filter), measured side by side (MONAI 1.6.1, 2 threads, a busy machine).
    """

    def __init__(self, keys: Any, sigma: tuple[float, float] = (0.5, 1.0), prob: float = 0.2) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.sigma_range = sigma
        self.sigma = float(sigma[0])

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.sigma = float(self.R.uniform(*self.sigma_range))

    def __call__(self, data: Any) -> Any:
        from monai.utils import convert_to_dst_type, convert_to_numpy
        from scipy import ndimage

        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            array = convert_to_numpy(d[key], dtype=np.float32)
            blurred = np.stack([ndimage.gaussian_filter(channel, self.sigma, mode="nearest") for channel in array])
            d[key] = convert_to_dst_type(blurred, d[key])[0]  # the input's type, dtype, device and MetaTensor metadata
        return d


class RandScanGaind(RandomizableTransform, MapTransform):
    """A z-scored MR patch as a smooth bias field shows it: with probability ``prob`` each z-score channel of ``keys``
    is multiplied by one gain drawn from ``gains`` about the value its raw 0 takes (``KEY_raw_zero``, written by
    ``ChannelNormalized(..., record_raw_zero=True)``): ``z' = z0 + g * (z - z0)``. Channels without a raw zero
    (min-max: CT) pass unchanged; the ``KEY_raw_zero`` entry is removed, so batches carry only images and labels.

    Why not nnU-Net's brightness (which scales the normalised value about 0, the body's mean): an MR bias field
    multiplies the signal, about no signal, and a smooth one is nearly constant over a 3 cm patch. The per-scan
    z-score removes the scan's mean gain, not a region's departure from it, which both scales the region's tissue
    contrast and shifts it by ``(g - 1) * mean / sd`` in z units.
    """

    def __init__(self, keys: Any, gains: tuple[float, float] = (0.7, 1.3), prob: float = 0.5) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.gains = gains
        self.gain = np.ones(1)

    def randomize(self, data: Any = None, channels: int = 1) -> None:
        super().randomize(None)
        self.gain = self.R.uniform(*self.gains, size=channels) if self._do_transform else np.ones(channels)

    def __call__(self, data: Any) -> Any:
        d = dict(data)
        for key in self.key_iterator(d):
            if f"{key}{RAW_ZERO_SUFFIX}" not in d:
                raise KeyError(f"RandScanGaind: no '{key}{RAW_ZERO_SUFFIX}'; normalise with ChannelNormalized(..., record_raw_zero=True)")
            zeros = np.asarray(d.pop(f"{key}{RAW_ZERO_SUFFIX}"), dtype=np.float32).reshape(-1)
            self.randomize(channels=len(zeros))
            channels = np.flatnonzero(np.isfinite(zeros) & (self.gain != 1.0))
            if len(channels):  # a copy: a crop may be a view of the cached volume, which must not change
                image = d[key].clone() if hasattr(d[key], "clone") else np.array(d[key], copy=True)
                for c in channels:
                    image[c] = float(zeros[c]) + float(self.gain[c]) * (image[c] - float(zeros[c]))
                d[key] = image
        return d
