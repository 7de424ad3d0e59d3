"""The one way the project writes a file whole: to a temp file in the same folder, flushed to
disk, then renamed over the target. A reader, a crash or a kill at any moment sees either the old
file or the new one, never half of one; a failed write (a full disk) leaves the old one intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import storage_error


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# What a plain open() would give the file: mkstemp makes it readable by its owner only, and a
# team sharing run folders needs them as readable as any other file they write.
FILE_MODE = 0o666 & ~umask()


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace `path` with what `write` writes into the open file it is given."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise storage_error(error, path, "write") from None
    temporary = Path(temporary_name)
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)  # atomic on POSIX and Windows
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise storage_error(error, path, "write") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    def write(file: IO[bytes]) -> None:
        file.write(data)

    write_atomically(path, write)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, values: dict[str, Any]) -> None:
    write_text(path, json.dumps(values, indent=2) + "\n")
