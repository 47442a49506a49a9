import json

import numpy as np

from medseg.io.volumes import read_volume


def test_demo_dataset_has_variety_and_consistent_pairs(demo_dataset):
    description = json.loads((demo_dataset / "dataset.json").read_text(encoding="utf-8"))
    assert description["labels"] == {"0": "background", "1": "liver", "2": "kidney", "3": "tumour"}
    cases = description["training"] + description["test"]
    suffixes, spacings, directions, tumours = set(), set(), set(), 0
    for case in cases:
        image, geometry = read_volume(demo_dataset / case["image"])
        label, label_geometry = read_volume(demo_dataset / case["label"])
        assert label_geometry.matches(geometry) == [] and image.dtype == np.int16
        suffixes.add(case["image"].rsplit("/", 1)[-1].split(".", 1)[1])
        spacings.add(tuple(round(s, 2) for s in geometry.spacing))
        directions.add(tuple(np.round(geometry.direction, 3)))
        tumours += bool((label == 3).any())
        liver, kidney = image[label == 1].mean(), image[label == 2].mean()
        assert 60 < liver < 140 and 160 < kidney < 240  # CT-like ranges with noise
        assert set(np.unique(label)) <= {0, 1, 2, 3}
    assert suffixes == {"nii.gz", "nrrd"}
    assert len(spacings) >= 3 and any(s[2] > s[0] for s in spacings)  # anisotropic cases
    assert len(directions) >= 2  # some cases are not stored in LPS order
    assert 0 < tumours < len(cases)  # some cases have no tumour
