"""Fixtures the test modules share: the project's folder, the smoke config, in-process training,
a tiny CPU trainer, stand-ins for SIGTERM and for a crash, tiny MNIST files and image folders.
What they are built from lives in helpers.py; this file holds fixtures only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.distributed import DistributedContext
from {{ cookiecutter.package_name }}.models import SmallCNN
from {{ cookiecutter.package_name }}.preemption import StopRequest
from {{ cookiecutter.package_name }}.train import run
from {{ cookiecutter.package_name }}.trainer import Trainer, build_scheduler

from helpers import (
    SHAPES,
    CrashAtSync,
    MakeImageFolder,
    MakeTinyMnist,
    StopAtSync,
    TrainSmoke,
    WriteIdx,
    draw_shape,
    write_idx_file,
)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_config(project_root: Path) -> Path:
    return project_root / "configs" / "smoke.yaml"


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


@pytest.fixture(scope="session")
def stop_at_sync() -> type[StopAtSync]:
    return StopAtSync


@pytest.fixture
def crash_at_sync() -> type[CrashAtSync]:
    return CrashAtSync


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
