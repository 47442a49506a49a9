"""Running the shell commands of the README and the docs as written, from the installed wheel, in an empty folder.

Each ```` ```bash ```` block of ``README.md``, ``docs/*.md`` (the tutorials have their own runner,
``tests/docs/test_tutorials*.py``) and the bundles' ``docs/README.md`` runs in ``bash -euo pipefail``, the blocks of
one page in order in one fresh folder, with the wheel's venv first on ``PATH`` (``medact-seg``, ``medact-action``,
``python``). A block whose first line is ``# not run by the docs test: <reason>`` is skipped and must say why.

Sizes are made tiny (:data:`SHRINK`: fewer demo cases and videos, one epoch, small clips), nothing else is changed;
what a page assumes the reader has (recordings, a trained bundle and a DICOM series for the DICOM SEG page) is
made first (:data:`SETUP`), with the wheel's own commands where one exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = re.compile(r"^# not run by the docs test: \S")
BASH = re.compile(r"^```bash\n(?P<code>.*?)^```$", re.M | re.S)
PLACEHOLDERS = re.compile(r"path/to|\bSCHEMA\b|\bBUNDLE\b|scan\.nii\.gz|video\.mp4|\[--|<[a-z]+>")
SEG, ACT = r"(?:medact-seg|python -m medseg)", r"(?:medact-action|python -m action)"


def pages() -> list[Path]:
    """README.md, the guides of docs/ (not the tutorials: tests/docs/test_tutorials*.py run them), the bundles' READMEs."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bundles").glob("*/docs/README.md"))]


def bash_blocks(page: Path) -> list[str]:
    """The ```` ```bash ```` blocks of ``page``, in order."""
    return [m["code"] for m in BASH.finditer(page.read_text(encoding="utf-8"))]


def _action_train(line: str) -> str:
    line = re.sub(r" --epochs \d+", "", line) + " --epochs 1"
    if "--model feature_gru" in line:
        return line + " --frames 8 --backbone-size 64"  # the sampling the cache below was extracted with
    return line if re.search(r"--data \S+\.(ts|npz|mat|csv)\b", line) else line + " --frames 8 --size 32"


#: (pattern of a command, how it is made tiny): fewer cases and videos, one epoch, small clips
SHRINK: list[tuple[re.Pattern, Callable[[str], str]]] = [
    (re.compile(SEG + r" make-demo-data "), lambda line: line + " --train 5 --test 1"),  # 5: one case per fold
    (re.compile(ACT + r" make-demo-data "), lambda line: line + " --groups 3 --clips 1"),
    (re.compile(SEG + r" (train|cross-validate) "), lambda line: re.sub(r" --epochs \d+", "", line) + " --epochs 1"),
    (re.compile(ACT + r" train "), _action_train),
    (re.compile(SEG + r" infer .*--folds 0 1 2 3 4"), lambda line: line.replace("--folds 0 1 2 3 4", "--folds 0 1")),  # 2 members
    (re.compile(ACT + r" extract-features "), lambda line: line + " --frames 8 --backbone-size 64"),
    (
        re.compile(r"-m monai\.bundle run .*train\.json"),
        lambda line: (
            line + " --options#max_epochs 1" + (' --frames 8 --size "[32,32]" --sampling#decode_size "[36,36]"' if "gru" in line else "")
        ),
    ),
]


def shrink(block: str) -> str:
    """``block`` with each command made tiny by :data:`SHRINK` (continuation lines joined first; ``a && b`` apart)."""
    lines = block.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        command, _, comment = line.partition("  #")
        parts = [part.strip() for part in command.split("&&")]
        for pattern, change in SHRINK:
            parts = [change(part) if pattern.search(part) else part for part in parts]
        out.append(" && ".join(parts) + (f"  #{comment}" if comment else ""))
    return "\n".join(out) + "\n"


def _copy_japanese_vowels(folder: Path, python: Path) -> None:
    import importlib.util

    data = Path(importlib.util.find_spec("aeon").submodule_search_locations[0]) / "datasets" / "data" / "JapaneseVowels"
    shutil.copy(data / "JapaneseVowels_TRAIN.ts", folder / "train.ts")
    shutil.copy(data / "JapaneseVowels_TEST.ts", folder / "test.ts")


def _demo_data(folder: Path, python: Path) -> None:
    _wheel(python, folder, "medact-seg", "make-demo-data", "demo_data/medseg", "--train", "4", "--test", "1")
    _wheel(python, folder, "medact-action", "make-demo-data", "demo_data/action", "--groups", "3", "--clips", "1")


def _trained_bundle_and_a_dicom_series(folder: Path, python: Path) -> None:
    """``my_vnet`` trained for one epoch on the demo data, and ``ct_series/``: a demo test scan as a CT DICOM series."""
    from medseg.io.volumes import read_volume
    from tests.medseg.conftest import write_dicom_series

    _wheel(python, folder, "medact-seg", "make-demo-data", "data", "--train", "4", "--test", "1")
    _wheel(python, folder, "medact-seg", "init-bundle", "my_vnet")
    _wheel(python, folder, "medact-seg", "train", "--bundle", "my_vnet", "--data", "data", "--epochs", "1")
    volume, geometry = read_volume(next(p for p in sorted((folder / "data" / "imagesTs").iterdir()) if p.name.endswith(".nii.gz")))
    write_dicom_series(volume, geometry, folder / "ct_series")


#: what a page assumes the reader has before its first command
SETUP: dict[str, Callable[[Path, Path], None]] = {
    "docs/action.md": _copy_japanese_vowels,
    "docs/scaling.md": _demo_data,
    "docs/slicer-monailabel.md": _trained_bundle_and_a_dicom_series,
}


def _environment(python: Path, shims: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{shims}{os.pathsep}{env['PATH']}"
    return env


def _wheel(python: Path, folder: Path, command: str, *args: str) -> None:
    done = subprocess.run(
        [str(python.parent / command), *args], cwd=folder, env=_environment(python, folder), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{command} {args}: {done.stderr[-2000:]}"


def _torchrun_shim(folder: Path) -> Path:
    """``torchrun`` is ``python -m torch.distributed.run`` (PyTorch's own definition), here with the wheel's python."""
    shims = folder / ".shims"
    shims.mkdir()
    script = shims / "torchrun"
    script.write_text('#!/usr/bin/env bash\nexec python -m torch.distributed.run "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return shims


#: pages whose every command runs, as written, on the pages named (checked by a test), so they are not run twice:
#: the README's quick start is the getting-started route, the action guide's and the action bundle's commands
RUN_ELSEWHERE = {"README.md": ("docs/getting-started.md", "docs/action.md", "bundles/gru_action/docs/README.md")}

#: the pages with commands, in three test files that pytest-xdist runs side by side (``make test-docs``, with the
#: tutorials: minutes a page): the getting-started route, and the guides of each task
PAGE_GROUPS = {
    "test_commands.py": ("docs/getting-started.md",),
    "test_commands_medseg.py": ("docs/medseg.md", "bundles/vnet_seg/docs/README.md", "docs/slicer-monailabel.md"),
    "test_commands_action.py": ("docs/action.md", "bundles/gru_action/docs/README.md", "docs/scaling.md"),
}


def pages_with_commands() -> list[str]:
    """Every page (path from the repository root) with a ```` ```bash ```` block that runs (not ``# not run ...``),
    but those of :data:`RUN_ELSEWHERE`."""
    return [
        str(p.relative_to(ROOT))
        for p in pages()
        if any(not b.startswith("# not run") for b in bash_blocks(p)) and str(p.relative_to(ROOT)) not in RUN_ELSEWHERE
    ]


def commands(page: str) -> list[str]:
    """The commands of ``page``'s blocks that run, as :func:`shrink` makes them, one per ``&&`` part, comments and
    repeated spaces dropped, ``python -m medseg`` / ``python -m action`` spelled as their console scripts."""
    found = []
    for block in bash_blocks(ROOT / page):
        if block.startswith("# not run"):
            continue
        for line in shrink(block).splitlines():
            for part in line.partition("  #")[0].split("&&"):
                part = re.sub(r"python -m action\b", "medact-action", re.sub(r"python -m medseg\b", "medact-seg", " ".join(part.split())))
                if part:
                    found.append(part)
    return found


def run_page(page: str, installed: Path, tmp_path: Path) -> None:
    """Run ``page``'s blocks in order in a fresh folder under ``tmp_path`` with ``installed`` (the wheel's python) first on
    ``PATH``; fail with the block and its output when one does not exit 0."""
    folder = tmp_path / "empty"
    folder.mkdir()
    shims = _torchrun_shim(folder)
    if page in SETUP:
        SETUP[page](folder, installed)
    ran = 0
    for block in bash_blocks(ROOT / page):
        if block.startswith("# not run"):
            continue
        code = shrink(block)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=folder,
            env=_environment(installed, shims),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, f"{page}:\n{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        ran += 1
    assert ran, f"{page}: no block ran"
