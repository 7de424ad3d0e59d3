"""Three ways to train the baked project's SmallCNN on its synthetic data, for the benchmark.

Each function trains for `steps` optimizer steps at `batch_size` and returns the wall seconds;
the benchmark differences runs of N and 2N steps, so fixed start-up costs cancel out and what is
left is the time per step of each loop.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import tempfile
import time
from types import ModuleType
from typing import Any

import torch
from torch import nn

IMAGE_SIZE, NUM_CLASSES, WIDTH, LEARNING_RATE = 16, 10, 32, 1e-3


def project_modules(package: str) -> dict[str, ModuleType]:
    names = ("config", "data.synthetic", "models", "train")
    return {name: importlib.import_module(f"{package}.{name}") for name in names}


def dataset(package: str, samples: int) -> torch.utils.data.TensorDataset:
    synthetic = project_modules(package)["data.synthetic"]
    train, _ = synthetic.make_synthetic_splits(samples, 8, NUM_CLASSES, IMAGE_SIZE, seed=0)
    return train


def model(package: str) -> nn.Module:
    models = project_modules(package)["models"]
    return models.SmallCNN(1, NUM_CLASSES, WIDTH)


def hand_loop(package: str, steps: int, batch_size: int) -> float:
    """The loop one would write by hand: no logging, no checks, no host sync."""
    data = dataset(package, steps * batch_size)
    network = model(package)
    optimizer = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    started = time.perf_counter()
    for images, labels in loader:
        loss = nn.functional.cross_entropy(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def template_trainer(package: str, steps: int, batch_size: int) -> float:
    """The baked project's `train.run`, configured as a user would, minus tracking backends."""
    modules = project_modules(package)
    with tempfile.TemporaryDirectory() as output_dir:
        config = modules["config"].load_config(
            None,
            [
                f"output_dir={output_dir}", "train.epochs=1", f"train.batch_size={batch_size}",
                f"data.num_train={steps * batch_size}", f"data.num_val={batch_size}",
                f"model.width={WIDTH}", f"optim.lr={LEARNING_RATE}", "tracking.backend=none",
                "data.name=synthetic",
            ],
        )  # fmt: skip
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            modules["train"].run(config)
        return time.perf_counter() - started


def lightning_loop(package: str, steps: int, batch_size: int) -> float:
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
            return torch.optim.AdamW(self.parameters(), lr=LEARNING_RATE)

    loader = torch.utils.data.DataLoader(
        dataset(package, steps * batch_size), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    trainer = lightning.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(Module(), loader)
    return time.perf_counter() - started


LOOPS = {"hand loop": hand_loop, "template trainer": template_trainer, "Lightning": lightning_loop}
