"""metrics.jsonl: one JSON object per line.

Lines reach the disk at least once a second and always before a checkpoint is written, so a crash
loses at most the last second, and those steps are redone by `resume=auto` anyway. Flushing every
line cost a system call per optimizer step, a measurable share of a small model's step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType
from typing import IO


class MetricsLog:
    FLUSH_SECONDS = 1.0

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled  # off on every process but the main one
        self._file: IO[str] | None = None
        self._last_flush = time.monotonic()

    def __enter__(self) -> MetricsLog:
        if self.enabled:
            self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, **values: float | int | str) -> None:
        if not self.enabled:
            return
        if self._file is None:
            raise RuntimeError("MetricsLog.write called outside its `with` block")
        self._file.write(json.dumps(values) + "\n")
        if time.monotonic() - self._last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Push buffered lines to the disk (the training loop does so before each checkpoint)."""
        if self._file is not None:
            self._file.flush()
            self._last_flush = time.monotonic()


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
