"""medseg.evaluation.report: the overlay figure's slice is axial in the patient, whatever order the file stores its voxels in."""

from __future__ import annotations

import numpy as np

from medseg.evaluation.report import axial_axis, evaluate_pairs
from medseg.io.volumes import Geometry, write_volume

NAMES = {0: "background", 1: "organ"}


def test_the_overlay_slice_is_axial_in_a_sagittal_file(tmp_path):
    """A file stored sagittally (index axis 0 runs inferior-superior, k left-right): the chosen slice is cut across
    axis 0, the one perpendicular to the body's long axis (it was file slice k, a sagittal cut, called "axial")."""
    # column n = LPS direction of index axis n: i -> S, j -> P, k -> L
    sagittal = Geometry(
        (12, 10, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float).reshape(-1))
    )
    assert axial_axis(sagittal) == 0
    label = np.zeros(sagittal.shape, np.uint8)
    label[7, 2:8, 1:7] = 1  # one axial plane (i = 7) holds most of the organ
    label[2:5, 4, 4] = 1
    ref = write_volume(label, sagittal, tmp_path / "ref" / "case.nii.gz")
    pred = write_volume(label, sagittal, tmp_path / "pred" / "case_seg.nii.gz")
    _, slices = evaluate_pairs([("case", pred, ref)], NAMES)
    piece = slices["case"]
    assert piece["axis"] == 0 and piece["k"] == 7 and piece["reference"].shape == (10, 8)
    ras = Geometry((12, 10, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).reshape(-1)))
    assert axial_axis(ras) == 2  # the usual storage: k is axial
