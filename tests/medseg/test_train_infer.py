"""The network the engine trains is the network inference runs: same Dice on training patches and through `medseg infer`.

With batch norm, a width-4 V-Net trained on class-balanced 32^3 patches at batch 2 scored Dice 0.76
on its training patches and 0.06 on the same volume through inference (running statistics of
foreground-rich patches applied to whole volumes); the bundle's instance norm has no running
statistics. This trains the bundle briefly through the engine and compares the two on a training case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.bundle import split_cases
from medseg.data import preprocessing
from medseg.evaluation import dice
from medseg.infer import load_segmenter
from medseg.io import read_volume

ROOT = Path(__file__).resolve().parents[2]
LABELS = (1, 2, 3)


def train_small_bundle(data: Path, bundle: Path, iterations: int = 120, **overrides) -> Path:
    """Copy the shipped bundle and train it for about ``iterations`` on ``data`` (3 training cases: 2 per step)."""
    from medseg.demo import _workflow

    shutil.copytree(ROOT / "bundles" / "vnet_seg" / "configs", bundle / "configs")
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    settings = {"dataset_dir": str(data), "options#max_epochs": iterations // 2, "options#validation_frequency": iterations // 4,
                "options#verbose": False, "options#plots": "none", "cache": "ram", **overrides}  # fmt: skip
    assert train["options"]["mini_batch_size"] == 2
    _workflow(bundle, ["train.json"], **settings)
    return bundle


def patch_and_volume_dice(bundle: Path, item: dict[str, str], patches: int = 8) -> tuple[float, float]:
    """Mean foreground Dice of ``item`` on training patches (the training transform) and through inference."""
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    segmenter = load_segmenter(bundle)
    sampler = preprocessing(train["pixdim"], train["window"], train["roi_size"], num_samples=patches, class_ratios=[1, 1, 1, 1],
                            normalization=train["normalization"])  # fmt: skip
    sampler.set_random_state(seed=0)
    samples = sampler(dict(item))
    with torch.no_grad():
        logits = segmenter.network.eval()(torch.stack([s["image"] for s in samples]))
    predicted = logits.argmax(1).numpy()
    reference = np.stack([s["label"][0].numpy() for s in samples]).astype(np.uint8)
    patch = np.nanmean(list(dice(predicted, reference, LABELS).values()))
    mask, _ = segmenter.segment(item["image"])
    label, _ = read_volume(item["label"])
    volume = np.nanmean(list(dice(mask, np.asarray(label), LABELS).values()))
    return float(patch), float(volume)


@pytest.mark.slow
def test_dice_through_infer_matches_dice_on_training_patches(demo_dataset: Path, tmp_path: Path) -> None:
    bundle = train_small_bundle(demo_dataset, tmp_path / "bundle")
    item = split_cases(demo_dataset)[0][0]  # a training case, not the held-out one
    patch, volume = patch_and_volume_dice(bundle, item)
    assert patch > 0.5, f"training did not learn (patch Dice {patch:.3f})"  # the comparison means nothing on an untrained model
    assert abs(patch - volume) <= 0.05, f"patch Dice {patch:.3f} vs whole-volume Dice through infer {volume:.3f}"
