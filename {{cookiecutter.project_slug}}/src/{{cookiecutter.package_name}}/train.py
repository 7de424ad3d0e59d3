"""Train a classifier: `python -m <package>.train --config configs/smoke.yaml [key=value ...]`.

Exit codes: 0 success; 2 a config or usage error (one line says which key and how to fix it);
1 a failed run (non-finite loss, a loss that did not go down, missing data); 128 + N when stopped
by signal N (SIGTERM: 143) after saving a checkpoint that `resume=auto` continues from.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import capture_rng_states, load_checkpoint, restore_rng_states, save_checkpoint
from .config import Config, ConfigError, load_config, save_config, to_dict
from .data import build_datasets, input_shape_and_classes
from .data.mnist import DatasetMissingError
from .manifest import describe_environment, now, write_manifest
from .metrics import MetricsLog, keep_records_up_to
from .models import build_model
from .preemption import PreemptedError, StopRequest
from .reproducibility import configure_determinism, seed_dataloader_worker, seed_everything

# A "decrease" smaller than this fraction is rounding noise, not learning.
MIN_RELATIVE_DECREASE = 1e-4
Batch = tuple[torch.Tensor, ...]  # (images, labels), as TensorDataset yields them


class TrainingFailedError(RuntimeError):
    """The run cannot go on (or did not learn); the message says where and why."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches finished in the unfinished epoch
    step: int = 0  # optimizer steps finished, counted from 1 in metrics.jsonl
    current_epoch_losses: list[float] = field(default_factory=list)
    epoch_mean_losses: list[float] = field(default_factory=list)
    best_val_loss: float = math.inf


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


def resolve_resume(config: Config) -> Path | None:
    last = Path(config.output_dir) / "checkpoints" / "last.pt"
    if config.resume == "":
        return None
    if config.resume == "auto":
        return last if last.is_file() else None
    path = Path(config.resume)
    if not path.is_file():
        raise ConfigError(
            f"resume={config.resume!r}: no such checkpoint; use resume=auto or a path"
        )
    return path


def make_loader(
    dataset: Dataset[Batch], config: Config, shuffle: bool
) -> tuple[DataLoader[Batch], DistributedSampler[Batch]]:
    # The order is a pure function of (seed, epoch): resuming needs no sampler state, and the
    # same sampler splits each global batch across ranks under torchrun.
    sampler: DistributedSampler[Batch] = DistributedSampler(
        dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=config.seed, drop_last=False
    )
    loader = DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        worker_init_fn=seed_dataloader_worker,
        persistent_workers=config.data.num_workers > 0,
    )
    return loader, sampler


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, device: torch.device
) -> float:
    images, labels = (tensor.to(device) for tensor in batch)
    loss = nn.functional.cross_entropy(model(images), labels)
    loss_value = loss.item()
    if math.isfinite(loss_value):  # never step on a non-finite loss: the weights stay good
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss_value


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
    model.train()
    return {"val_loss": total_loss.item() / count, "val_accuracy": correct.item() / count}


def run(config: Config, stop: StopRequest | None = None) -> dict[str, float]:
    """Train as `config` says; returns the final metrics."""
    stop = stop or StopRequest()
    configure_determinism(config.train.deterministic, compiling=config.train.compile)
    seed_everything(config.seed)
    device = resolve_device(config.train.device)
    output_dir = Path(config.output_dir)
    checkpoints = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")
    resume_from = resolve_resume(config)

    train_set, val_set = build_datasets(config.data, config.seed)
    input_shape, num_classes = input_shape_and_classes(config.data)
    model = build_model(config.model, input_shape, num_classes).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    train_loader, train_sampler = make_loader(train_set, config, shuffle=True)
    val_loader, _ = make_loader(val_set, config, shuffle=False)

    progress = Progress()
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"])
        progress = Progress(**state["progress"])
        keep_records_up_to(output_dir / "metrics.jsonl", progress.step)
        print(f"resumed from {resume_from} at epoch {progress.epoch}, step {progress.step}")

    manifest = {
        "status": "running", "started": now(), "seed": config.seed, "world_size": 1,
        "resumed_from": str(resume_from) if resume_from else None, **describe_environment(),
    }  # fmt: skip
    write_manifest(output_dir / "run.json", manifest)

    def checkpoint_state() -> dict[str, object]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": capture_rng_states(), "progress": dataclasses.asdict(progress),
            "config": to_dict(config), "manifest": manifest,
        }  # fmt: skip

    started = time.perf_counter()
    validation: dict[str, float] = {}
    model.train()
    with MetricsLog(output_dir / "metrics.jsonl") as metrics:
        for epoch in range(progress.epoch, config.train.epochs):
            train_sampler.set_epoch(epoch)
            # After a mid-epoch stop, skip the batches that were already trained on.
            batches = itertools.islice(train_loader, progress.batches_done, None)
            for batch in batches:
                loss = train_step(model, optimizer, batch, device)
                if not math.isfinite(loss):
                    raise TrainingFailedError(
                        f"loss became {loss} at epoch {epoch}, step {progress.step + 1}; lower "
                        "optim.lr or check the data for NaN/inf values (last good checkpoint kept)"
                    )
                progress.step += 1
                progress.batches_done += 1
                progress.current_epoch_losses.append(loss)
                metrics.write(step=progress.step, epoch=epoch, loss=loss)
                if stop.signal_number is not None:
                    save_checkpoint(checkpoint_state(), checkpoints / "last.pt")
                    raise PreemptedError(stop.signal_number, str(checkpoints / "last.pt"))

            epoch_mean = sum(progress.current_epoch_losses) / len(progress.current_epoch_losses)
            progress.epoch_mean_losses.append(epoch_mean)
            progress.epoch, progress.batches_done, progress.current_epoch_losses = epoch + 1, 0, []
            validation = evaluate(model, val_loader, device)
            metrics.write(step=progress.step, epoch=epoch, train_loss=epoch_mean, **validation)
            print(
                f"epoch {epoch + 1}/{config.train.epochs}  train_loss {epoch_mean:.4f}"
                f"  val_loss {validation['val_loss']:.4f}"
                f"  val_accuracy {validation['val_accuracy']:.3f}",
                flush=True,
            )
            is_best = validation["val_loss"] < progress.best_val_loss
            progress.best_val_loss = min(progress.best_val_loss, validation["val_loss"])
            save_checkpoint(checkpoint_state(), checkpoints / "last.pt")
            if is_best:
                save_checkpoint(checkpoint_state(), checkpoints / "best.pt")

    elapsed = time.perf_counter() - started
    check_loss_decreased(config, progress.epoch_mean_losses)
    final = {"train_loss": progress.epoch_mean_losses[-1], **validation, "seconds": elapsed}
    write_manifest(output_dir / "run.json", {**manifest, "status": "completed", "ended": now(),
                                             "final_metrics": final})  # fmt: skip
    print(
        f"done: {progress.step} steps, {elapsed:.1f}s, train_loss "
        f"{progress.epoch_mean_losses[0]:.4f} -> {progress.epoch_mean_losses[-1]:.4f}, "
        f"val_accuracy {final.get('val_accuracy', math.nan):.3f}; outputs in {output_dir}"
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
    stop = StopRequest()
    stop.install()
    try:
        config = load_config(arguments.config, arguments.overrides)
        run(config, stop)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except (TrainingFailedError, DatasetMissingError) as error:
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    except PreemptedError as error:
        print(f"interrupted: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        stop.uninstall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
