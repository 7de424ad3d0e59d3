"""Turn SIGTERM/SIGINT (a scheduler's preemption, Ctrl-C) into a request the loop honours.

The handler only sets a flag; the training loop checks it at each host sync (every
`train.log_every` steps), writes a checkpoint and exits, so the work done so far survives and
`resume=auto` carries on exactly.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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


class PreemptedError(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; exit with 128 + signal number."""

    def __init__(self, signal_number: int, checkpoint: str) -> None:
        super().__init__(
            f"stopped by {signal.Signals(signal_number).name}; checkpoint saved to {checkpoint}; "
            "continue with resume=auto"
        )
        self.exit_code = 128 + signal_number
