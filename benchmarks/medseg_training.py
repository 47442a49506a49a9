"""Training step time per voxel: the bundle's V-Net (width 4) vs MONAI's VNet (width 16), same run; and a width-4 step
of a time-budget plan (1 case x 2 patches, instance norm) with 3x3x3 kernels against the paper's 5x5x5.

python benchmarks/medseg_training.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from monai.losses import DiceLoss
from monai.networks.nets import VNet as MonaiVNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, emit
from medseg.networks import VNet


def step_seconds(net: torch.nn.Module, batch: int, roi: int) -> float:
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss = DiceLoss(to_onehot_y=True, softmax=True)
    x = torch.rand(batch, 1, roi, roi, roi)
    y = torch.randint(0, 4, (batch, 1, roi, roi, roi))

    def step() -> None:
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()

    return best_of(step, repeats=3)


def main() -> None:
    torch.manual_seed(0)
    batch, roi = 4, 32
    voxels = batch * roi**3
    ours = step_seconds(VNet(out_channels=4, width=4), batch, roi)
    monai = step_seconds(MonaiVNet(in_channels=1, out_channels=4), batch, roi)
    emit(
        f"V-Net training step per voxel ({batch}x{roi}^3 patches)",
        "us/voxel",
        ours / voxels * 1e6,
        "MONAI VNet (width 16)",
        monai / voxels * 1e6,
        step_s=round(ours, 3),
        monai_step_s=round(monai, 3),
    )

    planned = {"out_channels": 4, "width": 4, "norm": "instance", "dropout_prob_down": 0.0, "dropout_prob_up": (0.0, 0.0)}
    three = step_seconds(VNet(**planned, kernel_size=3), 2, roi)
    five = step_seconds(VNet(**planned), 2, roi)
    emit(
        f"V-Net width-4 training step, 2x{roi}^3 patches, 3x3x3 kernels (time-budget plans)",
        "s",
        three,
        "5x5x5 kernels (the paper's, MONAI's)",
        five,
        speedup=round(five / three, 2),
    )


if __name__ == "__main__":
    main()
