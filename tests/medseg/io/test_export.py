import numpy as np
import pytest
import slicerio

from medseg.io.export import export_mask, mask_dtype, write_colour_table
from medseg.io.volumes import read_volume
from tests.medseg.conftest import OBLIQUE, random_labels

NAMES = {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}
COLOURS = {1: [0.9, 0.5, 0.4], 2: [0.7, 0.3, 0.3], 3: [1.0, 0.9, 0.2]}


def test_seg_nrrd_has_named_coloured_segments_and_the_grid(tmp_path):
    labels = random_labels()
    files = export_mask(labels, OBLIQUE, tmp_path, "case7", NAMES, ["seg.nrrd"], COLOURS)
    assert [p.name for p in files] == ["case7.seg.nrrd"]
    seg = slicerio.read_segmentation(str(files[0]))
    np.testing.assert_allclose(seg["ijkToLPS"], OBLIQUE.ijk_to_lps, atol=1e-4)
    np.testing.assert_array_equal(seg["voxels"], labels)
    by_value = {s["labelValue"]: s for s in seg["segments"]}
    assert {v: s["name"] for v, s in by_value.items()} == {1: "liver", 2: "kidney", 3: "tumour"}
    np.testing.assert_allclose(by_value[3]["color"], COLOURS[3], atol=1e-3)


def test_nifti_and_colour_table(tmp_path):
    labels = random_labels()
    files = export_mask(labels, OBLIQUE, tmp_path, "case7", NAMES, ["nifti", "nrrd"], COLOURS)
    assert [p.name for p in files] == ["case7_seg.nii.gz", "case7_seg.ctbl", "case7_seg.nrrd"]
    for path in (files[0], files[2]):
        array, geometry = read_volume(path)
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, labels)
        assert geometry.matches(OBLIQUE) == []
    lines = files[1].read_text(encoding="utf-8").splitlines()
    assert lines[2:] == ["0 background 0 0 0 0", "1 liver 230 128 102 255", "2 kidney 178 76 76 255", "3 tumour 255 230 51 255"]


def test_label_count_picks_the_dtype():
    assert mask_dtype(4) is np.uint8 and mask_dtype(300) is np.uint16
    with pytest.raises(ValueError, match="do not fit a uint16"):
        mask_dtype(70000)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown export format\(s\) \['png'\]"):
        export_mask(random_labels(), OBLIQUE, tmp_path, "c", NAMES, ["png"])
    assert list(tmp_path.iterdir()) == []


def test_default_colours_are_distinct(tmp_path):
    path = write_colour_table(tmp_path / "t.ctbl", {0: "bg", 1: "a b", 2: "c"})
    rows = path.read_text(encoding="utf-8").splitlines()[2:]
    assert rows[1].startswith("1 a_b ") and rows[1].split()[2:5] != rows[2].split()[2:5]
