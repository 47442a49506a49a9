"""The one runner of bundle workflows (``medseg train``, ``cross-validate``, the demo), and bundle copies for checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    # MONAI's bundle logger says "No workflow type and property file specified" at INFO on every run: true of every
    # medact bundle (see workflow_type below) and nothing a user can act on
    logging.getLogger("monai.bundle.workflows").setLevel(logging.WARNING)
    workflow = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], workflow_type=None, **values)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def training_overrides(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (the user's config ids) plus ``given_overrides``, their JSON text, which the model record keeps."""
    return {**given, "given_overrides": json.dumps(dict(given), default=str)}


def copy_with_fresh_weights(source: str | Path, dest: str | Path, seed: int = 0) -> Path:
    """Copy a bundle's ``configs`` to ``dest`` and save its ``network_def`` with seeded, untrained weights.

    For checking that a bundle serves, infers and exports (tests, benchmarks of start-up and speed)
    without training it first: the network is real, its answers are not meant to be good.
    """
    import shutil

    import torch
    from monai.bundle import ConfigParser

    from medseg.model_record import RECORD, network_config, record_from_config
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
