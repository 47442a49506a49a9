"""Suite-wide set-up for ``make test``, which runs pytest-xdist with one worker per core.

- Each worker gets 1 intra-op thread (and so does every subprocess it starts): two workers with
  2 OpenMP threads each oversubscribe a 2-core machine, and OpenMP threads spin-wait for each other.
- ``--dist loadfile`` keeps each test file on one worker, in order: the tutorial pages of a file
  share one work folder and build on each other (tutorial 2 uses tutorial 1's model). (``loadgroup`` would
  be finer, but pytest-xdist 3.8 cannot tag node ids under pytest 9.2, so its groups are ignored.)
- the tutorial files (``make test-docs``; ``make test`` deselects them), then other ``slow`` tests, are
  scheduled first: the longest jobs start while the short ones fill the gaps (with ``loadfile`` a worker takes
  a whole file; the tutorials are four files).
"""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


#: the tutorial files, longest first (measured on 2 cores: 03 about 6 min, 01+02+06 5, 04+05+07 3.5, 08 2.7)
TUTORIAL_FILES = ("test_tutorials_mni.py", "test_tutorials.py", "test_tutorials_action.py", "test_tutorials_sequences.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tutorial files first, longest first (the longest units), then other ``slow`` tests, then the rest.

    pytest-xdist's ``loadfile`` would reorder files by their number of tests (few-test tutorial files last:
    the 6-minute page then started 13 minutes in); the Makefile passes ``--no-loadscope-reorder`` so this order holds.
    """

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        if item.nodeid.startswith("tests/docs/") and name in TUTORIAL_FILES:
            return 0, TUTORIAL_FILES.index(name)
        return (1 if item.get_closest_marker("slow") is not None else 2), 0

    items.sort(key=rank)  # stable: page order is kept


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An (untrained) V-Net bundle, a clip model and a 3-channel sequence model: the errors need real models, not good ones."""
    import numpy as np  # here, not at the top: the thread settings above come before numpy loads its BLAS

    from action.models.model_dir import ModelConfig
    from action.sequences.dataset import SequenceNormalization
    from action.video.dataset import Sampling
    from medact_bundles import template_dir
    from medseg.workflow import copy_with_fresh_weights
    from shared.weights import save_weights
    from tests import bad_inputs as bad

    root = tmp_path_factory.mktemp("models")
    bundle = copy_with_fresh_weights(template_dir("vnet_seg"), root / "vnet_seg")
    clip = root / "clip"
    config = ModelConfig("c3d_gru", ["a", "b"], Sampling(frames=8, size=(32, 32)).to_dict())
    config.save(clip)
    save_weights(config.build(seed=0), clip / "model.pt")
    seq = root / "seq"
    norm = SequenceNormalization.fit("zscore", [np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)])
    config = ModelConfig("gru", ["a", "b"], None, {"hidden": 8}, in_features=3, normalization=norm.to_dict())
    config.save(seq)
    save_weights(config.build(seed=0), seq / "model.pt")
    reference = root / "labels"
    reference.mkdir()
    bad.nifti("case.nii.gz")(reference)
    return {"bundle": bundle, "clip": clip, "seq": seq, "labels": reference}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the wheel built from this checkout installed in it."""
    import shutil
    import site
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("wheel")
    checkout = Path(__file__).resolve().parents[1]
    # built from a copy of the files git knows (committed or not): a build/ folder in the checkout may hold stale
    # copies of modules since moved or deleted, which setuptools would put into the wheel
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=checkout, capture_output=True, text=True, check=True)
    source = root / "source"
    for name in listed.stdout.splitlines():
        if (checkout / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("medact-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    purelib = Path(run_checked(python, root, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (purelib / "test-venv-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    run_checked(python, root, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel)
    return python


def run_checked(python: Path, cwd: Path, *args: object, timeout: float = 600):
    """``python args`` in ``cwd`` without the test's PYTHONPATH / VIRTUAL_ENV; fails the test with its output unless it exits 0."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc with DICOMweb on a free loopback port (tests/pacs.py); skipped with the reason when not installed."""
    from tests.pacs import missing, start_orthanc

    reason = missing()
    if reason and os.environ.get("MEDACT_REQUIRE_PACS"):  # .ci/run: CI must run them
        pytest.fail(f"{reason}; MEDACT_REQUIRE_PACS is set.")
    if reason:
        pytest.skip(reason)
    yield from start_orthanc(tmp_path_factory.mktemp("orthanc"))
