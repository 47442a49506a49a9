"""Tiny synthetic classification data and models for engine tests (a few ms per iteration)."""

import numpy as np
import pytest
import torch
from monai.data import Dataset


def blobs(n: int, seed: int, classes: int = 3, features: int = 4) -> Dataset:
    """``n`` samples of ``features`` floats around one centre per class (separable, with noise)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(0, 3, (classes, features))
    labels = rng.integers(0, classes, n)
    x = centres[labels] + rng.normal(0, 1.0, (n, features))
    return Dataset([{"image": x[i].astype(np.float32), "label": int(labels[i])} for i in range(n)])


class TinyNet(torch.nn.Module):
    """features -> 16 -> dropout -> classes; dropout makes RNG state matter for exact resume."""

    def __init__(self, features: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(features, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2))
        self.head = torch.nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConstantNet(torch.nn.Module):
    """Trainable parameter that cannot change the output: validation never improves."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("logits", torch.arange(classes, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0 * self.weight


@pytest.fixture
def train_data():
    return blobs(64, seed=1)


@pytest.fixture
def val_data():
    return blobs(32, seed=2)
