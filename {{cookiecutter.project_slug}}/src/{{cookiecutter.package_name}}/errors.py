"""Every error a user can fix, and the one way a command turns them into a line and an exit code.

This module imports nothing of the project, so any module can raise these without an import
cycle. Each error carries its exit code (2: a usage or config error, 1: a failure) and the status
a run that stops on it records in run.json. `run_command` is what every command's `main` calls:
an error below becomes one line on stderr and its exit code, never a traceback. So does a failure
of the machine a user can fix (a full disk, a folder that cannot be made or written), naming the
path and the fix.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable


class ProjectError(Exception):
    """An error whose message says what went wrong and how to fix it."""

    exit_code = 1
    run_status = "failed"  # what run.json says when a run stops on it


class ConfigError(ProjectError, ValueError):
    """A bad key, type or value in a config file, an override or a command-line option."""

    exit_code = 2


class MissingPackageError(ConfigError):
    """An optional part needs a package that is not installed; the message names the command
    that installs it. Exit 2 in every command: the set-up, not the run, needs fixing."""


def sync_extra(extra: str) -> str:
    """The command that installs one of the project's extras into .venv: --inexact, because a
    plain `uv sync` removes torch, which uv.lock leaves out."""
    return f"uv sync --locked --inexact --extra {extra}"


class TrainingFailedError(ProjectError, RuntimeError):
    """The run cannot go on (or did not learn); the message says where and why."""


class DatasetMissingError(ProjectError, FileNotFoundError):
    """A dataset file is absent; the message says how to get it."""


class DatasetDamagedError(ProjectError, ValueError):
    """A dataset file cannot be read; the message names it and how to get a good copy."""


class UnreadableImageError(ProjectError, ValueError):
    """Pillow cannot decode a file; the message says why (callers add which file and the fix)."""


class CheckpointDamagedError(ProjectError, RuntimeError):
    """A checkpoint is missing or cannot be read; the message names it and what to do instead."""


class InputError(ProjectError, ValueError):
    """An input a command cannot use; the message names the file and what it needs instead."""


class RunUnreadableError(ProjectError, ValueError):
    """A run's files cannot be read; the message names the file and the line."""


class TagError(ProjectError, RuntimeError):
    """A run cannot be tagged; the message says why and what to do."""


class HealthCheckError(ProjectError, RuntimeError):
    """This machine cannot train as it is; the message says what to check."""


class BaselineMismatchError(ProjectError, RuntimeError):
    """Training no longer gives the losses its stored baseline holds; the message says from
    which step, and how to accept an intended change."""


class StorageError(ProjectError, OSError):
    """A file or folder could not be written (a full disk, no permission, a path through a
    file); the message names the path. What was saved before it is intact."""


class PreemptedError(ProjectError, RuntimeError):
    """Training stopped from outside after saving a checkpoint that `resume=auto` continues."""

    def __init__(self, reason: str, checkpoint: str, *, run_status: str, exit_code: int) -> None:
        super().__init__(f"{reason}; checkpoint saved to {checkpoint}; continue with resume=auto")
        self.run_status = run_status
        self.exit_code = exit_code


class PrunedError(ProjectError, RuntimeError):
    """A search ended this run at an evaluation: its metric so far is hopeless (search.py)."""

    run_status = "pruned"


# errno values that mean "this machine's storage", with what the user can do about each.
STORAGE_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space within your quota or write elsewhere",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f); write elsewhere",
    errno.EACCES: "make it writable or write elsewhere",
    errno.EPERM: "make it writable or write elsewhere",
    errno.EROFS: "the filesystem is read-only; write elsewhere",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file is in the way; move it or choose another path",
    errno.ENOENT: "a folder on the way does not exist; create it or choose another path",
}


def storage_error(error: OSError, path: object = None, action: str = "use") -> StorageError:
    """`error` as one line naming the path (the error's own, or `path`) and the fix."""
    where = error.filename if error.filename is not None else path
    reason = error.strerror or str(error) or type(error).__name__
    fix = STORAGE_FIXES.get(error.errno or 0, "check the path, its permissions and free space")
    return StorageError(f"could not {action} {where} ({reason}); {fix}")


def error_line(error: ProjectError, command: str | None) -> str:
    """The one line a command prints: `predict: config error: ...`, `predict failed: ...`. The
    training command (`command=None`) keeps its shorter `config error: ...`, `training failed:
    ...`; a stop from outside says it all itself ("stopped by SIGTERM; checkpoint saved ...")."""
    if isinstance(error, PreemptedError):
        return str(error)
    if isinstance(error, ConfigError):
        return f"{command}: config error: {error}" if command else f"config error: {error}"
    return f"{command or 'training'} failed: {error}"


def run_command(command: str | None, action: Callable[[], object]) -> int:
    """Run `action`; its fixable errors become one line on stderr and their exit code."""
    try:
        action()
    except ProjectError as error:
        print(error_line(error, command), file=sys.stderr)
        return error.exit_code
    except OSError as error:  # the machine's storage, outside the places that name it already
        print(error_line(storage_error(error), command), file=sys.stderr)
        return StorageError.exit_code
    return 0
