"""MinMax throughput vs MONAI ScaleIntensity on a CT-sized volume and a video clip batch (same run).

python benchmarks/minmax.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from monai.transforms import ScaleIntensity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, emit
from shared.transforms import MinMax


def main() -> None:
    volume = torch.randn(1, 256, 256, 128)
    ours, theirs = MinMax(), ScaleIntensity(minv=0.0, maxv=1.0)
    t_ours = best_of(lambda: ours(volume))
    t_theirs = best_of(lambda: theirs(volume))
    voxels = volume.numel()
    emit("MinMax on a 1x256x256x128 float32 volume", "Mvoxel/s", voxels / t_ours / 1e6, "monai ScaleIntensity", voxels / t_theirs / 1e6)
    clip = torch.randint(0, 256, (3, 20, 64, 64), dtype=torch.uint8)
    t_ours = best_of(lambda: ours(clip), repeats=20)
    t_theirs = best_of(lambda: theirs(clip), repeats=20)
    emit("MinMax on a 3x20x64x64 uint8 clip", "ms/clip", t_ours * 1e3, "monai ScaleIntensity", t_theirs * 1e3)


if __name__ == "__main__":
    main()
