"""The wheel is the product: built, installed (not editable) into a fresh venv, and run from an empty folder.

The fresh venv reuses the test venv's installed dependencies through a ``.pth`` line (a venv made
from a venv with ``--system-site-packages`` would see the base interpreter's packages, not these),
so nothing is downloaded; medact itself comes only from the wheel (checked: its modules load from
the new venv, and the working folder holds nothing of the checkout).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the wheel built from this checkout installed in it."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("medact-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    purelib = Path(_run(python, root, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (purelib / "test-venv-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    _run(python, root, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel)
    return python


@pytest.mark.slow
def test_the_installed_wheel_plans_trains_and_infers_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    where = _run(
        installed, work, "-c", "import medseg, action, shared, medact_bundles as b; print(medseg.__file__, b.template_dir('vnet_seg'))"
    ).stdout
    assert str(installed.parents[1]) in where and str(ROOT) not in where, where  # medact from the wheel, not the checkout

    # medseg: data -> plan -> train 1 epoch -> move the bundle -> infer, and MONAI's offline checks of the planned bundle
    _run(installed, work, "-m", "medseg", "make-demo-data", "data", "--train", 4, "--test", 1)
    _run(installed, work, "-m", "medseg", "plan", "data", "--out", "planned", "--iterations", 4)
    _run(installed, work, "-m", "medseg", "train", "--bundle", "planned", "--data", "data", "--epochs", 1)
    (work / "planned").rename(work / "moved")  # a bundle is a movable folder: bundle_root is "."
    scan = next((work / "data" / "imagesTs").iterdir())
    scripts = installed.parent  # the console scripts of the wheel, on PATH in an activated venv
    for script, module in (("medact-seg", "medseg"), ("medact-action", "action")):
        version = subprocess.run([str(scripts / script), "--version"], cwd=work, capture_output=True, text=True, timeout=120)
        assert (
            version.returncode == 0 and version.stdout.startswith(f"python -m {module} (medact 0.") and "unknown" not in version.stdout
        ), version
    done = subprocess.run(
        [str(scripts / "medact-seg"), "infer", "--bundle", "moved", "--input", str(scan), "--output", "masks", "--json"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(done.stdout)[str(scan)]
    assert {Path(p).name for p in written} >= {f"{scan.name.split('.')[0]}_seg.nii.gz", f"{scan.name.split('.')[0]}.seg.nrrd"}
    schema = _run(installed, work, "-c", "import medact_bundles as b; print(b.schema_file())").stdout.strip()
    assert json.loads(Path(schema).read_text(encoding="utf-8"))["properties"]["network_data_format"]  # the schema ships in the wheel
    _run(installed, work, "-m", "medseg", "init-bundle", "fresh")
    assert sorted(p.name for p in (work / "fresh").iterdir()) == ["LICENSE", "configs", "docs"]


def test_the_installed_wheel_trains_and_predicts_actions_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    """action from the wheel: tiny videos -> train 1 epoch -> predict; the web pages ship."""
    work = tmp_path / "empty"
    work.mkdir()
    _run(installed, work, "-m", "action", "make-demo-data", "videos", "--groups", 3, "--clips", 1)
    _run(
        installed,
        work,
        "-m",
        "action",
        "train",
        "--data",
        "videos",
        *["--model", "c3d_gru", "--out", "run", "--epochs", "1", "--frames", "8", "--size", "32", "--quiet"],
    )
    video = sorted((work / "videos").rglob("*.avi"))[0]
    prediction = json.loads(_run(installed, work, "-m", "action", "predict", "--model", "run", video, "--json").stdout)
    assert prediction["label"] in json.loads((work / "run" / "action_model.json").read_text(encoding="utf-8"))["classes"]
    page = _run(
        installed,
        work,
        "-c",
        "from importlib import resources; print(len(resources.files('action.web').joinpath('index.html').read_text()), len(resources.files('medseg.web').joinpath('index.html').read_text()))",
    )
    assert all(int(n) > 1000 for n in page.stdout.split())


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
