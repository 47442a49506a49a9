"""Functions the V-Net bundle configs call (keeping Python out of the JSON)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.data import datalist, dataset_description, label_names
from medseg.io.volumes import VolumeError
from medseg.validate import validate

logger = logging.getLogger(__name__)


def run_workflow(bundle: str | Path, configs: Sequence[str], overrides: Mapping[str, Any] | None = None) -> None:
    """Run a bundle's configs (``["train.json"]``, ``["train.json", "evaluate.json"]``, merged in order) with
    ``overrides`` (config ids), as ``python -m monai.bundle run`` does: the one runner of ``medseg train``,
    ``cross-validate`` and the demo. The bundle folder is passed as ``bundle_root``.
    """
    from monai.bundle import ConfigWorkflow

    from medact_bundles import config_file

    files = [str(config_file(bundle, name)) for name in configs]
    values = {"bundle_root": str(bundle), **(overrides or {})}
    # workflow_type=None: a medact bundle is not one of MONAI's typed workflows ("train"/"infer" property checks)
    workflow = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], workflow_type=None, **values)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def training_overrides(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (the user's config ids) plus ``given_overrides``, their JSON text, which the model record keeps."""
    return {**given, "given_overrides": json.dumps(dict(given), default=str)}


def names_from_channel_def(channel_def: Mapping[str, str]) -> dict[int, str]:
    """``metadata.json``'s ``channel_def`` ({"0": "background", ...}) -> {0: "background", ...}."""
    return {int(k): str(v) for k, v in channel_def.items()}


def split_cases(
    dataset_dir: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    labels: Sequence[int] | None = None,
    check: bool = True,
    fold: int | None = None,
    splits_file: str | Path | None = None,
    channels: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Training and validation cases of a dataset, after checking them (``medseg validate``).

    With ``fold``: that fold of ``splits_file`` (:mod:`medseg.folds`; made there, 5 folds by case, when missing).
    Otherwise the ``validation`` list of ``dataset.json`` when present, else ``val_fraction`` of the training
    cases (at least one) held out, chosen with ``seed``. ``channels``: the bundle's input channels; every case must have them.

    Raises:
        VolumeError: the dataset has errors (all listed, one per line), or too few cases.
    """
    items = datalist(dataset_dir, "training")
    if check:
        allowed = list(labels) if labels is not None else list(label_names(dataset_dir, None))
        problems = validate(items, allowed, channels=channels, channel_origin="the bundle's network takes")
        for problem in problems:
            (logger.error if problem.level == "error" else logger.warning)(str(problem))
        errors = [str(p) for p in problems if p.level == "error"]
        if errors:
            raise VolumeError(f"Dataset {dataset_dir} failed validation ({len(errors)} errors):\n" + "\n".join(errors))
    if fold is not None:
        from medseg.folds import case_id, fold_splits, select_fold

        if splits_file is None:
            raise VolumeError("fold given without splits_file (the bundle's splits.json).")
        splits = fold_splits(splits_file, [case_id(i) for i in items], fold=int(fold))
        return select_fold(items, splits, int(fold), Path(splits_file))
    description = dataset_description(dataset_dir)
    if description is not None and "validation" in json.loads(description.read_text(encoding="utf-8")):
        return items, datalist(dataset_dir, "validation")
    if len(items) < 2:
        raise VolumeError(f"Dataset {dataset_dir} has {len(items)} training case(s); need at least 2 to hold one out for validation.")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(items)))
    val_idx = set(order[:n_val])
    return [items[i] for i in range(len(items)) if i not in val_idx], [items[i] for i in sorted(val_idx)]


def test_images(dataset_dir: str | Path, split: str = "test") -> list[Any]:
    """Images of a dataset split (for inference): a path per case, or its list of channel paths."""
    return [item["image"] for item in datalist(dataset_dir, split)]


def run_inference(
    segmenter: Any, inputs: Sequence[Any], output_dir: str | Path, formats: Sequence[str] = ("nifti", "seg.nrrd")
) -> dict[str, list[Path]]:
    """Segment ``inputs`` into ``output_dir`` (the bundle's ``inference.json`` entry point)."""
    return segmenter.segment_files(inputs, output_dir, formats)


def evaluate_cases(segmenter: Any, items: Sequence[dict], output_dir: str | Path, history_dir: str | Path | None = None) -> dict:
    """Segment each case's image, then write the full evaluation report against its label.

    Predictions go to ``<output_dir>/pred`` (NIfTI + Slicer files); the report to ``output_dir``.
    """
    from medseg.io.channels import case_name, source_key
    from medseg.report import evaluate_pairs, write_report

    missing = [item["image"] for item in items if "label" not in item]
    if missing:
        raise VolumeError(f"Cannot evaluate cases without labels: {missing[:5]}.")
    output_dir = Path(output_dir)
    written = segmenter.segment_files([item["image"] for item in items], output_dir / "pred", ("nifti", "seg.nrrd"))
    pairs, images = [], {}
    for item in items:
        case = case_name(item["image"])
        nifti = next(p for p in written[source_key(item["image"])] if p.name.endswith("_seg.nii.gz"))
        pairs.append((case, nifti, Path(item["label"])))
        images[case] = source_key(item["image"])
    results, slices = evaluate_pairs(pairs, segmenter.names)
    summary = write_report(results, segmenter.names, output_dir, slices, images, segmenter.colours, history_dir)
    logger.info("Evaluation of %d cases: mean Dice %.4f; report in %s", len(items), summary["mean_dice"], output_dir)
    return summary


def copy_with_fresh_weights(source: str | Path, dest: str | Path, seed: int = 0) -> Path:
    """Copy a bundle's ``configs`` to ``dest`` and save its ``network_def`` with seeded, untrained weights.

    For checking that a bundle serves, infers and exports (tests, benchmarks of start-up and speed)
    without training it first: the network is real, its answers are not meant to be good.
    """
    import shutil

    import torch
    from monai.bundle import ConfigParser

    from medseg.trained import RECORD, network_config, record_from_config
    from shared.io import atomic_write_json
    from shared.weights import save_weights

    dest = Path(dest)
    shutil.copytree(Path(source) / "configs", dest / "configs")
    parser = ConfigParser()
    parser.read_meta(dest / "configs" / "metadata.json")
    parser.read_config(dest / "configs" / "train.json")
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    save_weights(network, dest / "models" / "model.pt")
    atomic_write_json(dest / "models" / RECORD, {**record_from_config(parser), "network": network_config(network)})
    return dest
