"""medseg plan --cascade: when a coarse stage is planned (nnU-Net's rule), at what spacing, and what the fine stage takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.planning import cascade
from medseg.planning.fingerprint import PlanError
from medseg.planning.planner import plan_dataset
from tests.medseg.planning.test_planner import _verify_with_monai


def _print(shape: int, cases: int = 3, overlap: float = 0.9) -> dict:
    pairs = [{"labels": ["left", "right"], "overlap": overlap}, {"labels": ["left", "lesion"], "overlap": 0.1}]
    return {"spacings": [[1.0, 1.0, 1.0]] * cases, "shapes": [[shape] * 3] * cases, "label_overlap": pairs}


def test_auto_plans_two_stages_only_when_the_patch_sees_under_a_quarter_of_the_case() -> None:
    values = {"roi_size": [32, 32, 32], "pixdim": [1.0, 1.0, 1.0]}
    two, scale, why = cascade.decide("auto", _print(128), values)  # 32^3 of 128^3: 1.6%
    assert two and scale == pytest.approx((0.25 / (32**3 / 128**3)) ** (1 / 3)) and "1.6% of the median case" in why
    assert 32**3 / (128 / scale) ** 3 == pytest.approx(cascade.LOWRES_COVERAGE)  # the coarse patch covers a quarter
    one, _, why = cascade.decide("auto", _print(48), values)  # 30%: the patch sees enough
    assert not one and why.startswith("one stage")
    one, scale, _ = cascade.decide("auto", _print(56), values)  # 19% but a coarse stage would be only 1.3x smaller
    assert not one and scale**3 < cascade.MIN_VOXEL_REDUCTION
    assert cascade.decide("auto", _print(2000), values)[1] == cascade.MAX_SCALE
    assert cascade.decide("on", _print(48), values)[:2] == (True, pytest.approx(2 ** (1 / 3)))
    assert not cascade.decide("off", _print(128), values)[0]
    with pytest.raises(ValueError, match=r"--cascade 'maybe': expected one of auto, on, off"):
        cascade.decide("maybe", _print(128), values)


def test_auto_plans_one_stage_where_intensity_tells_the_labels_apart() -> None:
    """The demo's organs (overlap 0.00-0.10) gained nothing from a cascade in 3 minutes; grey-matter regions (0.71-0.90)
    did, in 15. A small patch over a large case is not enough: some labels must look alike."""
    values = {"roi_size": [32, 32, 32], "pixdim": [1.0, 1.0, 1.0]}
    one, scale, why = cascade.decide("auto", _print(128, overlap=0.5), values)
    assert not one and scale > 2 and why.startswith("one stage") and "most alike: left and right, overlap 0.50" in why
    assert cascade.decide("auto", _print(128, overlap=cascade.ALIKE_OVERLAP), values)[0]
    single = {**_print(128), "label_overlap": []}  # one foreground label: nothing to tell apart
    assert not cascade.decide("auto", single, values)[0] and "one foreground label" in cascade.decide("auto", single, values)[2]
    assert cascade.decide("on", single, values)[0]


@pytest.mark.parametrize(
    ("normalization", "window", "names", "windows"),
    [
        ("minmax", [-100, 200], ["minmax"] * 3, [[-100, 200], [0.0, 1.0], [0.0, 1.0]]),
        ("zscore", None, ["zscore", "minmax", "minmax"], [None, [0.0, 1.0], [0.0, 1.0]]),
    ],
)
def test_the_fine_stage_takes_the_image_then_one_probability_per_label(normalization, window, names, windows) -> None:
    plan = {
        "values": {"normalization": normalization, "window": window},
        "reasons": {"normalization": "as planned"},
        "labels": {0: "background", 1: "liver", 2: "tumour"},
        "channels": ["CT"],
    }
    fine = cascade.with_coarse_channels(plan)
    assert fine["channels"] == ["CT", "coarse liver", "coarse tumour"] and fine["image_channels"] == 1
    assert fine["values"]["normalization"] == names and fine["values"]["window"] == windows
    assert fine["values"][cascade.COARSE_CHANNELS] == 2 and fine["values"][cascade.COARSE_AUGMENTATION] is cascade.AUGMENT_COARSE
    assert plan["channels"] == ["CT"]  # the plan given is left as it was


def test_a_cascade_plan_writes_both_bundles(demo_dataset: Path, tmp_path: Path) -> None:
    plan = plan_dataset(demo_dataset, tmp_path / "b", iterations=40, cascade="on")
    coarse_plan = json.loads((tmp_path / "b" / "coarse" / "plan.json").read_text())["plan"]
    scale = plan["cascade"]["spacing_scale"]
    assert [round(c / f, 2) for c, f in zip(coarse_plan["values"]["pixdim"], plan["values"]["pixdim"])] == [round(scale, 2)] * 3
    meta = json.loads((tmp_path / "b" / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 4  # CT + liver, kidney, tumour
    assert (
        json.loads((tmp_path / "b" / "coarse" / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"][
            "num_channels"
        ]
        == 1
    )
    train = json.loads((tmp_path / "b" / "configs" / "train.json").read_text())
    assert train["width"] == 4 and train["normalization"] == ["minmax"] * 4  # 4 inputs do not widen the V-Net
    coarse_train = json.loads((tmp_path / "b" / "coarse" / "configs" / "train.json").read_text())
    fine_steps, coarse_steps = (t["train"]["preprocessing"] for t in (train, coarse_train))
    assert (fine_steps["coarse_channels"], fine_steps["coarse_augmentation"]) == (3, cascade.AUGMENT_COARSE)
    assert (coarse_steps["coarse_channels"], coarse_steps["coarse_augmentation"]) == (0, False)
    _verify_with_monai(tmp_path / "b")
    _verify_with_monai(tmp_path / "b" / "coarse")
    one = plan_dataset(demo_dataset, tmp_path / "one", iterations=40)
    assert "coarse" not in one and not (tmp_path / "one" / "coarse").exists() and one["cascade"]["reason"].startswith("one stage")
    with pytest.raises(PlanError, match=r"--cascade sometimes: expected one of auto, on, off"):
        plan_dataset(demo_dataset, tmp_path / "bad", cascade="sometimes")
    assert not (tmp_path / "bad").exists()


def test_the_reason_names_the_patch_the_time_probe_chose_when_it_is_not_the_one_weighed() -> None:
    """``decide`` weighs the patch planned before the probe; a reason naming only that patch would misreport a
    bundle whose probe chose a larger one (seen: "the 32x32x32 patch covers 0.8%" on a 48^3 plan)."""
    print_ = _print(128)
    _, _, why = cascade.decide("off", print_, {"roi_size": [32, 32, 32], "pixdim": [1.0, 1.0, 1.0]})
    same = cascade.restate_for_probed_patch(why, print_, [32, 32, 32], {"roi_size": [32, 32, 32], "pixdim": [1.0] * 3})
    assert same == why
    probed = cascade.restate_for_probed_patch(why, print_, [32, 32, 32], {"roi_size": [64, 64, 64], "pixdim": [1.0] * 3})
    assert probed.startswith(why) and "before the time probe, whose 64x64x64 patch covers 12.5%" in probed
