"""What turns an image into the model's input, one definition for training and prediction.

A checkpoint stores its run's `Preprocessing` (shape, normalisation, class names), so `predict`
applies exactly what training saw, even after the dataset's code or config has changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Preprocessing:
    channels: int
    height: int
    width: int
    # Per channel, for pixels scaled to [0, 1]: input = (pixel / 255 - mean) / std.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def pixels_to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels of shape (N, C, H, W) -> the float32 input the model was trained on."""
        return self.normalise_(pixels.to(torch.float32, copy=True))

    def normalise_(self, pixels: torch.Tensor) -> torch.Tensor:
        """float32 pixel values (0-255) of shape (N, C, H, W) -> inputs, in place.

        In place because a data loader runs this on every batch, and a temporary of a batch's
        size costs as much time as the arithmetic.
        """
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return pixels.div_(255.0).sub_(mean).div_(std)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers: `torch.load(weights_only=True)` reads them back."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        return cls(
            channels=int(values["channels"]),
            height=int(values["height"]),
            width=int(values["width"]),
            mean=tuple(float(value) for value in values["mean"]),
            std=tuple(float(value) for value in values["std"]),
            class_names=tuple(str(name) for name in values["class_names"]),
        )
