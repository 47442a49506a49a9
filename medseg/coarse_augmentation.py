"""nnU-Net's cascade augmentation: the coarse stage's probabilities in a training patch, made as wrong as on unseen cases.

The fine stage of a cascade (:mod:`medseg.planning.cascade`) trains on the coarse stage's probabilities of the coarse
stage's own training cases, which are better than those of the cases it will meet (nnU-Net trains the fine stage on
five-fold cross-validation predictions, and on top perturbs them). A fine stage that has only seen good coarse
channels copies their boundaries; on an unseen case it copies their errors. :class:`RandCoarseMorphologyd` perturbs
them as nnU-Net v2's ``ApplyRandomBinaryOperatorTransform`` does its previous stage's one-hot segmentation (p 0.4 per
patch, every label in random order, dilation, erosion, opening or closing, structuring element 1-8 voxels), here on
the probabilities (grey morphology) with a cube: a max-pool, separable and cheap, where nnU-Net uses a ball.
nnU-Net's second one, removing a random connected component, needs a thresholded segmentation and is not done here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, RandomizableTransform


def dilate(volume: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey dilation of ``volume`` (H, W, D) by a cube of edge ``2 * radius + 1`` voxels (outside the patch: neutral)."""
    return F.max_pool3d(volume[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]


def erode(volume: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey erosion of ``volume`` (H, W, D) by the same cube as :func:`dilate`."""
    return -dilate(-volume, radius)


#: nnU-Net's four operators
OPERATORS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
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
            image = torch.as_tensor(d[key])
            if image.shape[0] <= self.channels:
                raise ValueError(
                    f"RandCoarseMorphologyd: '{key}' has {image.shape[0]} channels; expected images and then {self.channels} coarse ones."
                )
            coarse = image[-self.channels :].float().clone()  # a copy: a crop may be a view of the cached volume
            for channel, name, radius in self.steps:
                before = coarse[channel].clone()
                after = OPERATORS[name](before, radius).clamp(0, 1)
                kept = torch.where(after > before, (1 - after) / (1 - before).clamp_min(1e-6), torch.ones_like(after))
                coarse *= kept.clamp(0, 1)
                coarse[channel] = after
            out = image.clone()
            out[-self.channels :] = coarse.to(image.dtype)
            d[key] = out
        return d
