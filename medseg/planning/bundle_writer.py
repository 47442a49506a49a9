"""A plan written as a ready bundle: the shipped template's configs with the plan's values, and its metadata."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medseg.planning.fingerprint import PlanError, is_ct


def write_bundle(
    plan: dict[str, Any],
    out: str | Path,
    fingerprint_: dict[str, Any],
    dataset_dir: str | Path | None = None,
    coarse: dict[str, Any] | None = None,
) -> Path:
    """Write the planned bundle to ``out`` (all files first to a temporary folder, then renamed: nothing partial).

    ``bundle_root`` stays ``"."`` (the bundle can be moved); ``dataset_dir`` becomes the planned data's absolute path.
    ``coarse``: a cascade's coarse stage, written as a bundle of its own in ``out/coarse``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PlanError(f"{out}: exists and is not empty; plan writes a new bundle (choose another --out or remove it).")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".plan-", dir=out.parent))
    try:
        _write_into(tmp, plan, fingerprint_, dataset_dir)
        if coarse is not None:
            from medseg.planning.cascade import COARSE_DIR

            _write_into(tmp / COARSE_DIR, {**coarse, "cascade": {"stage": "coarse of the bundle above"}}, fingerprint_, dataset_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_into(folder: Path, plan: dict[str, Any], fingerprint_: dict[str, Any], dataset_dir: str | Path | None) -> None:
    """The template's configs with the plan's values, its metadata and ``plan.json`` in ``folder``."""
    from medact_bundles import template_dir

    template = template_dir("vnet_seg")
    shutil.copytree(template / "configs", folder / "configs")
    shutil.copytree(template / "docs", folder / "docs")
    shutil.copy2(template / "LICENSE", folder / "LICENSE")
    # the plan goes into train.json only: a trained model carries its settings (models/model.json), which
    # inference.json reads; bundle_root stays ".": the bundle can be moved
    data_dir = {"dataset_dir": str(Path(dataset_dir).resolve())} if dataset_dir else {}
    set_config_values(folder / "configs" / "train.json", {**plan["values"], **data_dir})
    set_config_values(folder / "configs" / "inference.json", data_dir)
    _write_metadata(folder / "configs" / "metadata.json", plan)
    (folder / "plan.json").write_text(json.dumps({"plan": plan, "fingerprint": fingerprint_}, indent=1, default=str), encoding="utf-8")


def set_config_values(config_file: Path, values: dict[str, Any]) -> None:
    """Set ``id#sub#key`` values that exist in ``config_file``; others are skipped, but for ``options#<name>``, added
    when missing (``TrainingOptions`` takes any of its options: ``options#max_minutes`` of a time-budget plan)."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for key, value in values.items():
        *path, last = key.split("#")
        node = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and (last in node or path == ["options"]):
            node[last] = value
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_metadata(path: Path, plan: dict[str, Any]) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    labels = {str(k): v for k, v in sorted(plan["labels"].items())}
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred.update(channel_def=labels, num_channels=len(labels))
    image = meta["network_data_format"]["inputs"]["image"]
    channels = plan.get("channels", [plan["modality"]])
    all_ct = all(is_ct(c) for c in channels)
    image.update(
        modality=plan["modality"],
        format="hounsfield" if all_ct else "magnitude",
        value_range=[0, 1] if all_ct else [],
        num_channels=len(channels),
        channel_def={str(c): name for c, name in enumerate(channels)},
    )
    meta["name"] = f"V-Net planned by medseg plan ({plan['modality']})"
    meta["task"] = "3D segmentation of " + ", ".join(v for k, v in labels.items() if k != "0")
    meta["label_classes"] = "single channel: " + ", ".join(f"{k} {v}" for k, v in labels.items())
    meta["pred_classes"] = f"{len(labels)} channels (logits), argmax gives the label map"
    what = (
        f"single channel {plan['modality']}"
        if len(channels) == 1
        else f"{len(channels)} channels ({plan['modality']}), each normalised on its own"
    )
    meta["image_classes"] = f"{what}, resampled to {plan['values']['pixdim']} mm RAS, {plan['values']['normalization']} normalisation"
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
