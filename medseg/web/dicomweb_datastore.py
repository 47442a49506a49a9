"""The annotation datastore of ``medseg serve --monai-label --dicomweb URL``: images and labels live in a PACS.

As MONAI Label's DICOMweb datastore does: an image is an image series of the PACS, its id the Series Instance UID; a
saved label is a DICOM SEG stored into the image's study (STOW-RS), referencing the series and each of its instances,
so the PACS, OHIF and Slicer's DICOM browser show it beside the scan. The same interface as
:class:`medseg.web.datastore.FolderDatastore`, so the loop's routes, active learning and fine-tuning do not know
which one they read.

Which SEGs are labels: a SEG this datastore stored (series description ``medact label <tag>``) has its tag; a SEG
from ``medseg infer --store`` (``medact segmentation``: the model's own proposal) is tag ``original``, as MONAI
Label names predictions; any other SEG (drawn in another tool) is ``final``. The newest SEG of an image and tag
(content date and time) is its label.

A local folder (``--datastore DIR``, else a temporary one) caches what was read: ``series/<uid>/`` (the DICOM files,
retrieved once), ``images/<uid>.nii.gz`` (the volume the model and training read) and ``labels/<seg-uid>.nii.gz``.
A SEG never changes once stored, so nothing cached goes stale. Images cannot be added, replaced or deleted
through the datastore (405): they are the PACS's; a label cannot be deleted either (DICOMweb has no delete).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.io.dicomweb import DESCRIPTION, MODALITY, NON_IMAGE_MODALITIES, SERIES_UID, Pacs, PacsError, retrieve_series, store_instance
from medseg.web.datastore import FINAL, DatastoreError, check_id, check_label

STUDY_UID = "0020000D"


@dataclass(frozen=True)
class PacsDatastoreSpec:
    """What ``medseg serve --dicomweb URL [--dicomweb-filter KEY=VALUE ...]`` asks for: the server and the QIDO-RS
    filters that choose the image series (see :class:`DicomwebDatastore`)."""

    pacs: Pacs
    filters: Mapping[str, str] = field(default_factory=dict)


LABEL_PREFIX = "medact label "


def _value(item: Mapping[str, Any], tag: str, default: Any = None) -> Any:
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


def _tag_of(description: str) -> str:
    """The datastore tag a SEG's series description says (see the module docstring)."""
    if description.startswith(LABEL_PREFIX):
        return description[len(LABEL_PREFIX) :].strip() or FINAL
    return "original" if description == "medact segmentation" else FINAL


class DicomwebDatastore:
    """Images and labels in a PACS (see the module docstring).

    Args:
        pacs: the DICOMweb server.
        root: the local cache folder (made when missing); ``None``: a temporary folder.
        names: label value -> name (the bundle's; background 0 included): what a label may hold and the SEG's segments.
        algorithm: ``{"name", "version"}`` of the bundle, written into each SEG.
        filters: QIDO-RS attribute filters choosing the image series (``{"Modality": "CT", "StudyDescription": "liver*"}``;
            a real PACS holds far more series than one labelling project wants); labels are found whatever they say.
    """

    def __init__(
        self,
        pacs: Pacs,
        root: str | os.PathLike | None,
        names: Mapping[int, str],
        algorithm: Mapping[str, str],
        filters: Mapping[str, str] | None = None,
    ) -> None:
        self.pacs, self.client, self.filters = pacs, pacs.client(), dict(filters or {})
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="medact-dicomweb-datastore-"))
        for sub in ("series", "images", "labels"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.names, self.label_values = dict(names), {int(v) for v in names}
        self.algorithm = {**algorithm, "type": "SEMIAUTOMATIC"}  # a person corrected the model's proposal
        self._lock = threading.Lock()
        self._seg_refs: dict[str, tuple[str, str, str]] = {}  # SEG series -> (image series, content date+time, SOP uid)

    # ---- what the PACS holds ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """A PACS that cannot be reached or refuses: :class:`DatastoreError` 502 naming it (a route's JSON line, never a 500)."""
        try:
            with self.pacs.calling(what):
                yield
        except PacsError as err:
            raise DatastoreError(str(err), 502) from None

    def _series(self) -> list[dict[str, Any]]:
        """The image series the filters choose, and every SEG series (QIDO-RS)."""
        fields = [MODALITY, DESCRIPTION, STUDY_UID]
        with self._calling("list the series"):
            images = self.client.search_for_series(fields=fields, search_filters=self.filters or None, get_remaining=True)
            segs = self.client.search_for_series(fields=fields, search_filters={"Modality": "SEG"}, get_remaining=True)
        return [s for s in images if _value(s, MODALITY) != "SEG"] + segs

    def _studies(self) -> dict[str, str]:
        """Image series uid -> its study uid."""
        return {_value(s, SERIES_UID): _value(s, STUDY_UID) for s in self._series() if _value(s, MODALITY, "?") not in NON_IMAGE_MODALITIES}

    def image_ids(self) -> list[str]:
        """Every image series of the PACS, by Series Instance UID, sorted."""
        return sorted(self._studies())

    def _labels(self, tag: str) -> dict[str, str]:
        """Image series uid -> the SEG series uid of its newest label under ``tag``."""
        newest: dict[str, tuple[str, str]] = {}
        for s in self._series():
            if _value(s, MODALITY) != "SEG" or _tag_of(str(_value(s, DESCRIPTION, ""))) != tag:
                continue
            image, when, _ = self._reference(_value(s, STUDY_UID), _value(s, SERIES_UID))
            if image and (image not in newest or when >= newest[image][0]):
                newest[image] = (when, _value(s, SERIES_UID))
        return {image: seg for image, (_, seg) in newest.items()}

    def _reference(self, study: str, seg_series: str) -> tuple[str, str, str]:
        """``(referenced image series, content date+time, SOP instance uid)`` of a SEG series (its metadata, cached)."""
        if seg_series not in self._seg_refs:
            with self._calling(f"read the metadata of SEG {seg_series}"):
                (meta, *_) = self.client.retrieve_series_metadata(study, seg_series)
            referenced = _value(meta, "00081115", {})
            image = _value(referenced, SERIES_UID, "") if referenced else ""
            when = f"{_value(meta, '00080023', '')}{_value(meta, '00080033', '')}"
            self._seg_refs[seg_series] = (image, when, _value(meta, "00080018", ""))
        return self._seg_refs[seg_series]

    def labelled(self, tag: str = FINAL) -> list[str]:
        """Ids of the image series that have a label under ``tag``."""
        return sorted(set(self._labels(tag)) & set(self.image_ids()))

    def tags(self) -> dict[str, int]:
        tags = {_tag_of(str(_value(s, DESCRIPTION, ""))) for s in self._series() if _value(s, MODALITY) == "SEG"}
        return {tag: len(self.labelled(tag)) for tag in sorted(tags)}

    def status(self) -> dict[str, Any]:
        """``GET /datastore/?output=stats``."""
        return {"total": len(self.image_ids()), "completed": len(self.labelled()), "label_tags": self.tags()}

    def listing(self) -> dict[str, Any]:
        """``GET /datastore/?output=all``: every image series with its labels' SEG series."""
        labels = {tag: self._labels(tag) for tag in self.tags()}
        objects = {
            image: {
                "image": {"ext": "", "info": {"study": study, "source": "dicomweb"}},
                "labels": {tag: {"ext": "", "info": {"seg_series": found[image]}} for tag, found in labels.items() if image in found},
            }
            for image, study in self._studies().items()
        }
        return {"name": self.pacs.url, "description": "medact DICOMweb datastore", "objects": objects}

    # ---- files the model reads -------------------------------------------------------------------------------------
    def dicom_source(self, image_id: str) -> Path:
        """The image series' DICOM files in the cache (retrieved once); 404 when the PACS has no such series."""
        folder = self.root / "series" / check_id(image_id)
        if not folder.is_dir():
            study = self._studies().get(image_id)
            if study is None:
                raise DatastoreError(f"No image series {image_id!r} in the PACS at {self.pacs.url}.", 404)
            with self._lock:
                try:
                    if not folder.is_dir():
                        retrieve_series(self.pacs, study, image_id, self.root / "series")
                except PacsError as err:
                    raise DatastoreError(str(err), 502) from None
        return folder

    def image_file(self, image_id: str) -> Path:
        """The image series as one NIfTI volume on its own grid (cached); 404 when the PACS has no such series."""
        from medseg.io.volumes import read_volume, write_volume

        target = self.root / "images" / f"{check_id(image_id)}.nii.gz"
        if not target.exists():
            volume, geometry = read_volume(self.dicom_source(image_id))
            write_volume(volume, geometry, target)  # atomic
        return target

    def label_file(self, image_id: str, tag: str = FINAL) -> Path:
        """The newest SEG of ``image_id`` under ``tag``, as a NIfTI label on the image's grid (cached by SEG)."""
        from medseg.io.dicom_seg import read_dicom_seg
        from medseg.io.volumes import read_header, write_volume

        seg_series = self._labels(tag or FINAL).get(check_id(image_id))
        if seg_series is None:
            raise DatastoreError(f"No label {image_id!r} with tag {tag!r} in the PACS at {self.pacs.url}.", 404)
        target = self.root / "labels" / f"{seg_series}.nii.gz"
        if not target.exists():
            study = self._studies()[image_id]
            with self._calling(f"retrieve SEG {seg_series}"):
                (seg, *_) = self.client.retrieve_series(study, seg_series)
            with tempfile.TemporaryDirectory(dir=self.root) as work:
                seg.save_as(Path(work) / "seg.dcm", enforce_file_format=True)
                series = self.dicom_source(image_id)
                geometry = read_header(series).geometry
                mask, _ = read_dicom_seg(Path(work) / "seg.dcm", series, geometry)
            write_volume(mask.astype("uint8"), geometry, target)
        return target

    # ---- writing -------------------------------------------------------------------------------------------------
    def put_label(self, image_id: str, stored: Path, tag: str = FINAL) -> str:
        """Check ``stored`` against its image (grid, values), write it as a DICOM SEG of the series and store it in the
        image's study (STOW-RS); returns the image id. A refused store is 502, naming the PACS's answer."""
        from medseg.io.dicom_seg import write_dicom_seg
        from medseg.io.volumes import read_header, read_volume
        from medseg.web.datastore import TAG

        if not TAG.match(tag or ""):
            raise DatastoreError(f"Tag {tag!r}: use letters, digits, _ and - (at most 32 characters).")
        check_label(stored, self.image_file(image_id), self.label_values)
        series = self.dicom_source(image_id)
        mask, _ = read_volume(stored)
        with tempfile.TemporaryDirectory(dir=self.root) as work:
            seg = Path(work) / "label_seg.dcm"
            names = {v: n for v, n in self.names.items() if v != 0}
            write_dicom_seg(mask, read_header(series).geometry, series, seg, names, None, self.algorithm, None, f"{LABEL_PREFIX}{tag}")
            try:
                store_instance(self.pacs, seg, self.client)
            except PacsError as err:
                raise DatastoreError(f"The label was not saved: {err}", 502) from None
        stored.unlink(missing_ok=True)
        return image_id

    def put_image(self, image_id: str, stored: Path) -> str:
        raise DatastoreError("Images come from the PACS: store the series there (STOW-RS or your PACS's import).", 405)

    def delete_image(self, image_id: str) -> None:
        raise DatastoreError("Images are the PACS's: delete the series there.", 405)

    def delete_label(self, image_id: str, tag: str = FINAL) -> None:
        raise DatastoreError("A label in a PACS is a DICOM SEG; DICOMweb cannot delete it: remove it in the PACS.", 405)
