"""What the project's command lines share: an error a user can fix is one line on stderr and
an exit code (2: a usage or config error, 1: a failure), never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .checkpoint import CheckpointDamagedError
from .config import ConfigError
from .data.mnist import DatasetDamagedError, DatasetMissingError
from .guards import TrainingFailedError
from .inference import InputError

FAILURES = (
    TrainingFailedError,
    DatasetMissingError,
    DatasetDamagedError,
    CheckpointDamagedError,
    InputError,
)


def run_command(name: str, action: Callable[[], object]) -> int:
    """Run `action`; its fixable errors become one line and an exit code."""
    try:
        action()
    except ConfigError as error:
        print(f"{name}: config error: {error}", file=sys.stderr)
        return 2
    except FAILURES as error:
        print(f"{name} failed: {error}", file=sys.stderr)
        return 1
    return 0
