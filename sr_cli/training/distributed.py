"""Data-parallel training under ``torchrun``.

Started by ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
environment), each process takes ``batch / WORLD_SIZE`` of every global batch
(``data.SampleRange``), so the samples and the optimiser's steps are those of one process
with the same ``batch``; gradients are averaged by DistributedDataParallel (gloo on CPUs,
NCCL on CUDA, one GPU per process by LOCAL_RANK). Rank 0 alone logs, validates, checkpoints
and exports; at the end the ranks compare checksums of their weights. Multi-node runs need
the run folder on a shared file system (resuming reads it on every rank).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn as nn


@dataclass
class Distributed:
    """This process's place in a data-parallel run (rank 0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # we initialised the process group (and destroy it at the end)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_spec: str) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), or run alone.

    CUDA (``device_spec`` auto/cuda with a GPU): NCCL, one GPU per process (cuda:LOCAL_RANK);
    otherwise gloo on the CPU.
    """
    from ..device import pick_device
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), pick_device(device_spec)
    import torch.distributed as dist
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"data-parallel training runs on CUDA or the CPU, not {device.type}")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, owns_group=owns), device


@contextlib.contextmanager
def process_group(device_spec: str) -> Iterator[tuple[Distributed, torch.device]]:
    """``setup_distributed`` for the ``with`` block; the group (if we made it) is torn down after it."""
    dist_info, device = setup_distributed(device_spec)
    try:
        yield dist_info, device
        if dist_info.owns_group:
            import torch.distributed as dist
            # Every rank finishes its last collective before any tears the group down: a rank
            # exiting while gloo still talks to it was seen to abort the other at exit (SIGABRT).
            dist.barrier()
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist
            dist.destroy_process_group()


def mean_over_ranks(values: dict[str, float], dist_info: Distributed, device: torch.device) -> dict[str, float]:
    """Each value averaged over the ranks (a collective: every rank calls it); alone, ``values``."""
    if not dist_info.enabled or not values:
        return values
    import torch.distributed as dist
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / dist_info.world_size for k, v in zip(keys, t.tolist())}


def weights_checksum(*nets: Optional[nn.Module]) -> str:
    """sha256 of the parameters of ``nets`` (in order): equal on every rank of a healthy run."""
    digest = hashlib.sha256()
    for net in nets:
        if net is None:
            continue
        for name, p in net.named_parameters():
            digest.update(name.encode())
            digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_ranks_agree(net: nn.Module, disc: Optional[nn.Module], dist_info: Distributed,
                      log: Callable[[dict[str, Any]], None]) -> None:
    """All ranks must end with the same weights (DDP keeps them so); raise if they do not."""
    import torch.distributed as dist
    mine = weights_checksum(net, disc)
    sums: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(sums, mine)
    if len(set(sums)) != 1:
        raise RuntimeError(f"the {dist_info.world_size} processes ended with different weights: {sums}")
    log({"message": f"{dist_info.world_size} processes ended with the same weights (sha256 {mine[:16]})",
         "weights_sha256": mine})
