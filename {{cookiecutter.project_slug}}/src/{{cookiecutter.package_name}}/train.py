"""Train a classifier: `python -m <package>.train --config configs/smoke.yaml [key=value ...]`.

The same command runs on N processes with `torchrun --nproc_per_node=N -m <package>.train ...`.
Exit codes: 0 success; 2 a config or usage error (one line says which key and how to fix it);
1 a failed run (non-finite loss or gradient, a loss that did not go down, missing data); 128 + N
when stopped by signal N (SIGTERM: 143) after saving a checkpoint that `resume=auto` continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import (
    Progress,
    capture_rng_states,
    load_checkpoint,
    resolve_resume,
    restore_rng_states,
    save_checkpoint,
)
from .config import Config, ConfigError, load_config, save_config, to_dict
from .data import build_datasets, input_shape_and_classes
from .data.loaders import make_loader
from .data.mnist import DatasetMissingError
from .distributed import (
    DistributedContext,
    device_type,
    resolve_device,
    start_distributed,
    stop_distributed,
    synchronize,
)
from .guards import (
    TrainingFailedError,
    check_finite_weights,
    check_loss_decreased,
    non_finite_message,
)
from .manifest import describe_environment, now, write_manifest
from .metrics import MetricsLog, keep_records_up_to
from .models import build_model
from .preemption import PreemptedError, StopRequest
from .progress import ProgressReporter
from .reproducibility import configure_determinism, seed_everything
from .steps import (
    StepTools,
    SyncResult,
    autocast_dtype_for,
    build_scheduler,
    evaluate,
    sync_steps,
    train_step,
)
from .tracking import Tracker, open_tracker


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a model. Overrides use dotted keys, e.g. train.epochs=3 optim.lr=0.01."
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML file, e.g. configs/smoke.yaml"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def run(config: Config, stop: StopRequest | None = None) -> dict[str, float]:
    """Train as `config` says, on one process or under torchrun; returns the final metrics."""
    configure_determinism(config.train.deterministic, compiling=config.train.compile)
    seed_everything(config.seed)
    # train.device=cpu on a GPU machine must join a gloo group, not NCCL.
    context = start_distributed(torch.device(device_type(config.train.device)))
    try:
        final = train(config, context, stop or StopRequest())
        # Tearing down while another rank still has collectives in flight aborts it; a barrier
        # on the success path only, since a rank that failed alone would never reach it.
        synchronize(context)
        return final
    finally:
        stop_distributed()


def train(config: Config, context: DistributedContext, stop: StopRequest) -> dict[str, float]:
    device = resolve_device(config.train.device, context)
    output_dir, main = Path(config.output_dir), context.is_main
    checkpoints = output_dir / "checkpoints"
    resume_from = resolve_resume(config)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "config.yaml")

    train_set, val_set = build_datasets(config.data, config.seed)
    input_shape, num_classes = input_shape_and_classes(config.data)
    model = build_model(config.model, input_shape, num_classes).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    train_loader, train_sampler = make_loader(train_set, config, context, shuffle=True)
    val_loader, _ = make_loader(val_set, config, context, shuffle=False)
    scheduler = build_scheduler(
        optimizer, config.optim.scheduler, config.train.epochs * len(train_loader)
    )
    autocast_dtype = autocast_dtype_for(config.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)

    progress = Progress()
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        model.load_state_dict(state["model"])
        for part, name in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
            part.load_state_dict(state[name])
        restore_rng_states(state["rng"])
        progress = Progress(**state["progress"])
        if main:
            keep_records_up_to(output_dir / "metrics.jsonl", progress.step)

    wrapped: nn.Module = model
    if context.is_distributed:
        wrapped = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if config.train.compile:
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    tools = StepTools(
        wrapped,
        optimizer,
        scheduler,
        scaler,
        device,
        autocast_dtype,
        config.optim.grad_clip,
        context,
        step_scheduler=config.optim.scheduler != "constant",
    )
    manifest: dict[str, Any] = {
        "status": "running", "started": now(), "seed": config.seed,
        "world_size": context.world_size, "resumed_from": str(resume_from) if resume_from else None,
        **describe_environment(),
    }  # fmt: skip

    def checkpoint_state() -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": capture_rng_states(), "progress": dataclasses.asdict(progress),
            "config": to_dict(config), "manifest": manifest,
        }  # fmt: skip

    def finish(status: str, **details: Any) -> None:
        if main:
            manifest.update(status=status, **details)
            if status != "running":
                manifest["ended"] = now()
            write_manifest(output_dir / "run.json", manifest)

    finish("running")
    epoch_steps = len(train_loader)
    reporter = ProgressReporter(config.train.epochs, epoch_steps, enabled=main)
    if resume_from is not None:
        reporter.message(
            f"resumed from {resume_from} at epoch {progress.epoch}, step {progress.step}"
        )
    if autocast_dtype is None and config.train.amp != "off":
        reporter.message(f"train.amp={config.train.amp} ignored: mixed precision needs CUDA")
    tracker = open_tracker(config, output_dir, enabled=main)
    started = time.perf_counter()
    validation: dict[str, float] = {}
    try:
        with MetricsLog(output_dir / "metrics.jsonl", enabled=main) as metrics:
            for epoch in range(progress.epoch, config.train.epochs):
                train_sampler.set_epoch(epoch)
                reporter.start_epoch()
                pending: list[torch.Tensor] = []  # losses of steps since the last host sync
                rates: list[float] = []
                # After a mid-epoch stop, skip the batches that were already trained on.
                for batch in itertools.islice(train_loader, progress.batches_done, None):
                    rates.append(float(scheduler.get_last_lr()[0]))  # the rate this step uses
                    sync = (  # every train.log_every steps, and at each epoch's end
                        (progress.step + len(pending) + 1) % config.train.log_every == 0
                        or progress.batches_done + len(pending) + 1 == epoch_steps
                    )
                    output = train_step(tools, batch, measure_norm=sync)
                    pending.append(output.loss)
                    if not sync:
                        continue  # no host sync this step: the device runs on
                    synced = sync_steps(tools, pending, output, stop.requested)
                    if synced.first_non_finite is not None:
                        raise TrainingFailedError(
                            non_finite_message(epoch, progress.step + synced.first_non_finite + 1)
                        )
                    record_steps(synced, rates, progress.step, epoch, metrics, tracker)
                    progress.step += len(pending)
                    progress.batches_done += len(pending)
                    progress.current_epoch_losses.extend(synced.losses)
                    samples = config.train.batch_size * len(pending)
                    reporter.step(epoch, progress.batches_done, synced.losses[-1], samples)
                    pending, rates = [], []
                    if synced.stop_requested:
                        metrics.flush()
                        check_finite_weights(tools.parameters, epoch)
                        if main:
                            save_checkpoint(checkpoint_state(), checkpoints / "last.pt")
                        # A rank that only heard of the stop from another rank has no signal.
                        signal_number = stop.signal_number or signal.SIGTERM
                        raise PreemptedError(signal_number, str(checkpoints / "last.pt"))

                check_finite_weights(tools.parameters, epoch)
                epoch_mean = sum(progress.current_epoch_losses) / len(progress.current_epoch_losses)
                progress.epoch_mean_losses.append(epoch_mean)
                progress.epoch += 1
                progress.batches_done, progress.current_epoch_losses = 0, []
                validation = evaluate(tools, val_loader)
                metrics.write(step=progress.step, epoch=epoch, train_loss=epoch_mean, **validation)
                tracker.log({"train_loss": epoch_mean, **validation}, progress.step)
                reporter.end_epoch(
                    f"epoch {epoch + 1}/{config.train.epochs}  train_loss {epoch_mean:.4f}  "
                    f"val_loss {validation['val_loss']:.4f}  "
                    f"val_accuracy {validation['val_accuracy']:.3f}"
                )
                is_best = validation["val_loss"] < progress.best_val_loss
                progress.best_val_loss = min(progress.best_val_loss, validation["val_loss"])
                metrics.flush()
                if main:
                    state = checkpoint_state()  # built once: copying weights and RNG costs time
                    save_checkpoint(state, checkpoints / "last.pt")
                    if is_best:
                        save_checkpoint(state, checkpoints / "best.pt")
        check_loss_decreased(config, progress.epoch_mean_losses)
    except PreemptedError:
        finish("interrupted", step=progress.step)
        raise
    except TrainingFailedError as error:
        finish("failed", step=progress.step, error=str(error))
        raise
    finally:
        tracker.close()

    elapsed = time.perf_counter() - started
    final = {"train_loss": progress.epoch_mean_losses[-1], **validation, "seconds": elapsed}
    finish("completed", final_metrics=final)
    reporter.message(
        f"done: {progress.step} steps in {elapsed:.1f}s on {context.world_size} x {device.type}, "
        f"train_loss {progress.epoch_mean_losses[0]:.4f} -> {progress.epoch_mean_losses[-1]:.4f}, "
        f"val_accuracy {validation.get('val_accuracy', math.nan):.3f}; outputs in {output_dir}"
    )
    return final


def record_steps(
    synced: SyncResult,
    rates: list[float],
    steps_before: int,
    epoch: int,
    metrics: MetricsLog,
    tracker: Tracker,
) -> None:
    """Synced steps to metrics.jsonl (the gradient norm with the last); the last to the tracker."""
    for offset, (loss, rate) in enumerate(zip(synced.losses, rates, strict=True), start=1):
        norm = {"grad_norm": synced.grad_norm} if offset == len(rates) else {}
        metrics.write(step=steps_before + offset, epoch=epoch, lr=rate, loss=loss, **norm)
    latest = {"loss": synced.losses[-1], "grad_norm": synced.grad_norm, "lr": rates[-1]}
    tracker.log(latest, steps_before + len(rates))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop = StopRequest()
    stop.install()
    try:
        run(load_config(arguments.config, arguments.overrides), stop)
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
