"""Datasets selected by `data.name`: their train, validation and test splits, and the
preprocessing a checkpoint stores so that `predict` can repeat it.

Each dataset is a module here with two functions, `build_split` and `preprocessing`, registered
in DATASETS below. A new dataset is a new module and one line in DATASETS; no other file changes.
"""

from __future__ import annotations

from typing import Literal, Protocol

from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ConfigError
from . import image_folder, mnist, synthetic
from .loaders import Batch
from .preprocessing import Preprocessing

__all__ = [
    "DATASETS",
    "DatasetModule",
    "Preprocessing",
    "Split",
    "build_datasets",
    "build_split",
    "preprocessing_for",
    "registered_dataset",
]

Split = Literal["train", "val", "test"]  # "test" is never trained or selected on


class DatasetModule(Protocol):
    """What a dataset module defines; mypy checks every entry of DATASETS against it."""

    def build_split(self, config: DataConfig, seed: int, split: Split) -> Dataset[Batch]:
        """(model input, label) pairs of one split; the same for the same config and seed."""
        ...

    def preprocessing(self, config: DataConfig) -> Preprocessing:
        """Input shape, pixel normalisation and class names, saved with every checkpoint."""
        ...


DATASETS: dict[str, DatasetModule] = {
    "synthetic": synthetic,
    "mnist": mnist,
    "imagefolder": image_folder,
}


def registered_dataset(name: str) -> DatasetModule:
    if name not in DATASETS:
        raise ConfigError(
            f"data.name={name!r} is not a registered dataset; choose one of {sorted(DATASETS)}, "
            "or add a module to data/ and a line to DATASETS in data/__init__.py"
        )
    return DATASETS[name]


def build_split(config: DataConfig, seed: int, split: Split) -> Dataset[Batch]:
    return registered_dataset(config.name).build_split(config, seed, split)


def build_datasets(config: DataConfig, seed: int) -> tuple[Dataset[Batch], Dataset[Batch]]:
    """The train and validation splits."""
    return build_split(config, seed, "train"), build_split(config, seed, "val")


def preprocessing_for(config: DataConfig) -> Preprocessing:
    return registered_dataset(config.name).preprocessing(config)
