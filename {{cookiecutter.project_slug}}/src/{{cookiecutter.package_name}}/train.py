"""Train a classifier: `python -m <package>.train --config configs/smoke.yaml [key=value ...]`.

Exit codes: 0 success; 2 a config or usage error (one line says which key and how to fix it);
1 a failed run (non-finite loss, a loss that did not go down, missing data).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import Config, ConfigError, load_config, save_config
from .data import build_datasets, input_shape_and_classes
from .data.mnist import DatasetMissingError
from .metrics import MetricsLog
from .models import build_model
from .reproducibility import (
    configure_determinism,
    data_generator,
    seed_dataloader_worker,
    seed_everything,
)

# A "decrease" smaller than this fraction is rounding noise, not learning.
MIN_RELATIVE_DECREASE = 1e-4
Batch = tuple[torch.Tensor, ...]  # (images, labels), as TensorDataset yields them


class TrainingFailedError(RuntimeError):
    """The run cannot go on (or did not learn); the message says where and why."""


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a model. Overrides use dotted keys, e.g. train.epochs=3 optim.lr=0.01."
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML file, e.g. configs/smoke.yaml"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=auto")
    return device


def make_loader(dataset: Dataset[Batch], config: Config, shuffle: bool) -> DataLoader[Batch]:
    return DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        shuffle=shuffle,
        num_workers=config.data.num_workers,
        generator=data_generator(config.seed),
        worker_init_fn=seed_dataloader_worker,
        persistent_workers=config.data.num_workers > 0,
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Batch],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    first_step: int,
    metrics: MetricsLog,
) -> list[float]:
    """One pass over `loader`, returning each step's loss; a non-finite loss stops it first."""
    model.train()
    losses: list[float] = []
    for step, (images, labels) in enumerate(loader, start=first_step):
        images, labels = images.to(device), labels.to(device)
        loss = nn.functional.cross_entropy(model(images), labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            # Checked before backward/step so the weights (and any checkpoint) stay good.
            raise TrainingFailedError(
                f"loss became {loss_value} at epoch {epoch}, step {step}; lower optim.lr or "
                "check the data for NaN/inf values"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss_value)
        metrics.write(step=step, epoch=epoch, loss=loss_value)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader[Batch], device: torch.device) -> dict[str, float]:
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    count = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(dim=1) == labels).sum()
        count += len(labels)
    return {"val_loss": total_loss.item() / count, "val_accuracy": correct.item() / count}


def run(config: Config) -> dict[str, float]:
    """Train as `config` says; returns the final metrics."""
    configure_determinism(config.train.deterministic, compiling=config.train.compile)
    seed_everything(config.seed)
    device = resolve_device(config.train.device)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")

    train_set, val_set = build_datasets(config.data, config.seed)
    input_shape, num_classes = input_shape_and_classes(config.data)
    model = build_model(config.model, input_shape, num_classes).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    train_loader = make_loader(train_set, config, shuffle=True)
    val_loader = make_loader(val_set, config, shuffle=False)

    epoch_mean_losses: list[float] = []
    step = 0
    started = time.perf_counter()
    with MetricsLog(output_dir / "metrics.jsonl") as metrics:
        for epoch in range(config.train.epochs):
            losses = train_one_epoch(model, train_loader, optimizer, device, epoch, step, metrics)
            step += len(losses)
            epoch_mean_losses.append(sum(losses) / len(losses))
            validation = evaluate(model, val_loader, device)
            metrics.write(step=step, epoch=epoch, train_loss=epoch_mean_losses[-1], **validation)
            print(
                f"epoch {epoch + 1}/{config.train.epochs}  train_loss {epoch_mean_losses[-1]:.4f}"
                f"  val_loss {validation['val_loss']:.4f}"
                f"  val_accuracy {validation['val_accuracy']:.3f}",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    check_loss_decreased(config, epoch_mean_losses)
    final = {"train_loss": epoch_mean_losses[-1], **validation, "seconds": elapsed}
    print(
        f"done: {step} steps in {elapsed:.1f}s, train_loss {epoch_mean_losses[0]:.4f} -> "
        f"{epoch_mean_losses[-1]:.4f}, val_accuracy {validation['val_accuracy']:.3f}; "
        f"outputs in {output_dir}"
    )
    return final


def check_loss_decreased(config: Config, epoch_mean_losses: list[float]) -> None:
    """A run that does not learn is a failed run: compare the last epoch's mean with the first's."""
    if not config.train.require_loss_decrease or len(epoch_mean_losses) < 2:
        return
    first, last = epoch_mean_losses[0], epoch_mean_losses[-1]
    if not last < first * (1 - MIN_RELATIVE_DECREASE):
        raise TrainingFailedError(
            f"mean training loss did not decrease ({first:.4f} in the first epoch, {last:.4f} "
            "in the last); check optim.lr and the data, or set train.require_loss_decrease=false"
        )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        config = load_config(arguments.config, arguments.overrides)
        run(config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except (TrainingFailedError, DatasetMissingError) as error:
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
