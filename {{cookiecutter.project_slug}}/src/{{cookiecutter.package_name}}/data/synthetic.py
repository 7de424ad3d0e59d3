"""An offline, image-shaped dataset that a small model learns in seconds.

Each class has a fixed random "prototype" image; a sample is its class prototype plus Gaussian
noise. The same seed always gives the same tensors, on any machine.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from ..config import DataConfig
from .preprocessing import Preprocessing

NOISE_SCALE = 1.5  # high enough that the first epoch is not already perfect


def make_synthetic_splits(
    num_train: int, num_val: int, num_classes: int, image_size: int, seed: int
) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation splits drawn from one distribution (shared prototypes)."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, 1, image_size, image_size, generator=generator)
    total = num_train + num_val
    labels = torch.randint(0, num_classes, (total,), generator=generator)
    noise = torch.randn(total, 1, image_size, image_size, generator=generator)
    images = prototypes[labels] + NOISE_SCALE * noise
    train = TensorDataset(images[:num_train], labels[:num_train])
    val = TensorDataset(images[num_train:], labels[num_train:])
    return train, val


def make_synthetic_test_split(
    num_train: int, num_val: int, num_classes: int, image_size: int, seed: int
) -> TensorDataset:
    """`num_val` more samples of the same distribution, drawn after train and validation (which
    therefore stay exactly as they were)."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, 1, image_size, image_size, generator=generator)
    total = num_train + num_val
    torch.randint(0, num_classes, (total,), generator=generator)  # train and validation's draws
    torch.randn(total, 1, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (num_val,), generator=generator)
    noise = torch.randn(num_val, 1, image_size, image_size, generator=generator)
    return TensorDataset(prototypes[labels] + NOISE_SCALE * noise, labels)


def build_split(config: DataConfig, seed: int, split: str) -> TensorDataset:
    sizes = (config.num_train, config.num_val, config.num_classes, config.image_size, seed)
    if split == "test":
        return make_synthetic_test_split(*sizes)
    train, val = make_synthetic_splits(*sizes)
    return train if split == "train" else val


def preprocessing(config: DataConfig) -> Preprocessing:
    # Synthetic samples are model inputs already (not pixels): mean 0 and std 1 leave them as
    # they are; predict them from float .npy/.pt arrays.
    names = tuple(f"class_{index}" for index in range(config.num_classes))
    size = config.image_size
    return Preprocessing(1, size, size, (0.0,), (1.0,), names)
