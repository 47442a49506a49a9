"""The machine a plan is fitted to: ``medseg plan --budget cpu|gpu:<GiB>`` (default: the machine plan runs on).

A CPU is limited by time: the 2-core recipe (32^3 patches, width 4, 2 cases x 2 patches per step, 0.15-0.3 s
per step) is the plan that trains the demo to a held-out Dice of 0.94 in minutes, so the CPU budget keeps it.
A GPU is limited by memory, as in nnU-Net's planning: the largest patch that fits the budget, up to the
median case, with an aspect that follows the target spacing (the axis that is longest in millimetres is
shrunk first, so patches tend to a cube in millimetres) and at least 2 samples per batch.

The memory of one training step is modelled, not measured (planning may run on another machine than
training): :func:`activation_count` counts, once per width on the ``meta`` device (no memory, no
arithmetic), the values V-Net's layers produce per input voxel; a step keeps them all for the backward
pass, in fp32, plus weights, gradients and Adam's two moments. On the CPU the measured peak was 0.4-0.8x
this count, so the model errs on the safe side.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence

import numpy as np

#: V-Net width (channels of the first level) per budget: MONAI's / the paper's 16 on a GPU of at least
#: :data:`WIDE_GPU_GIB`, 8 below it, 4 on a CPU (measured on 2 cores: width 16 costs 14x width 4 per step)
CPU_WIDTH, GPU_WIDTH, SMALL_GPU_WIDTH, WIDE_GPU_GIB = 4, 16, 8, 8.0
CPU_PATCH_EDGE = 32
#: share of the GPU's memory a plan may fill (the rest: the CUDA context, cuDNN workspaces, fragmentation)
GPU_MEMORY_SHARE = 0.8
#: nnU-Net's cap: one batch covers at most this share of all the training voxels
MAX_BATCH_SHARE = 0.05
MIN_BATCH, MAX_BATCH = 2, 16


class BudgetError(ValueError):
    """A ``--budget`` that is not ``cpu``, ``gpu:<GiB>`` or ``auto``."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """What a plan may use: ``kind`` ``"cpu"`` (a time budget) or ``"gpu"`` with ``memory_gib`` of GPU memory."""

    kind: str
    memory_gib: float = 0.0
    source: str = "given"

    def describe(self) -> str:
        what = "CPU (the 2-core step-time budget)" if self.kind == "cpu" else f"GPU with {self.memory_gib:g} GiB"
        return f"{what}; {self.source}"


def parse_budget(text: str | None) -> Budget:
    """``"cpu"``, ``"gpu:24"`` (GiB), or ``None``/``"auto"`` (the machine this runs on: :func:`detect_budget`)."""
    if text is None or text.strip().lower() == "auto":
        return detect_budget()
    value = text.strip().lower()
    if value == "cpu":
        return Budget("cpu", source="asked with --budget cpu")
    match = re.fullmatch(r"gpu:(\d+(?:\.\d+)?)", value)
    if match and float(match.group(1)) > 0:
        return Budget("gpu", float(match.group(1)), f"asked with --budget {text}")
    raise BudgetError(f"--budget {text!r}: expected cpu, gpu:<GiB> (e.g. gpu:24) or auto.")


def detect_budget() -> Budget:
    """The first CUDA GPU's total memory when CUDA is present, else the CPU."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Budget("gpu", round(props.total_memory / 2**30, 1), f"detected: cuda:0 {props.name}")
    return Budget("cpu", source="detected: no CUDA device on this machine")


@functools.cache
def activation_count(width: int, classes: int = 2, in_channels: int = 1) -> float:
    """Values V-Net's modules output per input voxel (forward pass; all are kept for backward), counted on ``meta``."""
    import torch

    from medseg.networks import VNet

    with torch.device("meta"):
        network = VNet(in_channels=in_channels, out_channels=classes, width=width, norm="instance", channels_last=False)
        x = torch.empty(1, in_channels, 32, 32, 32)
    total = [0]

    def count(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel()

    leaves = [m for m in network.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        network(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total[0] / 32**3


@functools.cache
def parameter_count(width: int, classes: int = 2, in_channels: int = 1) -> int:
    import torch

    from medseg.networks import VNet

    with torch.device("meta"):
        network = VNet(in_channels=in_channels, out_channels=classes, width=width, norm="instance", channels_last=False)
    return sum(p.numel() for p in network.parameters())


def step_bytes(patch: Sequence[int], batch: int, width: int, classes: int = 2) -> int:
    """Modelled bytes of one fp32 training step: kept activations + weights, gradients and Adam's moments."""
    voxels = int(np.prod(patch)) * batch
    return int(activation_count(width, classes) * voxels * 4 + parameter_count(width, classes) * 4 * 4)


def gpu_patch(
    median_shape: Sequence[float], spacing: Sequence[float], budget: Budget, classes: int, dataset_voxels: float
) -> tuple[list[int], int, int, str]:
    """``(patch, batch, width, reason)`` for a GPU ``budget`` (nnU-Net's rules, V-Net's multiples of 16).

    Args:
        median_shape: the median case's size in voxels at the target spacing (RAS order).
        spacing: target spacing (mm).
        dataset_voxels: all training voxels at the target spacing (caps the batch at :data:`MAX_BATCH_SHARE`).
    """
    width = GPU_WIDTH if budget.memory_gib >= WIDE_GPU_GIB else SMALL_GPU_WIDTH
    limit = budget.memory_gib * 2**30 * GPU_MEMORY_SHARE
    patch = [max(CPU_PATCH_EDGE, math.ceil(n / 16) * 16) for n in median_shape]
    while step_bytes(patch, MIN_BATCH, width, classes) > limit:
        shrinkable = [i for i in range(3) if patch[i] > CPU_PATCH_EDGE]
        if not shrinkable:
            if width > SMALL_GPU_WIDTH:
                width = SMALL_GPU_WIDTH
                continue
            break
        longest = max(shrinkable, key=lambda i: patch[i] * spacing[i])  # longest in mm: the aspect follows the spacing
        patch[longest] -= 16
    batch = MIN_BATCH
    while (
        batch < MAX_BATCH
        and step_bytes(patch, batch + 1, width, classes) <= limit
        and (batch + 1) * np.prod(patch) <= MAX_BATCH_SHARE * dataset_voxels
    ):
        batch += 1
    gib = step_bytes(patch, batch, width, classes) / 2**30
    reason = (
        f"largest patch up to the median case {[int(n + 0.5) for n in median_shape]} that fits {GPU_MEMORY_SHARE:.0%} of "
        f"{budget.memory_gib:g} GiB at width {width} with {batch} samples per step (modelled {gib:.1f} GiB); "
        "the axis longest in mm shrinks first"
    )
    return patch, batch, width, reason
