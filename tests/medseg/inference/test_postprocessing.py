"""Post-processing: keep-largest chosen per label only where it helps, recorded in postprocessing.json and applied by inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.inference.postprocessing import decide_postprocessing, keep_largest, read_postprocessing


def _blob(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) < radius


def test_keep_largest_is_chosen_only_for_labels_it_helps() -> None:
    shape = (24, 24, 24)
    ref = np.zeros(shape, np.uint8)
    ref[_blob(shape, (8, 8, 8), 5)] = 1
    ref[_blob(shape, (18, 18, 18), 3)] = 2
    ref[_blob(shape, (18, 5, 5), 3)] = 2  # label 2 truly has two parts
    pred = ref.copy()
    pred[_blob(shape, (3, 20, 3), 2)] = 1  # a stray island of label 1: removing it helps
    before = pred.copy()
    decision = decide_postprocessing([(pred, ref)], [1, 2])
    assert (pred == before).all()  # the caller's prediction is not changed
    assert decision["keep_largest"] == [1]
    assert decision["dice_with"]["1"] == 1.0 > decision["dice_without"]["1"]
    assert decision["dice_with"]["2"] < decision["dice_without"]["2"] == 1.0  # it would delete a true part
    assert (keep_largest(pred, [1]) == ref).all()


def test_inference_applies_what_cross_validation_decided(tmp_path: Path, untrained_bundle: Path) -> None:
    from medseg.inference.segmenter import load_segmenter

    bundle = tmp_path / "bundle"
    shutil.copytree(untrained_bundle, bundle)
    assert read_postprocessing(bundle) is None and load_segmenter(bundle).keep_largest is False
    (bundle / "postprocessing.json").write_text(json.dumps({"keep_largest": [1, 3]}), encoding="utf-8")
    assert load_segmenter(bundle).keep_largest == [1, 3]
    assert load_segmenter(bundle, overrides={"segmenter#keep_largest": True}).keep_largest is True  # --keep-largest forces all
    own = {"keep_largest": [2], "remove_smaller_than_ml": {"3": 0.25}}  # what `train` decided for this model.pt
    (bundle / "models" / "postprocessing.json").write_text(json.dumps(own), encoding="utf-8")
    segmenter = load_segmenter(bundle)
    assert segmenter.keep_largest == [2] and segmenter.remove_small == {3: 0.25}  # the model's own before the bundle's
    raw = load_segmenter(bundle, overrides={"keep_largest": False, "remove_small": {}})  # medseg infer --no-postprocessing
    assert raw.keep_largest is False and raw.remove_small == {}
    (bundle / "models" / "postprocessing.json").unlink()
    (bundle / "postprocessing.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"postprocessing.json: expected"):
        load_segmenter(bundle)


def test_parts_under_the_limit_go_and_the_rest_stays_voxel_for_voxel() -> None:
    from medseg.inference.postprocessing import part_volumes_ml, remove_small_parts, smallest_parts_ml

    shape = (30, 30, 30)
    mask = np.zeros(shape, np.uint8)
    big, small = _blob(shape, (10, 10, 10), 5), _blob(shape, (24, 24, 24), 2)
    mask[big], mask[small] = 3, 3
    mask[_blob(shape, (24, 6, 6), 2)] = 1  # another label's small part: not this label's business
    _, volumes = part_volumes_ml(mask, 3, 0.001)
    assert sorted(volumes) == pytest.approx(sorted([big.sum() * 0.001, small.sum() * 0.001]))
    cleaned = remove_small_parts(mask, {3: 0.1}, voxel_ml=0.001)  # big: 0.5 ml, small: 0.03 ml
    assert (cleaned[small] == 0).all() and (cleaned[~small] == mask[~small]).all()
    assert (mask[small] == 3).all()  # the input is not changed
    assert remove_small_parts(mask, {3: 0.1}, voxel_ml=0.01)[small].max() == 3  # 10x larger voxels: 0.3 ml, kept
    references = [(mask, 0.001), (np.where(mask == 3, 0, mask), 0.002)]
    assert smallest_parts_ml(references, [1, 2, 3]) == pytest.approx({1: small.sum() * 0.001, 3: small.sum() * 0.001})


def test_small_part_removal_is_chosen_unless_it_deletes_a_true_part() -> None:
    shape = (24, 24, 24)
    ref = np.zeros(shape, np.uint8)
    ref[_blob(shape, (8, 8, 8), 5)] = 1
    stray = ref.copy()
    stray[_blob(shape, (20, 20, 20), 1.5)] = 2  # label 2 is absent from this case: one stray part scores Dice 0
    decision = decide_postprocessing([(stray, ref, 0.001)], [1, 2], smallest_ml={1: 0.5, 2: 0.5})
    assert decision["remove_smaller_than_ml"] == {"1": 0.1, "2": 0.1}  # label 1 ties (nothing to remove): chosen
    assert decision["dice_without"]["2"] == 0.0 and np.isnan(decision["dice_without_small_parts"]["2"])
    assert decision["keep_largest"] == []  # keeping label 2's only part changes nothing
    true_small = ref.copy()
    true_small[_blob(shape, (20, 20, 20), 1.5)] = 2
    decision = decide_postprocessing([(true_small, true_small, 0.001)], [1, 2], smallest_ml={1: 0.5, 2: 0.5})
    assert "2" not in decision["remove_smaller_than_ml"]  # it would delete a real part of label 2
    assert decide_postprocessing([(stray, ref)], [1, 2], smallest_ml={2: 0.5})["remove_smaller_than_ml"] == {}  # no voxel size
