"""DataLoaders whose order depends only on (seed, epoch) and which split each global batch
evenly across ranks, so N processes see exactly the samples one process would."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import Config, ConfigError
from ..distributed import DistributedContext

Batch = tuple[torch.Tensor, ...]


def per_rank_batch_size(config: Config, context: DistributedContext) -> int:
    global_batch = config.train.batch_size
    if global_batch % context.world_size:
        raise ConfigError(
            f"train.batch_size={global_batch} does not split evenly over {context.world_size} "
            f"processes; use a multiple of {context.world_size}"
        )
    return global_batch // context.world_size


def make_loader(
    dataset: Dataset[Batch], config: Config, context: DistributedContext, shuffle: bool
) -> tuple[DataLoader[Batch], DistributedSampler[Batch]]:
    # DistributedSampler deals rank r the indices r, r+W, r+2W, ... of one seeded permutation,
    # so batch b of every rank together is exactly batch b of a single-process run.
    sampler: DistributedSampler[Batch] = DistributedSampler(
        dataset,
        num_replicas=context.world_size,
        rank=context.rank,
        shuffle=shuffle,
        seed=config.seed,
    )
    loader = DataLoader(
        dataset,
        batch_size=per_rank_batch_size(config, context),
        sampler=sampler,
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler
