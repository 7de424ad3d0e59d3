"""A two-layer perceptron over flattened pixels: the simplest baseline worth beating."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig

# The last linear layer maps hidden units to classes: the head (see models/__init__.py).
HEAD: tuple[str, ...] = ("layers.3",)


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), width),
            nn.ReLU(),
            nn.Linear(width, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(images)
        return logits


def build(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> MLP:
    return MLP(input_shape, num_classes, config.width)
