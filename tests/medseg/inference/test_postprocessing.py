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
    (bundle / "postprocessing.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"postprocessing.json: expected"):
        load_segmenter(bundle)
