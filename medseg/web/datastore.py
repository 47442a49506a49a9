"""The annotation datastore of ``medseg serve --monai-label --datastore DIR``: images and their saved labels as files.

``DIR/images/<id><suffix>`` and ``DIR/labels/<tag>/<id><suffix>`` (MONAI Label's local datastore layout, the label's id
being its image's), so a datastore survives restarts, can be filled by copying files in, and is read by anything that
reads a folder of volumes. Every write goes through a temporary name in the same folder and an atomic rename: a crash
never leaves half a file under a real name.

A label is accepted only when it fits its image: the same grid (shape, spacing, origin, direction, within the
tolerances of :meth:`medseg.io.volumes.Geometry.matches`) and only the bundle's label values. Anything else is refused
with :class:`DatastoreError` naming the problem (422), before anything is written.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.volumes import VolumeError, read_header, read_volume, strip_suffix

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
FINAL = "final"


class DatastoreError(ValueError):
    """A datastore request that cannot be done; ``status``: the HTTP status that says why (404, 409, 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


#: what a datastore keeps: single-file volumes (a detached header's data file would not come with it)
SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def _suffix(name: str) -> str:
    suffix = name[len(strip_suffix(name)) :]
    if suffix not in SUFFIXES:
        raise DatastoreError(f"{name!r}: a datastore keeps single-file volumes ({', '.join(SUFFIXES)}).")
    return suffix


def _move_in(stored: Path, target: Path) -> None:
    """``stored`` (a checked upload, maybe on another file system) to ``target``: copied under a hidden name beside it,
    then renamed, so ``target`` is the old file or the whole new one, never a part."""
    staging = target.parent / f".incoming-{os.getpid()}-{threading.get_ident()}{target.name}"
    try:
        shutil.copyfile(stored, staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    stored.unlink(missing_ok=True)


def check_id(value: str, what: str = "image id") -> str:
    """``value`` when it is a usable id (letters, digits, ``_ . -``; at most 80), else :class:`DatastoreError` (422)."""
    if not ID.match(value or ""):
        raise DatastoreError(f"{what.capitalize()} {value!r}: use letters, digits and _ . - (at most 80 characters).")
    return value


def check_label(label: Path, image: Path, label_values: set[int]) -> None:
    """:class:`DatastoreError` (422) unless ``label`` lies on ``image``'s grid and holds only ``label_values``."""
    try:
        grid, on = read_header(image).geometry, read_header(label).geometry
    except VolumeError as err:
        raise DatastoreError(f"The label cannot be read: {err}") from None
    differences = on.matches(grid, tol=1e-3)  # mm: what a viewer's rounding of a saved header leaves
    if differences:
        raise DatastoreError(f"The label is not on its image's grid ({'; '.join(differences)}); save it on the image it labels.")
    values = {int(v) for v in np.unique(np.asarray(read_volume(label)[0]))}
    if not values <= label_values:
        raise DatastoreError(f"The label holds values {sorted(values - label_values)} the model does not know ({sorted(label_values)}).")


class FolderDatastore:
    """Images and labels in a folder (see the module docstring).

    Args:
        root: the datastore folder (made when missing).
        label_values: the values a saved label may hold (the bundle's labels, background 0 included).
    """

    def __init__(self, root: str | os.PathLike, label_values: Iterable[int]) -> None:
        self.root = Path(root)
        self.images_dir, self.labels_dir = self.root / "images", self.root / "labels"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        self.label_values = {int(v) for v in label_values}
        self._lock = threading.Lock()

    # ---- reading -------------------------------------------------------------------------------------------------
    def image_ids(self) -> list[str]:
        """Every image id, sorted."""
        return sorted(strip_suffix(p.name) for p in self.images_dir.iterdir() if not p.name.startswith("."))

    def image_file(self, image_id: str) -> Path:
        """The image's file; :class:`DatastoreError` (404) when there is none."""
        check_id(image_id)
        found = [p for p in self.images_dir.iterdir() if strip_suffix(p.name) == image_id and not p.name.startswith(".")]
        if not found:
            raise DatastoreError(f"No image {image_id!r} in the datastore (PUT /datastore/image?image=ID first).", 404)
        return found[0]

    def label_file(self, image_id: str, tag: str = FINAL) -> Path:
        """The label saved for ``image_id`` under ``tag``; :class:`DatastoreError` (404) when there is none."""
        folder = self.labels_dir / self._tag(tag)
        found = [p for p in folder.glob("*") if strip_suffix(p.name) == check_id(image_id)] if folder.is_dir() else []
        if not found:
            raise DatastoreError(f"No label {image_id!r} with tag {tag!r} in the datastore.", 404)
        return found[0]

    def labelled(self, tag: str = FINAL) -> list[str]:
        """Ids of the images that have a label under ``tag`` (and still have their image)."""
        folder = self.labels_dir / self._tag(tag)
        ids = {strip_suffix(p.name) for p in folder.glob("*") if not p.name.startswith(".")} if folder.is_dir() else set()
        return sorted(ids & set(self.image_ids()))

    def tags(self) -> dict[str, int]:
        """Tag -> how many labels it holds."""
        return {p.name: len(self.labelled(p.name)) for p in sorted(self.labels_dir.iterdir()) if p.is_dir()}

    def status(self) -> dict[str, Any]:
        """``GET /datastore/?output=stats``, as MONAI Label's local datastore answers it."""
        return {"total": len(self.image_ids()), "completed": len(self.labelled()), "label_tags": self.tags()}

    def listing(self) -> dict[str, Any]:
        """``GET /datastore/?output=all``: every image with its labels (MONAI Label's ``LocalDatastoreModel``)."""
        objects: dict[str, Any] = {}
        tags = self.tags()
        for image_id in self.image_ids():
            image = self.image_file(image_id)
            labels = {}
            for tag in tags:
                try:
                    label = self.label_file(image_id, tag)
                except DatastoreError:
                    continue
                labels[tag] = {"ext": label.name[len(image_id) :], "info": {"ts": int(label.stat().st_mtime)}}
            objects[image_id] = {
                "image": {"ext": image.name[len(image_id) :], "info": {"ts": int(image.stat().st_mtime)}},
                "labels": labels,
            }
        return {
            "name": self.root.name,
            "description": "medact folder datastore",
            "images_dir": "images",
            "labels_dir": "labels",
            "objects": objects,
        }

    # ---- writing -------------------------------------------------------------------------------------------------
    def put_image(self, image_id: str, stored: Path) -> str:
        """Move the checked upload ``stored`` in as ``image_id`` (replacing an image of that id and, as its grid may have
        changed, its labels); returns the id."""
        check_id(image_id)
        target = self.images_dir / f"{image_id}{_suffix(stored.name)}"
        with self._lock:
            for old in [p for p in self.images_dir.iterdir() if strip_suffix(p.name) == image_id and p != target]:
                old.unlink()
            self._remove_labels(image_id)
            _move_in(stored, target)
        return image_id

    def put_label(self, image_id: str, stored: Path, tag: str = FINAL) -> str:
        """Check the upload ``stored`` against its image (grid, label values), then move it in; returns the label id."""
        image = self.image_file(image_id)
        self.check_label(stored, image)
        folder = self.labels_dir / self._tag(tag)
        folder.mkdir(exist_ok=True)
        with self._lock:
            for old in [p for p in folder.iterdir() if strip_suffix(p.name) == image_id]:
                old.unlink()
            _move_in(stored, folder / f"{image_id}{_suffix(stored.name)}")
        return image_id

    def check_label(self, label: Path, image: Path) -> None:
        """:class:`DatastoreError` (422) unless ``label`` lies on ``image``'s grid and holds only the bundle's values."""
        check_label(label, image, self.label_values)

    def delete_image(self, image_id: str) -> None:
        """Remove an image and every label saved for it."""
        image = self.image_file(image_id)
        with self._lock:
            image.unlink(missing_ok=True)
            self._remove_labels(image_id)

    def delete_label(self, image_id: str, tag: str = FINAL) -> None:
        """Remove the label saved for ``image_id`` under ``tag``."""
        self.label_file(image_id, tag).unlink(missing_ok=True)

    def _remove_labels(self, image_id: str) -> None:
        for folder in (p for p in self.labels_dir.iterdir() if p.is_dir()):
            for old in [p for p in folder.iterdir() if strip_suffix(p.name) == image_id]:
                old.unlink()

    @staticmethod
    def _tag(tag: str) -> str:
        tag = tag or FINAL
        if not TAG.match(tag):
            raise DatastoreError(f"Tag {tag!r}: use letters, digits, _ and - (at most 32 characters).")
        return tag
