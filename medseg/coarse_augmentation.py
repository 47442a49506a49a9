"""nnU-Net's cascade augmentation: the coarse stage's probabilities in a training patch, made as wrong as on unseen cases.

The fine stage of a cascade (:mod:`medseg.planning.cascade`) trains on the coarse stage's probabilities of the coarse
stage's own training cases, which a long-trained coarse stage predicts better than the cases it will meet (nnU-Net
trains the fine stage on five-fold cross-validation predictions, and on top perturbs them). A fine stage that has
only seen good coarse channels copies their boundaries; on an unseen case it copies their errors. Off in a plan
(``train#preprocessing#coarse_augmentation``): within a CPU budget the coarse stage did not overfit, and on the
MNI152 structures perturbing its channels lowered every structure (docs/medseg.md, two stages). :class:`RandCoarseMorphologyd` perturbs
them as nnU-Net v2's ``ApplyRandomBinaryOperatorTransform`` does its previous stage's one-hot segmentation (p 0.4 per
patch, every label in random order, dilation, erosion, opening or closing, structuring element 1-8 voxels), here on
the probabilities (grey morphology) with a cube (SciPy's separable maximum filter, cheap) where nnU-Net uses a ball.
nnU-Net's second one, removing a random connected component, needs a thresholded segmentation and is not done here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage


def dilate(volume: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation of ``volume`` (H, W, D) by a cube of edge ``2 * radius + 1`` voxels (outside the patch: neutral).

    SciPy's maximum filter runs one axis at a time in time independent of the radius: about 1 ms a 32^3 channel at
    any radius here, where PyTorch's 3D max-pool took 85 ms at radius 8 (seven channels of two patches a step then
    halved the iterations a 15-minute budget fit) and its max-pool one axis at a time 5 ms.
    """
    return ndimage.maximum_filter(volume, size=2 * radius + 1, mode="nearest")


def erode(volume: np.ndarray, radius: int) -> np.ndarray:
    """Grey erosion of ``volume`` (H, W, D) by the same cube as :func:`dilate`."""
    return ndimage.minimum_filter(volume, size=2 * radius + 1, mode="nearest")


#: nnU-Net's four operators
OPERATORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "dilation": dilate,
    "erosion": erode,
    "opening": lambda v, r: dilate(erode(v, r), r),
    "closing": lambda v, r: erode(dilate(v, r), r),
}


class RandCoarseMorphologyd(RandomizableTransform, MapTransform):
    """With probability ``prob`` per patch, each of the last ``channels`` channels of ``keys`` (a coarse stage's
    probabilities, one per foreground label, in [0, 1]) in random order under one random operator of
    :data:`OPERATORS` with a radius drawn from ``radii`` (voxels, both ends included).

    As nnU-Net keeps its one-hot channels exclusive (a voxel one label gains, the others lose), where a channel grows
    from ``p`` to ``q`` the other coarse channels are scaled by ``(1 - q) / (1 - p)``: the probabilities still sum to
    at most 1, as the coarse stage's do. What an erosion takes goes to the background, as in nnU-Net.
    Input: a (C, H, W, D) patch; the image channels before the coarse ones pass unchanged.
    """

    def __init__(self, keys: Any, channels: int, prob: float = 0.4, radii: tuple[int, int] = (1, 8)) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        if channels < 1 or radii[0] < 1 or radii[1] < radii[0]:
            raise ValueError(
                f"RandCoarseMorphologyd: channels {channels} and radii {radii}: expected channels >= 1, 1 <= radii[0] <= radii[1]."
            )
        self.channels, self.radii = channels, radii
        self.steps: list[tuple[int, str, int]] = []

    def randomize(self, data: Any = None) -> None:
        """Draws whether to perturb and, if so, ``(channel, operator, radius)`` per coarse channel, in the order applied."""
        super().randomize(None)
        self.steps = []
        if self._do_transform:
            order = self.R.permutation(self.channels)
            names = list(OPERATORS)
            self.steps = [(int(c), names[self.R.randint(len(names))], int(self.R.randint(self.radii[0], self.radii[1] + 1))) for c in order]

    def __call__(self, data: Any) -> Any:
        d = dict(data)
        self.randomize()
        if not self.steps:
            return d
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] <= self.channels:
                raise ValueError(
                    f"RandCoarseMorphologyd: '{key}' has {image.shape[0]} channels; expected images and then {self.channels} coarse ones."
                )
            given = image[-self.channels :]
            given = given.detach().cpu().numpy() if isinstance(given, torch.Tensor) else given
            coarse = np.array(given, dtype=np.float32)  # a copy: a crop may be a view of the cached volume
            for channel, name, radius in self.steps:
                before = coarse[channel].copy()
                after = np.clip(OPERATORS[name](before, radius), 0, 1)
                grown = after > before
                coarse[:, grown] *= np.clip((1 - after[grown]) / np.maximum(1 - before[grown], 1e-6), 0, 1)
                coarse[channel] = after
            out = image.clone() if isinstance(image, torch.Tensor) else np.array(image, copy=True)
            out[-self.channels :] = torch.as_tensor(coarse).to(out.dtype) if isinstance(out, torch.Tensor) else coarse
            d[key] = out
        return d
