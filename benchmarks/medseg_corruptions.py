"""What each part of a scanner's difference costs a trained MNI152 model: bias field, gain, noise, alone and together.

    python benchmarks/medseg_corruptions.py --bundle work/budget/<run>/bundle --data work/budget/data/mni1

The MNI152 task tests on the unseen right hemisphere plain and as another scanner might show it
(:func:`medseg.datasets.mni152.scanner_variant`: a linear bias field, a gain and noise, seed 3). This writes the right
hemisphere with each subset of those parts (the same field, gain and noise as the test case's), segments every one
with ``medseg infer`` and scores it with ``medseg evaluate``: one JSON line per subset, Dice per structure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("bias", "gain", "noise")
TEST_SEED = 3  # the seed of right_variant in medseg.datasets.mni152.CASES


def write_variants(data: Path, out: Path, seed: int) -> dict[str, list[str]]:
    """The right hemisphere under every subset of :data:`PARTS` into ``out/images`` and ``out/labels``; names per subset."""
    import nibabel as nib
    import numpy as np

    from medseg.datasets.mni152 import scanner_variant

    image = nib.load(data / "imagesTs" / "right.nii.gz")
    label = nib.load(data / "labelsTs" / "right.nii.gz")
    plain = np.asarray(image.dataobj, dtype=np.float64)
    names = {}
    for n in range(len(PARTS) + 1):
        for parts in itertools.combinations(PARTS, n):
            name = "_".join(parts) or "plain"
            for folder, array, reference in (
                ("images", scanner_variant(plain, seed, parts).astype(np.float32), image),
                ("labels", np.asarray(label.dataobj), label),
            ):
                (out / folder).mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(array, reference.affine), out / folder / f"{name}.nii.gz")
            names[name] = list(parts)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="a bundle trained on the MNI152 task (medseg_budget.py keeps one)")
    parser.add_argument("--data", required=True, help="the MNI152 dataset it was trained on (imagesTs/right.nii.gz)")
    parser.add_argument("--seed", type=int, default=TEST_SEED)
    parser.add_argument("--work", default=str(ROOT / "work" / "corruptions"))
    args = parser.parse_args(argv)
    work, data = Path(args.work).resolve(), Path(args.data).resolve()
    names = write_variants(data, work, args.seed)
    medseg = [sys.executable, "-m", "medseg"]
    images = [str(work / "images" / f"{name}.nii.gz") for name in names]
    subprocess.run(
        [*medseg, "infer", "--bundle", args.bundle, "--input", *images, "--output", str(work / "masks"), "--format", "nifti"],
        check=True,
        cwd=ROOT,
    )
    report = work / "report"
    evaluate = [*medseg, "evaluate", "--pred", str(work / "masks"), "--label", str(work / "labels"), "--out", str(report)]
    subprocess.run([*evaluate, "--dataset", str(data / "dataset.json")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    per_case = _per_case_dice(report / "per_case.csv")
    import torch

    for name, parts in names.items():
        figure = {"figure": "test Dice of the right hemisphere under parts of the scanner variant", "parts": parts}
        print(json.dumps({**figure, "dice": per_case[name], "threads": torch.get_num_threads(), "cpus": os.cpu_count()}))
    return 0


def _per_case_dice(table: Path) -> dict[str, dict[str, float]]:
    """``{case: {structure: Dice}}`` from ``medseg evaluate``'s ``per_case.csv``."""
    import csv

    scores: dict[str, dict[str, float]] = {}
    with table.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            case = Path(row["case"]).name.split(".")[0]
            scores.setdefault(case, {})[row["name"]] = round(float(row["dice"]), 4)
    return scores


if __name__ == "__main__":
    raise SystemExit(main())
