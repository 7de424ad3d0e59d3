"""A small convolutional classifier: two conv blocks, pooling to a 4x4 grid, one linear head."""

from __future__ import annotations

import torch
from torch import nn

POOLED_SIZE = 4


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
            nn.AdaptiveAvgPool2d(POOLED_SIZE),
        )
        self.head = nn.Linear(2 * width * POOLED_SIZE**2, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.flatten(self.features(images), start_dim=1))
        return logits
