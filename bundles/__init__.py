"""The MONAI bundle templates medact ships, importable as ``medact_bundles`` (this folder is package data of the wheel).

``vnet_seg`` (V-Net segmentation) and ``gru_action`` (GRU action recognition), in the model-zoo
layout (``configs/``, ``docs/README.md``, ``LICENSE``), and ``schema/meta_schema.json``, the
metadata schema ``python -m monai.bundle verify_metadata --filepath`` checks against offline.

A template is never trained in place (in a wheel it lives in ``site-packages``): ``python -m medseg
init-bundle DIR`` / ``python -m action init-bundle DIR`` copy it to a folder of the user's
(:func:`init_bundle`), and ``python -m medseg plan`` writes a planned one. Configs name their folder
``bundle_root`` = ``"."``, so a bundle can be copied, zipped and moved: run it from inside its folder
or pass ``--bundle_root DIR`` (medact's commands always pass it).
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

NAMES = ("vnet_seg", "gru_action")
#: what a bundle folder holds besides its outputs (``models/``, ``eval/``)
PARTS = ("configs", "docs", "LICENSE")


class BundleError(ValueError):
    """A bundle folder that cannot be used; the message names the path and what was expected."""


def template_dir(name: str) -> Path:
    """The folder of template ``name`` (``"vnet_seg"`` or ``"gru_action"``) inside the installed package."""
    if name not in NAMES:
        raise BundleError(f"No bundle template {name!r}; medact ships {', '.join(NAMES)}.")
    return Path(str(resources.files(__name__).joinpath(name)))


def schema_file() -> Path:
    """The bundle metadata schema (MONAI's ``meta_schema_20220324.json``), for ``verify_metadata --filepath`` offline."""
    return Path(str(resources.files(__name__).joinpath("schema", "meta_schema.json")))


def init_bundle(name: str, dest: str | Path) -> Path:
    """Copy template ``name`` into the new folder ``dest`` (written to a temporary folder first, then renamed).

    Raises:
        BundleError: ``dest`` exists and is not empty (nothing is written then).
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError(f"{dest}: exists and is not empty; init-bundle writes a new bundle (choose another folder or remove it).")
    source = template_dir(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".init-bundle-", dir=dest.parent))
    try:
        for part in PARTS:
            if (source / part).is_dir():
                shutil.copytree(source / part, tmp / part)
            else:
                shutil.copy2(source / part, tmp / part)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def config_file(bundle: str | Path, name: str) -> Path:
    """``bundle/configs/name``, checked: the folder, its ``configs/`` and the file exist and the config has ``bundle_root``.

    Raises:
        BundleError: one line naming the path and what was expected.
    """
    import json

    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleError(
            f"{bundle}: no such bundle folder; expected a MONAI bundle (configs/{name}, ...), e.g. from python -m medseg init-bundle."
        )
    path = bundle / "configs" / name
    if not (bundle / "configs").is_dir():
        raise BundleError(f"{bundle}: has no configs/ folder; expected a MONAI bundle (configs/{name}, configs/metadata.json, ...).")
    if not path.is_file():
        raise BundleError(f"{path}: missing; the bundle needs it (copy it from a template: python -m medseg init-bundle NEW_DIR).")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise BundleError(f"{path}: not valid JSON ({err}).") from None
    if name in ("train.json", "inference.json") and "bundle_root" not in config:
        raise BundleError(
            f'{path}: has no "bundle_root"; expected "bundle_root": "." (the bundle\'s folder, which medact passes as --bundle_root).'
        )
    return path
