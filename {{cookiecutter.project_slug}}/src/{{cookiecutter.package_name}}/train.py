"""Train a classifier: `python -m <package>.train --config configs/smoke.yaml [key=value ...]`.

The same command runs on N processes with `torchrun --nproc_per_node=N -m <package>.train ...`.
Exit codes: 0 success (also after early stopping or `train.max_steps`); 2 a config or usage error
(one line says which key and how to fix it); 1 a failed run (non-finite loss or gradient, a loss
that did not go down, missing or damaged data, a damaged checkpoint); 124 stopped at
`train.time_limit_minutes` and 128 + N stopped by signal N (SIGTERM: 143), each after saving a
checkpoint that `resume=auto` continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Checkpointer, GlobalRng
from .config import Config, TrainConfig, load_config, to_dict
from .data import build_datasets, preprocessing_for, registered_dataset
from .data.loaders import Batch, make_loader
from .distributed import (
    DistributedContext,
    device_type,
    resolve_device,
    start_distributed,
    stop_distributed,
    synchronize,
)
from .errors import run_command
from .fine_tuning import freeze_parameters, load_initial_weights, refuse_init_from_own_run
from .guards import check_loss_decreased
from .models import build_model, registered_model
from .preemption import StopRequest, TimeBudget, preempted_at_time_limit, preempted_by_signal
from .remote_runs import checkpoint_on_this_machine
from .reproducibility import configure_determinism, seed_everything
from .run_files import RunFiles
from .run_folder import agree_on_run_folder, removed_if_left_empty
from .run_log import RunLog
from .storage import uploads_for
from .telemetry import Telemetry
from .trainer import build_trainer
from .training_state import Cadence, Stop, TrainState, early_stop_reason, finished_already, why_stop


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a model. Overrides use dotted keys, e.g. train.epochs=3 optim.lr=0.01."
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML file, e.g. configs/smoke.yaml"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


# Called with (step, validation metrics) after each evaluation; search.py reports them to Optuna
# and raises PrunedError to end a hopeless trial (run.json: "pruned").
EvaluationCallback = Callable[[int, dict[str, float]], None]


def run(
    config: Config,
    stop: StopRequest | None = None,
    *,
    on_evaluation: EvaluationCallback | None = None,
    manifest_entries: Mapping[str, Any] | None = None,  # added to run.json, e.g. a trial's
) -> dict[str, float]:
    """Train as `config` says, on one process or under torchrun; returns the final metrics."""
    configure_determinism(config.train.deterministic, compiling=config.train.compile)
    if config.train.cpu_threads:
        torch.set_num_threads(config.train.cpu_threads)
    seed_everything(config.seed)
    # train.device=cpu on a GPU machine must join a gloo group, not NCCL.
    context = start_distributed(torch.device(device_type(config.train.device)))
    try:
        final = train(config, context, stop or StopRequest(), on_evaluation, manifest_entries)
        # Tearing down while another rank still has collectives in flight aborts it; a barrier
        # on the success path only, since a rank that failed alone would never reach it.
        synchronize(context)
        return final
    finally:
        stop_distributed()


def train(
    config: Config,
    context: DistributedContext,
    stop: StopRequest,
    on_evaluation: EvaluationCallback | None = None,
    manifest_entries: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    budget = TimeBudget(config.train.time_limit_minutes)  # from the start of this process's run
    device = resolve_device(config.train.device, context)
    train_set, val_set = build_datasets(config.data, config.seed)
    train_loader, train_sampler = make_loader(train_set, config, context, shuffle=True)
    val_loader, _ = make_loader(val_set, config, context, shuffle=False)
    steps_per_epoch = math.ceil(len(train_loader) / config.train.grad_accum_steps)
    cadence = Cadence.of(config.train, steps_per_epoch)
    preprocessing = preprocessing_for(config.data)  # saved with the weights, for predict
    model = build_model(config.model, preprocessing.input_shape, len(preprocessing.class_names))
    model = model.to(device)
    frozen = freeze_parameters(model, config.model)  # before the optimizer and DDP see it
    trainer = build_trainer(config, model, device, context, total_steps=cadence.last_step)
    state = TrainState()
    folder = agree_on_run_folder(config, context)  # refuses to mix two runs in one folder
    config = dataclasses.replace(config, output_dir=folder.location)  # a URL stays a URL
    resume_from, files = checkpoint_on_this_machine(folder), RunFiles(folder.path)
    uploads = uploads_for(folder.path, folder.uri, uploads_here=context.is_main)
    telemetry = Telemetry(device, context.world_size)  # throughput, data wait, memory, GPU use
    log = RunLog(config, files, context, state, steps_per_epoch, telemetry, uploads.publish)
    log.manifest.values.update(manifest_entries or {})
    # Everything a resume restores, in one registry that save and load both read.
    checkpointer = Checkpointer(
        files,
        {
            "model": model, "optimizer": trainer.optimizer, "scheduler": trainer.scheduler,
            "scaler": trainer.scaler, "rng": GlobalRng(), "train_state": state,
        },
        weights=model,
        describe=lambda: {
            "config": to_dict(config), "manifest": log.manifest.values,
            "preprocessing": preprocessing.to_dict(), "tracker_run_id": log.tracker.run_id,
        },
        before_save=log.flush,  # metrics.jsonl then holds every step the checkpoint has
        enabled=context.is_main,
        publish=uploads.publish,
    )  # fmt: skip
    started, validation, stopping = time.perf_counter(), {}, None
    # On an exception, run.json says failed, interrupted or time_limit; a folder made for this
    # run that it never wrote to is removed.
    # A remote run waits for its last uploads at the end (and says what is not uploaded).
    with removed_if_left_empty(folder), uploads.finished(config.upload_wait_seconds), log:
        refuse_init_from_own_run(config.init_from, folder.path, resume_from)
        tracker_run_id = None
        if resume_from is not None:
            saved = checkpointer.load(resume_from)
            tracker_run_id = saved.get("tracker_run_id")
            # A resumed fine-tune goes on from its own weights; run.json keeps where they began.
            log.manifest.values["init_from"] = saved.get("manifest", {}).get("init_from")
            if finished_already(state, config.train, cadence.last_step):
                log.message(
                    f"nothing to train: {resume_from} ended its run at step {state.step}; to go "
                    "on, raise train.epochs, train.max_steps or train.early_stop_patience"
                )
                return {}
        elif config.init_from:  # fine-tuning: weights only, the rest of the run starts fresh
            initial = load_initial_weights(
                config.init_from, model, config.model.name, preprocessing.class_names
            )
            log.manifest.values["init_from"] = initial.record
            log.message(initial.summary)
        log.message(f"run folder: {config.output_dir}{f'; {folder.note}' if folder.note else ''}")
        if frozen is not None:
            log.message(frozen)
        log.start(resume_from, tracker_run_id)
        if trainer.autocast_dtype is None and config.train.amp != "off":
            log.message(f"train.amp={config.train.amp} ignored: mixed precision needs CUDA")
        steps = batches_per_step(train_loader, train_sampler, state, config.train)
        for epoch, batches in telemetry.timed(steps):
            state.advance(len(batches))
            end_of_epoch = state.batches_done == len(train_loader)
            sync = cadence.syncs(state.step, end_of_epoch)
            trainer.step(batches, measure_norm=sync)
            if not sync:
                continue  # no host sync this step: the device runs on
            synced = trainer.sync(epoch, state.step, stop=stop.requested, timed_out=budget.spent())
            state.current_epoch_losses.extend(synced.losses)
            log.steps(synced)
            best = False
            if cadence.evaluates(state.step, end_of_epoch):
                validation = trainer.evaluate(val_loader)
                best = state.record_evaluation(validation["val_loss"], config.train)
                log.evaluation(validation)
                if on_evaluation is not None:
                    on_evaluation(state.step, validation)
            if end_of_epoch:
                state.close_epoch()
            stopping = why_stop(
                state, config.train, cadence.last_step,
                stop_requested=synced.stop_requested, timed_out=synced.timed_out,
            )  # fmt: skip
            save_last = cadence.checkpoints(state.step, end_of_epoch) or stopping is not None
            if save_last or best:
                checkpointer.save(last=save_last, best=best, epoch=epoch)
            if stopping is not None:
                break
        raise_if_stopped_from_outside(stopping, stop, config, files)
        check_loss_decreased(config, state.epoch_means())

        elapsed, means = time.perf_counter() - started, state.epoch_means()
        final = {"train_loss": means[-1], **validation, "seconds": elapsed}
        status = (stopping or Stop.LAST_STEP).value
        reason = early_stop_reason(config.train, state) if stopping is Stop.EARLY else None
        log.finish(status, final_metrics=final, stop_reason=reason)
        log.message(
            f"done: {state.step} steps in {elapsed:.1f}s on {context.world_size} x {device.type}, "
            f"train_loss {means[0]:.4f} -> {means[-1]:.4f}, val_accuracy "
            f"{validation.get('val_accuracy', math.nan):.3f}; {status}; "
            f"outputs in {config.output_dir}"
        )
    return final


def batches_per_step(
    loader: torch.utils.data.DataLoader[Batch],
    sampler: torch.utils.data.DistributedSampler[Batch],
    state: TrainState,
    train_config: TrainConfig,
) -> Iterator[tuple[int, list[Batch]]]:
    """(epoch, the loader batches of one optimizer step), from where `state` stands."""
    for epoch in range(state.epoch, train_config.epochs):
        sampler.set_epoch(epoch)  # each epoch's order depends on (seed, epoch) only
        # After a mid-epoch stop, skip the batches that were already trained on.
        remaining = itertools.islice(loader, state.batches_done, None)
        while batches := list(itertools.islice(remaining, train_config.grad_accum_steps)):
            yield epoch, batches


def raise_if_stopped_from_outside(
    stopping: Stop | None, stop: StopRequest, config: Config, files: RunFiles
) -> None:
    """A signal or the time limit ends the run with an error that sets the exit code."""
    checkpoint = str(files.last)  # saved just before
    if config.output_dir != str(files.root):  # a remote run: its URL, where it is uploaded
        checkpoint = f"{config.output_dir.rstrip('/')}/{files.last.relative_to(files.root)}"
    if stopping is Stop.SIGNAL:
        # A rank that only heard of the stop from another rank has no signal number of its own.
        raise preempted_by_signal(stop.signal_number or signal.SIGTERM, checkpoint)
    if stopping is Stop.TIME_LIMIT:
        raise preempted_at_time_limit(config.train.time_limit_minutes, checkpoint)


def load_training_config(path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """The config, with data.name and model.name checked against their registries, so that a
    typo stops before any work (the sweep checks each of its runs this way before the first)."""
    config = load_config(path, overrides)
    registered_dataset(config.data.name)
    registered_model(config.model.name)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop = StopRequest()
    stop.install()
    try:
        return run_command(
            None, lambda: run(load_training_config(arguments.config, arguments.overrides), stop)
        )
    finally:
        stop.uninstall()


if __name__ == "__main__":
    sys.exit(main())
