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
import hashlib
import os
from typing import Any

import numpy as np

from vaexprs.errors import InputError


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


def agree(fingerprint: dict[str, Any], device: Any) -> None:
    """Refuse, on every rank, data that differ between ranks. Each rank reads its own copy (a multi-node launch
    may find another file at the same path): with other cell counts gloo aborted in C++ mid-epoch, with the same
    counts the ranks would average the gradients of different data."""
    size = join(device)
    if size == 1:
        return
    import torch.distributed as dist

    everyone: list[Any] = [None] * size
    dist.all_gather_object(everyone, fingerprint)
    rank = next((r for r, theirs in enumerate(everyone) if theirs != everyone[0]), None)
    if rank is not None:
        keys = [k for k in everyone[0] if everyone[rank].get(k) != everyone[0].get(k)]
        differs = "; ".join(
            f"{k}: {everyone[0].get(k)} on rank 0, {everyone[rank].get(k)} on rank {rank}" for k in keys
        )
        raise InputError(f"torchrun's ranks read different data ({differs}); every rank must read the same data")


def data_fingerprint(n_cells: int, genes: list[str], labels: Any, source: dict[str, Any] | None) -> dict[str, Any]:
    """What every rank must agree on: the cells, genes and labels (short digests), and the file's sha256 where
    read_expression recorded it."""

    def digest(values: Any) -> str:
        return hashlib.sha256("\n".join(map(str, values)).encode()).hexdigest()[:12]

    return {
        "cells": int(n_cells),
        "genes": f"{len(genes)} ({digest(genes)})",
        "labels": "none" if labels is None else digest(labels),
        "file": (source or {}).get("sha256", "")[:12] or "not recorded",
    }


def require_share(n_cells: int) -> None:
    """Every rank needs at least one cell each epoch: with fewer cells than ranks each rank's share was empty, no
    step ran, and the model stayed untrained with a loss of 0."""
    _, size = world()
    if n_cells < size:
        raise InputError(f"{n_cells} training cell(s) cannot be shared among {size} torchrun ranks; use fewer ranks")


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
