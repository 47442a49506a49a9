"""Whole-volume V-Net inference on 2 CPU cores: speed, FLOP efficiency and memory (JSON lines).

    python benchmarks/medseg_inference.py [--quick]

Figures (each with its same-run baseline):
1. sliding-window inference of a 1x256x256x128 volume: the bundle's V-Net (width 4, ROI 64^3,
   overlap 0.25) vs MONAI's default recipe (VNet width 16, ROI 96^3, overlap 0.5; timed on a
   few windows and extrapolated to the window count, since the full run takes minutes);
   achieved GFLOP/s against this run's fp32 matmul peak.
2. a 512x512x60 CT (0.6x0.6x5 mm) segmented end to end (read, resample, infer, invert, write) vs
   the 60 s target.
3. peak RSS while segmenting a 512x512x300 CT vs 3x its input + output bytes.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import VNet as MonaiVNet
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import emit  # noqa: E402
from medseg.infer import Segmenter  # noqa: E402
from medseg.io import Geometry, write_volume  # noqa: E402
from medseg.networks import VNet  # noqa: E402

NAMES = {0: "background", 1: "liver", 2: "kidney", 3: "tumour"}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_window(net: torch.nn.Module, roi: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, roi, roi, roi))
    return float(counter.get_total_flops())


def windows(shape: tuple[int, ...], roi: int, overlap: float) -> int:
    step = max(1, int(roi * (1 - overlap)))
    return math.prod(max(1, math.ceil((s - roi) / step) + 1) for s in shape)


def sliding_window(quick: bool) -> None:
    peak = matmul_peak_gflops()
    shape = (256, 256, 128)
    volume = torch.rand(1, 1, *shape)
    ours = VNet(out_channels=4, width=4).eval()
    start = time.perf_counter()
    with torch.no_grad():
        SlidingWindowInferer((64, 64, 64), 1, 0.25, mode="gaussian")(volume, ours)
    ours_s = time.perf_counter() - start
    ours_flops = flops_per_window(ours, 64) * windows(shape, 64, 0.25)
    monai = MonaiVNet(in_channels=1, out_channels=4).eval()
    per_window = []
    with torch.no_grad():
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            monai(torch.rand(1, 1, 96, 96, 96))
            per_window.append(time.perf_counter() - start)
    n_monai = windows(shape, 96, 0.5)
    monai_s = float(np.median(per_window)) * n_monai
    voxels = math.prod(shape)
    emit("sliding-window inference 1x256x256x128, V-Net w4 ROI64 overlap 0.25", "s", ours_s, "MONAI VNet w16 ROI96 overlap 0.5 (extrapolated)", monai_s,
         voxels_per_s=round(voxels / ours_s), achieved_gflops=round(ours_flops / ours_s / 1e9, 1), matmul_peak_gflops=round(peak, 1),
         kernel_efficiency=round(ours_flops / ours_s / 1e9 / peak, 3), monai_windows=n_monai,
         monai_kernel_efficiency=round(flops_per_window(monai, 96) / float(np.median(per_window)) / 1e9 / peak, 3))  # fmt: skip


def _ct(shape: tuple[int, int, int], spacing: tuple[float, float, float], folder: Path) -> Path:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 20, shape).astype(np.int16)
    geometry = Geometry(shape, spacing, (-150.0, -150.0, -100.0), tuple(np.eye(3).reshape(-1)))
    return write_volume(image, geometry, folder / "ct.nii.gz")


def _segmenter() -> Segmenter:
    return Segmenter(VNet(out_channels=4, width=4), NAMES, pixdim=(2.0, 2.0, 2.0), window=(-200, 300), roi_size=(64, 64, 64), overlap=0.25)


def end_to_end_ct() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _ct((512, 512, 60), (0.6, 0.6, 5.0), Path(tmp))
        segmenter = _segmenter()
        start = time.perf_counter()
        segmenter.segment_files([path], Path(tmp) / "out", ["nifti"])
        seconds = time.perf_counter() - start
    emit("512x512x60 CT (0.6x0.6x5 mm) segmented end to end (read, resample, infer, invert, write)", "s", seconds, "target", 60.0)


def peak_memory(quick: bool) -> None:
    depth = 120 if quick else 300
    import multiprocessing

    with tempfile.TemporaryDirectory() as tmp:
        # write the input in another process, so that its peak does not hide the one measured here
        writer = multiprocessing.get_context("spawn").Process(target=_ct, args=((512, 512, depth), (0.7, 0.7, 1.0), Path(tmp)))
        writer.start()
        writer.join()
        path = Path(tmp) / "ct.nii.gz"
        segmenter = _segmenter()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        segmenter.segment_files([path], Path(tmp) / "out", ["nifti"])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    io_mb = 512 * 512 * depth * (2 + 1) / 2**20  # int16 input + uint8 mask
    emit(f"peak RSS growth segmenting a 512x512x{depth} CT", "MiB", after - before, "3 x (input + output bytes)", 3 * io_mb,
         peak_rss_mib=round(after), rss_before_mib=round(before))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer baseline windows and a 120-slice memory test")
    parser.add_argument("--part", choices=["all", "sliding", "ct", "memory"], default="all")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.part in ("all", "sliding"):
        sliding_window(args.quick)
    if args.part in ("all", "ct"):
        end_to_end_ct()
    if args.part == "memory":
        peak_memory(args.quick)
    elif args.part == "all":  # peak RSS only means something in a fresh process
        import subprocess

        subprocess.run([sys.executable, __file__, "--part", "memory", *(["--quick"] if args.quick else [])], check=True)


if __name__ == "__main__":
    main()
