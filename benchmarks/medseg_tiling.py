"""How much a trained V-Net's masks depend on where the sliding windows fall, at each overlap (JSON).

    python benchmarks/medseg_tiling.py --bundle B --weights B/models/fold_0/model.pt --data D
                                       [--overlaps 0.25 0.5 0.75] [--cases 3] [--threads 1]

The 8 mirrorings of a case (flips of every subset of the 3 axes, flipped back after the pass) hold the same
voxels, but the windows tile each one differently: near a border they start at another place in the anatomy. For
a network trained mirrored (``mirror_axes [0, 1, 2]``), each mirrored view is one it was trained on, so the spread
of Dice over the 8 passes measures how much the mask depends on the tiling, which on a user's scan is set by where
the body lies in the field of view. Per overlap: the unmirrored pass's mean Dice, the mean, lowest and sd over the 8
passes, Dice of their average (``--tta``) and seconds. The baseline is overlap 0.25 (the bundle's before 0.5.0).

Measured on the demo with the folds of ``benchmarks/medseg_crossval.py --set 'mirror_axes=[0,1,2]'``: docs/medseg.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _mean_dice(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> float:
    from medseg.evaluation.metrics import dice

    return float(np.nanmean(list(dice(pred, ref, labels).values())))


def passes_dice(segmenter: Any, cases: list[dict], labels: list[int]) -> tuple[np.ndarray, list[float]]:
    """``(Dice of each case x each of the 8 mirrored passes, Dice of each case's averaged probabilities)``, on the
    network grid (the preprocessed label), so no resampling enters the comparison."""
    from medseg.inference.inferer import mirror_subsets

    per_pass, averaged = [], []
    for case in cases:
        image, ref = case["image"], np.asarray(case["label"][0])
        total, row = None, []
        for axes in mirror_subsets((0, 1, 2)):
            prob = segmenter.mirrored_probabilities(image, axes)
            total = prob if total is None else total + prob
            row.append(_mean_dice(prob.argmax(0).numpy(), ref, labels))
        per_pass.append(row)
        averaged.append(_mean_dice(total.argmax(0).numpy(), ref, labels))
    return np.asarray(per_pass), averaged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="model.pt (default: the bundle's)")
    parser.add_argument("--data", type=Path, required=True, help="a dataset with a test split (labels kept)")
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--cases", type=int, default=3, help="test cases used (the first N)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from medseg.datasets.datalists import datalist
    from medseg.inference.segmenter import load_segmenter
    from medseg.transforms import preprocessing

    segmenter = load_segmenter(args.bundle, args.weights, {"segmenter#keep_largest": False})
    labels = [v for v in segmenter.names if v]
    pre = preprocessing(segmenter.pixdim, segmenter.window, roi_size=None, with_label=True, normalization=segmenter.normalization)
    cases = [pre(dict(item)) for item in datalist(args.data, "test")[: args.cases]]
    records = []
    for overlap in args.overlaps:
        segmenter.overlap = overlap
        start = time.perf_counter()
        per_pass, averaged = passes_dice(segmenter, cases, labels)
        seconds = (time.perf_counter() - start) / (len(cases) * per_pass.shape[1])
        by_pass = per_pass.mean(axis=0)  # mean over cases of each pass
        records.append(
            {
                "overlap": overlap,
                "unmirrored_mean_dice": round(float(by_pass[0]), 4),
                "passes_mean_dice": round(float(by_pass.mean()), 4),
                "passes_lowest_mean_dice": round(float(by_pass.min()), 4),
                "passes_sd": round(float(by_pass.std(ddof=1)), 4),
                "averaged_mean_dice": round(statistics.mean(averaged), 4),
                "seconds_per_pass": round(seconds, 2),
            }
        )
    print(
        json.dumps(
            {
                "figure": "mean Dice over the 8 mirrored passes (tiling spread) per sliding-window overlap",
                "unit": "Dice (0-1), seconds per pass per case",
                "threads": torch.get_num_threads(),
                "cases": len(cases),
                "weights": str(args.weights or "bundle"),
                "baseline": {"overlap": 0.25},
                "overlaps": records,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
