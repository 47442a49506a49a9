"""medseg.web.views: every scan shows the radiological way, whatever order its voxels are stored in."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.io.volumes import Geometry
from medseg.web.views import save_views, slice_png

RAS_STORED = Geometry((40, 30, 20), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))  # LPS direction of RAS voxel order
LPS_STORED = Geometry((40, 30, 20), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _marked(geometry: Geometry) -> np.ndarray:
    """A mask whose label-1 block lies on the patient's right and anterior, label 2 on the left and superior."""
    mask = np.zeros(geometry.shape, np.uint8)
    lps_x = geometry.origin[0] + geometry.direction_matrix[0, 0] * geometry.spacing[0] * np.arange(geometry.shape[0])
    lps_y = geometry.origin[1] + geometry.direction_matrix[1, 1] * geometry.spacing[1] * np.arange(geometry.shape[1])
    right, anterior = lps_x < np.median(lps_x), lps_y < np.median(lps_y)  # LPS: right and anterior are the negative sides
    mask[np.ix_(right, anterior, np.arange(8, 12))] = 1
    mask[np.ix_(~right, ~anterior, np.arange(16, 20))] = 2
    return mask


@pytest.mark.parametrize("geometry", [RAS_STORED, LPS_STORED], ids=["ras", "lps"])
def test_right_is_on_the_screen_left_and_anterior_and_superior_are_up(tmp_path: Path, geometry: Geometry) -> None:
    mask = _marked(geometry)
    views = save_views(tmp_path / "v.npz", np.zeros(geometry.shape, np.float32), mask, geometry, {1: (1.0, 0.0, 0.0), 2: (0.0, 0.0, 1.0)})
    assert views == {"axial": 20, "coronal": 30, "sagittal": 40}
    axial = np.asarray(Image.open(io.BytesIO(slice_png(tmp_path / "v.npz", "axial", 10))))
    red = axial[..., 0] > axial[..., 2]
    rows, cols = np.nonzero(red)
    assert cols.mean() < axial.shape[1] / 2 and rows.mean() < axial.shape[0] / 2  # patient right on the left, anterior up
    coronal = np.asarray(Image.open(io.BytesIO(slice_png(tmp_path / "v.npz", "coronal", 5))))  # RAS y index 5: posterior, label 2 only
    rows, cols = np.nonzero(coronal[..., 2] > coronal[..., 0])
    assert rows.mean() < coronal.shape[0] / 2 and cols.mean() > coronal.shape[1] / 2  # superior up, patient left on the right
    assert coronal.shape[0] == coronal.shape[1]  # 20 slices x 2 mm high, 40 x 1 mm wide: square, not squashed
    assert axial.shape[0] / axial.shape[1] == pytest.approx(30 / 40, abs=0.01)  # 30 mm front to back, 40 mm across
    with pytest.raises(IndexError):
        slice_png(tmp_path / "v.npz", "sagittal", 40)
