"""Datalists: which images and labels a dataset has (Decathlon ``dataset.json``, image/label folders, single files), with their label and channel names."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.io.volumes import VOLUME_SUFFIXES, VolumeError, is_dicom_dir, strip_suffix

logger = logging.getLogger(__name__)


IMAGE_DIRS = (("imagesTr", "labelsTr"), ("images", "labels"))


def _volumes_in(folder: Path) -> list[Path]:
    items = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    return [p for p in items if (p.is_file() and strip_suffix(p.name) != p.name) or (p.is_dir() and is_dicom_dir(p))]


def pair_folders(images: str | Path, labels: str | Path | None, channels: int | None = None) -> list[dict[str, Any]]:
    """Match images to labels by name (``case7.nii.gz`` <-> ``case7.nii.gz`` or nnU-Net's ``case7_0000`` <-> ``case7``).

    Images with several channels (``case7_0000``, ``case7_0001``, ...; ``channels`` from ``dataset.json``, else found
    by :func:`medseg.io.channels.group_channels`) become one case whose ``"image"`` is the list of channel files.

    Raises:
        VolumeError: an image without a label, a label without an image (all listed), or a missing channel file.
    """
    from medseg.io.channels import first_path, group_channels

    image_files = _volumes_in(Path(images))
    if not image_files:
        raise VolumeError(f"{images}: no volumes found (expected {', '.join(VOLUME_SUFFIXES)} files or DICOM folders).")
    cases = group_channels(image_files, channels)
    if labels is None:
        return [{"image": image} for _, image in cases]
    by_stem = {strip_suffix(p.name): p for p in _volumes_in(Path(labels))}
    pairs, orphans = [], []
    for stem, image in cases:
        label = by_stem.pop(stem, None) or (by_stem.pop(stem[:-5], None) if stem[-5:-4] == "_" and stem[-4:].isdigit() else None)
        if label is None:
            orphans.append(f"image {first_path(image).name} has no label in {labels}")
        else:
            pairs.append({"image": image, "label": str(label)})
    orphans += [f"label {p.name} has no image in {images}" for p in by_stem.values()]
    if orphans:
        raise VolumeError("Cannot pair images and labels: " + "; ".join(orphans) + ".")
    return pairs


def dataset_description(source: str | Path) -> Path | None:
    """The ``dataset.json`` that describes ``source``: ``source`` itself if it is a ``.json`` file, the
    ``dataset.json`` inside ``source`` if it is a folder holding one, else ``None`` (a bare
    ``imagesTr``/``labelsTr`` folder or a single volume). The one place that decides it: ``validate``,
    ``plan``, ``train`` and the bundle's data split all ask here.
    """
    source = Path(source)
    if source.is_dir():
        source = source / "dataset.json"
    return source if source.is_file() and source.suffix == ".json" else None


def load_dataset_json(path: str | Path) -> dict[str, Any]:
    """Read a Decathlon ``dataset.json`` (clear errors for missing keys)."""
    path = Path(path)
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VolumeError(f"{path}: not a readable dataset.json ({err}).") from err
    if not isinstance(description.get("labels"), dict):
        raise VolumeError(f'{path}: has no \'labels\' mapping; expected e.g. {{"0": "background", "1": "liver"}}.')
    description["labels"] = _label_values(path, description["labels"])
    return description


def _label_values(path: Path, labels: dict[str, Any]) -> dict[str, str]:
    """Decathlon's ``{"0": "background"}`` as is; nnU-Net v2's ``{"background": 0}`` turned round."""
    if all(str(k).isdigit() for k in labels):
        return {str(k): str(v) for k, v in labels.items()}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        return {str(v): str(k) for k, v in labels.items()}
    raise VolumeError(
        f'{path}: \'labels\' must map values to names ({{"0": "background"}}, Decathlon) or names to integer '
        f'values ({{"background": 0}}, nnU-Net v2); got {labels} (region labels are not supported).'
    )


#: the folders nnU-Net v2 reads when its ``dataset.json`` lists no cases (it lists none: only ``numTraining``)
SPLIT_FOLDERS = {"training": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


def datalist(source: str | Path, split: str = "training") -> list[dict[str, Any]]:
    """Cases of ``source`` as ``[{"image": path, "label": path}, ...]`` with absolute paths.

    ``"image"`` is one path (a 3D volume, or a 4D one holding the channels) or, for cases stored one file per
    channel (nnU-Net's ``case_0000.nii.gz``, ``case_0001.nii.gz``), the list of channel paths in order.

    Args:
        source: a ``dataset.json`` (Decathlon, or nnU-Net v2 without case lists: then its ``imagesTr``/``labelsTr``
            folders); a folder holding one; a folder with ``imagesTr``/``labelsTr`` or ``images``/``labels``;
            or a single volume file / DICOM folder (no label).
        split: the ``dataset.json`` list to read (``"training"``, ``"validation"``, ``"test"``).
    """
    source = dataset_description(source) or Path(source)
    if source.is_file() and source.name.endswith(".json"):
        description = load_dataset_json(source)
        root, channels = source.parent, len(channel_names(description)) or None
        if split not in description:
            folders = SPLIT_FOLDERS.get(split)
            if folders and "training" not in description and (root / folders[0]).is_dir():
                return pair_folders(root / folders[0], root / folders[1] if (root / folders[1]).is_dir() else None, channels)
            raise VolumeError(
                f"{source}: has no '{split}' list; it has {sorted(k for k, v in description.items() if isinstance(v, list))}."
            )
        return [_resolve_entry(root, _entry(item), channels) for item in description[split]]
    if source.is_dir() and not is_dicom_dir(source):
        for images, labels in IMAGE_DIRS:
            if (source / images).is_dir():
                return pair_folders(source / images, source / labels if (source / labels).is_dir() else None)
        raise VolumeError(f"{source}: expected a dataset.json or {IMAGE_DIRS[0][0]}/{IMAGE_DIRS[0][1]} (or images/labels) folders.")
    if source.exists():
        return [{"image": str(source.resolve())}]
    raise FileNotFoundError(f"Dataset not found: {source}")


def _entry(item: Any) -> dict[str, Any]:
    return {"image": item} if isinstance(item, str) else {k: v for k, v in item.items() if k in ("image", "label")}


def _resolve_entry(root: Path, entry: dict[str, Any], channels: int | None) -> dict[str, Any]:
    """Absolute paths of one listed case; an image listed as ``case.nii.gz`` that is stored as nnU-Net's channel files
    ``case_0000.nii.gz`` .. (the case lists nnU-Net v1 writes) becomes the list of those files."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, list):
            out[key] = [str((root / v).resolve()) for v in value]
            continue
        path = (root / value).resolve()
        if key == "image" and not path.exists() and channels:
            stem, suffix = strip_suffix(path.name), path.name[len(strip_suffix(path.name)) :]
            files = [path.parent / f"{stem}_{c:04d}{suffix}" for c in range(channels)]
            if files[0].exists():
                out[key] = [str(f) for f in files] if channels > 1 else str(files[0])
                continue
        out[key] = str(path)
    return out


def channel_names(description: dict[str, Any]) -> list[str]:
    """The input channels a ``dataset.json`` declares, in order (Decathlon ``modality`` or nnU-Net v2
    ``channel_names``: ``{"0": "T1", "1": "FLAIR"}``); ``[]`` when it declares none."""
    channels = description.get("modality") or description.get("channel_names")
    if not isinstance(channels, dict):
        return []
    try:
        return [str(channels[k]) for k in sorted(channels, key=int)]
    except ValueError:
        return []


def label_names(source: str | Path | None, num_classes: int | None = None) -> dict[int, str]:
    """Label value -> name from a ``dataset.json`` (or ``"label_<n>"`` for ``num_classes`` labels)."""
    description = dataset_description(source) if source is not None else None
    if description is not None:
        return {int(k): str(v) for k, v in load_dataset_json(description)["labels"].items()}
    if num_classes is None:
        raise ValueError("label_names needs a dataset.json or num_classes.")
    return {0: "background", **{n: f"label_{n}" for n in range(1, num_classes)}}


def names_from_channel_def(channel_def: Mapping[str, str]) -> dict[int, str]:
    """``metadata.json``'s ``channel_def`` ({"0": "background", ...}) -> {0: "background", ...}."""
    return {int(k): str(v) for k, v in channel_def.items()}


def test_images(dataset_dir: str | Path, split: str = "test") -> list[Any]:
    """Images of a dataset split (for inference): a path per case, or its list of channel paths."""
    return [item["image"] for item in datalist(dataset_dir, split)]
