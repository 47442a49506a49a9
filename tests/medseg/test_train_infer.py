"""The network the engine trains is the network inference runs: same Dice on training patches and through `medseg infer`.

With batch norm, a width-4 V-Net trained on class-balanced 32^3 patches at batch 2 scored Dice 0.76
on its training patches and 0.06 on the same volume through inference (running statistics of
foreground-rich patches applied to whole volumes); the bundle's instance norm has no running
statistics. These tests plan a bundle for a small CT-like dataset (``medseg plan``), train it
briefly through the engine (``medseg train``) and compare what training sees with what inference gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.evaluation.metrics import dice
from medseg.inference.segmenter import load_segmenter
from medseg.io.volumes import Geometry, read_volume, write_volume
from medseg.transforms import preprocessing
from shared.metrics import largest_drop_after

LABELS = (1, 2)


def write_small_ct(root: Path, cases: int = 4, seed: int = 0, size: int = 40) -> Path:
    """``cases`` CT-like volumes of ``size``^3 voxels at 2 mm: air, a body (0 HU, r 36 mm), organ 1 (100 HU,
    r 14 mm), organ 2 (200 HU, r 8 mm): small enough that 100 iterations learn it (Dice about 0.95)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size) * 2.0 - (size - 1)] * 3, indexing="ij"), axis=-1)
    geometry = Geometry((size,) * 3, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    training = []
    for i in range(cases):
        image, label = np.full((size,) * 3, -1000.0), np.zeros((size,) * 3, np.uint8)
        image[np.linalg.norm(grid, axis=-1) < 36] = 0.0
        for value, hu, radius in ((1, 100.0, 14.0), (2, 200.0, 8.0)):
            inside = np.linalg.norm(grid - rng.uniform(-14, 14, 3), axis=-1) < radius
            image[inside], label[inside] = hu, value
        image += rng.normal(0, 18, image.shape)
        write_volume(image.astype(np.int16), geometry, root / "imagesTr" / f"case{i}.nii.gz")
        write_volume(label, geometry, root / "labelsTr" / f"case{i}.nii.gz")
        training.append({"image": f"./imagesTr/case{i}.nii.gz", "label": f"./labelsTr/case{i}.nii.gz"})
    description = {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ", "2": "small_organ"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(description), encoding="utf-8")
    return root


def plan_and_train(data: Path, bundle: Path, iterations: int = 100, norm: str | None = None) -> Path:
    """``medseg plan`` + ``medseg train`` (3 training cases, 1 held out for validation), quietly."""
    assert main(["plan", str(data), "--out", str(bundle), "--iterations", str(iterations)]) == 0
    extra = ["--set", f"norm={norm}"] if norm else []
    assert (
        main(
            [
                "train",
                "--bundle",
                str(bundle),
                "--data",
                str(data),
                "--set",
                "options#verbose=false",
                "--set",
                "options#plots=none",
                "--device",
                "cpu",
                *extra,
            ]
        )
        == 0
    )
    return bundle


def training_and_inference_dice(bundle: Path, item: dict[str, str]) -> tuple[float, float]:
    """Mean Dice of ``item`` on training patches (the training transform, the network in training mode,
    batches of 4 as the engine forms them) and through inference on the whole volume."""
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    # the model's record says which norm it trained with; the raw argmax: the network is compared, not its post-processing
    segmenter = load_segmenter(bundle, overrides={"keep_largest": False, "remove_small": {}})
    sampler = preprocessing(
        train["pixdim"],
        train["window"],
        train["roi_size"],
        num_samples=16,
        class_ratios=[1] * (len(LABELS) + 1),
        normalization=train["normalization"],
    )
    sampler.set_random_state(seed=0)
    samples = sampler(dict(item))
    network = segmenter.network.train()
    with torch.no_grad():
        predicted = torch.cat([network(torch.stack([s["image"] for s in samples[i : i + 4]])).argmax(1) for i in range(0, 16, 4)])
    network.eval()
    reference = np.stack([s["label"][0].numpy() for s in samples]).astype(np.uint8)
    patches = np.nanmean(list(dice(predicted.numpy(), reference, LABELS).values()))
    mask, _ = segmenter.segment(item["image"])
    label, _ = read_volume(item["label"])
    volume = np.nanmean(list(dice(mask, np.asarray(label), LABELS).values()))
    return float(patches), float(volume)


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_ct(tmp_path_factory.mktemp("small_ct"))


@pytest.fixture(scope="module")
def trained(small_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plan_and_train(small_ct, tmp_path_factory.mktemp("trained") / "bundle")


def _training_case(data: Path) -> dict[str, str]:
    from medseg.datasets.splits import split_cases

    return split_cases(data)[0][0]  # a training case, not the held-out one


@pytest.mark.slow
def test_dice_through_infer_matches_dice_on_training_patches(small_ct: Path, trained: Path) -> None:
    patches, volume = training_and_inference_dice(trained, _training_case(small_ct))
    assert patches > 0.7, f"training did not learn (training-patch Dice {patches:.3f})"  # otherwise the comparison means nothing
    assert abs(patches - volume) <= 0.05, f"training-patch Dice {patches:.3f} vs whole-volume Dice through infer {volume:.3f}"


@pytest.mark.slow
def test_validation_scores_what_inference_reproduces_and_does_not_collapse(small_ct: Path, trained: Path, tmp_path: Path) -> None:
    from medseg.datasets.splits import split_cases
    from medseg.evaluation.report import evaluate_cases

    rows = json.loads((trained / "models" / "history.json").read_text(encoding="utf-8"))["rows"]
    curve = [row["val_dice"] for row in rows if row.get("val_dice") is not None]
    assert len(curve) >= 5 and largest_drop_after(curve) <= 0.2, curve
    # the kept weights are the best validation's; inference on the validation case scores them alike
    summary = evaluate_cases(load_segmenter(trained), split_cases(small_ct)[1], tmp_path / "eval")
    assert abs(summary["mean_dice"] - max(curve)) <= 0.05, (summary["mean_dice"], max(curve))


@pytest.mark.slow
def test_bf16_inference_agrees_with_fp32_on_a_trained_model(small_ct: Path, trained: Path, tmp_path: Path) -> None:
    """``medseg infer --device cpu --precision bf16`` gives the fp32 mask (Dice >= 0.98 between the two).

    bf16 is asked for explicitly: on a CPU without AVX-512-BF16/AMX it is emulated (slow, still correct); ``auto`` would pick fp32.
    """
    case = _training_case(small_ct)  # a case the 100 iterations learnt well: agreement on a poor mask would say little
    masks = {}
    for precision in ("fp32", "bf16"):
        argv = ["infer", "--bundle", str(trained), "--input", case["image"], "--output", str(tmp_path / precision)]
        assert main([*argv, "--format", "nifti", "--device", "cpu", "--precision", precision]) == 0
        masks[precision] = np.asarray(read_volume(next((tmp_path / precision).glob("*_seg.nii.gz")))[0])
    label = np.asarray(read_volume(case["label"])[0])
    assert np.nanmean(list(dice(masks["fp32"], label, LABELS).values())) > 0.7  # a model worth comparing
    agreement = dice(masks["bf16"], masks["fp32"], LABELS)
    assert min(agreement.values()) >= 0.98, agreement


@pytest.mark.slow
def test_training_decides_postprocessing_on_its_validation_case_and_infer_applies_it(
    small_ct: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train`` ends by choosing the post-processing on its validation case (``models/postprocessing.json``);
    ``medseg infer`` applies it to the raw argmax that ``--no-postprocessing`` gives."""
    from medseg.inference.postprocessing import apply_postprocessing

    decision = json.loads((trained / "models" / "postprocessing.json").read_text(encoding="utf-8"))
    assert decision["decided_on"] == "1 validation case(s)"
    # the smallest training part of each organ: a sphere of radius 14 mm (11.5 ml) and 8 mm (2.14 ml), voxelised at 2 mm
    assert decision["smallest_training_part_ml"] == pytest.approx({"1": 11.5, "2": 2.14}, rel=0.15)
    assert decision["remove_smaller_than_ml"] == pytest.approx({"1": 2.3, "2": 0.43}, rel=0.15)  # nothing contradicts it
    case = _training_case(small_ct)["image"]
    masks = {}
    for name, extra in (("decided", []), ("raw", ["--no-postprocessing"])):
        argv = ["infer", "--bundle", str(trained), "--input", case, "--output", str(tmp_path / name), "--format", "nifti"]
        assert main([*argv, "--device", "cpu", *extra]) == 0
        masks[name], geometry = read_volume(next((tmp_path / name).glob("*_seg.nii.gz")))
    limits = {int(k): v for k, v in decision["remove_smaller_than_ml"].items()}
    expected = apply_postprocessing(np.asarray(masks["raw"]), decision["keep_largest"], limits, float(np.prod(geometry.spacing)) / 1000)
    np.testing.assert_array_equal(np.asarray(masks["decided"]), expected)
    capsys.readouterr()
    both = ["infer", "--bundle", str(trained), "--input", case, "--output", str(tmp_path / "x"), "--keep-largest", "--no-postprocessing"]
    assert main(both) == 2 and "contradict each other" in capsys.readouterr().err and not (tmp_path / "x").exists()
