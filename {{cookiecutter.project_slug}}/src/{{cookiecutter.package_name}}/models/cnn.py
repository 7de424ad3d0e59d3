"""A small convolutional classifier: two conv blocks, pooling to a 4x4 grid, one linear head."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig

POOLED_SIZE = 4
# The parameters that map features to classes (prefixes of their names); all others are the
# backbone. Fine-tuning re-initialises the head for new classes; model.freeze=backbone trains
# the head alone.
HEAD: tuple[str, ...] = ("head",)


def pooling_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) weights: row i averages the cells adaptive pooling puts in bin i."""
    cells = torch.arange(size, device=like.device)
    bin_index = torch.arange(bins, device=like.device)
    starts = bin_index * size // bins
    ends = ((bin_index + 1) * size + bins - 1) // bins
    inside = (cells >= starts[:, None]) & (cells < ends[:, None])
    return (inside / (ends - starts)[:, None]).to(like.dtype)


class GridAvgPool2d(nn.Module):
    """`nn.AdaptiveAvgPool2d(size)`, with a deterministic backward pass on CUDA too.

    PyTorch's adaptive pooling has no deterministic CUDA backward: under `train.deterministic`
    it raises. Equal windows use plain average pooling (also the fastest kernel on a CPU);
    unequal ones (MNIST's 14x14 maps) average by two small matrix products on a GPU.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % self.size == 0 and width % self.size == 0:
            return nn.functional.avg_pool2d(images, (height // self.size, width // self.size))
        if images.is_cuda and torch.are_deterministic_algorithms_enabled():
            rows = pooling_matrix(height, self.size, images)
            columns = pooling_matrix(width, self.size, images)
            return rows @ images @ columns.T
        return nn.functional.adaptive_avg_pool2d(images, self.size)


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
            nn.ReLU(),
            # A fixed 4x4 grid keeps coarse layout (1x1 pooling throws away where a pattern is)
            # and makes the head independent of the input's height and width.
            GridAvgPool2d(POOLED_SIZE),
        )
        self.head = nn.Linear(2 * width * POOLED_SIZE**2, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.flatten(self.features(images), start_dim=1))
        return logits


def build(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> SmallCNN:
    return SmallCNN(input_shape[0], num_classes, config.width)
