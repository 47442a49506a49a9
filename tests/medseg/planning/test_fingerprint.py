"""The fingerprint's measure of labels that look alike: known overlaps, the real MNI152 regions, and what plan does with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.planning import cascade
from medseg.planning.fingerprint import fingerprint, label_intensity_overlap
from medseg.planning.planner import plan_dataset

NAMES = {0: "background", 1: "a", 2: "b"}


def _overlap(*channels: tuple[np.ndarray, np.ndarray]) -> float:
    by_label = {1: [[x] for x, _ in channels], 2: [[y] for _, y in channels]}
    ((pair),) = label_intensity_overlap(by_label, NAMES)
    assert pair["labels"] == ["a", "b"]
    return pair["overlap"]


def test_overlap_of_known_distributions() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000)
    assert _overlap(same) > 0.95
    assert _overlap((rng.uniform(0, 2, 40000), rng.uniform(1, 3, 40000))) == pytest.approx(0.5, abs=0.03)
    assert _overlap((rng.normal(0, 1, 20000), rng.normal(20, 1, 20000))) == 0.0
    assert _overlap((np.full(50, 3.0), np.full(70, 3.0))) == 1.0  # one constant value each: alike
    # two channels: the labels look alike in one, apart in the other; one channel that tells them apart is enough
    assert _overlap(same, (rng.normal(0, 1, 20000), rng.normal(20, 1, 20000))) == 0.0


def test_pairs_are_sorted_from_most_alike_and_a_single_label_has_none() -> None:
    rng = np.random.default_rng(1)
    by_label = {1: [[rng.normal(0, 1, 5000)]], 2: [[rng.normal(0.2, 1, 5000)]], 3: [[rng.normal(9, 1, 5000)]]}
    pairs = label_intensity_overlap(by_label, {1: "x", 2: "y", 3: "z"})
    assert pairs[0]["labels"] == ["x", "y"] and [p["overlap"] for p in pairs] == sorted((p["overlap"] for p in pairs), reverse=True)
    assert label_intensity_overlap({1: [[rng.normal(0, 1, 100)]]}, {1: "x"}) == []


def test_the_demo_organs_are_apart_and_the_mni152_grey_matter_regions_alike(demo_dataset: Path, tmp_path: Path) -> None:
    """The measure on the data the threshold was chosen on: demo organs under it, MNI152 grey-matter regions over it,
    grey against white under it; so ``--cascade auto`` gives the regions two stages and the demo one."""
    from medseg.datasets.mni152 import make_structures_dataset

    demo = fingerprint(demo_dataset)["label_overlap"]
    assert max(p["overlap"] for p in demo) < cascade.ALIKE_OVERLAP
    data = make_structures_dataset(tmp_path / "mni", resolution=2).parent
    regions = fingerprint(data)["label_overlap"]
    alike = {frozenset(p["labels"]) for p in regions if p["overlap"] >= cascade.ALIKE_OVERLAP}
    assert frozenset(["occipital", "parietal"]) in alike and frozenset(["temporal", "frontal"]) in alike
    assert not any("white_matter" in pair for pair in alike)  # white matter is told apart by its intensity
    # plan's default (auto) gives the regions two stages and the demo one
    assert plan_dataset(data, tmp_path / "regions", iterations=40)["cascade"]["reason"].startswith("two stages")
    assert (tmp_path / "regions" / "coarse" / "configs" / "train.json").is_file()
    assert plan_dataset(demo_dataset, tmp_path / "demo", iterations=40)["cascade"]["reason"].startswith("one stage")
