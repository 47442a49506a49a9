"""Fit a plan's training to minutes of this machine: ``medseg plan DATA --out B --train-minutes M``.

A fixed iteration count ignores how fast the machine is (the same 1000 iterations take 5 minutes on one 2-core
machine and 10 on another). A short probe (seconds, like the bf16 probe of :mod:`shared.devices`) times the planned
network here, on random data of the planned shapes: one training step (the planned patches through V-Net, Dice +
cross-entropy, backward, Adam) and one sliding-window batch in inference mode. From those:

- one validation pass = the windows of the validation cases at the planned spacing (``overlap`` as planned) x the
  window time;
- validations: up to :data:`~medseg.planning.planner.VALIDATIONS`, at most a fifth of the budget, counting the pass at
  iteration 1 that ``TrainingOptions`` runs before any training (MATLAB's cadence);
- iterations: what is left, at :data:`DATA_SHARE` more per step than the probe (the data pipeline: random crops,
  collation), rounded down to whole epochs.

The minutes are the training run's, as ``TrainingOptions.max_minutes`` counts them (from the first iteration,
validation included); the command's start (imports, reading the cases into the cache) comes on top.
``train`` then honours the budget twice: the schedule is fitted to those iterations (the polynomial decay reaches 0
at the last one), and ``options#max_minutes`` stops a run that is slower than probed (``TrainingOptions.max_minutes``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.planning.fingerprint import PlanError

#: a training iteration costs the probed step times this (the data pipeline's random crops and collation). It holds
#: while a draw is cheap against a step: with the draws cached (medseg.datasets.cache) the MNI152 structures' fine
#: stage fitted 2586-2864 iterations where 2152-2800 were planned (2 threads, 3 plans), before 2012-2248 of 2828
DATA_SHARE = 1.15
#: validation passes may take at most this share of the budget
VALIDATION_SHARE = 0.2


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one training step and one sliding-window batch of the planned network take on this machine (s)."""

    step_s: float
    window_batch_s: float
    threads: int

    def describe(self) -> str:
        return f"training step {self.step_s:.3f} s, sliding-window batch {self.window_batch_s:.3f} s ({self.threads} threads)"


def _best_of(run: Any, repeats: int, device: Any = None) -> float:
    import torch

    def timed() -> float:
        start = time.perf_counter()
        run()
        if device is not None and device.type == "cuda":  # kernels are queued: wait for them
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up: allocator, kernels chosen
    return min(timed() for _ in range(repeats))


def probe(
    values: dict[str, Any],
    classes: int,
    in_channels: int,
    patches: int,
    repeats: int = 2,
    device: Any = None,
    precision: str = "fp32",
) -> Probe:
    """Time the plan's network (``values``: ``width``, ``roi_size``, ``sw_roi_size``, ``sw_batch_size``, ``kernel_size``) on ``device``
    (default: the CPU) at ``precision`` (``fp32`` or ``bf16``, as ``train`` runs it: autocast).

    Out of memory is not caught here: ``torch.OutOfMemoryError`` on CUDA, ``RuntimeError`` ("can't allocate memory")
    or ``MemoryError`` on the CPU (:func:`medseg.planning.candidates.is_out_of_memory` tells them apart).
    """
    import torch
    from monai.losses import DiceCELoss

    from medseg.networks import VNet
    from shared.devices import autocast

    device = torch.device(device or "cpu")
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    network = VNet(
        in_channels=in_channels,
        out_channels=classes,
        width=values["width"],
        norm="instance",
        kernel_size=values.get("kernel_size", 5),
        dropout_prob_down=0.0,
        dropout_prob_up=(0.0, 0.0),
    ).to(device)
    optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    x = torch.rand(patches, in_channels, *values["roi_size"], device=device)
    y = torch.randint(0, classes, (patches, 1, *values["roi_size"]), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            out = network(x)
        loss(out.float(), y).backward()
        optimizer.step()

    windows = torch.rand(values.get("sw_batch_size", 16), in_channels, *values["sw_roi_size"], device=device)

    def window_batch() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            network(windows)

    network.train()
    step_s = _best_of(step, repeats, device)
    network.eval()
    return Probe(step_s, _best_of(window_batch, repeats, device), torch.get_num_threads())


def windows_per_case(shape: Sequence[float], roi: Sequence[int], overlap: float) -> int:
    """Sliding windows over a volume of ``shape`` voxels (MONAI's grid: ``ceil((s - r) / (r (1 - overlap))) + 1`` per axis)."""
    count = 1
    for size, edge in zip(shape, roi):
        step = max(1, int(edge * (1 - overlap)))
        count *= 1 if size <= edge else math.ceil((size - edge) / step) + 1
    return count


def validation_seconds(print_: dict[str, Any], values: dict[str, Any], found: Probe) -> float:
    """One validation pass over the held-out cases (every case minus the training ones), each at the median size."""
    sizes = np.asarray(print_["shapes"], float) * np.asarray(print_["spacings"], float) / np.asarray(values["pixdim"], float)
    median = np.median(sizes, axis=0)
    windows = windows_per_case(median, values["sw_roi_size"], values.get("overlap", 0.5))
    batches = math.ceil(windows / values.get("sw_batch_size", 16))
    held_out = max(1, print_["cases"] - print_["training_cases"])
    return held_out * batches * found.window_batch_s


def fit_to_minutes(plan: dict[str, Any], print_: dict[str, Any], minutes: float, found: Probe, validations: int) -> dict[str, Any]:
    """``plan`` with its iterations, validation cadence and ``options#max_minutes`` fitted to ``minutes`` (a new dict).

    ``found``: the probe of this machine; ``validations``: the most validation passes wanted.
    Raises :class:`PlanError` (one line, with the minimum) when the budget cannot hold one validation pass and an epoch.
    """
    values = plan["values"]
    per_epoch = math.ceil(print_["training_cases"] / values["options#mini_batch_size"])
    iteration_s = found.step_s * DATA_SHARE
    validation_s = validation_seconds(print_, values, found)
    least = 2 * validation_s + per_epoch * iteration_s  # the passes at iteration 1 and at the end
    if not math.isfinite(minutes) or minutes * 60 < least:
        needed = math.ceil(least / 6) / 10  # minutes, rounded up to a tenth
        raise PlanError(
            f"--train-minutes {minutes:g}: here one validation pass takes about {validation_s:.0f} s and an epoch "
            f"{per_epoch * iteration_s:.0f} s, so a run needs at least {needed:g} minutes (one epoch and two validation passes)."
        )
    budget_s = minutes * 60
    # periodic passes; the one at iteration 1 comes on top (shared.handlers.PeriodicValidation)
    passes = int(max(1, min(validations, VALIDATION_SHARE * budget_s // max(validation_s, 1e-9) - 1)))
    epochs = max(1, int((budget_s - (passes + 1) * validation_s) // (per_epoch * iteration_s)))
    iterations = epochs * per_epoch
    frequency = max(1, math.ceil(iterations / passes))  # at most `passes` after iteration 1, the last one included
    fitted = {
        **values,
        "options#max_epochs": epochs,
        "options#validation_frequency": frequency,
        "options#verbose_frequency": frequency,
        "options#max_minutes": minutes,
    }
    reasons = {
        **plan["reasons"],
        "options#max_epochs": (
            f"{epochs} epochs x {per_epoch} iterations = {iterations} iterations fit {minutes:g} minutes here: "
            f"{found.describe()}; an iteration {iteration_s:.3f} s (data pipeline included), {passes + 1} validation pass(es) "
            f"of about {validation_s:.1f} s (one at iteration 1)"
        ),
        "options#max_minutes": "stops the run at the budget when training is slower than probed (another load on the machine)",
    }
    probe_record = {**dataclasses.asdict(found), "validation_s": validation_s, "iterations": iterations}
    return {**plan, "values": fitted, "reasons": reasons, "probe": probe_record}
