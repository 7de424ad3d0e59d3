"""Datasets selected by `data.name`: their train, validation and test splits, and the
preprocessing a checkpoint stores so that `predict` can repeat it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch.utils.data import TensorDataset

from ..config import DataConfig
from .mnist import MNIST_MEAN, MNIST_STD, load_mnist, load_split
from .preprocessing import Preprocessing
from .synthetic import make_synthetic_splits, make_synthetic_test_split

__all__ = ["Preprocessing", "Split", "build_datasets", "build_split", "preprocessing_for"]

Split = Literal["train", "val", "test"]


def build_datasets(config: DataConfig, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """The train and validation splits."""
    if config.name == "mnist":
        return load_mnist(Path(config.root))
    return make_synthetic_splits(
        config.num_train, config.num_val, config.num_classes, config.image_size, seed
    )


def build_split(config: DataConfig, seed: int, split: Split) -> TensorDataset:
    """One split; "test" is never trained or selected on (MNIST: the t10k files)."""
    if split == "test" and config.name == "mnist":
        return load_split(Path(config.root), "t10k")
    if split == "test":
        return make_synthetic_test_split(
            config.num_train, config.num_val, config.num_classes, config.image_size, seed
        )
    train, val = build_datasets(config, seed)
    return train if split == "train" else val


def preprocessing_for(config: DataConfig) -> Preprocessing:
    """Input shape, normalisation and class names, known before loading any data."""
    if config.name == "mnist":
        digits = tuple(str(digit) for digit in range(10))
        return Preprocessing(1, 28, 28, (MNIST_MEAN,), (MNIST_STD,), digits)
    # Synthetic samples are model inputs already (not pixels): mean 0 and std 1 leave them as
    # they are; predict them from float .npy/.pt arrays.
    names = tuple(f"class_{index}" for index in range(config.num_classes))
    size = config.image_size
    return Preprocessing(1, size, size, (0.0,), (1.0,), names)
