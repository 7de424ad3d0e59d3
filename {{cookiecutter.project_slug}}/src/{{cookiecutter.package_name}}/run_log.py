"""Everything a run reports, from one object: `RunLog` turns the loop's events into records and
fans each out to every sink (sinks.py: metrics.jsonl, the console, the tracker), and keeps the
run's run.json (manifest.py) from "running" to how the run ended, so even a crashed run says
where it came from. Only the main process writes; on the others every call is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from .config import Config, save_config
from .distributed import DistributedContext
from .errors import ProjectError
from .manifest import Manifest
from .prometheus import open_endpoint
from .run_files import RunFiles
from .sinks import Console, MetricsFile, Record, Sink, keep_records_up_to
from .telemetry import Telemetry
from .tracking import NoTracker, Tracker, open_tracker
from .trainer import Synced
from .training_state import TrainState


class RunLog:
    """The run's one reporting object: `steps`, `evaluation`, `message` and `finish`."""

    def __init__(
        self,
        config: Config,
        files: RunFiles,
        context: DistributedContext,
        state: TrainState,
        steps_per_epoch: int,
        telemetry: Telemetry,
        publish: Callable[[Path], None] = lambda path: None,
    ) -> None:
        self.enabled = context.is_main
        self.context = context
        self.telemetry = telemetry  # its values ride on each sync's summary record
        self.told: str | None = None  # the telemetry's note, once said
        self.state = state  # the run's position, read for every record
        self.files = files  # the run folder (or the local staging copy of a remote one)
        self.publish = publish  # uploads a complete file when the run folder is remote
        self.config = config
        self.console = Console(
            state, config.train.epochs, steps_per_epoch, config.train.grad_accum_steps,
            config.train.batch_size * config.train.grad_accum_steps,
        )  # fmt: skip
        self.manifest = Manifest(
            self.files, seed=config.seed, world_size=context.world_size,
            output_uri=config.output_dir,
        )  # fmt: skip
        self.tracker: Tracker = NoTracker()
        self.sinks: list[Sink] = []  # opened by `start`
        self.started = False  # run.json written: from here on it tells how the run ended

    def start(self, resumed_from: Path | None, tracker_run_id: str | None = None) -> None:
        """Open every sink; run.json says "running". After a resume, metrics.jsonl loses the
        steps that will be redone, and the tracker continues the run `tracker_run_id` names."""
        self.manifest.values["resumed_from"] = str(resumed_from) if resumed_from else None
        # Every rank serves its own endpoint; opened first, as a taken port refuses the run.
        train = self.config.train
        endpoint = open_endpoint(train.metrics_host, train.metrics_port, self.context)
        self.sinks = [endpoint] if endpoint is not None else []
        if not self.enabled:
            return
        # First, as it may refuse (a missing package): then nothing has been written.
        self.tracker = open_tracker(self.config, self.files.root, True, tracker_run_id)
        self.manifest.values["tracker_run_id"] = self.tracker.run_id
        save_config(self.config, self.files.config)
        self.manifest.write()
        self.publish(self.files.config)
        self.publish(self.files.manifest)
        self.started = True
        if resumed_from is not None:
            keep_records_up_to(self.files, self.state.step)
            state = self.state
            self.message(f"resumed from {resumed_from} at epoch {state.epoch}, step {state.step}")
        metrics = MetricsFile(self.files.metrics, append=resumed_from is not None)
        self.sinks = [metrics, self.console, self.tracker, *self.sinks]

    def log(self, record: Record) -> None:
        for sink in self.sinks:
            sink.log(record)

    def steps(self, synced: Synced) -> None:
        """The steps of one host sync; the last, the summary, carries the gradient norm and the
        telemetry (throughput, data wait, memory) of the steps since the previous sync."""
        epoch, last = self.state.epoch, len(synced.steps) - 1
        measured = self.telemetry.measure()
        if self.telemetry.note != self.told:
            self.told = self.telemetry.note
            self.message(f"telemetry: {self.told}")
        for index, step in enumerate(synced.steps):
            values = {"lr": step.lr, "loss": step.loss}
            if index == last:
                values.update(grad_norm=synced.grad_norm, **measured)
            self.log(Record("step", step.step, epoch, values, summary=index == last))

    def evaluation(self, validation: dict[str, float]) -> None:
        """An evaluation, with the mean training loss of its epoch so far."""
        state = self.state
        values = {"train_loss": state.epoch_loss_so_far(), **validation}
        self.log(Record("evaluation", state.step, state.epoch, values))

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.line(text)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()
        if self.sinks:
            self.publish(self.files.metrics)

    def finish(self, status: str, **details: Any) -> None:
        """run.json's last word: completed, stopped_early, interrupted, time_limit, pruned or
        failed."""
        if self.enabled:
            telemetry = self.telemetry.totals()
            self.manifest.finish(status, step=self.state.step, telemetry=telemetry, **details)
            self.publish(self.files.manifest)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.started and isinstance(error, ProjectError):
                self.finish(error.run_status, error=str(error))
            elif self.started and error is not None:  # a crash: out of memory, a lost rank, a bug
                self.finish("failed", error=f"{type(error).__name__}: {error}")
        except OSError:
            pass  # the disk that failed the run cannot take run.json either: the error says it
        finally:
            for sink in self.sinks:
                sink.close()
            if self.sinks:
                self.publish(self.files.metrics)
