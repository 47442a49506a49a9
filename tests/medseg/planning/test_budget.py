"""medseg plan --budget: the CPU plan stays the 2-core one; a GPU plan fills its memory by nnU-Net's rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.networks import VNet
from medseg.planning.budget import GPU_MEMORY_SHARE, Budget, BudgetError, activation_count, parameter_count, parse_budget, step_bytes
from medseg.planning.fingerprint import fingerprint
from medseg.planning.planner import make_plan


@pytest.fixture(scope="module")
def demo_print(demo_dataset: Path) -> dict:
    return fingerprint(demo_dataset)


def _ct_print(demo_print: dict, spacing: list[float], shape: list[int], cases: int = 40) -> dict:
    """The demo's fingerprint with ``cases`` cases of ``shape`` voxels at ``spacing`` mm (RAS)."""
    return {**demo_print, "spacings": [spacing] * cases, "shapes": [shape] * cases, "training_cases": cases}


def test_the_cpu_budget_keeps_the_two_core_plan(demo_print: dict) -> None:
    cpu = make_plan(demo_print, budget=Budget("cpu"))
    values = cpu["values"]
    assert values["roi_size"] == values["sw_roi_size"] == [32, 32, 32]
    assert values["width"] == 4 and values["options#mini_batch_size"] == 2
    assert "train#preprocessing#num_samples" not in values  # the template's 2 patches per case stay
    assert make_plan(demo_print)["values"] == values  # no budget: the CPU one


def test_a_gpu_plan_fills_the_budget_with_patches_that_follow_the_spacing(demo_print: dict) -> None:
    print_ = _ct_print(demo_print, [0.8, 0.8, 2.5], [512, 512, 120])  # an abdominal CT: 2.5 mm slices
    plans = {gib: make_plan(print_, budget=Budget("gpu", gib))["values"] for gib in (8, 24, 80)}
    sizes = []
    for gib, values in plans.items():
        patch, batch, width = values["roi_size"], values["options#mini_batch_size"], values["width"]
        target = np.asarray(values["pixdim"])
        median = np.array([512 * 0.8, 512 * 0.8, 120 * 2.5]) / target
        assert all(p % 16 == 0 and p >= 32 for p in patch) and batch >= 2 and width == 16, values
        assert all(p <= np.ceil(m / 16) * 16 for p, m in zip(patch, median)), (patch, median)
        assert step_bytes(patch, batch, width, 4) <= GPU_MEMORY_SHARE * gib * 2**30
        mm = np.asarray(patch) * target
        assert mm.max() / mm.min() < 2.5 or patch == [int(np.ceil(m / 16) * 16) for m in median], (patch, mm)
        assert values["train#preprocessing#num_samples"] == 1  # a batch of different cases
        sizes.append(np.prod(patch) * batch)
    assert sizes[0] < sizes[1] <= sizes[2]  # more memory, more voxels per step
    assert np.prod(plans[8]["roi_size"]) >= 96**3  # nnU-Net's 8-11 GB budget plans ~128^3


def test_small_cases_are_taken_whole(demo_print: dict) -> None:
    values = make_plan(_ct_print(demo_print, [2.0, 2.0, 2.0], [40, 36, 30]), budget=Budget("gpu", 24))["values"]
    assert values["roi_size"] == [48, 48, 32]  # the median case, rounded up to V-Net's multiple of 16


def test_the_memory_model_counts_vnets_layers() -> None:
    assert parameter_count(4, 4) == sum(p.numel() for p in VNet(out_channels=4, width=4, norm="instance").parameters())
    counts = [activation_count(w) for w in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2] and 1.7 < counts[2] / counts[1] < 2.1  # about linear in the width
    seen = []
    net = VNet(out_channels=2, width=4, norm="instance", channels_last=False)
    for m in net.modules():
        if not list(m.children()):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.numel()))
    with torch.no_grad():
        net(torch.zeros(1, 1, 32, 32, 32))
    assert sum(seen) / 32**3 == pytest.approx(counts[0])  # the meta-device count is the real forward's


def test_budget_spellings() -> None:
    assert parse_budget("cpu").kind == "cpu"
    assert parse_budget("GPU:11.5") == Budget("gpu", 11.5, "asked with --budget GPU:11.5")
    assert parse_budget(None).kind == ("gpu" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "gpu:0", "gpu:-3", "tpu:8", "8"):
        with pytest.raises(BudgetError, match="expected cpu, gpu:<GiB>"):
            parse_budget(bad)


def test_plan_prints_the_budget_and_writes_the_fitted_bundle(demo_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(demo_dataset), "--out", str(tmp_path / "gpu"), "--budget", "gpu:16"]) == 0
    out = capsys.readouterr().out
    assert "budget: GPU with 16 GiB; asked with --budget gpu:16" in out
    train = json.loads((tmp_path / "gpu" / "configs" / "train.json").read_text(encoding="utf-8"))
    infer = json.loads((tmp_path / "gpu" / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert train["width"] == 16 and train["roi_size"] == train["sw_roi_size"] and infer["width"] is None  # inference: as trained
    assert train["roi_size"] != [32, 32, 32] and train["options"]["mini_batch_size"] >= 2
