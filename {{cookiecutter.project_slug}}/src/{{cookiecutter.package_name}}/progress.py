"""What a person watching sees: a live line on a terminal, plain epoch lines in CI and logs."""

from __future__ import annotations

import os
import sys
import time


class ProgressReporter:
    REDRAW_SECONDS = 0.2  # drawing every step would cost more than a small model's step

    def __init__(self, total_epochs: int, steps_per_epoch: int, enabled: bool = True) -> None:
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.enabled = enabled
        self.live = enabled and sys.stdout.isatty() and not os.environ.get("CI")
        self.epoch_started = time.perf_counter()
        self.samples = 0
        self.last_draw = 0.0

    def start_epoch(self) -> None:
        self.epoch_started = time.perf_counter()
        self.samples = 0

    def step(self, epoch: int, batch_in_epoch: int, loss: float, samples: int) -> None:
        """After a host sync: `samples` trained on since the previous call."""
        self.samples += samples
        if not self.live or time.perf_counter() - self.last_draw < self.REDRAW_SECONDS:
            return
        self.last_draw = time.perf_counter()
        done = batch_in_epoch / self.steps_per_epoch
        bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
        print(
            f"\repoch {epoch + 1}/{self.total_epochs} [{bar}] {batch_in_epoch}/"
            f"{self.steps_per_epoch}  loss {loss:.4f}  {self.samples_per_second():.0f} samples/s",
            end="",
            flush=True,
        )

    def samples_per_second(self) -> float:
        return self.samples / max(time.perf_counter() - self.epoch_started, 1e-9)

    def end_epoch(self, summary: str) -> None:
        if not self.enabled:
            return
        clear = "\r\033[K" if self.live else ""
        print(f"{clear}{summary}  {self.samples_per_second():.0f} samples/s", flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)
