"""The one whole-volume forward pass (sliding windows, mirroring): validation during training and ``medseg infer`` both call it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from medseg.networks import PadToMultiple, fold_batch_norm
from shared.devices import autocast

logger = logging.getLogger(__name__)


class VolumeInferer:
    """The one whole-volume forward pass of medseg: validation during training and ``medseg infer`` both call it.

    Sliding windows of ``roi_size`` with Gaussian blending (MONAI ``SlidingWindowInferer``) over
    an eval copy of the network with batch norm folded into its convolutions (same logits to
    float rounding, one memory pass fewer per layer), padded to V-Net's multiple of 16. Because
    validation runs this same path on whole validation volumes, the best-validation weights the
    engine keeps are chosen by the score inference will reproduce.

    Args:
        roi_size: window size in voxels.
        sw_batch_size: windows per forward pass.
        overlap: window overlap fraction. 0.5 (MONAI's and nnU-Net's): at 0.25 the mask depends on where the
            windows fall (the sd of Dice over 8 mirrored passes of a flip-trained demo model is 0.026; at 0.5
            0.002; ``benchmarks/medseg_tiling.py``).
        dtype: autocast dtype of the forward passes (``None``: fp32; see :mod:`shared.devices`).

    ``inferer(inputs, network)``: ``(B, C_in, *spatial)`` -> ``(B, C, *spatial)`` fp32 logits, no gradients.
    Windows run on the network's device; the full-volume accumulation (MONAI's ``device``) stays there too
    unless it would take more than half of the GPU's free memory, then it is kept on the CPU, so a
    512x512x600 CT (2 classes: 1.9 GB of fp32 sums and weights) infers on an 8 GB GPU.
    """

    def __init__(self, roi_size: Sequence[int], sw_batch_size: int = 1, overlap: float = 0.5, dtype: torch.dtype | None = None) -> None:
        self.roi_size, self.sw_batch_size, self.overlap = tuple(roi_size), int(sw_batch_size), float(overlap)
        self.dtype = dtype

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, prepared: bool = False) -> torch.Tensor:
        """``prepared``: ``network`` is already :func:`inference_network`'s (the :class:`Segmenter` prepares each once)."""
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            network = network.module  # eval needs no gradient synchronisation; the copy below cannot copy DDP
        weight = next(network.parameters(), None)
        device = weight.device if weight is not None else inputs.device  # a network without weights runs where its input is
        out_channels = getattr(network, "out_channels", None)
        windows = SlidingWindowInferer(
            self.roi_size,
            self.sw_batch_size,
            self.overlap,
            mode="gaussian",
            sw_device=device,
            device=accumulation_device(inputs.shape, out_channels, device),
        )
        forward = PadToMultiple(network if prepared else inference_network(network))
        with torch.no_grad(), autocast(device, self.dtype):
            return windows(inputs, lambda x: forward(x).float()).float()


def inference_network(network: torch.nn.Module) -> torch.nn.Module:
    """The network inference runs: an eval copy with batch norm folded into its convolutions, or, without batch norm
    (instance or group norm: nothing to fold), the network itself, so no copy of the weights is made per pass."""
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules()):
        return fold_batch_norm(network)
    return network


def accumulation_device(shape: Sequence[int], out_channels: int | None, device: torch.device) -> torch.device:
    """Where the whole-volume sums go: ``device``, or the CPU when ``(C + 1) x voxels x 4`` bytes exceed half the free GPU memory.

    Args:
        shape: ``(B, C_in, *spatial)`` of the input.
        out_channels: classes C of the network (``None``: assume 2).
    """
    if device.type != "cuda":
        return device
    voxels = int(np.prod(shape[2:])) * int(shape[0])
    needed = ((out_channels or 2) + 1) * voxels * 4  # fp32 sums of C classes + the count map
    free, _total = torch.cuda.mem_get_info(device)
    return device if needed <= free / 2 else torch.device("cpu")


def mirror_subsets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes``, the empty one (no flip) first: ``(0, 1)`` -> ``[(), (0,), (1,), (0, 1)]``."""
    axes = tuple(sorted(set(axes)))
    return [combo for n in range(len(axes) + 1) for combo in itertools.combinations(axes, n)]
