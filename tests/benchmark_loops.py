"""Three ways to train the baked project's SmallCNN on its synthetic data, for the benchmark.

Each function trains for `steps` optimizer steps at `batch_size` on `device` ("cpu" or "cuda")
and returns the time at which each training batch was fetched; `benchmark_stats.per_step_seconds`
turns those into a time per step. Start-up, the one validation pass and the one checkpoint fall
outside those times, and so does building the dataset (it grows with the number of steps).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

IMAGE_SIZE, NUM_CLASSES, WIDTH, LEARNING_RATE = 16, 10, 32, 1e-3
# The trainer's default (optim.weight_decay); the same optimizer work in every loop.
WEIGHT_DECAY = 0.0
# The trainer writes a checkpoint (with fsync) once per run: in memory rather than on a disk.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def time_batches(loader: torch.utils.data.DataLoader[Any]) -> list[float]:
    """From now on, record when each batch leaves `loader` (collate runs once per batch)."""
    stamps: list[float] = []
    collate = loader.collate_fn

    def timed_collate(samples: list[Any]) -> Any:
        stamps.append(time.perf_counter())
        return collate(samples)

    loader.collate_fn = timed_collate
    return stamps


def project_modules(package: str) -> dict[str, ModuleType]:
    names = ("config", "data.synthetic", "models", "reproducibility", "train")
    return {name: importlib.import_module(f"{package}.{name}") for name in names}


def dataset(package: str, samples: int) -> torch.utils.data.TensorDataset:
    synthetic = project_modules(package)["data.synthetic"]
    train, _ = synthetic.make_synthetic_splits(samples, 8, NUM_CLASSES, IMAGE_SIZE, seed=0)
    return train


def loader(package: str, steps: int, batch_size: int) -> torch.utils.data.DataLoader[Any]:
    # Pinned where CUDA is, as the trainer's loader does (data/loaders.py): what a hand loop
    # on a GPU would do too, for asynchronous host-to-device copies.
    return torch.utils.data.DataLoader(
        dataset(package, steps * batch_size), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(0), pin_memory=torch.cuda.is_available(),
    )  # fmt: skip


def finish(device: str) -> None:
    """Wait for the device's queued work, so that none of it runs into the next loop's time."""
    if device == "cuda":
        torch.cuda.synchronize()


def model(package: str) -> nn.Module:
    # The trainer sets these process-wide flags; every loop runs under the same ones.
    project_modules(package)["reproducibility"].configure_determinism(True)
    return project_modules(package)["models"].SmallCNN(1, NUM_CLASSES, WIDTH)


def hand_loop(package: str, steps: int, batch_size: int, device: str = "cpu") -> list[float]:
    """The loop one would write by hand: no logging, no checks, no host sync."""
    network = model(package).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    batches = loader(package, steps, batch_size)
    stamps = time_batches(batches)
    for images, labels in batches:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        loss = nn.functional.cross_entropy(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    finish(device)
    return stamps


def template_trainer(package: str, steps: int, batch_size: int, device: str = "cpu") -> list[float]:
    """The baked project's `train.run`, configured as a user would, minus tracking backends."""
    modules = project_modules(package)
    train_module: Any = modules["train"]  # its make_loader is swapped for the run
    make_loader = train_module.make_loader

    def timed_make_loader(*args: Any, shuffle: bool, **kwargs: Any) -> Any:
        made, sampler = make_loader(*args, shuffle=shuffle, **kwargs)
        if shuffle:  # the training loader, not validation's
            timed.append(time_batches(made))
        return made, sampler

    timed: list[list[float]] = []
    with tempfile.TemporaryDirectory(dir=SCRATCH) as output_dir:
        config = modules["config"].load_config(
            None,
            [
                f"output_dir={output_dir}", "train.epochs=1", f"train.batch_size={batch_size}",
                f"data.num_train={steps * batch_size}", f"data.num_val={batch_size}",
                f"model.width={WIDTH}", f"optim.lr={LEARNING_RATE}", "tracking.backend=none",
                "data.name=synthetic", f"optim.weight_decay={WEIGHT_DECAY}",
                f"train.device={device}", "train.deterministic=true",
                "train.require_loss_decrease=false",
            ],
        )  # fmt: skip
        # The trainer builds its own loader; time that one's batches as the other loops do.
        train_module.make_loader = timed_make_loader
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                train_module.run(config)
        finally:
            train_module.make_loader = make_loader
    (stamps,) = timed
    return stamps


def lightning_loop(package: str, steps: int, batch_size: int, device: str = "cpu") -> list[float]:
    """Lightning's Trainer on the same model and data, with its extras switched off."""
    import logging
    import warnings

    import lightning

    # Its start-up banner and deprecation notices would bury the results.
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    network = model(package)

    class Module(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
            images, labels = batch
            return nn.functional.cross_entropy(self.network(images), labels)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    batches = loader(package, steps, batch_size)
    stamps = time_batches(batches)
    trainer = lightning.Trainer(
        max_epochs=1, accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Module(), batches)
    finish(device)
    return stamps


Loop = Callable[[str, int, int, str], list[float]]
LOOPS: dict[str, Loop] = {
    "hand loop": hand_loop,
    "template trainer": template_trainer,
    "Lightning": lightning_loop,
}
