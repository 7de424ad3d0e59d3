"""Models selected by `model.name`."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .cnn import SmallCNN
from .mlp import MLP

__all__ = ["MLP", "SmallCNN", "build_model"]


def build_model(
    config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    if config.name == "mlp":
        return MLP(input_shape, num_classes, config.width)
    return SmallCNN(input_shape[0], num_classes, config.width)
