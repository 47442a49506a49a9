"""Whole-volume V-Net inference on 2 CPU cores: speed, FLOP efficiency and memory (JSON lines).

    python benchmarks/medseg_inference.py [--quick]

Figures (each with its same-run baseline):
1. sliding-window inference of a 1x256x256x128 volume with the bundle's own recipe (network,
   window size and overlap read from ``bundles/vnet_seg/configs/inference.json``, run through
   ``Segmenter.logits`` as ``medseg infer`` does) vs MONAI's default recipe (VNet width 16,
   ROI 96^3, overlap 0.5; timed on a few windows and extrapolated to the window count, since the
   full run takes minutes); achieved GFLOP/s (convolution FLOPs of the network as defined, counted
   by PyTorch's FlopCounterMode, times the window count) against this run's fp32 matmul peak.
2. a 512x512x60 CT (0.6x0.6x5 mm) segmented end to end (read, resample, infer, invert, write) vs
   the 60 s target.
3. peak RSS while segmenting a 512x512x300 CT vs 3x its input + output bytes.
4. (``--part layers``) where one forward pass of the bundle's network spends its time: per
   convolution, seconds and FLOP efficiency, summed over the narrow ones (4 or fewer input or
   output channels) and the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import VNet as MonaiVNet
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import emit, peak_rss_mb, reset_peak_rss
from medseg.inference.segmenter import Segmenter
from medseg.io.volumes import Geometry, write_volume
from medseg.networks import VNet, fold_batch_norm

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "vnet_seg"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, trials: int = 3) -> float:
    """fp32 GFLOP/s of ``n x n`` matrix products: the best of ``trials`` (the machine is shared)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_window(net: torch.nn.Module, roi: tuple[int, ...]) -> float:
    """FLOPs of one ``(1, 1, *roi)`` forward pass (multiply-add = 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, 1, *roi))
    return float(counter.get_total_flops())


def windows(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """Windows MONAI's sliding window visits: per axis ceil((size - roi) / step) + 1, step = int(roi (1 - overlap))."""
    return math.prod(max(1, math.ceil((s - r) / max(1, int(r * (1 - overlap)))) + 1) for s, r in zip(shape, roi))


def bundle_segmenter() -> Segmenter:
    """The Segmenter of the bundle's ``inference.json`` (random weights: speed does not depend on them)."""
    import tempfile

    from medseg.inference.segmenter import load_segmenter
    from medseg.workflow import copy_with_fresh_weights

    folder = Path(tempfile.mkdtemp(prefix="medseg-bench-")) / "bundle"
    return load_segmenter(copy_with_fresh_weights(BUNDLE, folder))


def timed_logits(segmenter: Segmenter, volume: torch.Tensor) -> tuple[float, float]:
    """Seconds of ``segmenter.logits(volume)`` (fold, pad, sliding window, blending) and its conv FLOPs."""
    start = time.perf_counter()
    segmenter.logits(volume)
    seconds = time.perf_counter() - start
    roi = tuple(segmenter.roi_size)
    return seconds, flops_per_window(segmenter.network, roi) * windows(tuple(volume.shape[1:]), roi, segmenter.overlap)


def sliding_window(quick: bool) -> None:
    shape = (256, 256, 128)
    volume = torch.rand(1, *shape)
    peaks = [matmul_peak_gflops()]  # the machine is shared: measured before, between and after; the best is used
    segmenter = bundle_segmenter()
    reset_peak_rss()
    rss_before = peak_rss_mb()
    ours_s, ours_flops = timed_logits(segmenter, volume)
    rss_after = peak_rss_mb()
    peaks.append(matmul_peak_gflops())
    monai = MonaiVNet(in_channels=1, out_channels=4).eval()
    per_window = []
    with torch.no_grad():
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            monai(torch.rand(1, 1, 96, 96, 96))
            per_window.append(time.perf_counter() - start)
    monai_window_s = float(np.median(per_window))
    # the same inference path with layers wide enough for the SIMD units: where the gap comes from
    dense = dataclasses.replace(segmenter, network=VNet(out_channels=4, width=8), roi_size=(64, 64, 64), sw_batch_size=1)
    dense_s, dense_flops = timed_logits(dense, volume)
    peaks.append(matmul_peak_gflops())
    peak = max(peaks)
    n_monai = windows(shape, (96, 96, 96), 0.5)
    monai_efficiency = flops_per_window(monai, (96, 96, 96)) / monai_window_s / 1e9 / peak
    roi, width = segmenter.roi_size, getattr(segmenter.network, "width", "?")
    emit(
        f"sliding-window inference 1x256x256x128, bundle recipe: V-Net w{width} ROI{roi[0]} overlap {segmenter.overlap} sw_batch {segmenter.sw_batch_size}",
        "s",
        ours_s,
        "MONAI VNet w16 ROI96 overlap 0.5 (extrapolated)",
        monai_window_s * n_monai,
        voxels_per_s=round(math.prod(shape) / ours_s),
        achieved_gflops=round(ours_flops / ours_s / 1e9, 1),
        matmul_peak_gflops=round(peak, 1),
        matmul_peaks_gflops=[round(p, 1) for p in peaks],
        kernel_efficiency=round(ours_flops / ours_s / 1e9 / peak, 3),
        monai_windows=n_monai,
        monai_kernel_efficiency=round(monai_efficiency, 3),
        peak_rss_mib=round(rss_after),
        peak_rss_growth_mib=round(rss_after - rss_before),
    )
    emit(
        "kernel efficiency of the same inference path, V-Net w8 ROI64 overlap 0.25",
        "fraction of matmul peak",
        dense_flops / dense_s / 1e9 / peak,
        "MONAI VNet w16 ROI96 (same run)",
        monai_efficiency,
        seconds=round(dense_s, 2),
        matmul_peak_gflops=round(peak, 1),
    )


def layer_breakdown() -> None:
    """Per-convolution time of one ``(sw_batch, 1, *roi)`` forward pass of the bundle's folded network."""
    segmenter = bundle_segmenter()
    net = fold_batch_norm(segmenter.network)
    x = torch.rand(segmenter.sw_batch_size, 1, *segmenter.roi_size)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    spent: dict[torch.nn.Module, float] = {}
    seen: dict[torch.nn.Module, torch.Tensor] = {}

    def before(module: torch.nn.Module, inputs: tuple) -> None:
        seen[module] = inputs[0]
        spent[module] = -time.perf_counter()

    def after(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        spent[module] += time.perf_counter()

    hooks = [h for m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    with torch.no_grad():
        net(x)  # warm-up: oneDNN picks and caches its kernels
        start = time.perf_counter()
        net(x)
        whole = time.perf_counter() - start
        for h in hooks:
            h.remove()
        flops = {}
        for m in convs:  # each convolution's FLOPs on the input it saw, counted by PyTorch
            with FlopCounterMode(display=False) as counter:
                m(seen[m])
            flops[m] = float(counter.get_total_flops())
    peak = matmul_peak_gflops()
    narrow = [m for m in convs if min(m.in_channels, m.out_channels) <= 4]
    for name, group in (("narrow (<= 4 in or out channels)", narrow), ("other", [m for m in convs if m not in narrow])):
        seconds, work = sum(spent[m] for m in group), sum(flops[m] for m in group)
        emit(
            f"forward pass of the bundle network ({x.shape[0]} windows of {tuple(x.shape[2:])}): {name} convolutions",
            "fraction of matmul peak",
            work / seconds / 1e9 / peak,
            "whole forward pass (same run)",
            sum(flops.values()) / whole / 1e9 / peak,
            share_of_forward_time=round(seconds / whole, 3),
            seconds=round(seconds, 4),
            forward_s=round(whole, 4),
            layers=len(group),
            gflop=round(work / 1e9, 2),
            matmul_peak_gflops=round(peak, 1),
        )


def _ct(shape: tuple[int, int, int], spacing: tuple[float, float, float], folder: Path) -> Path:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 20, shape).astype(np.int16)
    geometry = Geometry(shape, spacing, (-150.0, -150.0, -100.0), tuple(np.eye(3).reshape(-1)))
    return write_volume(image, geometry, folder / "ct.nii.gz")


def end_to_end_ct() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _ct((512, 512, 60), (0.6, 0.6, 5.0), Path(tmp))
        segmenter = bundle_segmenter()
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
        segmenter = bundle_segmenter()
        reset_peak_rss()
        before = peak_rss_mb()
        segmenter.segment_files([path], Path(tmp) / "out", ["nifti"])
        after = peak_rss_mb()
    io_mb = 512 * 512 * depth * (2 + 1) / 2**20  # int16 input + uint8 mask
    emit(
        f"peak RSS growth segmenting a 512x512x{depth} CT",
        "MiB",
        after - before,
        "3 x (input + output bytes)",
        3 * io_mb,
        peak_rss_mib=round(after),
        rss_before_mib=round(before),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer baseline windows and a 120-slice memory test")
    parser.add_argument("--part", choices=["all", "sliding", "ct", "memory", "layers"], default="all")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.part in ("all", "sliding"):
        sliding_window(args.quick)
    if args.part in ("all", "ct"):
        end_to_end_ct()
    if args.part in ("all", "layers"):
        layer_breakdown()
    if args.part == "memory":
        peak_memory(args.quick)
    elif args.part == "all":  # peak RSS only means something in a fresh process
        import subprocess

        subprocess.run([sys.executable, __file__, "--part", "memory", *(["--quick"] if args.quick else [])], check=True)


if __name__ == "__main__":
    main()
