"""Learning-rate schedules of :class:`~shared.options.TrainingOptions` (MATLAB's ``LearnRateSchedule``), and fitting a
resumed schedule to a run made longer or shorter."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from shared.options import POLY_POWER, TrainingOptions


def build_scheduler(optimizer: torch.optim.Optimizer, options: TrainingOptions, iterations_per_epoch: int = 1) -> Any:
    """The learning-rate schedule of ``options``, or ``None``.

    piecewise: x drop factor every drop period epochs; cosine: annealed over ``max_epochs``
    (both stepped per epoch); polynomial: ``(1 - t / T) ** POLY_POWER`` with ``t`` the iteration
    and ``T = max_epochs * iterations_per_epoch`` (stepped per iteration, see :func:`schedule_is_per_iteration`).
    """
    if options.learn_rate_schedule == "polynomial":
        total = max(1, options.max_epochs * iterations_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, PolynomialDecay(total))
    if options.learn_rate_schedule == "piecewise":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=options.learn_rate_drop_period, gamma=options.learn_rate_drop_factor)
    if options.learn_rate_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.max_epochs)
    return None


def schedule_is_per_iteration(options: TrainingOptions) -> bool:
    """Whether :func:`build_scheduler`'s schedule steps every iteration (else every epoch)."""
    return options.learn_rate_schedule == "polynomial"


@dataclasses.dataclass
class PolynomialDecay:
    """``t -> max(0, 1 - t / total) ** POLY_POWER``: an object, not a lambda, so checkpoints can hold it."""

    total: int

    def __call__(self, step: int) -> float:
        return max(0.0, 1.0 - step / self.total) ** POLY_POWER


def refit_schedule(scheduler: Any, options: TrainingOptions, epoch_length: int) -> None:
    """Fit a resumed schedule to a run made longer (or shorter) with ``max_epochs``: train 100 epochs, then ``--resume
    --epochs 200``.

    The checkpoint holds the schedule of the old length: the polynomial decay's ``total`` (``LambdaLR`` saves the
    ``PolynomialDecay`` object's fields) or the cosine's ``T_max``; loaded as is, a finished run would continue at rate 0.
    Here the length becomes the new one and the current rate is set to the new schedule's value at the step reached
    (``(1 - t / T') ** 0.9``, or the cosine at ``t / T'``); the next steps follow the new schedule. Piecewise drops do not
    depend on the length.
    """
    step = scheduler.last_epoch
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for decay in scheduler.lr_lambdas:
            if isinstance(decay, PolynomialDecay):
                decay.total = max(1, options.max_epochs * epoch_length)
        rates = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    elif isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.T_max = options.max_epochs
        rates = [
            scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * step / scheduler.T_max)) / 2
            for base in scheduler.base_lrs
        ]
    else:
        return
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = list(rates)
