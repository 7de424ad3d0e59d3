"""Datasets selected by `data.name`; each loader returns (train, validation) splits."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import TensorDataset

from ..config import DataConfig
from .mnist import load_mnist
from .synthetic import make_synthetic_splits

__all__ = ["build_datasets", "input_shape_and_classes"]


def build_datasets(config: DataConfig, seed: int) -> tuple[TensorDataset, TensorDataset]:
    if config.name == "mnist":
        return load_mnist(Path(config.root))
    return make_synthetic_splits(
        config.num_train, config.num_val, config.num_classes, config.image_size, seed
    )


def input_shape_and_classes(config: DataConfig) -> tuple[tuple[int, int, int], int]:
    """What a model must accept and predict for this dataset, known before loading it."""
    if config.name == "mnist":
        return (1, 28, 28), 10
    return (1, config.image_size, config.image_size), config.num_classes
