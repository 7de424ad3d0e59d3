"""metrics.jsonl: one JSON object per line, flushed per line so a crash loses nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled  # off on every process but the main one
        self._file: IO[str] | None = None

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
        self._file.flush()


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
