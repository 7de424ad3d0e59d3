"""Fixtures the test modules share: the project's folder, the smoke config, in-process training,
a tiny CPU trainer, stand-ins for SIGTERM and for a crash, tiny MNIST files and image folders."""

from __future__ import annotations

import gzip
import signal
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.distributed import DistributedContext
from {{ cookiecutter.package_name }}.models import SmallCNN
from {{ cookiecutter.package_name }}.preemption import StopRequest
from {{ cookiecutter.package_name }}.train import run
from {{ cookiecutter.package_name }}.trainer import Trainer, build_scheduler


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_config(project_root: Path) -> Path:
    return project_root / "configs" / "smoke.yaml"


class TrainSmoke(Protocol):
    def __call__(self, name: str, *overrides: str, stop: StopRequest | None = None) -> Path: ...


@pytest.fixture
def train_smoke(smoke_config: Path, tmp_path: Path) -> TrainSmoke:
    """Train the smoke config in this process into tmp_path/NAME (with overrides); returns it."""

    def train(name: str, *overrides: str, stop: StopRequest | None = None) -> Path:
        output_dir = tmp_path / name
        run(load_config(smoke_config, [f"output_dir={output_dir}", *overrides]), stop)
        return output_dir

    return train


@pytest.fixture
def small_trainer() -> Trainer:
    """A tiny CNN with AdamW (lr 0.1) on the CPU, full precision, one process, no clipping."""
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10, width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, "constant", total_steps=10),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        context=DistributedContext(),
    )


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


@pytest.fixture(scope="session")
def stop_at_sync() -> type[StopAtSync]:
    return StopAtSync


class CrashAtSync(StopAtSync):
    """Crashes the run at the n-th host sync, before anything that sync would save, as a kill
    would (but a kill leaves run.json at "running"; this crash is recorded as failed)."""

    def at_that_sync(self) -> None:
        raise RuntimeError("simulated crash at a host sync")


@pytest.fixture
def crash_at_sync() -> type[CrashAtSync]:
    return CrashAtSync


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


@pytest.fixture
def write_idx() -> WriteIdx:
    return write_idx_file


@pytest.fixture
def make_tiny_mnist() -> MakeTinyMnist:
    """Writes MNIST's four files with random pixels: 24 training images (22 train, 2
    validation) and 4 test images; returns the folder."""

    def make(root: Path, compressed: bool = True) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        suffix = ".gz" if compressed else ""
        rng = np.random.default_rng(0)
        for prefix, count in (("train", 24), ("t10k", 4)):
            images = rng.integers(0, 256, (count, 28, 28))
            write_idx_file(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
            labels = rng.integers(0, 10, (count,))
            write_idx_file(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        return root

    return make


class MakeImageFolder(Protocol):
    def __call__(self, root: Path, per_class: int = 40, split_folders: bool = False) -> Path: ...


SHAPES = ("circle", "cross", "square")  # the class folders make_image_folder writes


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
    else:
        draw.line((x - half, y, x + half, y), fill=ink, width=2)
        draw.line((x, y - half, x, y + half), fill=ink, width=2)
    return image


@pytest.fixture
def make_image_folder() -> MakeImageFolder:
    """Writes `per_class` PNGs of each of three shapes into a folder per class (with
    split_folders: a fifth of them into val/, the rest into train/); returns the folder."""

    def make(root: Path, per_class: int = 40, split_folders: bool = False) -> Path:
        generator = np.random.default_rng(0)
        for shape in SHAPES:
            for index in range(per_class):
                split = ("val" if index % 5 == 0 else "train") if split_folders else ""
                folder = root / split / shape
                folder.mkdir(parents=True, exist_ok=True)
                draw_shape(shape, generator).save(folder / f"{index:03d}.png")
        return root

    return make
