"""A trained model loaded back from a checkpoint: what evaluate, predict and export start from.

The checkpoint carries its run's config and preprocessing, so the model is rebuilt exactly as it
was trained, whatever the config files say today.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint
from .config import Config, build_config
from .data import Preprocessing, preprocessing_for
from .errors import CheckpointDamagedError, ConfigError
from .models import build_model
from .storage import fetch_checkpoint
from .weights import is_safetensors, load_safetensors_checkpoint


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module  # in eval mode, on the CPU
    config: Config  # the training run's, with the command's overrides
    preprocessing: Preprocessing


def load_trained_model(location: str | Path, overrides: Sequence[str] = ()) -> TrainedModel:
    """Rebuild the model from a training checkpoint (last.pt, best.pt) or an exported weights
    file (.pt or .safetensors), a local path or a URL (s3://...); `overrides` (key=value) change
    the saved config, e.g. data.root=/elsewhere."""
    path = fetch_checkpoint(str(location))
    safetensors = is_safetensors(path.name)
    state = load_safetensors_checkpoint(path) if safetensors else load_checkpoint(path)
    if not {"model", "config"} <= set(state):
        raise CheckpointDamagedError(
            f"{path} holds no model weights and config; pass a file that training (checkpoints/"
            "last.pt or best.pt) or `export --format weights` or `--format safetensors` wrote"
        )
    config = build_config(state["config"], overrides)
    # Checkpoints from before preprocessing was saved: the dataset's own definition.
    saved = state.get("preprocessing")
    preprocessing = (
        Preprocessing.from_dict(saved) if saved is not None else preprocessing_for(config.data)
    )
    model = build_model(config.model, preprocessing.input_shape, len(preprocessing.class_names))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ConfigError(
            f"{path}: the weights do not fit model.name={config.model.name} "
            f"model.width={config.model.width}; leave model.* overrides out (training chose them)"
        ) from None
    return TrainedModel(model.eval(), config, preprocessing)
