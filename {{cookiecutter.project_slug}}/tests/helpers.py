"""Helpers the test modules share (conftest.py holds only fixtures): reading a run's records,
stand-ins for SIGTERM and for a crash, tiny MNIST files and image folders."""

from __future__ import annotations

import gzip
import signal
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw

from {{ cookiecutter.package_name }}.preemption import StopRequest
from {{ cookiecutter.package_name }}.run_files import RunFiles


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """Every record of the run's metrics.jsonl, in order."""
    return RunFiles(run).read_metrics()


def step_losses(run: Path) -> list[float]:
    """The loss of every optimizer step of the run in `run`, in order."""
    return RunFiles(run).step_losses()


class TrainSmoke(Protocol):
    def __call__(self, name: str, *overrides: str, stop: StopRequest | None = None) -> Path: ...


class StopAtSync(StopRequest):
    """Acts as if SIGTERM arrived just before the n-th host sync (the real signal has its own test).

    The loop reads `requested` once per sync: every `train.log_every` steps, at each epoch's end,
    and wherever an evaluation or checkpoint is due.
    """

    def __init__(self, sync: int) -> None:
        super().__init__()
        self.remaining = sync

    @property
    def requested(self) -> bool:
        self.remaining -= 1
        if self.remaining == 0:
            self.at_that_sync()
        return self.signal_number is not None

    def at_that_sync(self) -> None:
        self.signal_number = signal.SIGTERM


class CrashAtSync(StopAtSync):
    """Crashes the run at the n-th host sync, before anything that sync would save, as a kill
    would (but a kill leaves run.json at "running"; this crash is recorded as failed)."""

    def at_that_sync(self) -> None:
        raise RuntimeError("simulated crash at a host sync")


class WriteIdx(Protocol):
    def __call__(self, path: Path, array: np.ndarray) -> None: ...


class MakeTinyMnist(Protocol):
    def __call__(self, root: Path, compressed: bool = True) -> Path: ...


def write_idx_file(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file, gzipped when `path` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


class MakeImageFolder(Protocol):
    def __call__(self, root: Path, per_class: int = 40, split_folders: bool = False) -> Path: ...


SHAPES = ("circle", "cross", "square")  # the class folders make_image_folder writes
# Other shapes of the same drawing: a source that fine-tuning to SHAPES can learn from.
OTHER_SHAPES = ("block", "ring", "saltire", "triangle")


def draw_shape(shape: str, generator: np.random.Generator) -> Image.Image:
    """A 24x24 RGB picture: a shape of random colour, size and place on a random dark ground."""
    ground = tuple(int(value) for value in generator.integers(0, 90, 3))
    ink = tuple(int(value) for value in generator.integers(150, 256, 3))
    image = Image.new("RGB", (24, 24), ground)
    draw = ImageDraw.Draw(image)
    half = int(generator.integers(6, 10))
    x, y = (int(value) for value in generator.integers(half + 1, 23 - half, 2))
    box = (x - half, y - half, x + half, y + half)
    if shape == "circle":
        draw.ellipse(box, fill=ink)
    elif shape == "square":
        draw.rectangle(box, outline=ink, width=2)
    elif shape == "block":
        draw.rectangle(box, fill=ink)
    elif shape == "ring":
        draw.ellipse(box, outline=ink, width=2)
    elif shape == "triangle":
        corners = [(x, y - half), (x - half, y + half), (x + half, y + half)]
        draw.polygon(corners, outline=ink, width=2)
    elif shape == "saltire":
        draw.line((x - half, y - half, x + half, y + half), fill=ink, width=2)
        draw.line((x - half, y + half, x + half, y - half), fill=ink, width=2)
    else:
        draw.line((x - half, y, x + half, y), fill=ink, width=2)
        draw.line((x, y - half, x, y + half), fill=ink, width=2)
    return image
