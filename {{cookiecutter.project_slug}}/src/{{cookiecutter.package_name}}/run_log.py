"""Everything a run reports, from one object: `RunLog` writes each record to all its sinks.

- `metrics.jsonl`: one JSON object per line, every optimizer step and every evaluation;
- the tracker (`tracking.backend`): the latest step of each host sync, and every evaluation;
- the console: a live line on a terminal, plain lines in CI and logs;
- `run.json`: what produced the run (code, environment, seed) and how it ended, written at the
  start ("running") and rewritten at the end, so even a crashed run says where it came from.
Only the main process writes; on the others every call is a no-op.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .checkpoint import TrainState
from .config import Config, save_config
from .distributed import DistributedContext
from .guards import TrainingFailedError
from .manifest import describe_environment, now, write_json
from .preemption import PreemptedError, PrunedError
from .tracking import NoTracker, Tracker, open_tracker
from .trainer import Synced


class MetricsFile:
    """metrics.jsonl, appended to. Lines reach the disk at least once a second and before every
    checkpoint: a crash loses at most the last second, and `resume=auto` redoes those steps.
    Flushing every line cost a system call per step, a measurable share of a small model's step.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self, path: Path, append: bool) -> None:
        # A new run starts an empty file, a resumed one appends to its own records.
        self.file: IO[str] = path.open("a" if append else "w", encoding="utf-8")
        self.last_flush = time.monotonic()

    def write(self, **values: float | int | str) -> None:
        self.file.write(json.dumps(values) + "\n")
        if time.monotonic() - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.file.flush()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        self.file.close()


class Console:
    """A live line redrawn at most five times a second on a terminal; plain lines elsewhere."""

    REDRAW_SECONDS = 0.2  # drawing every step would cost more than a small model's step

    def __init__(self, total_epochs: int, steps_per_epoch: int) -> None:
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.live = sys.stdout.isatty() and not os.environ.get("CI")
        self.counting_since = time.perf_counter()  # samples/s: since the last printed line
        self.samples = 0
        self.last_draw = 0.0

    def steps(self, epoch: int, step_in_epoch: int, loss: float, samples: int) -> None:
        self.samples += samples
        if not self.live or time.perf_counter() - self.last_draw < self.REDRAW_SECONDS:
            return
        self.last_draw = time.perf_counter()
        done = step_in_epoch / self.steps_per_epoch
        bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
        print(
            f"\repoch {epoch + 1}/{self.total_epochs} [{bar}] {step_in_epoch}/"
            f"{self.steps_per_epoch}  loss {loss:.4f}  {self.samples_per_second():.0f} samples/s",
            end="",
            flush=True,
        )

    def samples_per_second(self) -> float:
        return self.samples / max(time.perf_counter() - self.counting_since, 1e-9)

    def line(self, text: str, rate: bool = False) -> None:
        """A plain line (over the live one, if drawn); `rate` appends and restarts samples/s."""
        clear = "\r\033[K" if self.live else ""
        if rate:
            text += f"  {self.samples_per_second():.0f} samples/s"
            self.counting_since, self.samples = time.perf_counter(), 0
        print(f"{clear}{text}", flush=True)


class RunLog:
    """The run's one reporting object: `steps`, `evaluation`, `message` and `finish`."""

    def __init__(
        self, config: Config, context: DistributedContext, state: TrainState, steps_per_epoch: int
    ) -> None:
        self.enabled = context.is_main
        self.state = state  # the run's position, read for every record
        self.output_dir = Path(config.output_dir)
        self.accumulate = config.train.grad_accum_steps
        self.samples_per_step = config.train.batch_size * self.accumulate
        self.console = Console(config.train.epochs, steps_per_epoch)
        self.config = config
        self.manifest: dict[str, Any] = {
            "status": "running", "started": now(), "seed": config.seed,
            "world_size": context.world_size, **describe_environment(),
        }  # fmt: skip
        self.tracker: Tracker = NoTracker()
        self.metrics: MetricsFile | None = None
        self.started = False  # run.json written: from here on it tells how the run ended

    def start(self, resumed_from: Path | None, tracker_run_id: str | None = None) -> None:
        """Open every sink; run.json says "running". After a resume, metrics.jsonl loses the
        steps that will be redone, and the tracker continues the run `tracker_run_id` names."""
        self.manifest["resumed_from"] = str(resumed_from) if resumed_from else None
        if not self.enabled:
            return
        # First, as it may refuse (a missing package): then nothing has been written.
        self.tracker = open_tracker(self.config, self.output_dir, True, tracker_run_id)
        self.manifest["tracker_run_id"] = self.tracker.run_id
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.output_dir / "config.yaml")
        self.write_manifest()
        self.started = True
        metrics_path = self.output_dir / "metrics.jsonl"
        if resumed_from is not None:
            state = self.state
            keep_records_up_to(metrics_path, state.step)
            self.message(f"resumed from {resumed_from} at epoch {state.epoch}, step {state.step}")
        self.metrics = MetricsFile(metrics_path, append=resumed_from is not None)

    def steps(self, synced: Synced) -> None:
        """The steps of one host sync: each to metrics.jsonl (the norm with the last), the last
        to the tracker and the console."""
        if self.metrics is None:
            return
        state = self.state
        for record in synced.steps[:-1]:
            self.metrics.write(step=record.step, epoch=state.epoch, lr=record.lr, loss=record.loss)
        last = synced.steps[-1]
        latest = {"lr": last.lr, "loss": last.loss, "grad_norm": synced.grad_norm}
        self.metrics.write(step=last.step, epoch=state.epoch, **latest)
        self.tracker.log(latest, last.step)
        step_in_epoch = math.ceil(state.batches_done / self.accumulate)
        samples = self.samples_per_step * len(synced.steps)
        self.console.steps(state.epoch, step_in_epoch, last.loss, samples)

    def evaluation(self, validation: dict[str, float]) -> None:
        """An evaluation, with the mean training loss of its epoch so far."""
        if self.metrics is None:
            return
        state = self.state
        values = {"train_loss": state.epoch_loss_so_far(), **validation}
        self.metrics.write(step=state.step, epoch=state.epoch, **values)
        self.tracker.log(values, state.step)
        measured = "  ".join(f"{name} {value:.4f}" for name, value in values.items())
        epochs = f"{state.epoch + 1}/{self.console.total_epochs}"
        self.console.line(f"epoch {epochs}  step {state.step}  {measured}", rate=True)

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.line(text)

    def flush(self) -> None:
        if self.metrics is not None:
            self.metrics.flush()

    def finish(self, status: str, **details: Any) -> None:
        """run.json's last word: completed, stopped_early, interrupted, time_limit, pruned or
        failed."""
        self.manifest.update(status=status, ended=now(), step=self.state.step, **details)
        if self.enabled:
            self.write_manifest()

    def write_manifest(self) -> None:
        write_json(self.output_dir / "run.json", self.manifest)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.started and isinstance(error, (PreemptedError, PrunedError)):
            self.finish(error.status, error=str(error))
        elif self.started and isinstance(error, TrainingFailedError):
            self.finish("failed", error=str(error))
        elif self.started and error is not None:  # a crash: out of memory, a lost rank, a bug
            self.finish("failed", error=f"{type(error).__name__}: {error}")
        if self.metrics is not None:
            self.metrics.close()
        self.tracker.close()


def read_metrics(path: Path) -> list[dict[str, float]]:
    """All records of a `metrics.jsonl`, in order (for tests, notebooks and reports)."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def keep_records_up_to(path: Path, step: int) -> None:
    """Drop records after `step`: after a hard kill, a resumed run redoes those steps itself."""
    if not path.is_file():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= step]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
    temporary.replace(path)


def step_losses(output_dir: Path) -> list[float]:
    """The loss of every optimizer step of the run in `output_dir`, in order."""
    return [
        record["loss"] for record in read_metrics(output_dir / "metrics.jsonl") if "loss" in record
    ]
