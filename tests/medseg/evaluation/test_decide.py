"""The one line `medseg train` prints about the post-processing it chose, and the training labels it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.evaluation.decide import describe, enclosing_training_labels, training_enclosure


def test_the_line_names_every_chosen_step_by_label_name() -> None:
    names = {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}
    decision = {
        "keep_largest": [1],
        "remove_smaller_than_ml": {"3": 0.315},
        "remove_detached": {"3": [1, 2]},
        "decided_on": "2 validation case(s)",
    }
    assert describe(decision, names) == (
        "Post-processing, decided on 2 validation case(s): keep the largest part of liver; remove parts tumour < 0.315 ml; "
        "remove parts of tumour touching no liver or kidney."
    )
    assert describe({**decision, "attached_share": {"3": 0.5}}, names).endswith(
        "remove parts of tumour touching no liver or kidney or under 50% of their surface in it."
    )
    assert describe({"keep_largest": [], "remove_smaller_than_ml": {}}, names).endswith(": none.")  # an older file


def test_nesting_is_read_from_the_label_files(tmp_path: Path) -> None:
    from medseg.io.volumes import Geometry, write_volume

    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"), axis=-1)
    items = []
    for k in range(3):
        ref = np.zeros((24, 24, 24), np.uint8)
        ref[np.linalg.norm(grid - 12, axis=-1) < 9] = 1
        ref[np.linalg.norm(grid - (10 + k, 12, 12), axis=-1) < 3] = 3
        path = tmp_path / f"case{k}.nii.gz"
        write_volume(ref, Geometry.from_ras_affine(np.diag([2.0, 2.0, 2.0, 1.0]), ref.shape), path)
        items.append({"label": str(path)})
    assert enclosing_training_labels(items, [1, 3]) == {3: [1]}
    assert training_enclosure(items, [1, 3]) == ({3: [1]}, {3: 1.0})
