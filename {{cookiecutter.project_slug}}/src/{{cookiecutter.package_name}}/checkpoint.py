"""Checkpoints that a crash cannot corrupt and that resume a run exactly.

A checkpoint holds model, optimizer, every RNG state, the position in training (epoch, batches
done in that epoch, global step), the per-epoch history and the config. It is written to a temp
file in the same folder, flushed to disk, then renamed over the old one: a kill at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, ConfigError


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches finished in the unfinished epoch
    step: int = 0  # optimizer steps finished, counted from 1 in metrics.jsonl
    current_epoch_losses: list[float] = field(default_factory=list)
    epoch_mean_losses: list[float] = field(default_factory=list)
    best_val_loss: float = math.inf


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)  # atomic on POSIX and Windows
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint from elsewhere cannot run code when loaded.
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def capture_rng_states() -> dict[str, Any]:
    """Every global RNG, in forms `torch.load(weights_only=True)` accepts."""
    # The legacy tuple form: ("MT19937", keys, position, has_gauss, cached_gaussian).
    numpy_state = typing.cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    _, numpy_keys, numpy_position, numpy_has_gauss, numpy_gauss = numpy_state
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            torch.from_numpy(numpy_keys.copy()),
            int(numpy_position),
            int(numpy_has_gauss),
            float(numpy_gauss),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", numpy_keys.numpy(), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def resolve_resume(config: Config) -> Path | None:
    last = Path(config.output_dir) / "checkpoints" / "last.pt"
    if config.resume == "":
        return None
    if config.resume == "auto":
        return last if last.is_file() else None
    path = Path(config.resume)
    if not path.is_file():
        raise ConfigError(
            f"resume={config.resume!r}: no such checkpoint; use resume=auto or a path"
        )
    return path
