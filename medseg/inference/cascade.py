"""Both stages of a cascade (:mod:`medseg.planning.cascade`): the coarse stage's probabilities as the fine stage's
extra input channels, for training (:func:`write_coarse_dataset`) and inference (:class:`CascadeSegmenter`).

The probabilities go through files, as any other channel: written on each image's own grid (NIfTI, float32), they
pass the same grid check, resampling, normalisation and crop as the image, so training and inference cannot
disagree about them. Probabilities under :data:`PROBABILITY_FLOOR` are written as 0: min-max channels count as body
where they are above 0, and a softmax is above 0 everywhere, which would stretch the crop to the whole volume.

The coarse stage's probabilities of its own training cases can be better than those of unseen cases (nnU-Net uses
five-fold cross-validation predictions instead; on a CPU budget there is no time for five coarse models): the
coarse stage is small and trained briefly (on the MNI152 structures in 5 minutes it scored its own training cases as
it scored unseen ones, docs/medseg.md), and the fine stage is validated and tested on cases neither stage saw.
``train#preprocessing#coarse_augmentation`` perturbs the probabilities in training as nnU-Net does
(:mod:`medseg.coarse_augmentation`; off in a plan, measured there).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.inference.segmenter import PROBABILITY_FLOOR, CascadeSegmenter, write_coarse_channels
from medseg.io.channels import case_name, channel_paths
from medseg.io.volumes import VolumeError
from medseg.planning.cascade import coarse_bundle_of

logger = logging.getLogger(__name__)

__all__ = ["PROBABILITY_FLOOR", "CascadeSegmenter", "coarse_bundle_of", "write_coarse_channels", "write_coarse_dataset"]


def write_coarse_dataset(coarse_bundle: Path, data: str | os.PathLike, out: Path, channels: Sequence[str]) -> Path:
    """The dataset the fine stage trains on: every training and validation case of ``data`` with the coarse stage's
    probabilities as extra channel files; ``out/dataset.json`` (written whole, then renamed into place; its path).

    The cases keep their order and the ``validation`` list is kept, so the fine stage holds out the cases the coarse
    stage held out. ``channels``: the fine stage's channel names (image channels, then one per label).
    """
    from medseg.datasets.datalists import datalist, dataset_description, load_dataset_json
    from medseg.inference.segmenter import load_segmenter

    coarse = load_segmenter(coarse_bundle)
    description_path = dataset_description(data)
    described = load_dataset_json(description_path) if description_path else {}
    splits = ["training"] + (["validation"] if "validation" in described else [])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".coarse-", dir=out.parent))
    try:
        lists: dict[str, list[dict[str, Any]]] = {}
        for split in splits:
            lists[split] = []
            for number, item in enumerate(datalist(data, split)):
                if "label" not in item:
                    raise VolumeError(f"{channel_paths(item['image'])[0]}: a {split} case without a label in {data}.")
                stem = f"{split}_{number:04d}_{case_name(item['image'])}"
                extra = write_coarse_channels(coarse, item["image"], tmp, stem)
                image = [str(p.resolve()) for p in channel_paths(item["image"])] + [str(out.resolve() / p.name) for p in extra]
                lists[split].append({"image": image, "label": str(Path(item["label"]).resolve())})
            logger.info("Coarse stage: %d %s case(s) with probabilities", len(lists[split]), split)
        description = {
            "name": f"{described.get('name', Path(data).name)} with the coarse stage's probabilities",
            "labels": {str(k): v for k, v in coarse.names.items()},
            "channel_names": {str(c): name for c, name in enumerate(channels)},
            **lists,
        }
        (tmp / "dataset.json").write_text(json.dumps(description, indent=1), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "dataset.json"
