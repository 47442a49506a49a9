"""Mirroring measured from the labels: known answers on label maps whose symmetry is known by construction."""

from __future__ import annotations

import numpy as np

from medseg.planning.symmetry import MIRROR_SCORE, axes_to_mirror, mirror_scores, normalised_map, ras_order, similarity


def _ellipsoid(shape: tuple[int, int, int], centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def _body(liver_x: float, kidneys: bool = True, spleen: bool = False, shift: int = 0) -> np.ndarray:
    """A 64 x 48 x 40 label map: liver (1) at x = liver_x, kidneys (2) at x = 18 and 46, spleen (3) opposite the liver."""
    label = np.zeros((64, 48, 40), np.int16)
    if kidneys:
        for x in (18, 46):
            label[_ellipsoid(label.shape, (x + shift, 18, 20), (6, 5, 9))] = 2
    label[_ellipsoid(label.shape, (liver_x + shift, 30, 20), (12, 10, 9))] = 1
    if spleen:
        label[_ellipsoid(label.shape, (64 - liver_x + shift, 30, 20), (6, 5, 6))] = 3
    return label


def test_a_pair_of_kidneys_is_symmetric_left_right_only() -> None:
    kidneys = np.zeros((64, 48, 40), np.int16)
    for x in (18, 46):
        kidneys[_ellipsoid(kidneys.shape, (x, 18, 20), (6, 5, 9))] = 2
    kidneys[_ellipsoid(kidneys.shape, (32, 30, 12), (6, 4, 4))] = 1  # a structure in front of them and low: not AP/SI
    scores = mirror_scores([normalised_map(kidneys)])
    assert scores[0] >= 0.99 and scores[1] < MIRROR_SCORE and scores[2] < MIRROR_SCORE
    assert axes_to_mirror(scores) == [0]


def test_organs_that_swap_sides_are_not_mirrored_although_each_is_symmetric_alone() -> None:
    """Per structure, a liver and a spleen each look the same flipped; jointly they swap sides."""
    cases = [normalised_map(_body(16 + d, kidneys=False, spleen=True, shift=s)) for d, s in ((0, 0), (2, 3), (-2, -4))]
    scores = mirror_scores(cases)
    assert scores[0] < 0.5, scores
    assert scores[2] >= MIRROR_SCORE  # the organs are centred in z: flipping inferior-superior changes nothing
    liver_alone = [normalised_map(np.where(c == 1, 1, 0)) for c in cases]
    assert mirror_scores(liver_alone)[0] >= MIRROR_SCORE


def test_a_one_sided_liver_is_not_mirrored_but_a_dataset_of_both_sides_is() -> None:
    one_side = [normalised_map(_body(16, shift=s)) for s in (0, 2, -3)]
    assert 0 not in axes_to_mirror(mirror_scores(one_side))
    both_sides = one_side + [normalised_map(_body(48, shift=s)) for s in (1, -2)]  # situs inversus, or mirrored copies
    assert 0 in axes_to_mirror(mirror_scores(both_sides))


def test_the_score_does_not_depend_on_how_the_volume_is_stored() -> None:
    label = _body(16)
    ras = np.diag([2.0, 2.0, 3.0, 1.0])
    # stored as P, I, R (index axis 0 runs posterior, 1 inferior, 2 right): the same anatomy, another array
    stored = np.flip(np.flip(label.transpose(1, 2, 0), 0), 1).copy()
    affine = np.array([[0.0, 0.0, 2.0, 0.0], [-2.0, 0.0, 0.0, 94.0], [0.0, -3.0, 0.0, 117.0], [0.0, 0.0, 0.0, 1.0]])
    assert np.array_equal(ras_order(label, ras), label)
    assert np.array_equal(ras_order(stored, affine), label)
    assert mirror_scores([normalised_map(ras_order(stored, affine))]) == mirror_scores([normalised_map(label)])


def test_known_similarities_and_empty_maps() -> None:
    a = np.zeros((4, 4, 4), np.int16)
    a[:2] = 1
    b = np.zeros_like(a)
    b[:1] = 1
    assert similarity(a, b) == 2 * 16 / (32 + 16)
    assert similarity(a, a) == 1.0 and similarity(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert normalised_map(np.zeros((8, 8, 8), np.int16)) is None
    assert normalised_map(a, grid=6).shape == (6, 6, 6)
    assert mirror_scores([]) == [0.0, 0.0, 0.0]
