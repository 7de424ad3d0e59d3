"""DataLoaders whose order depends only on (seed, epoch) and which split each global batch
evenly across ranks, so N processes see exactly the samples one process would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import Config
from ..distributed import DistributedContext
from ..errors import ConfigError

Batch = tuple[torch.Tensor, ...]  # (inputs, labels), as TensorDataset yields them


def per_rank_batch_size(config: Config, context: DistributedContext) -> int:
    global_batch = config.train.batch_size
    if global_batch % context.world_size:
        raise ConfigError(
            f"train.batch_size={global_batch} does not split evenly over {context.world_size} "
            f"processes; use a multiple of {context.world_size}"
        )
    return global_batch // context.world_size


class EpochIndexSampler(DistributedSampler[Batch]):
    """DistributedSampler's order, as (epoch, index) pairs: a dataset that draws a sample's
    augmentation from (seed, epoch, index) gets the same sample in any worker process and after
    a resume, since neither changes the pair."""

    def __iter__(self) -> Iterator[Any]:
        return ((self.epoch, index) for index in super().__iter__())


def finished_batch(batch: Any) -> Any:
    """The collate step for a batch that `__getitems__` finished: it stays as it is."""
    return batch


def make_loader(
    dataset: Dataset[Batch], config: Config, context: DistributedContext, shuffle: bool
) -> tuple[DataLoader[Batch], DistributedSampler[Batch]]:
    # DistributedSampler deals rank r the indices r, r+W, r+2W, ... of one seeded permutation,
    # so batch b of every rank together is exactly batch b of a single-process run.
    # A dataset that `reads_whole_batches` (data/images.py) gets each batch's (epoch, index)
    # keys in one `__getitems__` call and returns the finished batch: nothing to collate.
    whole_batches = getattr(dataset, "reads_whole_batches", False)
    sampler: DistributedSampler[Batch] = (
        EpochIndexSampler if whole_batches else DistributedSampler
    )(
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
        collate_fn=finished_batch if whole_batches else None,
    )
    return loader, sampler
