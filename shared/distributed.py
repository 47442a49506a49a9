"""Launching one training function on several processes (``ignite.distributed``), or under ``torchrun``.

``run_parallel(fn, args, nproc_per_node=N)`` spawns N local processes (the backend of ``args.device``:
gloo on the CPU, nccl on GPUs, one per process) and calls ``fn(local_rank, args)`` in each; under
``torchrun --nnodes ... --nproc-per-node ...`` (``WORLD_SIZE`` set) it joins the group torchrun
prepared instead. Inside, :func:`shared.engine.build_trainer` wraps the network in DDP, shards
the data per rank and writes outputs from rank 0 only.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch


def group_backend(device: Any = "auto", nproc_per_node: int | None = None) -> str:
    """The process-group backend for ``device`` (``--device``): :func:`shared.devices.backend_for`'s one rule, ``nccl``
    on CUDA and ``gloo`` on the CPU. (It once picked nccl whenever CUDA existed, so ``--device cpu`` on a GPU machine
    asked NCCL to reduce CPU tensors.) ``nccl`` needs a GPU per local process: fewer GPUs than ``nproc_per_node``
    is refused in one line."""
    from shared.devices import DeviceError, backend_for

    chosen = backend_for(device if device is not None else "auto")
    if chosen == "nccl" and nproc_per_node and torch.cuda.device_count() < nproc_per_node:
        raise DeviceError(
            f"{nproc_per_node} processes on device {device!r} need {nproc_per_node} GPUs (one each, nccl); this machine has "
            f"{torch.cuda.device_count()}: use --nproc-per-node {torch.cuda.device_count()} or --device cpu."
        )
    return chosen


def run_parallel(fn: Callable[[int, Any], None], args: Any, nproc_per_node: int | None = None) -> None:
    """Run ``fn(local_rank, args)`` on every process of a distributed group (spawned here or by torchrun).

    The backend follows ``args.device`` (:func:`group_backend`; ``auto`` without the attribute).
    """
    import ignite.distributed as idist

    device = getattr(args, "device", None) or "auto"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: join its group
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        with idist.Parallel(backend=group_backend(device, local)) as parallel:
            parallel.run(fn, args)
        return
    if not nproc_per_node or nproc_per_node < 2:
        raise ValueError(f"nproc_per_node={nproc_per_node}: give at least 2 processes (or run under torchrun).")
    backend = group_backend(device, nproc_per_node)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ.get("MASTER_PORT") or free_port())
    with idist.Parallel(backend=backend, nproc_per_node=nproc_per_node, master_port=port) as parallel:
        parallel.run(fn, args)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the spawned group's rendezvous; the web tests' server).

    Ignite's default is the fixed port 2222, so a second training started on the same machine
    (another user, or a second run of the suite) failed with EADDRINUSE. ``MASTER_PORT`` in the
    environment still wins.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
