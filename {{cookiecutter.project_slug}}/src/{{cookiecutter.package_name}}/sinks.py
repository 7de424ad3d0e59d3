"""Where a run's records go. Each sink is one class with `log(record)`, `flush()` and `close()`;
`RunLog` (run_log.py) fans every record out to all of them, so a new output is one new class.

- `MetricsFile`: metrics.jsonl, one JSON object per optimizer step and per evaluation;
- `Console`: a live line on a terminal, plain lines in CI and logs;
- the trackers of tracking.py (TensorBoard, W&B, MLflow): the summary records only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from .atomic_files import write_text
from .errors import storage_error
from .run_files import RunFiles
from .training_state import TrainState


@dataclass(frozen=True)
class Record:
    """One optimizer step or one evaluation: a line of metrics.jsonl."""

    kind: Literal["step", "evaluation"]
    step: int
    epoch: int
    values: dict[str, float]  # step: lr, loss (and at a sync grad_norm and telemetry.py's
    # samples_per_second, data_wait_fraction, peak_*_mib, gpu_*); evaluation: train_loss,
    # val_loss, val_accuracy
    # An evaluation, or the step a host sync ends with: the records trackers and the console
    # take (the steps in between reach metrics.jsonl only).
    summary: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, **self.values}


class Sink(Protocol):
    def log(self, record: Record) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MetricsFile:
    """metrics.jsonl, appended to. Lines reach the disk at least once a second and before every
    checkpoint: a crash loses at most the last second, and `resume=auto` redoes those steps.
    Flushing every line cost a system call per step, a measurable share of a small model's step.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        # A new run starts an empty file, a resumed one appends to its own records.
        try:
            self.file: IO[str] = path.open("a" if append else "w", encoding="utf-8")
        except OSError as error:
            raise storage_error(error, path, "write") from None
        self.last_flush = time.monotonic()

    def log(self, record: Record) -> None:
        self.file.write(json.dumps(record.as_json()) + "\n")
        if time.monotonic() - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as error:
            raise storage_error(error, self.path, "write") from None
        self.last_flush = time.monotonic()

    def close(self) -> None:
        # A full disk: what reached the file is kept, and the run's error says what failed.
        with contextlib.suppress(OSError):
            self.file.close()


def keep_records_up_to(files: RunFiles, step: int) -> None:
    """Drop records after `step`: after a hard kill, a resumed run redoes those steps itself."""
    if not files.metrics.is_file():
        return
    kept = [record for record in files.read_metrics() if record["step"] <= step]
    write_text(files.metrics, "".join(json.dumps(record) + "\n" for record in kept))


class Console:
    """A live line redrawn at most five times a second on a terminal; plain lines elsewhere."""

    REDRAW_SECONDS = 0.2  # drawing every step would cost more than a small model's step

    def __init__(
        self, state: TrainState, total_epochs: int, steps_per_epoch: int, accumulate: int,
        samples_per_step: int,
    ) -> None:  # fmt: skip
        self.state = state  # where the epoch stands, for the progress bar
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.accumulate = accumulate
        self.samples_per_step = samples_per_step
        self.live = sys.stdout.isatty() and not os.environ.get("CI")
        self.counting_since = time.perf_counter()  # samples/s: since the last printed line
        self.samples = 0
        self.last_draw = 0.0

    def log(self, record: Record) -> None:
        if record.kind == "evaluation":
            measured = "  ".join(f"{name} {value:.4f}" for name, value in record.values.items())
            epochs = f"{record.epoch + 1}/{self.total_epochs}"
            self.line(f"epoch {epochs}  step {record.step}  {measured}", rate=True)
            return
        self.samples += self.samples_per_step
        if not record.summary or not self.live:
            return
        if time.perf_counter() - self.last_draw < self.REDRAW_SECONDS:
            return
        self.last_draw = time.perf_counter()
        step_in_epoch = math.ceil(self.state.batches_done / self.accumulate)
        done = step_in_epoch / self.steps_per_epoch
        bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
        print(
            f"\repoch {record.epoch + 1}/{self.total_epochs} [{bar}] {step_in_epoch}/"
            f"{self.steps_per_epoch}  loss {record.values['loss']:.4f}  {telemetry(record)}",
            end="",
            flush=True,
        )

    def samples_per_second(self) -> float:
        """Since the last printed line (the live line shows the last sync's, telemetry.py's)."""
        return self.samples / max(time.perf_counter() - self.counting_since, 1e-9)

    def line(self, text: str, rate: bool = False) -> None:
        """A plain line (over the live one, if drawn); `rate` appends and restarts samples/s."""
        clear = "\r\033[K" if self.live else ""
        if rate:
            text += f"  {self.samples_per_second():.0f} samples/s"
            self.counting_since, self.samples = time.perf_counter(), 0
        print(f"{clear}{text}", flush=True)

    def flush(self) -> None:
        pass  # every line is printed with flush=True

    def close(self) -> None:
        pass


def telemetry(record: Record) -> str:
    """The live line's share of a sync's telemetry: throughput, data wait, peak memory."""
    values = record.values
    memory = values.get("cuda_peak_allocated_mib", values.get("peak_rss_mib"))
    parts = [f"{values.get('samples_per_second', 0):.0f} samples/s"]
    if "data_wait_fraction" in values:
        parts.append(f"data wait {values['data_wait_fraction']:.0%}")
    if memory is not None:
        parts.append(f"peak {memory:.0f} MiB")
    return "  ".join(parts)
