"""Multi-process training under torchrun, keyed off the variables torchrun sets.

`python -m <package>.train` is one process (world size 1). `torchrun --nproc_per_node=N -m
<package>.train` starts N; each reads RANK, LOCAL_RANK and WORLD_SIZE, joins one process group
(NCCL on GPUs, gloo on CPUs) and trains on its slice of every global batch. Only rank 0 logs and
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The one process that prints, writes metrics, checkpoints and run.json."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def start_distributed(device: torch.device) -> DistributedContext:
    """Join torchrun's process group if there is one; a plain `python -m` run is world size 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size)


def synchronize(context: DistributedContext) -> None:
    """Wait until every rank gets here (a no-op for one process)."""
    if context.is_distributed:
        dist.barrier()


def share_from_main(value: object, context: DistributedContext) -> object:
    """The main process's `value`, on every rank (any picklable object; check its type)."""
    if not context.is_distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def stop_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_across_ranks(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Element-wise mean over all ranks (a no-op for one process)."""
    if context.is_distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values = values / context.world_size
    return values


def device_type(name: str) -> str:
    """`train.device` as "cuda" or "cpu" ("auto": CUDA when visible), before any process group."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=auto")
    return device.type


def resolve_device(name: str, context: DistributedContext) -> torch.device:
    device = torch.device(device_type(name))
    # Under torchrun each process drives the GPU its LOCAL_RANK names.
    return torch.device("cuda", context.local_rank) if device.type == "cuda" else device
