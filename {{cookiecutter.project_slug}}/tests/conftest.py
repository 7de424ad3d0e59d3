"""Fixtures the test modules share: the project's folder, the smoke config, in-process training,
a tiny CPU trainer, and stand-ins for SIGTERM and for a crash."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Protocol

import pytest
import torch

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.distributed import DistributedContext
from {{ cookiecutter.package_name }}.models import SmallCNN
from {{ cookiecutter.package_name }}.preemption import StopRequest
from {{ cookiecutter.package_name }}.train import run
from {{ cookiecutter.package_name }}.trainer import Trainer, build_scheduler


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
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


@pytest.fixture
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
