"""Which network a time budget affords: patch size, width and precision chosen by probing this machine.

``medseg plan DATA --out B --train-minutes M`` does not keep one recipe whatever the machine. It lists candidates
(:func:`cpu_candidates`: patch edges 32, 48, 64 capped by the median case, widths 4 and 8, and bf16 beside fp32 where
bf16 autocast is faster here; :func:`gpu_candidates`: the memory-planned patch and smaller ones), probes them from
the cheapest up (:func:`medseg.planning.time_budget.probe`, seconds each) and chooses:

- the candidate with the most context (patch voxels), then the widest, then the fastest, among those that fit at
  least :data:`MIN_ITERATIONS` iterations in the minutes (on a CPU, of :data:`RECIPE_PATCHES` patches: a plan of 2 per
  step must fit 2000) (the iterations the shipped CPU recipe needs to converge:
  the demo and the MNI152 hemispheres, ``benchmarks/medseg_recipe.py``); a larger patch sees more of the anatomy
  around a small structure, but a network that has not converged is worse whatever it sees;
- when none fits that many, the fastest candidate (the most iterations).

A candidate is not probed when even a lower bound of its step time (the cheapest probe's, scaled by voxels and
width, with :data:`BOUND_MARGIN` to spare) leaves fewer than :data:`MIN_ITERATIONS`; a candidate that runs out of
memory is said in the plan and the larger ones are not tried (the next smaller one is used). Every candidate's outcome goes into ``plan.json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medseg.planning.fingerprint import PlanError
from medseg.planning.time_budget import Probe, fit_to_minutes, probe

#: iterations a candidate must fit in the budget to be preferred for its larger patch or width
MIN_ITERATIONS = 1000
#: patches per step of the recipe that needed MIN_ITERATIONS (2 cases x 2 patches): on a CPU a plan with fewer patches
#: per step must fit proportionally more steps, so that a candidate still sees the training patches the recipe needed
RECIPE_PATCHES = 4
CPU_EDGES = (32, 48, 64)
CPU_WIDTHS = (4, 8)
#: convolution edge of a CPU time-budget plan: nnU-Net's 3x3x3 instead of the paper's 5x5x5. A width-4 step of
#: 2 x 32^3 patches takes 0.12 s instead of 0.30 s at one thread (``benchmarks/medseg_training.py``), so the same
#: minutes hold 1.6-2x the iterations (validation passes are cheaper too); docs/medseg.md has the demo and MNI152 runs.
CPU_KERNEL = 3
KERNEL_REASON = (
    "3x3x3 convolutions (nnU-Net's) instead of the paper's 5x5x5: a width-4 step 2.5x cheaper on a CPU, so about twice the "
    "iterations fit; demo, 3 minutes: mean Dice 0.980 +- 0.003 (2 threads, 3 seeds) and 0.974 +- 0.004 (1 thread, 4 seeds) "
    "against 0.970 +- 0.005 and 0.914 +- 0.072 with 5x5x5"
)
#: smaller patches tried on a GPU when the memory-planned one runs out of memory (each axis x this, per step)
GPU_SHRINK, GPU_FALLBACKS = 0.8, 3
# Scaling the cheapest probe by voxels x width is not a lower bound: a larger patch amortises per-step overhead.
# Measured on the demo (2-core AMD EPYC, width 4): 48^3 took 0.82 s a step where 32^3 scaled by voxels says 0.96 s
# (0.86 of it), 64^3 2.19 s against 2.27 s (0.96); without a margin 48^3 went unprobed at 15 minutes although it
# fitted. With 3x3x3 kernels the fixed share of a small step is larger: on the MNI152 hemispheres 48^3 took 0.181 s
# where 32^3 (0.100 s) scaled by voxels says 0.338 s (0.54 of it). 0.4 leaves room for CPUs whose caches favour large
# patches more; a needless probe costs seconds.
BOUND_MARGIN = 0.4


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One configuration the probe may choose: ``roi`` (voxels, RAS), V-Net ``width``, ``precision`` (fp32, bf16) and
    convolution ``kernel_size``."""

    roi: tuple[int, ...]
    width: int
    precision: str = "fp32"
    kernel_size: int = 5

    @property
    def cost(self) -> int:
        """Voxels x width: the order in which candidates are tried (cheapest first)."""
        return int(np.prod(self.roi)) * self.width

    def describe(self) -> str:
        return f"{'x'.join(map(str, self.roi))} patch, width {self.width}, {self.kernel_size}^3 kernels, {self.precision}"

    def values(self) -> dict[str, Any]:
        return {
            "roi_size": list(self.roi),
            "sw_roi_size": list(self.roi),
            "width": self.width,
            "kernel_size": self.kernel_size,
            "precision": self.precision,
        }


@dataclasses.dataclass
class Trial:
    """What became of a candidate: ``outcome`` ``"probed"``, ``"out of memory"`` or ``"not probed: <why>"``."""

    candidate: Candidate
    outcome: str
    found: Probe | None = None
    iterations: int = 0

    def record(self) -> dict[str, Any]:
        found = dataclasses.asdict(self.found) if self.found else {}
        return {
            "candidate": self.candidate.describe(),
            **self.candidate.values(),
            "outcome": self.outcome,
            **found,
            "iterations": self.iterations,
        }


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, Python's ``MemoryError`` or the CPU allocator's ``RuntimeError``."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _channel_multiple(width: int, channels: int) -> int:
    return channels * math.ceil(width / channels)  # V-Net tiles its input to `width` channels


def cpu_candidates(rois: Sequence[Sequence[int]], channels: int, bf16: bool) -> list[Candidate]:
    """Every patch of ``rois`` (one per edge of :data:`CPU_EDGES`, capped by the median case) x :data:`CPU_WIDTHS`
    x fp32 (and bf16 when ``bf16``), with :data:`CPU_KERNEL` kernels, cheapest first, duplicates dropped."""
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    found = {
        Candidate(tuple(int(n) for n in roi), _channel_multiple(width, channels), precision, CPU_KERNEL)
        for roi in rois
        for width in CPU_WIDTHS
        for precision in precisions
    }
    return sorted(found, key=lambda c: (c.cost, c.precision != "fp32"))


def gpu_candidates(roi: Sequence[int], width: int, spacing_aspect_floor: int, bf16: bool) -> list[Candidate]:
    """The memory-planned ``roi`` and up to :data:`GPU_FALLBACKS` smaller ones (each axis x :data:`GPU_SHRINK`,
    multiples of 16, at least ``spacing_aspect_floor``), at ``width``; bf16 when the GPU has it, else fp32."""
    precision = "bf16" if bf16 else "fp32"
    rois = [tuple(int(n) for n in roi)]
    for _ in range(GPU_FALLBACKS):
        smaller = tuple(max(spacing_aspect_floor, int(n * GPU_SHRINK) // 16 * 16) for n in rois[-1])
        if smaller == rois[-1]:
            break
        rois.append(smaller)
    return sorted((Candidate(r, width, precision) for r in rois), key=lambda c: c.cost)


def _lower_bound(candidate: Candidate, base: Candidate, found: Probe) -> Probe:
    """A step time the candidate cannot beat: the base's scaled by voxels and width (halved for bf16), times
    :data:`BOUND_MARGIN` because a larger patch costs less per voxel than a small one."""
    scale = candidate.cost / base.cost * (0.5 if candidate.precision == "bf16" and base.precision == "fp32" else 1.0)
    scale *= BOUND_MARGIN
    voxels = np.prod(candidate.roi) / np.prod(base.roi) * BOUND_MARGIN
    return Probe(found.step_s * scale, found.window_batch_s * voxels, found.threads)


def _iterations(plan: dict[str, Any], print_: dict[str, Any], minutes: float, found: Probe, validations: int) -> int:
    try:
        return fit_to_minutes(plan, print_, minutes, found, validations)["probe"]["iterations"]
    except PlanError:
        return 0


def try_candidates(
    plan: dict[str, Any],
    print_: dict[str, Any],
    minutes: float,
    candidates: Sequence[Candidate],
    validations: int,
    run_probe: Callable[[Candidate], Probe],
    min_iterations: int = MIN_ITERATIONS,
) -> list[Trial]:
    """Probe ``candidates`` cheapest first (``run_probe``), skipping those that cannot fit ``min_iterations``
    and those at least as large as one that ran out of memory."""
    trials: list[Trial] = []
    base: Trial | None = None
    too_large: Candidate | None = None
    for candidate in candidates:
        if too_large and all(a >= b for a, b in zip(candidate.roi, too_large.roi)) and candidate.width >= too_large.width:
            trials.append(Trial(candidate, f"not probed: {too_large.describe()} ran out of memory"))
            continue
        with_values = {**plan, "values": {**plan["values"], **candidate.values()}}
        if base is not None and candidate.cost > base.candidate.cost:  # a precision twin of the cheapest is always probed
            bound = _lower_bound(candidate, base.candidate, base.found)
            if _iterations(with_values, print_, minutes, bound, validations) < min_iterations:
                trials.append(Trial(candidate, f"not probed: at {bound.step_s:.2f} s a step or more, under {min_iterations} iterations"))
                continue
        try:
            found = run_probe(candidate)
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            trials.append(Trial(candidate, "out of memory"))
            too_large = candidate
            continue
        trial = Trial(candidate, "probed", found, _iterations(with_values, print_, minutes, found, validations))
        trials.append(trial)
        if base is None and candidate.precision == "fp32":
            base = trial
    return trials


def choose(trials: Sequence[Trial], min_iterations: int = MIN_ITERATIONS) -> tuple[Trial, str]:
    """The chosen trial and why (module docstring's rule). Raises :class:`PlanError` when none could be probed."""
    probed = [t for t in trials if t.found is not None]
    if not probed:
        smallest = trials[0].candidate.describe() if trials else "none"
        raise PlanError(f"every candidate network ran out of memory on this machine, the smallest too ({smallest}).")
    enough = [t for t in probed if t.iterations >= min_iterations]
    if enough:
        best = max(enough, key=lambda t: (np.prod(t.candidate.roi), t.candidate.width, -t.found.step_s))
        return best, f"the most context, then width, of the {len(probed)} probed that fit {min_iterations} iterations or more"
    best = max(probed, key=lambda t: (t.iterations, -t.found.step_s))
    return best, f"none of the {len(probed)} probed fits {min_iterations} iterations: the one that fits the most"


def plan_for_minutes(
    plan: dict[str, Any],
    print_: dict[str, Any],
    minutes: float,
    candidates: Sequence[Candidate],
    validations: int,
    device: Any = None,
) -> dict[str, Any]:
    """``plan`` with the chosen candidate's patch, width and precision, fitted to ``minutes`` (``fit_to_minutes``);
    ``plan["probe"]["candidates"]`` records every trial. Raises :class:`PlanError` (all out of memory, budget too short)."""
    classes, channels = len(plan["labels"]), len(plan["channels"])
    patches = plan["values"]["options#mini_batch_size"] * plan["values"].get("train#preprocessing#num_samples", 2)

    def run_probe(candidate: Candidate) -> Probe:
        values = {**plan["values"], **candidate.values()}
        repeats = 2 if candidate == candidates[0] else 1  # the larger ones cost seconds per step
        return probe(values, classes, channels, patches, repeats=repeats, device=device, precision=candidate.precision)

    # a CPU plan of fewer patches per step than the recipe's needs more steps for the same patches (a GPU plan: as it is)
    needed = MIN_ITERATIONS if device is not None else math.ceil(MIN_ITERATIONS * max(1.0, RECIPE_PATCHES / patches))
    trials = try_candidates(plan, print_, minutes, candidates, validations, run_probe, needed)
    chosen, why = choose(trials, needed)
    with_values = {**plan, "values": {**plan["values"], **chosen.candidate.values()}}
    fitted = fit_to_minutes(with_values, print_, minutes, chosen.found, validations)
    failed = [t.candidate.describe() for t in trials if t.outcome == "out of memory"]
    reason = f"{chosen.candidate.describe()}, chosen by the probe: {why}" + (
        f"; out of memory at {' and '.join(failed)}, so a smaller one was used" if failed else ""
    )
    kernels = KERNEL_REASON if chosen.candidate.kernel_size == CPU_KERNEL and device is None else reason
    fitted["reasons"] = {**fitted["reasons"], "roi_size": reason, "width": reason, "kernel_size": kernels, "precision": reason}
    fitted["probe"] = {**fitted["probe"], "chosen": chosen.candidate.describe(), "candidates": [t.record() for t in trials]}
    return fitted
