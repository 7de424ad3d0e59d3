"""Fixtures the test modules share: the project's folder, the smoke config, in-process training,
runs trained once per session, a tiny CPU trainer, stand-ins for SIGTERM and for a crash, tiny
MNIST files and image folders. What they are built from lives in helpers.py; this file holds
fixtures only.

Train once, check many times. A test that needs a finished smoke run it does not itself make
asks for one instead of training it again:
- `reference_run(*overrides)`: the folder of the smoke config's run with those overrides,
  trained the first time any test asks for it (in any pytest-xdist worker) and shared by every
  test after that. Only read it: the straight run a resumed run is compared with, a checkpoint
  to evaluate. The session fails at its end if a test changed one.
- `reference_run_copy(name, *overrides)`: a copy of that run in tmp_path/name, to resume,
  damage or train on from.
- `shared_folders`: the same for anything else worth building once (helpers.SharedFolders), such
  as test_sweep.py's sweep.
A run that is the subject of the test (its exit code, its console, a stop part-way) is still
trained by the test, with `train_smoke` or `train.main`.

Each test process, and each process a test starts, computes with one torch thread
(OMP_NUM_THREADS, unless set already): the models are tiny, and a second thread per process only
spins, the more so on cores shared with another process (a second pytest-xdist worker, a
torchrun rank); test_train.py and test_training_knobs.py took 3.4 times the CPU time with two.
Runs compared bit for bit across processes must use the same number of threads, which this
keeps true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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
    CopyReferenceRun,
    CrashAtSync,
    MakeImageFolder,
    MakeTinyMnist,
    ReferenceRuns,
    SharedFolders,
    StopAtSync,
    TrainSmoke,
    WriteIdx,
    draw_shape,
    write_idx_file,
)

torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", "1")))


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


@pytest.fixture(scope="session")
def shared_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedFolders]:
    """Folders built once per session (helpers.SharedFolders); fails the session's end if a test
    changed one."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker has a folder of its own in this one
    folders = SharedFolders(root / "shared")
    yield folders
    changed = folders.changed()
    assert not changed, f"tests wrote into shared folders {changed}: change a copy instead"


@pytest.fixture(scope="session")
def reference_run(shared_folders: SharedFolders, smoke_config: Path) -> ReferenceRuns:
    """The folder of the smoke config's run with the given overrides, trained once per session;
    read it, never change it."""
    return ReferenceRuns(shared_folders, smoke_config)


@pytest.fixture
def reference_run_copy(reference_run: ReferenceRuns, tmp_path: Path) -> CopyReferenceRun:
    """A copy of reference_run(*overrides) in tmp_path/NAME, to resume or damage; returns it."""

    def copy(name: str, *overrides: str) -> Path:
        return Path(shutil.copytree(reference_run(*overrides), tmp_path / name))

    return copy


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
