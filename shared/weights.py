"""Model weights on disk: save atomically, read as tensors only (no ignite, no MONAI: prediction imports this).

Everything is read with ``torch.load(..., weights_only=True)``: a file holding pickled objects
is refused, never unpickled (unpickling runs code).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from shared.io import atomic_path


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required (message names the directory or file)."""


def save_weights(network: torch.nn.Module, path: str | Path) -> Path:
    """Save ``network``'s state dict to ``path`` atomically (unwrapping DDP/DataParallel)."""
    module = network.module if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else network
    with atomic_path(path) as tmp:
        torch.save(module.state_dict(), tmp)
    return Path(path)


def read_state(path: str | Path, what: str = "Model weights") -> dict[str, Any]:
    """A dict of tensors from a weights file (``weights_only=True``); one-line errors naming ``path``.

    Raises:
        FileNotFoundError: no such file. CheckpointError: empty, damaged, not a dict, or holding
            pickled objects (refused: unpickling runs code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); expected a PyTorch state dict.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{what} {path} cannot be read as a PyTorch state dict of tensors (damaged, another format, or pickled objects, which are refused)."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch raises EOFError, RuntimeError, IndexError ... on damaged files
        raise CheckpointError(
            f"{what} {path} cannot be read: the file is damaged or not a PyTorch state dict ({type(err).__name__})."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path} holds a {type(state).__name__}; expected a PyTorch state dict.")
    return state


def load_weights(network: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load weights saved by :func:`save_weights` or a checkpoint's ``network`` entry (``weights_only=True``)."""
    state = read_state(path)
    if isinstance(state, dict) and "network" in state and isinstance(state["network"], dict):
        state = state["network"]
    network.load_state_dict(state, strict=strict)
    return network
