"""Checkpoints that a crash cannot corrupt and that resume a run exactly.

`Checkpointer` holds one registry of the parts a run saves (model, optimizer, scheduler, gradient
scaler, every RNG, the training state); save and load both read it, so a part cannot be saved but
not restored. Files are written whole (atomic_files.py): a kill or a full disk at any moment
leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import io
import pickle
import random
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .atomic_files import write_bytes
from .errors import CheckpointDamagedError, ConfigError
from .guards import check_finite_weights
from .run_files import BEST, RunFiles, other_checkpoint


class Stateful(Protocol):
    """What PyTorch's modules, optimizers, schedulers and scalers already offer."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


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
        run: RunFiles,
        parts: Mapping[str, Stateful],
        *,
        weights: nn.Module,
        describe: Callable[[], dict[str, Any]],
        before_save: Callable[[], None],
        enabled: bool,
        publish: Callable[[Path], None] = lambda path: None,
    ) -> None:
        self.run = run
        self.parts = parts
        self.weights = weights
        self.describe = describe
        self.before_save = before_save  # e.g. flush metrics.jsonl, so it covers every saved step
        self.enabled = enabled
        self.publish = publish  # a remote run folder uploads each file once it is complete

    def save(self, *, last: bool, best: bool, epoch: int) -> None:
        """Write `last.pt` and/or `best.pt`, both from one snapshot of the parts."""
        # Weights gone NaN/inf between two checks of the loss must never be saved as good ones.
        check_finite_weights(list(self.weights.parameters()), epoch)
        paths = [path for path, wanted in ((self.run.last, last), (self.run.best, best)) if wanted]
        if not (self.enabled and paths):
            return
        self.before_save()
        # Built once for both files: copying weights and RNG states costs time.
        state = {name: part.state_dict() for name, part in self.parts.items()}
        state.update(self.describe())
        for path in paths:
            save_checkpoint(state, path)
            self.publish(path)

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
            try:
                part.load_state_dict(state[name])
            except (RuntimeError, ValueError, KeyError) as error:
                # torch's first line only says that loading failed; the next one says what.
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                detail = (lines[1:] or lines or [type(error).__name__])[0][:200]
                raise ConfigError(
                    f"checkpoint {path}: its {name} does not fit this config ({detail}); resume "
                    "with the settings it was trained with (its run's config.yaml), or start over "
                    "in a new output_dir"
                ) from None
        return state


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    # Serialised in memory first: torch.save reports a full disk as an opaque RuntimeError
    # ("unexpected pos"), a plain write as an OSError that names the cause.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getbuffer())


def load_checkpoint(path: Path, resuming: bool = False) -> dict[str, Any]:
    """A checkpoint's contents; `resuming` makes a damaged file's hint about resuming."""
    if path.is_dir():
        # The checkpoints folder, or the run folder above it.
        inside = next((p for p in (path / BEST, RunFiles(path).best) if p.is_file()), None)
        example = inside or f"outputs/<name>/<run>/checkpoints/{BEST}"
        raise CheckpointDamagedError(
            f"checkpoint {path} is a folder; pass a file such as {example}"
        )
    if not path.is_file():
        raise CheckpointDamagedError(
            f"checkpoint {path} does not exist; pass a file such as "
            f"outputs/<name>/<run>/checkpoints/{BEST}"
        )
    try:
        # weights_only: a checkpoint from elsewhere cannot run code when loaded.
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    # KeyError: a short file that is no zip archive reaches the legacy pickle reader, which
    # reads its first bytes as an opcode that does not exist (b"hello": KeyError 101).
    except (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as error:
        # torch says "PytorchStreamReader failed reading zip archive" for a file cut short.
        reason = str(error).strip().split(". ")[0][:120] or type(error).__name__
        if isinstance(error, KeyError):  # its text is the opcode's number, which helps nobody
            reason = "not a file that torch.save wrote"
        other = other_checkpoint(path)
        if resuming:
            instead = f" (e.g. resume={other})" if other else ""
            fix = f"resume from another one{instead} or start over in a new output_dir"
        elif other is not None:
            fix = f"use the run's other checkpoint ({other}) or train again"
        else:
            fix = "pass a file that training or `export --format weights` wrote"
        raise CheckpointDamagedError(
            f"checkpoint {path} is damaged or not one of this project's ({reason}); {fix}"
        ) from None
    return state
