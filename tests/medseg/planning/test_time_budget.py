"""medseg plan --train-minutes: a probe of this machine fits the iterations, the validation cadence and a stop to minutes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.planning.fingerprint import PlanError
from medseg.planning.planner import VALIDATIONS, plan_dataset
from medseg.planning.time_budget import DATA_SHARE, Probe, fit_to_minutes, validation_seconds, windows_per_case


def test_windows_per_case_follow_monais_grid() -> None:
    assert windows_per_case((64, 64, 64), (32, 32, 32), 0.5) == 27  # 0, 16, 32 on each axis
    assert windows_per_case((32, 20, 65), (32, 32, 32), 0.5) == 1 * 1 * 4  # ceil(33 / 16) + 1 along the last
    assert windows_per_case((64, 64, 64), (32, 32, 32), 0.0) == 8


def _plan_and_print(training_cases: int = 8, cases: int = 10) -> tuple[dict, dict]:
    values = {"pixdim": [2.0, 2.0, 2.0], "roi_size": [32] * 3, "sw_roi_size": [32] * 3, "options#mini_batch_size": 2, "width": 4}
    plan = {"values": values, "reasons": {}, "labels": {0: "background", 1: "organ"}, "channels": ["CT"]}
    print_ = {"shapes": [[64, 64, 64]] * cases, "spacings": [[2.0, 2.0, 2.0]] * cases, "cases": cases, "training_cases": training_cases}
    return plan, print_


def test_iterations_fill_the_minutes_left_after_validation() -> None:
    plan, print_ = _plan_and_print()
    found = Probe(step_s=0.5, window_batch_s=1.0, threads=2)
    validation_s = validation_seconds(print_, plan["values"], found)
    assert validation_s == 2 * math.ceil(27 / 16) * 1.0  # 2 held-out cases x 2 batches of 16 windows
    fitted = fit_to_minutes(plan, print_, 10, found, VALIDATIONS)
    values = fitted["values"]
    iterations = values["options#max_epochs"] * 4  # 8 training cases, 2 per step
    assert fitted["probe"]["iterations"] == iterations and values["options#max_minutes"] == 10
    used = iterations * 0.5 * DATA_SHARE + (VALIDATIONS + 1) * validation_s  # + the pass at iteration 1
    assert 600 - 4 * 0.5 * DATA_SHARE < used <= 600  # within one epoch of the budget
    frequency = values["options#validation_frequency"]
    periodic = {i for i in range(1, iterations + 1) if i % frequency == 0} | {iterations}  # PeriodicValidation's cadence
    assert len(periodic) == VALIDATIONS
    assert plan["values"].get("options#max_minutes") is None  # the plan given is not changed


def test_validation_never_takes_more_than_a_fifth_of_a_short_budget() -> None:
    plan, print_ = _plan_and_print()
    fitted = fit_to_minutes(plan, print_, 1, Probe(step_s=0.5, window_batch_s=1.0, threads=2), VALIDATIONS)
    iterations, frequency = fitted["probe"]["iterations"], fitted["values"]["options#validation_frequency"]
    passes = 1 + len({i for i in range(frequency, iterations + 1, frequency)} | {iterations})  # iteration 1, periodic, last
    assert passes * 4.0 <= 0.2 * 60, passes  # 4 s a pass: 3 passes in 60 s, not 11


@pytest.mark.parametrize("minutes", [0, -5, math.nan, math.inf])
def test_minutes_that_are_not_a_positive_number_are_refused_before_reading_anything(minutes: float, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"--train-minutes .*: expected a positive number of minutes"):
        plan_dataset(tmp_path / "nothing here", tmp_path / "b", train_minutes=minutes)
    assert not (tmp_path / "b").exists()


def test_a_budget_below_one_epoch_and_two_validations_says_the_minimum() -> None:
    plan, print_ = _plan_and_print()
    found = Probe(step_s=0.5, window_batch_s=1.0, threads=2)
    least = (2 * 4.0 + 4 * 0.5 * DATA_SHARE) / 60  # 0.172 minutes, said rounded up to a tenth
    with pytest.raises(PlanError, match=r"--train-minutes 0.05: .* at least 0.2 minutes \(one epoch and two validation passes\)"):
        fit_to_minutes(plan, print_, 0.05, found, VALIDATIONS)
    assert fit_to_minutes(plan, print_, least + 0.01, found, VALIDATIONS)["values"]["options#max_epochs"] >= 1


def test_plan_probes_this_machine_and_writes_the_budget_into_the_bundle(demo_dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["plan", str(demo_dataset), "--out", str(tmp_path / "b"), "--train-minutes", "2"]) == 0
    out = capsys.readouterr().out
    assert "probe: training step" in out and "iterations in 2 minutes" in out
    recorded = json.loads((tmp_path / "b" / "plan.json").read_text(encoding="utf-8"))["plan"]
    found = recorded["probe"]
    assert found["step_s"] > 0 and found["window_batch_s"] > 0 and found["threads"] >= 1
    config = json.loads((tmp_path / "b" / "configs" / "train.json").read_text(encoding="utf-8"))
    options = config["options"]
    assert options["max_minutes"] == 2 and options["max_epochs"] == recorded["values"]["options#max_epochs"]
    assert options["mini_batch_size"] == 1 and "more, smaller steps" in recorded["reasons"]["options#mini_batch_size"]
    assert found["iterations"] == options["max_epochs"] * 3  # 4 cases: 3 train (one per step), 1 validates
    chosen = [t for t in found["candidates"] if t["candidate"] == found["chosen"]]
    assert chosen and chosen[0]["outcome"] == "probed" and "* " + found["chosen"] in out
    assert config["precision"] == chosen[0]["precision"] and recorded["values"]["roi_size"] == chosen[0]["roi_size"]
    assert config["kernel_size"] == chosen[0]["kernel_size"] == 3 and "3^3 kernels" in found["chosen"]
    assert "3x3x3 convolutions (nnU-Net's)" in recorded["reasons"]["kernel_size"] and "kernel_size" in out


def test_iterations_and_minutes_together_are_refused(demo_dataset: Path, tmp_path: Path, capsys) -> None:
    code = main(["plan", str(demo_dataset), "--out", str(tmp_path / "b"), "--iterations", "100", "--train-minutes", "2"])
    assert code != 0 and "give --iterations or --train-minutes, not both" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
