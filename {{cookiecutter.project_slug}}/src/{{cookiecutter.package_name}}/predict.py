"""Predict classes: `python -m <package>.predict --checkpoint PATH INPUT ...`.

`--checkpoint` is a checkpoint or an exported `.pt` or `.safetensors` file. Inputs are image
files that Pillow reads (PNG, JPEG, ...) or `.npy`/`.pt` arrays of images. Image files and
uint8 arrays are pixels: they get exactly the preprocessing training used (size, channels,
normalisation; saved in the checkpoint). Float arrays are model inputs already, as the dataset
yields them (e.g. synthetic samples). Prints one JSON line per image:
`{"input": "digit.png", "class": 7, "label": "7", "probability": 0.98}`; array items are named
`file.npy[0]`, `file.npy[1]`, .... Every input is read and checked before anything is printed.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Preprocessing
from .data.images import read_pixels
from .errors import InputError, UnreadableImageError, run_command
from .inference import load_trained_model

ARRAY_SUFFIXES = (".npy", ".pt")
BATCH_SIZE = 256  # images per forward pass


def read_inputs(
    paths: Sequence[Path], preprocessing: Preprocessing
) -> list[tuple[str, torch.Tensor]]:
    """(name, model input of shape (C, H, W)) for every image in `paths`, in order."""
    inputs: list[tuple[str, torch.Tensor]] = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path} does not exist; pass image files or .npy/.pt arrays")
        if path.suffix.lower() in ARRAY_SUFFIXES:
            batch = array_to_inputs(read_array(path), path, preprocessing)
            inputs += [(f"{path}[{index}]", image) for index, image in enumerate(batch)]
        else:
            inputs.append((str(path), read_image(path, preprocessing)))
    return inputs


def read_image(path: Path, preprocessing: Preprocessing) -> torch.Tensor:
    """An image file, decoded as training's images were (data/images.py), then normalised."""
    channels, height, width = preprocessing.input_shape
    if channels not in (1, 3):
        raise InputError(f"{path}: the model takes {channels}-channel inputs; pass .npy arrays")
    try:
        pixels = read_pixels(path, channels, height, width)
    except UnreadableImageError as error:
        raise InputError(
            f"{path} is not an image Pillow can read ({error}); pass PNG or JPEG files, or "
            ".npy/.pt arrays"
        ) from None
    return preprocessing.pixels_to_input(torch.from_numpy(pixels).unsqueeze(0))[0]


def read_array(path: Path) -> torch.Tensor:
    try:
        if path.suffix.lower() == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).strip().split("\n")[0][:120]
        raise InputError(f"{path} is not a readable array file ({reason})") from None
    if not isinstance(loaded, torch.Tensor):
        raise InputError(f"{path} holds a {type(loaded).__name__}; save one tensor of images")
    return loaded


def array_to_inputs(array: torch.Tensor, path: Path, preprocessing: Preprocessing) -> torch.Tensor:
    """A batch (N, C, H, W) of model inputs from pixels (uint8) or ready inputs (floats)."""
    channels, height, width = preprocessing.input_shape
    batch = as_batch(array, preprocessing.input_shape)
    if batch is None:
        one_channel = f", (N, {height}, {width}) or ({height}, {width})" if channels == 1 else ""
        raise InputError(
            f"{path} holds an array of shape {tuple(array.shape)}; this model takes images of "
            f"shape ({channels}, {height}, {width}): pass (N, {channels}, {height}, {width}), "
            f"({channels}, {height}, {width}){one_channel}"
        )
    if batch.dtype == torch.uint8:
        return preprocessing.pixels_to_input(batch)
    if batch.is_floating_point():
        return batch.to(torch.float32)
    raise InputError(
        f"{path} holds {batch.dtype} values; pass uint8 pixels (0-255) or float model inputs"
    )


def as_batch(array: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor | None:
    """`array` as (N, C, H, W), if its shape is one of the accepted ones; else None."""
    channels, height, width = shape
    if tuple(array.shape[-2:]) != (height, width):
        return None
    if array.ndim == 4 and array.shape[1] == channels:
        return array
    if array.ndim == 3 and array.shape[0] == channels:
        return array.unsqueeze(0)
    if array.ndim == 3 and channels == 1:
        return array.unsqueeze(1)
    if array.ndim == 2 and channels == 1:
        return array.reshape(1, 1, height, width)
    return None


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, probability) of the most likely class of each input, on the CPU."""
    probabilities = torch.cat([model(chunk).softmax(dim=1) for chunk in inputs.split(BATCH_SIZE)])
    best, classes = probabilities.max(dim=1)
    return classes, best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict the class of images.")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="e.g. .../best.pt, model.safetensors, or s3://bucket/run/checkpoints/best.pt",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or arrays")
    arguments = parser.parse_args(argv)

    def predict_all() -> None:
        trained = load_trained_model(arguments.checkpoint)
        named = read_inputs(arguments.inputs, trained.preprocessing)
        if not named:
            raise InputError("the inputs hold no images (every array was empty)")
        classes, probabilities = predict(trained.model, torch.stack([x for _, x in named]))
        names = trained.preprocessing.class_names
        rows = zip(named, classes.tolist(), probabilities.tolist(), strict=True)
        for (name, _), index, probability in rows:
            line = {"input": name, "class": index, "label": names[index]}
            print(json.dumps({**line, "probability": probability}))

    return run_command("predict", predict_all)


if __name__ == "__main__":
    sys.exit(main())
