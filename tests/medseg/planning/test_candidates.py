"""medseg plan --train-minutes chooses patch, width and precision by probing: the rule, out of memory, a GPU budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from medseg.planning.budget import Budget
from medseg.planning.candidates import CPU_KERNEL, MIN_ITERATIONS, Candidate, choose, cpu_candidates, gpu_candidates, try_candidates
from medseg.planning.fingerprint import PlanError
from medseg.planning.planner import plan_minutes
from medseg.planning.time_budget import Probe


def _plan_and_print() -> tuple[dict, dict]:
    values = {
        "pixdim": [2.0] * 3,
        "roi_size": [32] * 3,
        "sw_roi_size": [32] * 3,
        "options#mini_batch_size": 2,
        "width": 4,
        "sw_batch_size": 4,
    }
    plan = {"values": values, "reasons": {}, "labels": {0: "background", 1: "organ"}, "channels": ["CT"]}
    print_ = {"shapes": [[128] * 3] * 10, "spacings": [[2.0] * 3] * 10, "cases": 10, "training_cases": 8}
    return plan, print_


def _timed_by_cost(per_cost_s: float):
    """A machine whose step time is proportional to voxels x width, bf16 twice as fast (known answers for the rule)."""
    probed = []

    def run(candidate: Candidate) -> Probe:
        probed.append(candidate)
        speed = 2.0 if candidate.precision == "bf16" else 1.0
        return Probe(candidate.cost * per_cost_s / speed, candidate.cost * per_cost_s / speed / 10, 2)

    return run, probed


def test_candidates_are_cheapest_first_without_duplicates() -> None:
    rois = [[32, 32, 32], [48, 48, 32], [48, 48, 32]]  # the median case caps the last axis: 48 and 64 give one patch
    found = cpu_candidates(rois, channels=3, bf16=True)
    assert [c.cost for c in found] == sorted(c.cost for c in found)
    assert len(found) == len(set(found)) == 2 * 2 * 2  # 2 patches x widths 6, 9 (multiples of 3 channels) x 2 precisions
    assert {c.width for c in found} == {6, 9}
    assert found[0] == Candidate((32, 32, 32), 6, "fp32", kernel_size=3)
    assert {c.kernel_size for c in found} == {3} and found[0].values()["kernel_size"] == 3  # nnU-Net's kernels on a CPU budget
    assert {c.kernel_size for c in gpu_candidates([128, 128, 64], 16, 32, bf16=False)} == {5}  # the paper's on a GPU
    assert [c.roi for c in gpu_candidates([128, 128, 64], 16, 32, bf16=False)] == [
        (48, 48, 32),
        (64, 64, 32),
        (96, 96, 48),
        (128, 128, 64),
    ]  # x0.8, multiples of 16, at least 32


def test_the_most_context_that_fits_the_minimum_iterations_is_chosen() -> None:
    plan, print_ = _plan_and_print()
    candidates = cpu_candidates([[32] * 3, [48] * 3, [64] * 3], 1, bf16=False)
    # 32^3 width 4 at 0.2 s a step: 10 minutes fit ~2400 iterations, 48^3 width 4 ~700, 32^3 width 8 ~1200
    run, probed = _timed_by_cost(0.2 / (32**3 * 4))
    trials = try_candidates(plan, print_, 10, candidates, 10, run)
    chosen, why = choose(trials)
    assert chosen.candidate == Candidate((32, 32, 32), 8, kernel_size=CPU_KERNEL) and chosen.iterations >= MIN_ITERATIONS
    assert "fit 1000 iterations or more" in why
    assert Candidate((64, 64, 64), 8, kernel_size=CPU_KERNEL) not in probed  # its lower bound alone leaves too few iterations
    assert all(t.outcome.startswith("not probed") for t in trials if t.candidate not in probed)


# step times (s) measured on the demo by `medseg plan --train-minutes 60` (2-core AMD EPYC, fp32): a larger patch
# costs less per voxel than 32^3 (48^3 width 4: 0.82 s, where 32^3 scaled by voxels says 0.95 s)
MEASURED_STEP_S = {(32, 4): 0.28, (32, 8): 0.88, (48, 4): 0.82, (48, 8): 2.23, (64, 4): 2.19, (64, 8): 4.5}


def test_a_larger_patch_cheaper_per_voxel_than_scaled_is_still_probed_and_chosen() -> None:
    plan, print_ = _plan_and_print()

    def run(candidate: Candidate) -> Probe:
        step_s = MEASURED_STEP_S[(candidate.roi[0], candidate.width)]
        return Probe(step_s, step_s * 1.1, 2)

    trials = try_candidates(plan, print_, 20, cpu_candidates([[32] * 3, [48] * 3, [64] * 3], 1, bf16=False), 10, run)
    chosen, _ = choose(trials)
    # 20 minutes fit 1000 iterations of 48^3 at its measured 0.82 s, not at the 0.95 s that voxels alone predict
    assert chosen.candidate == Candidate((48, 48, 48), 4, kernel_size=CPU_KERNEL) and chosen.iterations >= MIN_ITERATIONS
    outcomes = {(t.candidate.roi[0], t.candidate.width): t.outcome for t in trials}
    # 64^3 at width 4 may fit by its bound (0.28 s x 8 x BOUND_MARGIN): probed, and too slow; width 8 not even by that
    assert outcomes[(64, 4)] == "probed" and outcomes[(64, 8)].startswith("not probed")


def test_without_a_candidate_that_fits_the_minimum_the_fastest_is_chosen_bf16_where_faster() -> None:
    plan, print_ = _plan_and_print()
    run, _ = _timed_by_cost(2.0 / (32**3 * 4))  # 2 s a step at the smallest: 2 minutes fit ~40
    trials = try_candidates(plan, print_, 2, cpu_candidates([[32] * 3], 1, bf16=True), 10, run)
    chosen, why = choose(trials)
    assert chosen.candidate == Candidate((32, 32, 32), 4, "bf16", CPU_KERNEL) and "the one that fits the most" in why
    assert 0 < chosen.iterations < MIN_ITERATIONS and [t.outcome for t in trials][:2] == ["probed", "probed"]


OOM_SCRIPT = """
import json, resource, sys
from medseg.planning.candidates import Candidate, plan_for_minutes
from medseg.planning.fingerprint import PlanError
import torch, monai.losses, medseg.networks  # imported before the limit: the probe's own memory is what is limited
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
plan, print_ = json.loads(sys.argv[1])
small, large = Candidate((32, 32, 32), 4), Candidate((128, 128, 128), 4)
fitted = plan_for_minutes(plan, print_, 1e6, [small, large], 10)
try:
    plan_for_minutes(plan, print_, 1e6, [large], 10)
    error = None
except PlanError as e:
    error = str(e)
print(json.dumps({"probe": fitted["probe"], "values": fitted["values"], "reason": fitted["reasons"]["roi_size"], "error": error}))
"""


def test_a_candidate_out_of_memory_falls_back_to_the_next_smaller_and_says_so() -> None:
    """A real allocation failure: the probe runs with its address space limited to 1 GiB more than after the imports
    (a 128^3 step needs several GiB, 32^3 a few hundred MiB)."""
    run = subprocess.run([sys.executable, "-c", OOM_SCRIPT, json.dumps(_plan_and_print())], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    outcomes = {t["candidate"]: t["outcome"] for t in result["probe"]["candidates"]}
    assert outcomes == {
        "32x32x32 patch, width 4, 5^3 kernels, fp32": "probed",
        "128x128x128 patch, width 4, 5^3 kernels, fp32": "out of memory",
    }
    assert result["values"]["roi_size"] == [32, 32, 32] and result["probe"]["chosen"] == "32x32x32 patch, width 4, 5^3 kernels, fp32"
    assert "out of memory at 128x128x128 patch, width 4, 5^3 kernels, fp32, so a smaller one was used" in result["reason"]
    assert result["error"] and "every candidate network ran out of memory on this machine, the smallest too" in result["error"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU budget is probed on the GPU when there is one")
def test_a_gpu_budget_cannot_be_timed_without_a_gpu() -> None:
    plan, print_ = _plan_and_print()
    with pytest.raises(PlanError, match=r"--train-minutes 5 with a GPU budget: .* no CUDA device; plan on the GPU machine"):
        plan_minutes(plan, print_, 5, Budget("gpu", 24.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_budget_is_probed_on_the_gpu() -> None:
    plan, print_ = _plan_and_print()
    fitted = plan_minutes(plan, print_, 30, Budget("gpu", 24.0))
    assert fitted["probe"]["candidates"][0]["outcome"] in ("probed", "out of memory")
    assert fitted["values"]["options#max_minutes"] == 30


def test_a_cpu_plan_of_two_patches_a_step_must_fit_twice_the_steps(monkeypatch) -> None:
    """1 case x 2 patches a step (``plan --train-minutes`` on a CPU) needs 2000 steps where the recipe's 4 patches
    needed 1000: the same patches seen, so the faster step does not buy a larger patch that trains on fewer."""
    from medseg.planning import candidates as module

    plan, print_ = _plan_and_print()
    plan["values"]["options#mini_batch_size"] = 1
    # at half the recipe's patches a step costs about half: 32^3 0.15 s, 48^3 0.42 s (the measured 4-patch times / 2)
    monkeypatch.setattr(
        module, "probe", lambda values, *a, **k: Probe(MEASURED_STEP_S[(values["roi_size"][0], values["width"])] / 2, 0.1, 2)
    )
    fitted = module.plan_for_minutes(plan, print_, 20, cpu_candidates([[32] * 3, [48] * 3, [64] * 3], 1, bf16=False), 10)
    # 48^3 fits about 2400 steps of 2 patches (1200 of 4: as before) and 32^3 width 8 about 2300
    assert (
        fitted["probe"]["chosen"].startswith("48x48x48 patch, width 4") and "fit 2000 iterations or more" in fitted["reasons"]["roi_size"]
    )
    fitted = module.plan_for_minutes(plan, print_, 15, cpu_candidates([[32] * 3, [48] * 3, [64] * 3], 1, bf16=False), 10)
    assert fitted["probe"]["chosen"].startswith("32x32x32 patch, width 4"), fitted["probe"]["candidates"]  # 48^3: about 1800 of 2000
