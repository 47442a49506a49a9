"""MR bias-field correction for medseg's preprocessing: N4 (Tustison et al. 2010, ITK's filter through SimpleITK).

Why it exists: a smooth multiplicative bias field is what cost the MNI152 grey/white model its Dice on the
unseen hemisphere (plain 0.960 / 0.956, under a +-15%-per-axis linear field 0.925 / 0.910; gain and noise cost
nothing; ``benchmarks/medseg_corruptions.py``), and augmenting patches with a gain (``RandScanGaind``) moved the loss
from one case to the other. N4 removes the field before the z-score, in training and inference alike (corrected at
test time only, the model trained on uncorrected scans, it lost more: 0.876 / 0.848). MONAI has no N4; TorchIO only
simulates bias fields; SimpleITK (a medseg dependency) has ITK's own filter, used here as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Transform


class N4Correct(Transform):
    """``(1, X, Y, Z)`` MR channel (raw intensities, any scale) -> the same divided by N4's estimate of its bias field.

    The field is fitted on the body (above Otsu's threshold, positive voxels: N4 works on log intensities) of the image
    shrunk ``shrink`` times per axis, then evaluated at full resolution; voxels outside the body are divided by the
    same smooth field, so the background stays where it was relative to the tissue.

    Args:
        shrink: fitting on the image shrunk by this factor per axis (ITK's advice: 2-4); 4 (with the two levels below)
            takes 0.6-2 s for a 1 mm brain hemisphere (99x233x189) on 2 threads.
        iterations: N4's iterations at each of its fitting levels (the list's length is the number of levels; each
            level doubles the B-spline's resolution). Two levels, not ITK's four: on the MNI152 T1 four levels also
            flattened anatomy (the plain template changed by 4.0% (CV of corrected / raw over the brain), two levels
            1.3%), and a model trained and tested on four-level scans lost 0.02 Dice on the plain hemisphere.
        threads: ITK threads (``None``: ``torch.get_num_threads()``, the budget the rest of medseg keeps to).
    """

    def __init__(self, shrink: int = 4, iterations: Sequence[int] = (50, 50), threads: int | None = None) -> None:
        self.shrink, self.iterations, self.threads = int(shrink), [int(i) for i in iterations], threads

    def field(self, values: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        """The multiplicative bias field N4 fits to ``values`` (``(X, Y, Z)`` float32, ``spacing`` mm): same shape,
        positive; 1 where there is nothing to fit: a flat or empty image, or one under 4 voxels along an axis (a single
        slice: ITK's 3D filter cannot fit a field along an axis it has no extent on)."""
        import SimpleITK as sitk
        import torch
        from skimage.filters import threshold_otsu  # the body as medseg.transforms.AboveOtsu finds it (not imported: it imports this)

        if values.min() == values.max() or min(values.shape) < 4:
            return np.ones_like(values)
        body = (values > threshold_otsu(values)) & (values > 0)
        if body.sum() < 64:
            return np.ones_like(values)
        image = sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0)))  # ITK's x is the last array axis
        image.SetSpacing([float(s) for s in spacing])
        mask = sitk.GetImageFromArray(np.ascontiguousarray(body.transpose(2, 1, 0)).astype(np.uint8))
        mask.CopyInformation(image)
        factors = [max(1, min(self.shrink, n // 8)) for n in values.shape]
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(self.iterations)
        n4.SetNumberOfThreads(int(self.threads or torch.get_num_threads()))
        n4.Execute(sitk.Shrink(image, factors), sitk.Shrink(mask, factors))
        log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image)).transpose(2, 1, 0)
        return np.exp(log_field).astype(np.float32)

    def __call__(self, channel: Any) -> Any:
        values = np.asarray(channel[0], dtype=np.float32)
        spacing = [float(s) for s in getattr(channel, "pixdim", (1.0, 1.0, 1.0))]
        field = self.field(values, spacing)
        return channel / _like(channel, field[None])


def _like(reference: Any, array: np.ndarray) -> Any:
    """``array`` as the type of ``reference`` (a tensor on its device, or a NumPy array)."""
    import torch

    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(array, dtype=reference.dtype if reference.is_floating_point() else torch.float32, device=reference.device)
    return array


class N4Corrected(MapTransform):
    """N4 on the z-score (MR) channels of ``keys`` (default ``"image"``); min-max (CT) channels pass unchanged.
    ``(C, X, Y, Z)`` -> the same, float32 where corrected."""

    def __init__(self, recipe: Any, keys: Any = "image", **n4: Any) -> None:
        """``recipe``: each channel's normalisation (a :class:`medseg.transforms.ChannelRecipe`); ``n4``: :class:`N4Correct`'s arguments."""
        super().__init__(keys)
        self.recipe, self.n4 = recipe, N4Correct(**n4)

    def __call__(self, data: Any) -> Any:
        import torch

        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            source = str(getattr(image, "meta", {}).get("filename_or_obj", key))  # a channel-count error names the file
            names = [name for name, _ in self.recipe.channels(image.shape[0], source)]
            if "zscore" not in names:
                continue
            image = image.float() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
            parts = [self.n4(image[c : c + 1]) if name == "zscore" else image[c : c + 1] for c, name in enumerate(names)]
            out[key] = parts[0] if len(parts) == 1 else (torch.cat(parts) if isinstance(image, torch.Tensor) else np.concatenate(parts))
        return out
