"""DICOM Segmentation objects (``--format dicom-seg``), written with ``highdicom`` from the source series.

What PACS, OHIF and 3D Slicer's DICOM module load: a BINARY Segmentation that references the source series and each
of its instances, shares its frame of reference, and describes each segment with a label, a CIELab display colour,
coded property category and type (SNOMED CT where the label's name is a SNOMED concept in pydicom's code dictionary:
liver, kidney, grey matter, oedema, ...; ``Tissue`` otherwise, or what the bundle's ``segment_codes`` say) and the
algorithm (the bundle's name and version). Frames that hold no segment are omitted (``omit_empty_frames``).

The frames map to the source images one to one (slice ``k`` of the mask is the ``k``-th source image along the
stacking direction, the order the volume reader stacked them in), so each frame carries its source image's own
position: a series whose slices are not evenly spaced keeps its real positions. A series with a missing slice is
refused when it is read (:func:`medseg.io.volumes.read_volume`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.volumes import Geometry, VolumeError, inspect_dicom_volume, is_dicom_input

#: category of a segment whose name reads as an abnormality (CID 7150: Morphologically Abnormal Structure)
ABNORMAL_WORDS = ("tumour", "tumor", "neoplasm", "lesion", "oedema", "edema", "necrosis", "cyst", "metastasis", "core", "nodule")
#: British spellings our datasets use -> the American ones of SNOMED CT's preferred terms
SPELLINGS = {"tumour": "tumor", "oedema": "edema", "grey": "gray", "haemorrhage": "hemorrhage", "oesophagus": "esophagus"}


class DicomSegError(VolumeError):
    """A DICOM SEG cannot be written for this input or mask; the message names the file and the reason."""


def require_dicom_source(source: Any) -> Path:
    """The source series folder (or multi-frame file), or one line saying that DICOM SEG needs one."""
    if not isinstance(source, (str, Path)) or not is_dicom_input(Path(source)):
        name = source if isinstance(source, (str, Path)) else next(map(str, source))
        raise DicomSegError(
            f"{name}: DICOM SEG needs a DICOM source series (a folder of DICOM slices; the scan page also takes a zip of one); this input is not one "
            "(write nifti or seg.nrrd for it)."
        )
    return Path(source)


def property_codes(name: str, override: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """``(segmented property category, type)`` as pydicom ``Code`` s for a segment named ``name``.

    ``override``: ``{"category": {"value": "91723000", "scheme": "SCT", "meaning": "Anatomical Structure"},
    "type": {...}}`` (an entry of the bundle's ``segment_codes``). Otherwise the type is the SNOMED CT concept of
    pydicom's code dictionary whose keyword is the name in CamelCase with American spelling (``"grey_matter"`` ->
    ``GrayMatter``, 389081007), in the category Morphologically Abnormal Structure for lesions, oedema and the like,
    else Anatomical Structure; a name that is no such concept is ``Tissue`` / ``Tissue``.
    """
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    if override:
        try:
            return tuple(
                Code(str(override[k]["value"]), str(override[k]["scheme"]), str(override[k]["meaning"])) for k in ("category", "type")
            )
        except (KeyError, TypeError) as err:
            raise DicomSegError(
                f'segment_codes for {name!r}: {override!r}; expected {{"category": {{"value", "scheme", "meaning"}}, "type": {{...}}}} ({err}).'
            ) from None
    words = [SPELLINGS.get(w, w) for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    concept = getattr(codes.SCT, "".join(w.capitalize() for w in words), None) if words else None
    if concept is None:
        return codes.SCT.Tissue, codes.SCT.Tissue
    abnormal = any(w in ABNORMAL_WORDS for w in words) or any(SPELLINGS.get(w) in ABNORMAL_WORDS for w in words)
    return (codes.SCT.MorphologicallyAbnormalStructure if abnormal else codes.SCT.AnatomicalStructure), concept


def _sources(folder: Path, geometry: Geometry) -> tuple[list[Any], list[int] | None]:
    """The source datasets in the mask's slice order (the reader's stacking order), and for one multi-frame source the
    mask slice of each of its frames in file order (``None`` for a series)."""
    import pydicom

    volume = inspect_dicom_volume(folder)
    datasets = [pydicom.dcmread(f, stop_before_pixels=True, force=True) for f in volume.files]
    missing = [n for n in ("FrameOfReferenceUID", "SeriesInstanceUID", "StudyInstanceUID") if not getattr(datasets[0], n, None)]
    if missing:
        raise DicomSegError(f"{folder}: the series has no {', '.join(missing)}; a DICOM SEG references them (is it a complete export?).")
    slices = len(volume.frame_order) if volume.multiframe else len(datasets)
    if slices != geometry.shape[2]:
        raise DicomSegError(f"{folder}: {slices} DICOM slices, but the mask has {geometry.shape[2]}; the series changed?")
    if volume.multiframe:  # frame f of the file is slice frame_order.index(f) of the mask
        return datasets, [volume.frame_order.index(f) for f in range(slices)]
    for ds in datasets:  # what highdicom reads from each source, taken from the volume's grid where an export left it out
        if getattr(ds, "SliceThickness", None) in (None, ""):
            ds.SliceThickness = float(geometry.spacing[2])
        if getattr(ds, "PixelSpacing", None) in (None, ""):
            ds.PixelSpacing = [float(geometry.spacing[1]), float(geometry.spacing[0])]
    return datasets, None


def _pixel_measures(geometry: Geometry) -> Any:
    """Pixel spacing (between rows, between columns) and slice thickness from the volume's grid, not from the source
    headers: many exports leave ``SliceThickness`` empty or drop it (a Type 2 attribute), and enhanced objects keep
    ``PixelSpacing`` only in a functional group; highdicom would read them from the first source and fail."""
    import highdicom as hd

    return hd.PixelMeasuresSequence(
        pixel_spacing=(float(geometry.spacing[1]), float(geometry.spacing[0])),
        slice_thickness=float(geometry.spacing[2]),
        spacing_between_slices=float(geometry.spacing[2]),
    )


def write_dicom_seg(
    mask: np.ndarray,
    geometry: Geometry,
    source: str | Path,
    path: str | Path,
    names: Mapping[int, str],
    colours: Mapping[int, Sequence[float]] | None = None,
    algorithm: Mapping[str, str] | None = None,
    segment_codes: Mapping[str, Any] | None = None,
    series_description: str = "medact segmentation",
) -> Path:
    """Write ``mask`` (``[i, j, k]`` labels on the source series' grid) as a BINARY DICOM Segmentation at ``path``.

    Args:
        source: the DICOM series folder the mask was computed from.
        names: label value -> segment label (background 0 is no segment); a mask value without a name is refused.
        colours: label value -> RGB in [0, 1], written as CIELab (the exports' colours otherwise).
        algorithm: ``{"name": ..., "version": ...}`` (the bundle's metadata), and ``"type": "SEMIAUTOMATIC"`` for a
            label a person corrected from the model's proposal (default ``AUTOMATIC``).
        segment_codes: label value (str) -> ``{"category": {...}, "type": {...}}`` overriding :func:`property_codes`.
    """
    import highdicom as hd

    from medseg.io.colours import label_colours
    from shared.io import atomic_path

    folder = require_dicom_source(source)
    undescribed = sorted(set(np.unique(mask).tolist()) - set(names) - {0})
    if undescribed:
        raise DicomSegError(f"{folder}: the mask holds label values {undescribed} that the bundle does not name ({dict(names)}).")
    sources, frame_slices = _sources(folder, geometry)
    labels = [v for v in sorted(names) if v != 0]
    frames = np.zeros((int(geometry.shape[2]), int(geometry.shape[1]), int(geometry.shape[0])), dtype=np.uint16)
    for n, label in enumerate(labels, start=1):  # segment numbers run 1..N, whatever the label values
        frames[np.asarray(mask).transpose(2, 1, 0) == label] = n  # (i, j, k) -> frames of (row j, column i)
    if frame_slices is not None:  # one multi-frame source: its frames in file order
        frames = frames[frame_slices]
    algorithm = {"name": "medact V-Net", "version": "0", **(algorithm or {})}
    descriptions = _segment_descriptions(names, labels, label_colours(names, colours), algorithm, segment_codes)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medact",
        manufacturer_model_name=str(algorithm["name"])[:64],
        software_versions=str(algorithm["version"])[:64],
        device_serial_number="none",
        omit_empty_frames=True,
        series_description=series_description[:64],
        pixel_measures=_pixel_measures(geometry),
    )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _segment_descriptions(
    names: Mapping[int, str],
    labels: Sequence[int],
    rgb: Mapping[int, Sequence[float]],
    algorithm: Mapping[str, str],
    segment_codes: Mapping[str, Any] | None,
) -> list[Any]:
    """highdicom's description of each segment (numbered 1..N in ``labels`` order): name, codes, colour, algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = hd.AlgorithmIdentificationSequence(
        name=str(algorithm["name"])[:64], version=str(algorithm["version"])[:64], family=codes.DCM.ArtificialIntelligence
    )
    descriptions = []
    for n, label in enumerate(labels, start=1):
        category, kind = property_codes(names[label], (segment_codes or {}).get(str(label)))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=str(names[label])[:64],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues[str(algorithm.get("type", "AUTOMATIC"))],
                algorithm_identification=identification,
                display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in rgb[label])),
            )
        )
    return descriptions


def read_dicom_seg(path: str | Path, source: str | Path, geometry: Geometry) -> tuple[np.ndarray, dict[int, str]]:
    """A written SEG back as ``(labels[i, j, k] on the source grid, segment number -> label)`` (highdicom's reader)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    sources, frame_slices = _sources(Path(source), geometry)
    numbers = list(seg.segment_numbers)
    names = {n: seg.get_segment_description(n).SegmentLabel for n in numbers}
    if frame_slices is not None:  # one multi-frame source: its frames, in file order, back to the mask's slice order
        stack = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=sources[0].SOPInstanceUID,
            source_frame_numbers=list(range(1, len(frame_slices) + 1)),
            segment_numbers=numbers,
            combine_segments=True,
            skip_overlap_checks=True,
        )
        stack = np.asarray(stack)[np.argsort(frame_slices)]
    else:
        uids = [d.SOPInstanceUID for d in sources]
        stack = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=True, skip_overlap_checks=True
        )
    return np.asarray(stack).transpose(2, 1, 0), names
