"""Where a run writes, so that two runs never share a folder.

- Without `output_dir`, every new run gets a folder of its own, `outputs/<name>/<UTC time>`
  (`name` defaults to the config file's name: `configs/smoke.yaml` -> `outputs/smoke/...`), and
  `resume=auto` continues the run of that name that saved a checkpoint last.
- `output_dir=X` makes X the run folder itself (scripts, CI and sweeps read `X/metrics.jsonl`).
  A new run into an X that already holds a run is refused before anything is written, as Hugging
  Face's `overwrite_output_dir` does: continue it with `resume=auto`, or choose another folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .config import Config
from .distributed import DistributedContext, share_from_main
from .errors import ConfigError, ProjectError, storage_error
from .remote_runs import latest_remote_run, new_remote_run, remote_folder
from .run_files import RunFiles, RunFolder, resumable_runs, run_of_checkpoint
from .storage import fetch_checkpoint, is_remote, local_path, open_remote


def agree_on_run_folder(config: Config, context: DistributedContext) -> RunFolder:
    """The main process chooses (under torchrun, ranks could see different clocks and files);
    every rank gets its choice, or raises its error."""
    chosen: RunFolder | ProjectError | None = None
    if context.is_main:
        try:
            chosen = choose_run_folder(config)
        except ProjectError as error:
            chosen = error  # raised on every rank below, not just here: no rank waits for ever
    shared = share_from_main(chosen, context)
    if isinstance(shared, ProjectError):
        raise shared
    if not isinstance(shared, RunFolder):
        raise TypeError(f"the main process shared {shared!r}, not a run folder")
    return shared


def choose_run_folder(config: Config) -> RunFolder:
    """The folder and checkpoint this run uses; a new folder is created here, so that two runs
    started in the same second cannot both take it. Called by the main process only."""
    if is_remote(config.output_dir):
        return remote_folder(config, config.output_dir)
    if config.output_dir:
        return explicit_folder(config, local_path(config.output_dir))
    if is_remote(config.runs_root):
        return in_remote_root(config, config.runs_root)
    if is_remote(config.resume):
        return from_remote_checkpoint(config, config.resume)
    runs = local_path(config.runs_root) / config.name
    if config.resume == "auto":
        latest = latest_resumable_run(runs)
        if latest is not None:
            return RunFolder(latest, RunFiles(latest).last)
        return RunFolder(
            new_run_folder(runs),
            None,
            created=True,
            note=f"resume=auto: no run in {runs} has a checkpoint yet, so this is a new run",
        )
    if config.resume:
        checkpoint = existing_checkpoint(config.resume)
        # <run>/checkpoints/last.pt continues in <run>; any other file starts a new folder.
        run = run_of_checkpoint(checkpoint)
        if run is not None:
            return RunFolder(run.root, checkpoint)
        return RunFolder(new_run_folder(runs), checkpoint, created=True)
    return RunFolder(new_run_folder(runs), None, created=True)


def in_remote_root(config: Config, root: str) -> RunFolder:
    """No output_dir, a remote runs_root: the latest run of this name (resume=auto) or a new one."""
    latest = latest_remote_run(root, config.name) if config.resume == "auto" else None
    if latest is not None:
        return remote_folder(config, latest)
    chosen = remote_folder(replace(config, resume=""), new_remote_run(root, config.name))
    if config.resume == "auto":
        note = f"resume=auto: no run in {root}/{config.name} has a checkpoint yet; a new run"
        return replace(chosen, note=note)
    return chosen


def from_remote_checkpoint(config: Config, checkpoint: str) -> RunFolder:
    """resume=<URL>: continue in that remote run when the URL is its last.pt, else a new local
    run from the downloaded file."""
    layout = RunFiles(Path())
    folder, _, name = checkpoint.rstrip("/").rpartition("/")
    run_url, _, checkpoints = folder.rpartition("/")
    is_last = (checkpoints, name) == (layout.checkpoints.name, layout.last.name)
    if is_last and open_remote(run_url).exists(layout.manifest.as_posix()):
        return remote_folder(config, run_url)
    downloaded = fetch_checkpoint(checkpoint)
    runs = local_path(config.runs_root) / config.name
    return RunFolder(new_run_folder(runs), downloaded, created=True)


def explicit_folder(config: Config, folder: Path) -> RunFolder:
    if folder.exists() and not folder.is_dir():  # else the first write would fail mid-run
        raise ConfigError(
            f"output_dir={folder} is a file, not a folder; choose a folder's path, or leave "
            "output_dir out for outputs/<name>/<time>"
        )
    files = RunFiles(folder)
    last = files.last
    if config.resume == "auto":
        if last.is_file():
            return RunFolder(folder, last)
        if files.holds_run():
            # Asked to continue, but the run died before its first checkpoint: redo it in place.
            return RunFolder(folder, None, note=f"resume=auto: {last} not found; starting over")
        return RunFolder(folder, None)
    if config.resume:
        checkpoint = existing_checkpoint(config.resume)
        if files.holds_run() and not files.owns(checkpoint):
            raise ConfigError(
                f"output_dir={folder} holds another run; to continue from {checkpoint} choose "
                "an empty output_dir, or leave output_dir out for a new folder"
            )
        return RunFolder(folder, checkpoint)
    if files.holds_run():
        raise ConfigError(
            f"output_dir={folder} already holds a run; continue it with resume=auto, or start "
            "over in a new folder (another output_dir, or none for outputs/<name>/<time>)"
        )
    return RunFolder(folder, None)


@contextlib.contextmanager
def removed_if_left_empty(folder: RunFolder) -> Iterator[None]:
    """A run that fails before writing anything (missing data, a tracker's package) leaves no
    empty folder behind in outputs/."""
    try:
        yield
    finally:
        if folder.created and folder.path.is_dir() and not any(folder.path.iterdir()):
            folder.path.rmdir()


def existing_checkpoint(resume: str) -> Path:
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"resume={resume!r}: no such checkpoint; use resume=auto or a path")
    return path


def latest_resumable_run(runs: Path) -> Path | None:
    """The folder under `runs` whose `last.pt` was written last (any folder name: a SLURM job's
    `slurm-<id>` too), or None."""
    latest = max(resumable_runs(runs), key=lambda run: run.last.stat().st_mtime_ns, default=None)
    return None if latest is None else latest.root


def new_run_folder(runs: Path) -> Path:
    """`runs/<UTC time>`, or `<time>-2`, `-3`, ... when runs start in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, runs, "create") from None
    for attempt in range(1, 1000):
        folder = runs / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()  # atomic: of two runs racing for a name, one gets it
        except FileExistsError:
            continue
        except OSError as error:
            raise storage_error(error, folder, "create") from None
        return folder
    raise ConfigError(f"could not make a new run folder in {runs}; set output_dir")
