"""Models selected by `model.name`: each is a module here with a `build` function and a `HEAD`,
registered in MODELS below. A new model is a new module and one line in MODELS; no other file
changes."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from . import cnn, mlp
from .cnn import SmallCNN
from .mlp import MLP

__all__ = ["MLP", "MODELS", "ModelModule", "SmallCNN", "build_model", "registered_model"]


class ModelModule(Protocol):
    """What a model module defines; mypy checks every entry of MODELS against it."""

    # Prefixes of the names of the parameters that map features to classes, e.g. ("head",):
    # fine-tuning (fine_tuning.py) re-initialises them when the classes change, and
    # model.freeze=backbone trains only them.
    HEAD: tuple[str, ...]

    def build(
        self, config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
    ) -> nn.Module: ...


MODELS: dict[str, ModelModule] = {
    "cnn": cnn,
    "mlp": mlp,
}


def registered_model(name: str) -> ModelModule:
    if name not in MODELS:
        raise ConfigError(
            f"model.name={name!r} is not a registered model; choose one of {sorted(MODELS)}, "
            "or add a module to models/ and a line to MODELS in models/__init__.py"
        )
    return MODELS[name]


def build_model(
    config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """The model `config.name` names, for inputs of `input_shape` (C, H, W)."""
    return registered_model(config.name).build(config, input_shape, num_classes)
