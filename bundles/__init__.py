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
from typing import Any

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


def required(config_id: str, what: str) -> Any:
    """The value of a config id that has no default (``"dataset_dir": "$medact_bundles.required('dataset_dir', ...)"``):
    reached only when the id was not given, so it stops the run with one line naming the option, as a command line's
    missing-argument error does (``SystemExit`` with the message: exit code 1, no traceback buried under MONAI's).

    Args:
        config_id: the id, as given on ``python -m monai.bundle run`` (``--dataset_dir DIR``).
        what: what the value is, for the message.
    """
    raise SystemExit(f"error: the bundle needs --{config_id} ({what}); give it on the command line, e.g. --{config_id} DIR.")


def check_shared_is_ours(package_file: str) -> None:
    """Raise when ``import shared`` would give another package than the ``shared`` installed beside ``package_file``
    (``medseg/__init__.py``, ``action/__init__.py``): a regular package named ``shared`` in the working directory of
    ``python -m ...`` comes first on ``sys.path``. The console scripts (``medact-seg``, ``medact-action``) never
    search the working directory; a plain data folder named ``shared`` does not hide an installed package."""
    from importlib.util import find_spec

    ours = Path(package_file).parent.parent / "shared"
    found = find_spec("shared")
    origin = Path(found.origin).parent if found is not None and found.origin else None
    if origin is None or not (origin == ours or (origin.exists() and ours.exists() and origin.samefile(ours))):
        where = origin or (list(found.submodule_search_locations or [])[:1] if found else None)
        raise ImportError(
            f"medact's package 'shared' is hidden by {where} (a package of that name in the working directory "
            f"comes first on sys.path); run from another folder, or use the medact-seg / medact-action commands."
        )
