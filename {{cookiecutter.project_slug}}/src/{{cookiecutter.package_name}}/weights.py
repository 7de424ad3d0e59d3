"""Weights files in every format the project reads, as one `Weights` value; safetensors written.

- a checkpoint of this project (`last.pt`, `best.pt`) or an `export --format weights` file: a
  `torch.save`d dict whose "model" is the state_dict, with the run's "config" and "preprocessing";
- a plain PyTorch state_dict, as `torch.save(model.state_dict(), path)` writes it;
- a `.safetensors` file; `export --format safetensors` puts the config, the preprocessing and the
  class names in its metadata (JSON strings: the format allows only strings there).

Nothing here runs code from a file: `torch.load` with `weights_only=True`, and safetensors holds
tensors and strings only.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .errors import CheckpointDamagedError

SAFETENSORS_SUFFIX = ".safetensors"
# The metadata `export --format safetensors` writes; "format": "pt" as Hugging Face's files say.
METADATA_KEYS = ("config", "preprocessing", "class_names")
HEADER_LENGTH_BYTES = 8  # a safetensors file starts with its JSON header's length, little-endian
# Prefixes that wrappers add to parameter names (DDP's `module.`, torch.compile's `_orig_mod.`):
# a state_dict saved from a wrapped model still fits the bare one.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
WHAT_TO_PASS = (
    "pass a checkpoint (checkpoints/best.pt), an export (.pt or .safetensors) or a file that "
    "torch.save(model.state_dict()) wrote"
)


@dataclass(frozen=True)
class Weights:
    tensors: dict[str, torch.Tensor]  # parameter and buffer name -> tensor, on the CPU
    form: str  # "checkpoint" (this project's, or an export), "state_dict" or "safetensors"
    config: dict[str, Any] | None  # the config the weights were trained with, where known
    preprocessing: dict[str, Any] | None  # Preprocessing.to_dict(), where known

    @property
    def class_names(self) -> tuple[str, ...] | None:
        if self.preprocessing is None or "class_names" not in self.preprocessing:
            return None
        return tuple(str(name) for name in self.preprocessing["class_names"])


def is_safetensors(name: str) -> bool:
    return name.lower().endswith(SAFETENSORS_SUFFIX)


def parse_weights(data: bytes, source: str) -> Weights:
    """The weights in `data`, the bytes of the file `source` names (used in messages only);
    raises CheckpointDamagedError for bytes that hold no weights."""
    if is_safetensors(source):
        tensors, metadata = read_safetensors(data, source)
        return Weights(
            without_wrapper_prefixes(tensors), "safetensors",
            metadata.get("config"), metadata.get("preprocessing"),
        )  # fmt: skip
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise CheckpointDamagedError(
            f"{source} is damaged or not a weights file ({first_line(error)}); {WHAT_TO_PASS}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        return Weights(
            without_wrapper_prefixes(tensors_only(loaded["model"], source)), "checkpoint",
            loaded.get("config"), loaded.get("preprocessing"),
        )  # fmt: skip
    if isinstance(loaded, dict):
        tensors = tensors_only(loaded, source)
        return Weights(without_wrapper_prefixes(tensors), "state_dict", None, None)
    raise CheckpointDamagedError(
        f"{source} holds {describe_value(loaded)}, not weights; {WHAT_TO_PASS}"
    )


def tensors_only(values: dict[Any, Any], source: str) -> dict[str, torch.Tensor]:
    wrong = [key for key, value in values.items() if not isinstance(value, torch.Tensor)]
    if wrong or not values:
        example = f": {wrong[0]!r} is {describe_value(values[wrong[0]])}" if wrong else ""
        raise CheckpointDamagedError(
            f"{source} holds no state_dict of tensors{example}; {WHAT_TO_PASS}"
        )
    return {str(key): value for key, value in values.items()}


def without_wrapper_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    def bare(name: str) -> str:
        while name.startswith(WRAPPER_PREFIXES):
            name = next(name.removeprefix(p) for p in WRAPPER_PREFIXES if name.startswith(p))
        return name

    return {bare(name): tensor for name, tensor in tensors.items()}


def read_safetensors(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a safetensors file, and its metadata with the JSON values decoded."""
    try:
        tensors = safetensors.torch.load(data)
        length = int.from_bytes(data[:HEADER_LENGTH_BYTES], "little")
        header = json.loads(data[HEADER_LENGTH_BYTES : HEADER_LENGTH_BYTES + length])
        raw = header.get("__metadata__") or {}
        metadata = {key: json.loads(raw[key]) for key in METADATA_KEYS if key in raw}
    except (safetensors.SafetensorError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointDamagedError(
            f"{source} is damaged or not a safetensors file ({first_line(error)}); {WHAT_TO_PASS}"
        ) from None
    if not tensors:
        raise CheckpointDamagedError(f"{source} holds no tensors; {WHAT_TO_PASS}")
    return tensors, metadata


def safetensors_bytes(
    tensors: dict[str, torch.Tensor], config: dict[str, Any], preprocessing: dict[str, Any]
) -> bytes:
    """A safetensors file of `tensors`, with the config, preprocessing and class names."""
    metadata = {
        "format": "pt",
        "config": json.dumps(config),
        "preprocessing": json.dumps(preprocessing),
        "class_names": json.dumps(preprocessing["class_names"]),
    }
    # safetensors refuses views into a larger buffer: each tensor gets its own, on the CPU.
    owned = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}
    data: bytes = safetensors.torch.save(owned, metadata=metadata)
    return data


def load_safetensors_checkpoint(path: Path) -> dict[str, Any]:
    """A .safetensors file as a checkpoint's dict: "model", and "config" and "preprocessing"
    where its metadata has them (evaluate, predict and export read it so)."""
    if not path.is_file():
        raise CheckpointDamagedError(f"{path} does not exist; {WHAT_TO_PASS}")
    weights = parse_weights(path.read_bytes(), str(path))
    extras = {"config": weights.config, "preprocessing": weights.preprocessing}
    return {"model": weights.tensors, **{k: v for k, v in extras.items() if v is not None}}


def describe_value(value: object) -> str:
    return f"a {type(value).__name__}"


def first_line(error: BaseException) -> str:
    return str(error).strip().split("\n")[0].split(". ")[0][:120] or type(error).__name__
