"""The wheel is the product: built, installed (not editable) into a fresh venv, and run from an empty folder.

The fresh venv reuses the test venv's installed dependencies through a ``.pth`` line (a venv made
from a venv with ``--system-site-packages`` would see the base interpreter's packages, not these),
so nothing is downloaded; medact itself comes only from the wheel (checked: its modules load from
the new venv, and the working folder holds nothing of the checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_in_the_wheel_list() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for top in ("medseg", "action", "shared") for p in (ROOT / top).rglob("__init__.py")
    }
    assert found | {"medact_bundles"} == listed, found ^ (listed - {"medact_bundles"})


def _run(python: Path, cwd: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_installed_wheel_runs_from_an_empty_folder_and_a_bundle_can_be_moved(installed: Path, tmp_path: Path) -> None:
    """medact from the wheel, not the checkout: its commands, the schema, the templates and the web pages ship; a bundle
    is a movable folder (``bundle_root`` is "."). The docs' commands from the wheel: tests/docs/test_commands*.py."""
    work = tmp_path / "empty"
    work.mkdir()
    where = _run(
        installed, work, "-c", "import medseg, action, shared, medact_bundles as b; print(medseg.__file__, b.template_dir('vnet_seg'))"
    ).stdout
    assert str(installed.parents[1]) in where and str(ROOT) not in where, where
    scripts = installed.parent  # the console scripts of the wheel, on PATH in an activated venv
    for script in ("medact-seg", "medact-action"):
        version = subprocess.run([str(scripts / script), "--version"], cwd=work, capture_output=True, text=True, timeout=120)
        assert version.returncode == 0 and version.stdout.startswith(f"{script} (medact 0.") and "unknown" not in version.stdout, version
    _run(installed, work, "-m", "medseg", "make-demo-data", "data", "--train", 2, "--test", 1)
    _run(
        installed,
        work,
        "-c",
        "from medact_bundles import template_dir; from medseg.workflow import copy_with_fresh_weights as c; c(template_dir('vnet_seg'), 'b')",
    )
    (work / "b").rename(work / "moved")
    scan = next((work / "data" / "imagesTs").iterdir())
    done = _run(scripts / "medact-seg", work, "infer", "--bundle", "moved", "--input", scan, "--output", "masks", "--json")
    written = json.loads(done.stdout)[str(scan)]
    assert {Path(p).name for p in written} >= {f"{scan.name.split('.')[0]}_seg.nii.gz", f"{scan.name.split('.')[0]}.seg.nrrd"}
    schema = _run(installed, work, "-c", "import medact_bundles as b; print(b.schema_file())").stdout.strip()
    assert json.loads(Path(schema).read_text(encoding="utf-8"))["properties"]["network_data_format"]
    _run(installed, work, "-m", "medseg", "init-bundle", "fresh")
    assert sorted(p.name for p in (work / "fresh").iterdir()) == ["LICENSE", "configs", "docs"]
    code = "from importlib import resources as r; print(*(len(r.files(p).joinpath('index.html').read_text()) for p in ('action.web', 'medseg.web')))"
    assert all(int(n) > 1000 for n in _run(installed, work, "-c", code).stdout.split())


def test_data_folders_named_like_the_packages_hide_nothing_in_the_readme_install(tmp_path: Path) -> None:
    """The README's install (``make install``: editable, setuptools' strict mode) from a folder holding data folders
    called ``shared/`` and ``action/``: the default editable finder let them shadow medact's packages (``Cannot locate
    'shared.TrainingOptions'``); the link tree of the strict mode does not."""
    for name in ("shared", "action", "medseg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("a user's data", encoding="utf-8")
    code = "import shared, action, medseg.cli; from shared import TrainingOptions; print(shared.__file__, action.__file__)"
    where = _run(Path(sys.executable), tmp_path, "-c", code).stdout
    assert "None" not in where and str(tmp_path) not in where, where
    assert _run(Path(sys.executable), tmp_path, "-m", "medseg", "--version").stdout.startswith("python -m medseg (medact ")


def test_a_package_named_shared_in_the_working_folder_is_one_clear_error_and_the_commands_still_work(
    installed: Path, tmp_path: Path
) -> None:
    """A user's own package ``shared/__init__.py`` comes first on ``sys.path`` for ``python -m``: refused in one line
    naming it; the console scripts never search the working folder, so they are unaffected."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("USERS_OWN = True\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(installed), "-m", "medseg", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("ImportError: medact's package 'shared' is hidden by") and str(tmp_path) in last
    for script in ("medact-seg", "medact-action"):
        ok = subprocess.run(
            [str(installed.parent / script), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert ok.returncode == 0 and "(medact 0." in ok.stdout, ok.stderr
