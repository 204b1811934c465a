"""Data-parallel training across processes: what `torchrun` launches.

    torchrun --standalone --nproc-per-node 2 -m vaexprs train cells.h5ad -o bundle/ --register NAME

torchrun sets RANK, WORLD_SIZE and the rendezvous address; every rank runs the same command. The training loop
then joins one process group (gloo on CPU, nccl on CUDA), each rank takes its own equal share of every epoch's
shuffled cells, gradients are averaged across ranks after each step (what DistributedDataParallel does for a
plain module; done by hand because the VAE's loss is a method, not its forward), and the epoch's losses are
summed across ranks, so every rank sees the same history and makes the same early-stopping decision. Weights
stay identical on every rank. Rank 0 alone exports, logs to MLflow and registers. Same seed, same number of
ranks: the same model.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import numpy as np


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by it."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0, 1
    return (rank, size) if size > 1 else (0, 1)


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run): the process that writes, logs and registers."""
    return world()[0] == 0


def join(device: Any) -> int:
    """Join the process group once (idempotent) and return the world size (1 = not distributed)."""
    _, size = world()
    if size == 1:
        return 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo")
        atexit.register(_leave)
    return size


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard(order: np.ndarray) -> np.ndarray:
    """This rank's share of an epoch's order: every rank gets the same number of cells (the few left over are
    skipped this epoch; the order is reshuffled every epoch), so every rank takes the same number of steps."""
    rank, size = world()
    per_rank = len(order) // size
    return order[rank * per_rank : (rank + 1) * per_rank]


def average_gradients(model: Any) -> None:
    import torch.distributed as dist

    size = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= size


def sum_across(values: np.ndarray) -> np.ndarray:
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.numpy()
