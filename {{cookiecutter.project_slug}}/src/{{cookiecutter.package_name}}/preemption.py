"""Stopping from outside, resumably: SIGTERM/SIGINT (a scheduler's preemption, Ctrl-C) and a
wall-clock budget (`train.time_limit_minutes`, for a job that knows its own time limit).

Neither stops a step half-way: the signal handler only sets a flag and the budget is only read at
each host sync (every `train.log_every` steps), where the loop writes `last.pt` and exits, so the
work done so far survives and `resume=auto` carries on exactly.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# As GNU `timeout` reports a command that ran out of time.
TIME_LIMIT_EXIT_CODE = 124


class StopRequest:
    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        self.signal_number = signal_number

    def install(self) -> None:
        for handled in HANDLED_SIGNALS:
            signal.signal(handled, self._handle)

    def uninstall(self) -> None:
        for handled in HANDLED_SIGNALS:
            signal.signal(handled, signal.SIG_DFL)


class TimeBudget:
    """`minutes` of wall clock from now; 0 never runs out."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.deadline = time.monotonic() + minutes * 60

    def spent(self) -> bool:
        return self.minutes > 0 and time.monotonic() >= self.deadline


class PreemptedError(RuntimeError):
    """Training stopped from outside after saving a checkpoint that `resume=auto` continues."""

    def __init__(self, reason: str, checkpoint: str, *, status: str, exit_code: int) -> None:
        super().__init__(f"{reason}; checkpoint saved to {checkpoint}; continue with resume=auto")
        self.status = status  # for run.json
        self.exit_code = exit_code

    @classmethod
    def by_signal(cls, signal_number: int, checkpoint: str) -> PreemptedError:
        name = signal.Signals(signal_number).name
        exit_code = 128 + signal_number  # as a shell reports a command killed by that signal
        return cls(f"stopped by {name}", checkpoint, status="interrupted", exit_code=exit_code)

    @classmethod
    def at_time_limit(cls, minutes: float, checkpoint: str) -> PreemptedError:
        return cls(
            f"stopped at train.time_limit_minutes={minutes:g}", checkpoint,
            status="time_limit", exit_code=TIME_LIMIT_EXIT_CODE,
        )  # fmt: skip


class PrunedError(RuntimeError):
    """A search ended this run at an evaluation: its metric so far is hopeless (search.py)."""

    status = "pruned"  # for run.json
