"""Training data pipeline per draw (one case -> 2 patches of 32^3) from the RAM cache, against MONAI's defaults.

python benchmarks/medseg_pipeline.py [--threads 1] [--channels 8] [--draws 40]

The case is the MNI152 left hemisphere at 1 mm (``nilearn``'s template, as ``--task mni-structures`` of
``benchmarks/medseg_budget.py``) with its 8 structure labels; ``--channels`` beyond the T1 stand for a cascade's
coarse-stage probabilities (one-hot of the labels: what costs time is their shape, not their values). Same run:

- ours: ``medseg.transforms.preprocessing`` through ``medseg.datasets.cache.make_dataset`` (the class centres found
  once and cached, the cached case drawn from without a copy);
- baseline, MONAI's defaults: ``CacheDataset`` deep-copies the cached case before the random transforms, and
  ``RandCropByLabelClassesd`` without ``indices_key`` scans the whole label map for every draw.

A training iteration of a time-budget plan is one such draw plus one network step (0.14-0.25 s at 1 thread).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, emit


def hemisphere_case(folder: Path, channels: int) -> tuple[dict, int]:
    """``({"image": [T1, *probabilities], "label": path}, labels)``: the MNI152 left hemisphere at 1 mm."""
    import nibabel as nib

    from medseg.datasets.mni152 import make_structures_dataset

    root = make_structures_dataset(folder / "data", resolution=1).parent
    image, label = root / "imagesTr" / "left.nii.gz", root / "labelsTr" / "left.nii.gz"
    labels = nib.load(label)
    values = np.asarray(labels.dataobj)
    num_labels = int(values.max()) + 1
    paths = [str(image)]
    for c in range(1, channels):
        path = folder / f"coarse_{c}.nii.gz"
        nib.save(nib.Nifti1Image((values == c % num_labels).astype(np.float32), labels.affine), path)
        paths.append(str(path))
    return {"image": paths, "label": str(label)}, num_labels


def chains(channels: int, num_labels: int) -> tuple[object, object]:
    """(ours, MONAI's default crop): the same transforms, the baseline without the cached class centres."""
    from monai.transforms import ClassesToIndicesd, Compose

    from medseg.transforms import preprocessing

    def chain() -> Compose:
        return preprocessing(
            (1.0, 1.0, 1.0),
            roi_size=(32, 32, 32),
            num_samples=2,
            class_ratios=[1] * num_labels,
            normalization=["zscore"] + ["minmax"] * (channels - 1),
            window=[None] + [(0.0, 1.0)] * (channels - 1),
            mirror_axes=(0,),
            coarse_channels=channels - 1,
        )

    ours, baseline = chain(), chain()
    baseline.transforms = [t for t in baseline.transforms if not isinstance(t, ClassesToIndicesd)]
    for step in baseline.transforms:
        if type(step).__name__ == "RandCropByLabelClassesd":
            step.indices_key = None
    return ours, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from monai.data import CacheDataset

    from medseg.datasets.cache import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        item, num_labels = hemisphere_case(Path(tmp), args.channels)
        ours_chain, monai_chain = chains(args.channels, num_labels)
        ours = make_dataset([item], ours_chain, cache="ram")
        monai = CacheDataset([item], monai_chain, cache_rate=1.0, num_workers=0, progress=False)
        shape = tuple(ours._cache[0]["image"].shape)
        ours_s = best_of(lambda: ours[0], repeats=args.draws, warmup=2)
        monai_s = best_of(lambda: monai[0], repeats=args.draws, warmup=2)
    emit(
        f"training data pipeline, one draw of 2x32^3 patches from a cached {args.channels}-channel 1 mm brain hemisphere",
        "ms",
        ours_s * 1e3,
        "MONAI defaults (CacheDataset copies the case, RandCropByLabelClassesd scans the labels each draw)",
        monai_s * 1e3,
        cached_shape=list(shape),
        draws=args.draws,
        speedup=round(monai_s / ours_s, 1),
    )


if __name__ == "__main__":
    main()
