"""Which remote folder a run uses, and the local staging copy it works in (storage.py).

The rules are the local ones (run_folder.py): a new run into a remote folder that holds a run is
refused; `resume=auto` continues the run there, on any machine: with an empty local cache it
downloads what a resume needs (run.json, config.yaml, metrics.jsonl, last.pt), so a requeued job
on a new node carries on exactly. A staging folder left by a run that was killed before its
uploads caught up is uploaded first when it is ahead of the remote, and never silently dropped.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .config import Config
from .errors import CheckpointDamagedError, ConfigError
from .run_files import RunFiles, RunFolder
from .storage import PACKAGE, Remote, fetch_checkpoint, open_remote, staging_folder, sync

RELATIVE = RunFiles(Path())  # the run-folder layout, as paths relative to a run's root
PULLED_FOR_RESUME = (RELATIVE.manifest, RELATIVE.config, RELATIVE.metrics, RELATIVE.last)


def relative(path: Path) -> str:
    return path.as_posix()


def remote_folder(config: Config, url: str) -> RunFolder:
    """The folder for `output_dir=url` (or a run below a remote runs_root): its staging copy."""
    remote = open_remote(url)
    remote.check_writable()  # a missing bucket or credentials stop here, before any training
    staging = staging_folder(url)
    holds = remote.holds_run()
    last = relative(RELATIVE.last)
    if config.resume == "auto":
        if remote.exists(last):
            note = settle_leftovers(staging, remote)
            return RunFolder(staging, pull_for_resume(remote, staging), note=note, uri=url)
        refuse_leftovers(staging, url)
        note = f"resume=auto: {remote.url_of(last)} not found; starting over" if holds else None
        return RunFolder(staging, None, note=note, uri=url)
    if config.resume:
        if config.resume.rstrip("/") == remote.url_of(last):
            note = settle_leftovers(staging, remote)
            return RunFolder(staging, pull_for_resume(remote, staging), note=note, uri=url)
        if holds:
            raise ConfigError(
                f"output_dir={url} holds another run; to continue from {config.resume} choose "
                "an empty output_dir, or leave output_dir out for a new folder"
            )
        refuse_leftovers(staging, url)
        return RunFolder(staging, fetch_checkpoint(config.resume), uri=url)
    if holds:
        raise ConfigError(
            f"output_dir={url} already holds a run; continue it with resume=auto, or start "
            "over in a new folder (another output_dir, or none for <runs_root>/<name>/<time>)"
        )
    refuse_leftovers(staging, url)
    return RunFolder(staging, None, uri=url)


def pull_for_resume(remote: Remote, staging: Path) -> Path:
    """A fresh staging folder with what a resume reads; returns its last.pt."""
    shutil.rmtree(staging, ignore_errors=True)
    for path in PULLED_FOR_RESUME:
        remote.download(relative(path), staging / path)
    if not (staging / RELATIVE.last).is_file():
        raise CheckpointDamagedError(
            f"checkpoint {remote.url_of(relative(RELATIVE.last))} does not exist; resume=auto "
            "continues a run that saved one, or pass a checkpoint that exists"
        )
    return staging / RELATIVE.last


def last_step(records_text: str) -> int:
    steps = [0]
    for line in records_text.splitlines():
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    return max(steps)


def settle_leftovers(staging: Path, remote: Remote) -> str | None:
    """A staging folder still here was left by a run killed before its uploads caught up:
    upload it when it is ahead of the remote (the same run, further on); else it is stale."""
    files = RunFiles(staging)
    if not files.metrics.is_file():
        return None
    remote_records = remote.read(relative(RELATIVE.metrics)) or b""
    local = last_step(files.metrics.read_text(encoding="utf-8"))
    if local <= last_step(remote_records.decode("utf-8", "replace")):
        return None
    copied, _ = sync(str(staging), remote.url)
    return f"uploaded {copied} files an earlier run had left in {staging} (it got to step {local})"


def settle_for_rerun(url: str) -> None:
    """Before a search trial whose process died runs again with resume=auto: a staging folder
    the dead process left is uploaded when it holds a last.pt the remote lacks (the trial goes
    on from it), and removed when neither side has one (the trial starts over in its folder, as
    a local one does), so that its leftovers never stop the search. With a last.pt on the
    remote, remote_folder settles them as for any run."""
    staging = staging_folder(url)
    if not staging.is_dir():
        return
    remote = open_remote(url)
    if remote.exists(relative(RELATIVE.last)):
        return
    if (staging / RELATIVE.last).is_file():
        sync(str(staging), url)
    else:
        shutil.rmtree(staging, ignore_errors=True)


def refuse_leftovers(staging: Path, url: str) -> None:
    if staging.is_dir() and any(staging.iterdir()):
        raise ConfigError(
            f"{staging} holds files of an earlier run to {url} that were never uploaded; upload "
            f"them with `python -m {PACKAGE}.storage sync {staging} {url}` (then continue with "
            "resume=auto), or delete that folder"
        )


def checkpoint_on_this_machine(folder: RunFolder) -> Path | None:
    """The checkpoint a run resumes from, on this machine: under torchrun on several nodes only
    the main process pulled it, so the other nodes download it themselves."""
    if folder.uri and folder.resume is not None and not folder.resume.is_file():
        open_remote(folder.uri).download(relative(RELATIVE.last), folder.resume)
    return folder.resume


def new_remote_run(root: str, name: str) -> str:
    """`root/name/<UTC time>` (or `-2`, `-3`, ...). An object store has no atomic mkdir: two runs
    started in the same second on two machines could pick one name; give them output_dir."""
    runs = open_remote(f"{root.rstrip('/')}/{name}")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for attempt in range(1, 1000):
        folder = stamp if attempt == 1 else f"{stamp}-{attempt}"
        if not runs.exists(folder):
            return runs.url_of(folder)
    raise ConfigError(f"could not find a free run folder in {runs.url}; set output_dir")


def latest_remote_run(root: str, name: str) -> str | None:
    """The run below `root/name` whose last.pt was written last, or None."""
    runs = open_remote(f"{root.rstrip('/')}/{name}")
    pattern = runs.path(f"*/{relative(RELATIVE.last)}")
    found = runs.filesystem.glob(pattern)
    if not found:
        return None
    prefix = runs.root.rstrip("/") + "/"
    ages = {path: runs.modified(str(path).removeprefix(prefix)) for path in found}
    latest = str(max(ages, key=lambda path: ages[path])).removeprefix(prefix)
    return runs.url_of(latest.split("/", 1)[0])
