"""A trained model carries its own settings: ``model.json`` beside every ``model.pt`` (nnU-Net keeps ``plans.json``).

Every training run writes, next to its weights (``models/model.pt``, ``models/fold_K/model.pt``), the *resolved*
configuration it trained with: the network's constructor arguments, the preprocessing (spacing, windows,
normalisation, channels), the labels, the sliding-window settings validation used, the overrides given and the
library versions. Every later use of those weights (``medseg infer``, ``evaluate``, ``cross-validate``, both
servers, the bundle's ``inference.json`` / ``evaluate.json``) rebuilds the network and the preprocessing from this
record, never from the bundle's configs, which may have been edited (or overridden on a command line) since.

Settings split in two (:data:`MODEL_IDS`, :data:`FREE_IDS`): what the weights were trained with (a different value
at inference is refused, in one line), and what inference may choose (overlap, windows per pass, device, precision,
test-time mirroring, post-processing, colours), which default to the training run's.

The record of a model::

    {"format": "medact.medseg.model/1",
     "settings": {"pixdim": [2, 2, 2], "window": [-200, 300], "normalization": "minmax", "sw_roi_size": [32, 32, 32],
                  "roi_size": [32, 32, 32], "mirror_axes": [], "width": 8, "norm": "instance", "in_channels": 1,
                  "num_classes": 4, "overlap": 0.5, "sw_batch_size": 16},
     "network": {"_target_": "medseg.networks.VNet", "width": 8, ...},
     "labels": {"0": "background", "1": "liver", ...}, "channels": {"0": "CT"}, "colours": {...}, "segment_codes": {},
     "training": {"fold": null, "seed": 0, "max_epochs": 160, "overrides": {"width": 8}},
     "versions": {"medact": "0.1.0", "monai": "1.6.1", "torch": "2.14.1"}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RECORD = "model.json"


FORMAT = "medact.medseg.model/1"


#: config ids whose value the weights were trained with: a different value at inference is refused
MODEL_IDS = (
    "pixdim",
    "window",
    "normalization",
    "bias_correction",
    "sw_roi_size",
    "roi_size",
    "mirror_axes",
    "width",
    "norm",
    "kernel_size",
    "in_channels",
    "num_classes",
)


#: config ids inference may set freely (default: the training run's, where it has one)
FREE_IDS = (
    "overlap",
    "sw_batch_size",
    "device",
    "precision",
    "keep_largest",
    "remove_small",
    "remove_detached",
    "tta",
    "tta_axes",
    "colours",
    "segment_codes",
)


class ModelRecordError(ValueError):
    """A record that is missing, unreadable or contradicted; the message names the file and the setting."""


def record_path(weights: str | Path) -> Path:
    """``model.json`` beside a weights file (``models/model.pt`` -> ``models/model.json``)."""
    return Path(weights).parent / RECORD


def versions() -> dict[str, str]:
    """Versions of medact, MONAI and PyTorch (what a model was trained with)."""
    from importlib import metadata

    found = {}
    for name, dist in (("medact", "medact"), ("monai", "monai"), ("torch", "torch")):
        try:
            found[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


def _plain(value: Any) -> Any:
    """JSON-ready copy: tuples -> lists, int keys -> str, numpy/torch scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def network_config(network: Any) -> dict[str, Any] | None:
    """The ``_target_`` config that rebuilds ``network`` (medact networks record their constructor arguments), else ``None``."""
    module = getattr(network, "module", network)  # DDP
    config = getattr(module, "init_config", None)
    return _plain(config) if isinstance(config, Mapping) else None


class ModelRecord:
    """Write the record of one training run when it starts (an Ignite handler: ``handlers`` of ``build_trainer``).

    Args:
        folder: where ``model.pt`` will be written (the trainer's ``output_dir``).
        network: the network being trained (its constructor arguments are recorded).
        settings: the resolved values of :data:`MODEL_IDS` and the training run's ``overlap``, ``sw_batch_size``.
        labels: label value -> name.
        channels: input channel -> name.
        colours: label value -> RGB.
        segment_codes: DICOM SEG codes by label value.
        training: fold, seed, epochs ... of the run (for the reader; never used to rebuild the model).
        overrides: the overrides given on the command line, as a JSON object text (medact's runner passes them).
    """

    def __init__(
        self,
        folder: str | Path,
        network: Any,
        settings: Mapping[str, Any],
        labels: Mapping[Any, str],
        channels: Mapping[Any, str] | None = None,
        colours: Mapping[Any, Any] | None = None,
        segment_codes: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        overrides: str | Mapping[str, Any] | None = None,
    ) -> None:
        given = json.loads(overrides) if isinstance(overrides, str) and overrides.strip() else dict(overrides or {})
        self.folder = Path(folder)
        self.content = {
            "format": FORMAT,
            "settings": _plain(settings),
            "network": network_config(network),
            "labels": _plain(labels),
            "channels": _plain(channels or {"0": "image"}),
            "colours": _plain(colours or {}),
            "segment_codes": _plain(segment_codes or {}),
            "training": {**_plain(training or {}), "overrides": _plain(given)},
            "versions": versions(),
        }

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _engine: self.save())

    def save(self) -> Path | None:
        """Write ``<folder>/model.json`` atomically (rank 0 of a distributed run only); returns its path."""
        from shared.data import world
        from shared.io import atomic_write_json

        if world()[1] != 0:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / RECORD, self.content)
        return self.folder / RECORD


def read_record(weights: str | Path) -> dict[str, Any] | None:
    """The record beside ``weights``, or ``None`` when there is none (a model trained before medact wrote records)."""
    path = record_path(weights)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelRecordError(
            f"{path}: not a readable model record ({err}); retrain, or remove it to use the bundle's train.json."
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("settings"), dict):
        raise ModelRecordError(f'{path}: not a medact model record (expected "format": "{FORMAT}" and its settings).')
    return record


def record_from_config(parser: Any) -> dict[str, Any]:
    """What a record would hold, read from a parsed ``train.json`` (the fallback for weights without a record)."""
    settings = {key: parser.get_parsed_content(key) for key in (*MODEL_IDS, "overlap", "sw_batch_size") if key in parser}
    meta = parser.get("_meta_", {}) or {}
    channels = meta.get("network_data_format", {}).get("inputs", {}).get("image", {}).get("channel_def", {"0": "image"})
    return {
        "format": FORMAT,
        "settings": _plain(settings),
        "network": None,
        "labels": _plain(parser.get_parsed_content("label_names")),
        "channels": _plain(channels),
        "colours": _plain(parser.get("colours", {}) or {}),
        "segment_codes": _plain(parser.get("segment_codes", {}) or {}),
        "training": {},
        "versions": {},
    }


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON values (``(2, 2)`` == ``[2.0, 2.0]``)."""
    return json.dumps(_plain(a), sort_keys=True) == json.dumps(_plain(b), sort_keys=True) or _numbers_equal(a, b)


def _numbers_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return False


def check_settings(record: Mapping[str, Any], given: Mapping[str, Any], source: str) -> None:
    """Refuse settings that contradict the trained model: ``given`` maps :data:`MODEL_IDS` to values (``None``: not given).

    Raises:
        ModelRecordError: one line naming the setting, both values and ``source`` (the record's path).
    """
    trained = record["settings"]
    for key, value in given.items():
        if value is None or key not in MODEL_IDS or key not in trained:
            continue
        if not same_value(value, trained[key]):
            raise ModelRecordError(
                f"{key}={json.dumps(_plain(value))} contradicts the trained model ({source}: {key}={json.dumps(trained[key])}); "
                f"a model infers with the settings it was trained with (only {', '.join(FREE_IDS)} may change): "
                "drop the setting, or train again with it."
            )


def check_ensemble(records: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Folds of one ensemble must agree on every model setting and label; raises naming the folds that differ."""
    if len(records) < 2:
        return
    first_name, first = records[0]
    for name, record in records[1:]:
        for key in MODEL_IDS:
            a, b = first["settings"].get(key), record["settings"].get(key)
            if not same_value(a, b):
                raise ModelRecordError(
                    f"the ensemble's models disagree on {key}: {first_name} has {json.dumps(a)}, {name} has {json.dumps(b)}; "
                    "an ensemble averages models of one plan (retrain the odd fold with the others' settings)."
                )
        if record["labels"] != first["labels"]:
            raise ModelRecordError(
                f"the ensemble's models disagree on the labels: {first_name} {first['labels']}, {name} {record['labels']}."
            )


def build_network(record: Mapping[str, Any], fallback: Any = None) -> Any:
    """The network a record describes (its ``_target_`` config), or ``fallback()`` for a record without one."""
    config = record.get("network")
    if config is None:
        if fallback is None:
            raise ModelRecordError("the model record does not describe its network and no bundle config was given to build it.")
        return fallback()
    from monai.bundle import ConfigParser

    parser = ConfigParser({"network": dict(config)})
    return parser.get_parsed_content("network")
