"""Checkpoints that a crash cannot corrupt and that resume a run exactly.

`Checkpointer` holds one registry of the parts a run saves (model, optimizer, scheduler, gradient
scaler, every RNG, the training state); save and load both read it, so a part cannot be saved but
not restored. A file is written to a temp file in the same folder, flushed to disk, then renamed
over the old one: a kill at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
import tempfile
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .guards import check_finite_weights


class Stateful(Protocol):
    """What PyTorch's modules, optimizers, schedulers and scalers already offer."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class TrainState:
    """Where training stands, and the history the guards and early stopping need."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # loader batches (micro-batches) finished in the unfinished epoch
    step: int = 0  # optimizer steps finished, counted from 1 in metrics.jsonl
    current_epoch_losses: list[float] = field(default_factory=list)
    epoch_mean_losses: list[float] = field(default_factory=list)
    best_val_loss: float = math.inf  # the lowest so far: best.pt holds those weights
    # Early stopping: the loss an evaluation must beat by `early_stop_min_delta`, and how many
    # evaluations in a row have not.
    early_stop_reference: float = math.inf
    evaluations_without_improvement: int = 0

    def advance(self, batches: int) -> None:
        """One optimizer step over `batches` loader batches."""
        self.step += 1
        self.batches_done += batches

    def epoch_loss_so_far(self) -> float:
        return sum(self.current_epoch_losses) / len(self.current_epoch_losses)

    def close_epoch(self) -> None:
        self.epoch_mean_losses.append(self.epoch_loss_so_far())
        self.epoch += 1
        self.batches_done, self.current_epoch_losses = 0, []

    def epoch_means(self) -> list[float]:
        """Mean loss of every epoch trained in, the unfinished one too (after train.max_steps)."""
        partial = [self.epoch_loss_so_far()] if self.current_epoch_losses else []
        return [*self.epoch_mean_losses, *partial]

    def record_evaluation(self, val_loss: float, train_config: TrainConfig) -> bool:
        """Keep score for best.pt and early stopping; True when this is the best so far."""
        if val_loss < self.early_stop_reference - train_config.early_stop_min_delta:
            self.early_stop_reference, self.evaluations_without_improvement = val_loss, 0
        else:
            self.evaluations_without_improvement += 1
        is_best = val_loss < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_loss)
        return is_best

    def out_of_patience(self, train_config: TrainConfig) -> bool:
        """Early stopping is due: that many evaluations in a row without a real gain."""
        patience = train_config.early_stop_patience
        return patience > 0 and self.evaluations_without_improvement >= patience

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


class GlobalRng:
    """Python's, NumPy's and torch's global RNGs (and CUDA's), in forms `weights_only` accepts."""

    def state_dict(self) -> dict[str, Any]:
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

    def load_state_dict(self, states: dict[str, Any]) -> None:
        random.setstate(states["python"])
        numpy_keys, position, has_gauss, gauss = states["numpy"]
        np.random.set_state(("MT19937", numpy_keys.numpy(), position, has_gauss, gauss))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer:
    """Saves and restores one fixed set of parts: the `parts` registry is all save and load read.

    Every rank calls `save` (each checks its weights, so all stop together on NaN); only the main
    process writes. `describe` adds what a checkpoint carries for people and tools but never
    restores (the config, the run manifest).
    """

    def __init__(
        self,
        folder: Path,
        parts: Mapping[str, Stateful],
        *,
        weights: nn.Module,
        describe: Callable[[], dict[str, Any]],
        before_save: Callable[[], None],
        enabled: bool,
    ) -> None:
        self.folder = folder
        self.parts = parts
        self.weights = weights
        self.describe = describe
        self.before_save = before_save  # e.g. flush metrics.jsonl, so it covers every saved step
        self.enabled = enabled

    def save(self, *, last: bool, best: bool, epoch: int) -> None:
        """Write `last.pt` and/or `best.pt`, both from one snapshot of the parts."""
        # Weights gone NaN/inf between two checks of the loss must never be saved as good ones.
        check_finite_weights(list(self.weights.parameters()), epoch)
        names = [name for name, wanted in (("last.pt", last), ("best.pt", best)) if wanted]
        if not (self.enabled and names):
            return
        self.before_save()
        # Built once for both files: copying weights and RNG states costs time.
        state = {name: part.state_dict() for name, part in self.parts.items()}
        state.update(self.describe())
        for name in names:
            save_checkpoint(state, self.folder / name)

    def load(self, path: Path) -> dict[str, Any]:
        """Restore every part from `path`; returns all it holds (the described entries too)."""
        state = load_checkpoint(path, resuming=True)
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise ConfigError(
                f"checkpoint {path} has no {', '.join(missing)}: another version of this project "
                "wrote it; start over in a new output_dir, or resume from a newer file"
            )
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        return state


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


class CheckpointDamagedError(RuntimeError):
    """A checkpoint is missing or cannot be read; the message names it and what to do instead."""


def load_checkpoint(path: Path, resuming: bool = False) -> dict[str, Any]:
    """A checkpoint's contents; `resuming` makes a damaged file's hint about resuming."""
    if not path.is_file():
        raise CheckpointDamagedError(
            f"checkpoint {path} does not exist; pass a file such as "
            "outputs/<name>/<run>/checkpoints/best.pt"
        )
    try:
        # weights_only: a checkpoint from elsewhere cannot run code when loaded.
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        # torch says "PytorchStreamReader failed reading zip archive" for a file cut short.
        reason = str(error).strip().split(". ")[0][:120] or type(error).__name__
        other = path.with_name("last.pt" if path.name == "best.pt" else "best.pt")
        if resuming:
            fix = f"resume from another one (e.g. resume={other}) or start over in a new output_dir"
        elif path.name in ("best.pt", "last.pt"):
            fix = f"use the run's other checkpoint ({other}) or train again"
        else:
            fix = "pass a file that training or `export --format weights` wrote"
        raise CheckpointDamagedError(
            f"checkpoint {path} is damaged or not one of this project's ({reason}); {fix}"
        ) from None
    return state
