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


def _liver_case(shape=(32, 32, 32), tumour=(12, 16, 16), kidney=True) -> np.ndarray:
    """A liver ball (1) with a tumour ball inside it (3) and a kidney (2) that touches the liver on one side only."""
    ref = np.zeros(shape, np.uint8)
    ref[_blob(shape, (14, 16, 16), 10)] = 1
    if tumour is not None:
        ref[_blob(shape, tumour, 3) & (ref == 1)] = 3
    if kidney:
        ref[_blob(shape, (27, 16, 16), 4) & (ref == 0)] = 2  # its shell borders the liver in a few voxels
    return ref


def test_nesting_is_read_from_the_training_labels_not_from_chance_contact() -> None:
    from medseg.inference.postprocessing import MIN_ENCLOSED_PARTS, enclosing_labels, part_shells

    cases = [_liver_case(tumour=(12 + k, 16, 16 - k)) for k in range(MIN_ENCLOSED_PARTS)]
    shells = list(part_shells(cases[0], 2))
    assert len(shells) == 1 and 0 < np.mean(shells[0] == 1) < 0.5  # the kidney touches the liver, mostly borders air
    assert enclosing_labels([(ref, 0.001) for ref in cases], [1, 2, 3]) == {3: [1]}
    assert enclosing_labels([(ref, 0.001) for ref in cases[:-1]], [1, 2, 3]) == {}  # too few parts to tell
    outside = _liver_case(tumour=None)
    outside[_blob(outside.shape, (28, 4, 4), 3)] = 3  # one training tumour outside the liver: no rule
    assert enclosing_labels([(ref, 0.001) for ref in [*cases, outside]], [1, 2, 3]) == {}


def test_detached_parts_go_and_touching_parts_stay_voxel_for_voxel() -> None:
    from medseg.inference.postprocessing import apply_postprocessing, remove_detached_parts

    shape = (32, 32, 32)
    pred = _liver_case(shape)
    far = _blob(shape, (28, 4, 4), 2.5)  # a false tumour in plain tissue, touching no liver
    edge = _blob(shape, (14, 16, 27), 2) & (pred == 0)  # a part just outside the liver, touching it
    pred[far], pred[edge] = 3, 3
    before = pred.copy()
    cleaned = remove_detached_parts(pred, {3: [1]})
    assert (pred == before).all()  # the input is not changed
    assert (cleaned[far] == 0).all() and (cleaned[~far] == pred[~far]).all()
    assert (remove_detached_parts(pred, {3: [2]})[pred == 3] == 0).all()  # no tumour touches the kidney
    large_false = pred.copy()
    large_false[_blob(shape, (28, 4, 4), 4.5)] = 3  # larger than the true tumour: keep-largest alone would keep it
    kept = apply_postprocessing(large_false, [3], {}, 0.001, {3: [1]})
    assert (kept == 3).sum() == (pred == 3).sum() - edge.sum() - far.sum()  # the true tumour, inside the liver
    assert (kept[_liver_case(shape) == 3] == 3).all()


def test_a_part_beside_its_enclosing_label_goes_when_the_training_parts_lie_within_it() -> None:
    from medseg.inference.postprocessing import ATTACHED_FRACTION, attached_shares, enclosure, remove_detached_parts

    cases = [_liver_case(tumour=(12 + k, 16, 16 - k)) for k in range(3)]
    enclosing, least = enclosure([(ref, 0.001) for ref in cases], [1, 2, 3])
    assert enclosing == {3: [1]} and least == {3: 1.0}  # every training tumour lies wholly inside the liver
    bulging = _liver_case(tumour=None)
    bulging[_blob(bulging.shape, (14, 16, 27), 3)] = 3  # a training tumour bulging out of the liver's surface
    _, least_with_edge = enclosure([(ref, 0.001) for ref in [*cases, bulging]], [1, 2, 3])
    assert 0.2 < least_with_edge[3] < 0.5  # the rule loosens with the training labels
    pred = _liver_case()
    beside = _blob(pred.shape, (14, 16, 27), 2) & (pred == 0)  # tissue just outside the liver, touching it
    pred[beside] = 3
    cleaned = remove_detached_parts(pred, {3: [1]}, {3: ATTACHED_FRACTION * least[3]})
    assert (cleaned[beside] == 0).all() and (cleaned[~beside] == pred[~beside]).all()  # the true tumour stays whole
    assert (remove_detached_parts(pred, {3: [1]})[beside] == 3).all()  # without the share touching is enough
    kept = remove_detached_parts(pred, {3: [1]}, {3: ATTACHED_FRACTION * least_with_edge[3]})
    assert (kept[beside] == 3).all()  # trained with a tumour at the edge, a part there stays
    assert attached_shares(least) == {3: ATTACHED_FRACTION} and attached_shares(least_with_edge) == {}  # loosely nested: touching is enough


def test_detached_part_removal_is_chosen_unless_it_deletes_a_true_part() -> None:
    ref = _liver_case()
    pred = ref.copy()
    pred[_blob(ref.shape, (28, 4, 4), 2.5)] = 3
    free = _liver_case(tumour=None)
    free_pred = free.copy()
    free_pred[_blob(ref.shape, (28, 4, 4), 2.5)] = 3  # in a case without a tumour: Dice 0 unless removed
    decision = decide_postprocessing([(pred, ref), (free_pred, free)], [1, 2, 3], enclosing={3: [1]}, least_share={3: 1.0})
    assert decision["remove_detached"] == {"3": [1]} and decision["enclosed_in_training"] == {"3": [1]}
    assert decision["attached_share"] == {"3": 0.5} and decision["least_enclosed_training_share"] == {"3": 1.0}
    assert decision["dice_without_detached_parts"]["3"] == 1.0 > decision["dice_without"]["3"]
    missed_liver = ref.copy()
    missed_liver[ref == 1] = 0  # the liver is missed, the tumour found: removing it would lose a true part
    decision = decide_postprocessing([(missed_liver, ref)], [1, 2, 3], enclosing={3: [1]}, least_share={3: 1.0})
    assert decision["remove_detached"] == {} and decision["dice_without_detached_parts"]["3"] == 0.0
    assert decision["attached_share"] == {}  # not chosen: no share either
    assert decide_postprocessing([(pred, ref)], [1, 2, 3])["remove_detached"] == {}  # no nesting known: not tried


def test_inference_reads_the_detached_rule_and_refuses_a_malformed_one(tmp_path: Path, untrained_bundle: Path) -> None:
    from medseg.inference.segmenter import load_segmenter

    bundle = tmp_path / "bundle"
    shutil.copytree(untrained_bundle, bundle)
    decision = {"keep_largest": [1], "remove_detached": {"3": [1]}}
    (bundle / "models" / "postprocessing.json").write_text(json.dumps(decision), encoding="utf-8")
    assert load_segmenter(bundle).remove_detached == {3: [1]} and load_segmenter(bundle).attached_share == {}  # an older file
    decision["attached_share"] = {"3": 0.5}
    (bundle / "models" / "postprocessing.json").write_text(json.dumps(decision), encoding="utf-8")
    assert load_segmenter(bundle).attached_share == {3: 0.5}
    no_post = load_segmenter(bundle, overrides={"remove_detached": {}})  # --no-postprocessing
    assert no_post.remove_detached == {} and no_post.attached_share == {}
    (bundle / "models" / "postprocessing.json").write_text(json.dumps({"keep_largest": [], "remove_detached": [3]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"postprocessing.json: expected .*remove_detached"):
        load_segmenter(bundle)
