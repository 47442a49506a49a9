"""What this machine's devices do with medact (issue 24): one JSON line per figure, in a few minutes.

For the CPU and, when present, each precision on the first CUDA GPU:

- V-Net training iterations per second (the bundle's width-4 recipe: 2 cases x 2 patches of 32^3; on a GPU
  also the width-16 network on 2 x 128^3, what ``plan --budget gpu:<GiB>`` plans);
- sliding-window seconds per 256x256x128 case (``medseg.inference.inferer.VolumeInferer``, the bundle's windows);
- ``action`` predict milliseconds per frame (c3d_gru, 20 frames of 64x64 per clip, batches of 8 clips);
- the ``auto`` choices (device, and the precision the CPU probe picks) with the probe's timings;
- whether the logits on CUDA match the CPU's within tolerance (fp32: 1e-3 relative; bf16/fp16: Dice of the
  argmax masks >= 0.98).

On a machine without CUDA it runs the CPU half and says that CUDA was absent. bf16 on a CPU is timed only
where the probe finds it faster (elsewhere it is emulated, 15-200x slower: the probe's numbers say so).

    python benchmarks/device_check.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import emit  # noqa: E402
from medseg.inference.inferer import VolumeInferer  # noqa: E402
from medseg.networks import VNet  # noqa: E402
from shared import devices  # noqa: E402


def vnet_iterations_per_s(device: torch.device, dtype: torch.dtype | None, width: int, patch: int, batch: int, steps: int) -> float:
    """Training steps per second (forward, Dice-free cross-entropy, backward, Adam) after two warm-up steps."""
    torch.manual_seed(0)
    net = VNet(out_channels=4, width=width, norm="instance", dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0)).to(device)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    x = torch.randn(batch, 1, patch, patch, patch, device=device)
    y = torch.randint(0, 4, (batch, patch, patch, patch), device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with devices.autocast(device, dtype):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    for _ in range(2):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def sliding_window(device: torch.device, dtype: torch.dtype | None, shape: tuple[int, int, int]) -> tuple[float, torch.Tensor]:
    """Seconds for one case of ``shape`` through the bundle's inferer (32^3 windows, 16 per pass) and its logits (CPU)."""
    torch.manual_seed(0)
    net = VNet(out_channels=4, width=4, norm="instance").to(device).eval()
    volume = _phantom(shape)
    inferer = VolumeInferer((32, 32, 32), sw_batch_size=16, overlap=0.25, dtype=dtype)
    inferer(volume[..., :32].to(device), net)  # warm-up
    _sync(device)
    start = time.perf_counter()
    logits = inferer(volume.to(device), net)
    _sync(device)
    return time.perf_counter() - start, logits.cpu()


def _phantom(shape: tuple[int, int, int]) -> torch.Tensor:
    """A smooth volume in [0, 1] (blobs), so an untrained network's argmax has structure to agree on."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    volume = 0.5 + 0.25 * np.sin(3 * grids[0]) * np.cos(2 * grids[1]) + 0.25 * np.cos(4 * grids[2])
    return torch.from_numpy(volume.astype(np.float32))[None, None]


def predict_ms_per_frame(device: torch.device, dtype: torch.dtype | None, batches: int = 3) -> float:
    """c3d_gru forward on 8 clips x 20 frames of 64x64, milliseconds per frame."""
    from action.models.factory import build_model

    net = build_model("c3d_gru", 5, seed=0).to(device).eval()
    clips = torch.rand(8, 3, 20, 64, 64, device=device)
    with torch.no_grad(), devices.autocast(device, dtype):
        net(clips)
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            net(clips)
        _sync(device)
    return (time.perf_counter() - start) * 1000 / (batches * 8 * 20)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mask_dice(a: torch.Tensor, b: torch.Tensor) -> float:
    pa, pb = a.argmax(1), b.argmax(1)
    scores = [2 * ((pa == c) & (pb == c)).sum().item() / max(1, (pa == c).sum().item() + (pb == c).sum().item()) for c in range(a.shape[1])]
    return float(min(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 128x128x64 case and fewer steps (a smoke run)")
    args = parser.parse_args()
    shape = (128, 128, 64) if args.quick else (256, 256, 128)
    steps = 3 if args.quick else 10
    cpu = torch.device("cpu")
    fp32_probe, bf16_probe = devices.cpu_bf16_probe()
    cuda = torch.cuda.is_available()
    auto = {
        "device": str(devices.resolve_device("auto")),
        "cpu_precision": devices.precision_label(devices.resolve_precision("auto", cpu)),
        "cpu_probe_s": {"fp32": round(fp32_probe, 4), "bf16": round(bf16_probe, 4)},
        "cuda": torch.cuda.get_device_name(0) if cuda else "absent: torch.cuda.is_available() is False; only the CPU half ran",
        "threads": torch.get_num_threads(),
    }
    print(json.dumps({"figure": "auto choices", **auto}))
    case = "x".join(map(str, shape))
    window_s, cpu_logits = sliding_window(cpu, None, shape)
    base = {"train": vnet_iterations_per_s(cpu, None, 4, 32, 4, steps), "window": window_s, "predict": predict_ms_per_frame(cpu, None)}
    cpu_precisions = [None] + ([torch.bfloat16] if devices.cpu_bf16_is_faster() else [])
    for dtype in cpu_precisions:
        label = devices.precision_label(dtype)
        its = base["train"] if dtype is None else vnet_iterations_per_s(cpu, dtype, 4, 32, 4, steps)
        emit(f"V-Net width 4 training, 4 x 32^3, cpu {label}", "iterations/s", its, "cpu fp32 (this run)", base["train"])
        seconds = window_s if dtype is None else sliding_window(cpu, dtype, shape)[0]
        emit(f"sliding window per {case} case, cpu {label}", "s", seconds, "cpu fp32 (this run)", base["window"])
        ms = base["predict"] if dtype is None else predict_ms_per_frame(cpu, dtype)
        emit(f"action predict c3d_gru, cpu {label}", "ms/frame", ms, "cpu fp32 (this run)", base["predict"])
    if not cuda:
        print(json.dumps({"figure": "cuda", "value": "absent", "note": "run this script on a CUDA machine for the GPU half"}))
        return
    _cuda_half(torch.device("cuda", 0), shape, steps, cpu_logits, base)


def _cuda_half(gpu: torch.device, shape: tuple[int, int, int], steps: int, cpu_logits: torch.Tensor, base: dict[str, float]) -> None:
    case = "x".join(map(str, shape))
    precisions = [None, torch.float16] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
    for dtype in precisions:
        label = devices.precision_label(dtype)
        its = vnet_iterations_per_s(gpu, dtype, 4, 32, 4, steps)
        emit(f"V-Net width 4 training, 4 x 32^3, cuda {label}", "iterations/s", its, "cpu fp32 (this run)", base["train"])
        wide = vnet_iterations_per_s(gpu, dtype, 16, 128, 2, steps)
        emit(f"V-Net width 16 training, 2 x 128^3, cuda {label}", "iterations/s", wide, "cpu fp32 width 4 (this run)", base["train"])
        seconds, logits = sliding_window(gpu, dtype, shape)
        if dtype is None:
            rel = float((logits - cpu_logits).abs().max() / cpu_logits.abs().max())
            match = {"max_relative_difference": rel, "matches_cpu": rel <= 1e-3}
        else:
            agreement = _mask_dice(logits, cpu_logits)
            match = {"mask_dice_vs_cpu": agreement, "matches_cpu": agreement >= 0.98}
        emit(f"sliding window per {case} case, cuda {label}", "s", seconds, "cpu fp32 (this run)", base["window"], **match)
        ms = predict_ms_per_frame(gpu, dtype)
        emit(f"action predict c3d_gru, cuda {label}", "ms/frame", ms, "cpu fp32 (this run)", base["predict"])


if __name__ == "__main__":
    main()
