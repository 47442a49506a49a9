"""Where a network runs and at what precision: one vocabulary for every command, bundle and option.

Devices: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N``, and MATLAB's
``ExecutionEnvironment`` values, which map onto them: ``gpu`` and ``multi-gpu`` -> ``cuda``
(multi-gpu: one process per GPU under ``torchrun``, each on its ``LOCAL_RANK``), ``parallel`` -> ``auto``.

Precisions: ``fp32``, ``bf16``, ``fp16`` (CUDA only, with a gradient scaler in training) and
``auto``: on CUDA bf16 where the GPU supports it, else fp16; on a CPU bf16 only when a short probe
on this machine finds bf16 autocast faster than fp32 (CPUs with AVX-512-BF16 or AMX), else fp32.
Autocast, not a cast of the weights: weights, optimiser state and losses stay fp32.

``torch`` is imported inside the functions, so that the command-line parsers import this module
without the start-up cost of torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import time
from typing import Any

#: MATLAB ExecutionEnvironment -> our device name
MATLAB_ENVIRONMENTS = {"gpu": "cuda", "multi-gpu": "cuda", "parallel": "auto"}
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: bf16 autocast must beat fp32 by this factor in the CPU probe to be chosen by ``auto``
CPU_BF16_MARGIN = 0.9


class DeviceError(ValueError):
    """A device or precision this machine cannot honour; the message says which and what to use instead."""


def check_device_name(name: Any) -> str:
    """Normalise a device name (``"CUDA:1"`` -> ``"cuda:1"``, ``"gpu"`` -> ``"cuda"``); raises :class:`DeviceError`."""
    text = str(name).strip().lower()
    text = MATLAB_ENVIRONMENTS.get(text, text)
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise DeviceError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N (or MATLAB's gpu, multi-gpu, parallel).")


def resolve_device(name: Any = "auto") -> Any:
    """The ``torch.device`` for ``name``; ``auto`` -> this process's CUDA device when CUDA is present, else the CPU.

    Under ``torchrun`` a bare ``cuda`` means the rank's own GPU (``LOCAL_RANK``, see :func:`set_local_device`).
    Raises :class:`DeviceError` when CUDA is asked for and absent, or ``cuda:N`` names a GPU that is not there.
    """
    import torch

    text = check_device_name(name)
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r}: no CUDA device is available here (torch.cuda.is_available() is False); use --device cpu or auto."
        )
    if text in ("auto", "cuda"):
        local = os.environ.get("LOCAL_RANK")
        index = int(local) if local is not None and int(local) < torch.cuda.device_count() else torch.cuda.current_device()
        return torch.device("cuda", index)
    index = int(text.split(":")[1])
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
        )
    return torch.device("cuda", index)


def set_local_device() -> Any:
    """Under ``torchrun`` on CUDA, make ``LOCAL_RANK``'s GPU this process's current device (before ``init_process_group``).

    Without it every rank lands on ``cuda:0``. Returns the device, or ``None`` without CUDA or ``LOCAL_RANK``.
    """
    import torch

    local = os.environ.get("LOCAL_RANK")
    if local is None or not torch.cuda.is_available():
        return None
    torch.cuda.set_device(int(local))
    return torch.device("cuda", int(local))


def backend_for(name: Any) -> str:
    """The ``torch.distributed`` backend for a device: ``nccl`` on CUDA, ``gloo`` on the CPU."""
    return "nccl" if resolve_device(name).type == "cuda" else "gloo"


def check_precision_name(name: Any) -> str:
    """Normalise a precision name (``"bfloat16"`` -> ``"bf16"``, ``"half"`` -> ``"fp16"``); raises :class:`DeviceError`."""
    text = str(name).strip().lower()
    aliases = {"float32": "fp32", "single": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
    text = aliases.get(text, text)
    if text not in PRECISIONS:
        raise DeviceError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}.")
    return text


def resolve_precision(precision: Any, device: Any) -> Any:
    """The autocast dtype for ``precision`` on ``device`` (a ``torch.device``), or ``None`` for fp32.

    ``fp16`` on a CPU is refused: CPU fp16 autocast is not faster and loses range. ``bf16`` on a CUDA
    GPU without bf16 support is refused. ``auto`` decides as the module docstring says.
    """
    import torch

    text = check_precision_name(precision)
    if text == "fp32":
        return None
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if text == "bf16" and not bf16_ok:
            raise DeviceError(f"precision 'bf16': the GPU {device} does not support bfloat16; use fp16 or fp32.")
        if text == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        return torch.bfloat16 if text == "bf16" else torch.float16
    if text == "fp16":
        raise DeviceError("precision 'fp16' needs a CUDA device; on the CPU use bf16 (where the CPU has AVX-512-BF16 or AMX) or fp32.")
    if text == "auto":
        return torch.bfloat16 if cpu_bf16_is_faster() else None
    return torch.bfloat16


def precision_label(dtype: Any) -> str:
    """``torch.bfloat16`` -> ``"bf16"``, ``torch.float16`` -> ``"fp16"``, ``None`` -> ``"fp32"``."""
    return "fp32" if dtype is None else {"torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(dtype)]


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast beats fp32 on this CPU by :data:`CPU_BF16_MARGIN` (probed once per process, ~0.5 s).

    The probe is the shape that dominates our networks: a 16-channel 3x3x3 Conv3d forward and backward on a
    2 x 16 x 24^3 batch. Without AVX-512-BF16 / AMX, bf16 runs through emulation (measured up to ~300x slower),
    so a probe, not a CPU-flag list, decides.
    """
    fp32, bf16 = cpu_bf16_probe()
    return bf16 < CPU_BF16_MARGIN * fp32


def cpu_bf16_probe(repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of one Conv3d forward + backward at fp32 and under CPU bf16 autocast."""
    import torch

    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 24, 24, 24, generator=generator, requires_grad=True)

    def once(dtype: Any) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            out = conv(x)
        out.float().sum().backward()
        return time.perf_counter() - start

    once(None)  # warm-up
    fp32 = min(once(None) for _ in range(repeats))
    first = once(torch.bfloat16)  # also the warm-up of the bf16 kernels
    if first > 10 * fp32:  # emulated bf16: one run is enough to know, and the next ones would cost seconds
        return fp32, first
    return fp32, min(once(torch.bfloat16) for _ in range(repeats))


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type at ``dtype``; a no-op context for ``dtype=None`` (fp32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class AutocastInferer:
    """Wrap an inferer (or none: ``network(inputs)``) so the forward pass runs under autocast; outputs come back fp32.

    The engine's hook for CPU bf16 (MONAI's ``amp`` flag autocasts only on CUDA) and for inference on any
    device. Losses and metrics then see fp32 logits.
    """

    def __init__(self, inferer: Any, device: Any, dtype: Any) -> None:
        self.inferer, self.device, self.dtype = inferer, device, dtype

    def __call__(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.device, self.dtype):
            out = self.inferer(inputs, network, *args, **kwargs) if self.inferer is not None else network(inputs, *args, **kwargs)
        return out.float() if hasattr(out, "float") and out.is_floating_point() else out


def add_device_arguments(parser: argparse.ArgumentParser, precision: bool = True, inherited_from: str | None = None) -> None:
    """``--device`` (and ``--precision``) on a command that runs a network.

    ``inherited_from``: where the defaults come from instead (e.g. ``"the bundle's device key"``); the
    parsed values are then ``None`` unless given. Otherwise the defaults are ``auto`` and ``fp32``.
    """
    inherit = inherited_from is not None
    parser.add_argument(
        "--device",
        default=None if inherit else "auto",
        help="auto (CUDA when present), cpu, cuda or cuda:N; MATLAB's gpu, multi-gpu, parallel map onto these "
        f"(default: {inherited_from or 'auto'})",
    )
    if precision:
        parser.add_argument(
            "--precision",
            default=None if inherit else "fp32",
            help="fp32, bf16, fp16 (CUDA only) or auto (bf16 on CUDA; on a CPU only where a probe finds it faster) "
            f"(default: {inherited_from or 'fp32'})",
        )


def check_device_arguments(args: argparse.Namespace) -> None:
    """Resolve ``args.device`` / ``args.precision`` now, so an unusable device fails in one line before any work."""
    device = getattr(args, "device", None)
    precision = getattr(args, "precision", None)
    if device is None and precision is None:
        return
    resolved = resolve_device(device if device is not None else "auto")
    if precision is not None:
        resolve_precision(precision, resolved)
