"""Run folders and checkpoints anywhere fsspec reaches: `s3://` (AWS, MinIO and other
S3-compatible stores), `gs://`, `az://`, or a local path (`file://` too).

A run with a remote `output_dir` works in a local staging folder (`$XDG_CACHE_HOME`, default
`~/.cache`, `/<package>/runs/<key>`, one per URL) and a `Mirror` uploads each file once it is
complete, in the order it was written, from a background thread: a checkpoint after its atomic
local write, metrics.jsonl and run.json at each flush. So the remote never names a checkpoint
that is not there yet, and a slow or unreachable store never stops a step. Credentials come
only from each library's own configuration (`AWS_*` variables, `AWS_ENDPOINT_URL` for MinIO,
`GOOGLE_APPLICATION_CREDENTIALS`, ...), never from a config file.

`python -m <package>.storage sync SRC DEST` copies a run folder (or a tree of them) between any
two locations, skipping files that are already identical.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import hashlib
import importlib
import json
import logging
import os
import posixpath
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic_files import write_atomically, write_bytes
from .errors import (
    CheckpointDamagedError,
    ConfigError,
    MissingPackageError,
    StorageError,
    run_command,
    sync_extra,
)
from .run_files import METRICS, RUN_MARKERS, RunFiles

PACKAGE = __package__ or "project"
# protocol -> (the package that implements it, the project's extra that installs it)
PROTOCOL_PACKAGES = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", None),
    "abfs": ("adlfs", None),
    "abfss": ("adlfs", None),
}
# package -> what its library reads for credentials, for a run that finds none
CREDENTIALS = {
    "s3fs": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    "gcsfs": "set GOOGLE_APPLICATION_CREDENTIALS (or run with the machine's service account)",
    "adlfs": "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
}
# Fail fast when a store does not answer: the background uploads retry on their own schedule.
PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {"config_kwargs": {"connect_timeout": 5, "read_timeout": 30,
                             "retries": {"max_attempts": 2, "mode": "standard"}}},
}  # fmt: skip
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # then every 15 s


@functools.cache
def botocore_loader() -> Any:
    """The botocore data loader every S3 session of this process shares. A session of its own
    parses S3's service description (megabytes of JSON) again: 0.23 s of CPU for each remote
    opened, 0.07 s with the loader shared (a run opens its remote folder several times, and a
    search once per trial)."""
    return importlib.import_module("aiobotocore.session").AioSession().get_component("data_loader")


def protocol_options(protocol: str) -> dict[str, Any]:
    """What fsspec's filesystem for `protocol` is opened with."""
    options = dict(PROTOCOL_OPTIONS.get(protocol, {}))
    if PROTOCOL_PACKAGES.get(protocol, ("",))[0] == "s3fs":
        # A session per remote still, so credentials are read as the environment says now.
        session = importlib.import_module("aiobotocore.session").AioSession()
        session.register_component("data_loader", botocore_loader())
        options["session"] = session
    return options


def fsspec_module() -> Any:
    return importlib.import_module("fsspec")  # by name: fsspec ships no type information


def protocol_of(location: str) -> str | None:
    protocol, _ = fsspec_module().core.split_protocol(location)
    return None if protocol in (None, "file", "local") else str(protocol)


def is_remote(location: str) -> bool:
    return "://" in location and protocol_of(location) is not None


def local_path(location: str) -> Path:
    """A local location as a Path (`file:///x` -> `/x`)."""
    return Path(location.removeprefix("file://"))


def installed_protocols() -> list[str]:
    found = []
    for protocol, (package, _) in PROTOCOL_PACKAGES.items():
        with contextlib.suppress(ImportError):
            importlib.import_module(package)
            found.append(protocol)
    return found


@dataclass
class Remote:
    """One remote folder: `url`, and the filesystem and path fsspec found for it."""

    url: str
    filesystem: Any
    root: str

    def path(self, relative: str = "") -> str:
        return posixpath.join(self.root, relative) if relative else self.root

    def url_of(self, relative: str) -> str:
        return f"{self.url.rstrip('/')}/{relative}"

    def exists(self, relative: str) -> bool:
        return bool(self.filesystem.exists(self.path(relative)))

    def read(self, relative: str) -> bytes | None:
        try:
            return bytes(self.filesystem.cat_file(self.path(relative)))
        except FileNotFoundError:
            return None

    def download(self, relative: str, destination: Path) -> bool:
        """`relative` into `destination`, written whole; False when the remote has no such file."""
        try:
            with self.filesystem.open(self.path(relative), "rb") as source:
                write_atomically(destination, lambda file: shutil.copyfileobj(source, file))
        except FileNotFoundError:
            return False
        return True

    def upload(self, source: Path, relative: str) -> None:
        self.filesystem.put_file(str(source), self.path(relative))

    def write(self, relative: str, data: bytes) -> None:
        """One object, put whole: a reader sees the old one or the new one, never half."""
        self.filesystem.pipe_file(self.path(relative), data)

    def holds_run(self) -> bool:
        """A run has written here (the same markers as a local folder's, run_files.py)."""
        return any(self.exists(name) for name in RUN_MARKERS)

    def files(self) -> dict[str, dict[str, Any]]:
        """Relative path -> fsspec's details (size, ETag, mtime, ...) of every file below."""
        found = self.filesystem.find(self.root, detail=True) if self.exists("") else {}
        prefix = self.root.rstrip("/") + "/"
        return {
            name.removeprefix(prefix): info for name, info in found.items()
            if info.get("type") != "directory"
        }  # fmt: skip

    def modified(self, relative: str) -> float:
        info = self.filesystem.info(self.path(relative))
        stamp = info.get("LastModified") or info.get("mtime") or info.get("updated") or 0
        return float(stamp.timestamp()) if hasattr(stamp, "timestamp") else float(stamp)

    def check_writable(self) -> None:
        """Write and delete a small probe: a missing bucket, no credentials or no permission
        stop the run before it trains, with one line."""
        probe = self.path(f".write-check-{os.getpid()}-{time.time_ns()}")
        try:
            self.filesystem.pipe_file(probe, b"")
            self.filesystem.rm_file(probe)
        except Exception as error:  # each library raises its own kinds; all mean the same here
            raise ConfigError(remote_failure(self.url, error)) from None


def remote_failure(url: str, error: BaseException) -> str:
    """One line saying why `url` cannot be used, with the fix."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")[:200]
    if "Credentials" in type(error).__name__ or "credentials" in text.lower():
        package, _ = PROTOCOL_PACKAGES.get(protocol_of(url) or "", ("", None))
        fix = CREDENTIALS.get(package, "set the credentials that your store's library reads")
    elif isinstance(error, FileNotFoundError) or "NoSuchBucket" in text:
        fix = "create the bucket first, or check its name"
    elif isinstance(error, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        fix = "these credentials may not write there; use a bucket or prefix they may write"
    else:
        fix = "check the URL, the network and AWS_ENDPOINT_URL (for MinIO and the like)"
    return f"cannot write to {url} ({text}); {fix}"


def open_remote(url: str) -> Remote:
    """The remote folder `url`; a protocol whose library is missing, an unknown protocol or a URL
    with credentials in it is one line."""
    protocol = protocol_of(url)
    if protocol is None:
        raise ConfigError(f"{url} is a local path, not a remote URL")
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(
            f"{url}: credentials do not belong in a URL (they would reach config.yaml and "
            "run.json); use the store's own configuration, e.g. AWS_ACCESS_KEY_ID"
        )
    try:
        filesystem, root = fsspec_module().core.url_to_fs(
            url, skip_instance_cache=True, use_listings_cache=False, **protocol_options(protocol)
        )
    except ImportError:
        package, extra = PROTOCOL_PACKAGES.get(protocol, (protocol, None))
        how = sync_extra(extra) if extra else f"uv pip install {package}"
        message = f"{url}: {protocol}:// needs the {package} package; {how}"
        raise MissingPackageError(message) from None
    except ValueError:
        known = ", ".join(installed_protocols()) or "none"
        raise ConfigError(
            f"{url}: unknown protocol {protocol}://; use a local path or an installed one: {known}"
        ) from None
    return Remote(url, filesystem, str(root).rstrip("/"))


def join_location(base: str, *parts: str) -> str:
    """`base/part/...` for a local folder or a URL alike (a URL keeps its `//`)."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def local_side(location: str, kind: str) -> Path:
    """A local folder for what cannot live remotely (logs, job scripts): the folder itself when
    it is local, a cache folder for a URL."""
    return cache_folder(kind, location) if is_remote(location) else local_path(location)


def holds_run(location: str) -> bool:
    """Whether a run has written to the folder `location` (local or remote)."""
    if is_remote(location):
        return open_remote(location).holds_run()
    return RunFiles(local_path(location)).holds_run()


def write_whole(location: str, data: bytes) -> None:
    """The file `location` (a path or a URL) created or replaced whole: a local file atomically,
    a remote one as one object."""
    if not is_remote(location):
        write_bytes(local_path(location), data)
        return
    folder, name = location.rstrip("/").rsplit("/", 1)
    try:
        open_remote(folder).write(name, data)
    except Exception as error:  # each library raises its own kinds; all mean the same here
        raise StorageError(remote_failure(location, error)) from None


def remote_status(location: str) -> str | None:
    """The status in run.json of the run at `location` (local or remote); None without one."""
    if not is_remote(location):
        return RunFiles(local_path(location)).status()
    try:
        text = open_remote(location).read(RunFiles(Path()).manifest.as_posix())
        status = json.loads(text or b"{}").get("status")
    except (ValueError, AttributeError):
        return None
    return str(status) if status is not None else None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / PACKAGE


def cache_folder(kind: str, url: str) -> Path:
    """A local folder for `url` under the cache: the same URL, the same folder."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    name = posixpath.basename(url.rstrip("/")) or "root"
    return cache_root() / kind / f"{key}-{name}"


def staging_folder(url: str) -> Path:
    """Where a run with the remote output_dir `url` works before its files are uploaded."""
    return cache_folder("runs", url)


def fetch_checkpoint(location: str) -> Path:
    """A checkpoint named by a local path or a URL, as a local file (a URL is downloaded)."""
    if not is_remote(location):
        return local_path(location)
    remote = open_remote(posixpath.dirname(location))
    copy = cache_folder("files", location) / posixpath.basename(location)
    try:
        found = remote.download(posixpath.basename(location), copy)
    except StorageError:
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointDamagedError(f"cannot read {location} ({reason})") from None
    if not found:
        raise CheckpointDamagedError(
            f"checkpoint {location} does not exist; pass a file such as "
            "s3://<bucket>/<run>/checkpoints/best.pt"
        )
    return copy


def fetch_tree(location: str, wanted: Callable[[str], bool]) -> Path:
    """A local copy of the files below `location` for which `wanted(relative path)` holds; a
    local location is returned as it is."""
    if not is_remote(location):
        return local_path(location)
    remote = open_remote(location)
    copy = cache_folder("copies", location)
    for relative in remote.files():
        if wanted(relative):
            remote.download(relative, copy / relative)
    return copy


class Mirror:
    """Uploads the files of one local folder to a remote one, beside training.

    `publish(path)` queues a complete file; one worker thread uploads them in order, retrying
    each with backoff while the store fails (the log says so once, and once again when it
    works). `close` waits up to `wait_seconds` for the queue to empty and returns what is still
    not uploaded. An upload reads the file as it is when the upload starts; the order keeps the
    remote a run that resumes if the run is killed between two uploads:
    - a file published again goes to the end of the queue, behind the files published before it
      (what it holds now may need them there first);
    - except a file that only grows (`growing`: metrics.jsonl, cut back only when a resume
      starts), which keeps its place: what it holds now includes what it held, and a checkpoint
      published after the records it covers must not go up before them (a resume drops the
      records after its checkpoint's step, but cannot make up missing ones);
    - a file published again while its upload was failing gives that upload up for the queued
      entry (`superseded`), and one published again during a successful upload goes up again,
      so the last content of every file reaches the remote.
    Not covered: a file replaced in the instant between its turn coming and its upload opening
    it goes up as replaced (taking a copy of every file at publish would close that).
    """

    def __init__(
        self, local: Path, remote: Remote, say: Callable[[str], None], growing: Sequence[str] = ()
    ) -> None:
        self.local, self.remote, self.say = local, remote, say
        self.growing = frozenset(growing)
        # A store that drops a connection leaves aiohttp's tasks failed in fsspec's event loop,
        # which asyncio reports as "Task exception was never retrieved" with a traceback. The
        # upload's own error is handled below (retried, and said once): keep that noise out.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        self.pending: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.uploading: str | None = None  # taken from `pending`, on its way
        self.changed = threading.Condition()
        self.closing = False
        self.failing = False
        self.worker = threading.Thread(target=self.upload_all, name="uploads", daemon=True)
        self.worker.start()

    def publish(self, path: Path) -> None:
        relative = path.relative_to(self.local).as_posix()
        with self.changed:
            if relative not in self.growing:
                self.pending.pop(relative, None)
            self.pending.setdefault(relative, None)  # not queued (or on its way): to the end
            self.changed.notify()

    def upload_all(self) -> None:
        while True:
            with self.changed:
                while not self.pending and not self.closing:
                    self.changed.wait()
                if not self.pending:
                    return
                relative, _ = self.pending.popitem(last=False)
                self.uploading = relative
            uploaded = self.upload_with_retries(relative)
            with self.changed:
                self.uploading = None
                if not uploaded and relative not in self.pending:  # closing, time up: reported
                    self.pending[relative] = None
                    self.pending.move_to_end(relative, last=False)
                self.changed.notify_all()
            if not uploaded:
                return

    def upload_with_retries(self, relative: str) -> bool:
        """True once `relative` is on the remote (or gone locally); False when the run is closing
        and the time to wait for the uploads is up."""
        for attempt in range(1_000_000):
            try:
                self.remote.upload(self.local / relative, relative)
            except FileNotFoundError:  # removed locally since (a folder cleaned up): nothing to do
                return True
            except Exception as error:  # the store's own kinds: connection, permission, throttling
                if not self.failing:
                    self.failing = True
                    self.say(
                        f"uploads to {self.remote.url} are failing ({type(error).__name__}); "
                        "training goes on and they are retried in the background"
                    )
                with self.changed:
                    if self.closing and self.deadline_passed():
                        return False
                    wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    self.changed.wait(timeout=wait)
                    if self.superseded(relative):
                        return True
                continue
            if self.failing:
                self.failing = False
                self.say(f"uploads to {self.remote.url} work again")
            return True
        return False

    def superseded(self, relative: str) -> bool:
        """Published again while its upload kept failing: the queued entry goes up in its place,
        behind what was published before it; a retry would read the file as it is now (a newer
        last.pt, ahead of the records it covers). A growing file's retry goes on: what it holds
        now includes what the files published after it need."""
        return relative not in self.growing and relative in self.pending

    deadline = 0.0

    def deadline_passed(self) -> bool:
        return time.monotonic() >= self.deadline

    def close(self, wait_seconds: float) -> list[str]:
        """Wait for the uploads (at most `wait_seconds`); the relative paths still pending."""
        with self.changed:
            self.closing = True
            self.deadline = time.monotonic() + wait_seconds
            self.changed.notify_all()
        self.worker.join(timeout=max(wait_seconds, 0) + 1)
        with self.changed:
            uploading = self.uploading
            on_its_way = [uploading] if uploading and uploading not in self.pending else []
            return [*on_its_way, *self.pending]


class NoUploads:
    """A local run folder: every file is where it belongs as soon as it is written."""

    def publish(self, path: Path) -> None:
        pass

    @contextlib.contextmanager
    def finished(self, wait_seconds: float) -> Iterator[None]:
        yield


class RunUploads:
    """The uploads of a run whose output_dir is remote: a Mirror of its staging folder, which is
    removed once everything is uploaded. What is still not uploaded when the run ends is one
    line naming the folder and the command that uploads it (exit 1)."""

    def __init__(self, staging: Path, url: str) -> None:
        self.staging, self.url = staging, url
        self.mirror = Mirror(
            staging, open_remote(url), lambda text: print(text, flush=True), growing=(METRICS,)
        )

    def publish(self, path: Path) -> None:
        self.mirror.publish(path)

    @contextlib.contextmanager
    def finished(self, wait_seconds: float) -> Iterator[None]:
        try:
            yield
        except BaseException:
            left = self.mirror.close(wait_seconds)
            if left:  # the run's own error is the exit line; this one says where its files are
                print(self.not_uploaded(left), file=sys.stderr)
            else:
                shutil.rmtree(self.staging, ignore_errors=True)
            raise
        left = self.mirror.close(wait_seconds)
        if left:
            raise StorageError(self.not_uploaded(left))
        shutil.rmtree(self.staging, ignore_errors=True)

    def not_uploaded(self, left: list[str]) -> str:
        return (
            f"{len(left)} files of the run are not on {self.url} yet ({', '.join(left[:3])}"
            f"{', ...' if len(left) > 3 else ''}); they are in {self.staging}: upload them with "
            f"`python -m {PACKAGE}.storage sync {self.staging} {self.url}`"
        )


def uploads_for(staging: Path, url: str | None, uploads_here: bool) -> NoUploads | RunUploads:
    """What keeps a run's folder where it belongs; only the main process uploads."""
    return RunUploads(staging, url) if url and uploads_here else NoUploads()


def sync(source: str, destination: str) -> tuple[int, int]:
    """Copy every file below `source` to `destination` (local or remote, either way) unless it
    is already there with the same size and content; returns (copied, already there)."""
    copied = same = 0
    there = {name: (size, digest) for name, size, digest in listing(destination)}
    for relative, size, digest in listing(source):
        if "/." in f"/{relative}":
            continue  # write probes and temporary files
        other_size, other_digest = there.get(relative, (None, None))
        unknown = digest is None or other_digest is None  # then the size alone decides
        if other_size == size and (unknown or digest == other_digest):
            same += 1
            continue
        copy_file(source, destination, relative)
        copied += 1
    return copied, same


def listing(location: str) -> Iterator[tuple[str, int, str | None]]:
    """(relative path, size, MD5 or None) of every file below `location`."""
    if not is_remote(location):
        root = local_path(location)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    yield path.relative_to(root).as_posix(), path.stat().st_size, md5_of(path)
        return
    for relative, info in sorted(open_remote(location).files().items()):
        etag = str(info.get("ETag", "")).strip('"')
        # An S3 ETag is the MD5 of the content unless the object was uploaded in parts ("-N").
        digest = etag if etag and "-" not in etag else None
        yield relative, int(info.get("size", 0)), digest


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def copy_file(source: str, destination: str, relative: str) -> None:
    if is_remote(source):
        remote = open_remote(source)
        if is_remote(destination):
            open_remote(destination).write(relative, remote.read(relative) or b"")
        else:
            remote.download(relative, local_path(destination) / relative)
    elif is_remote(destination):
        open_remote(destination).upload(local_path(source) / relative, relative)
    else:
        target_path = local_path(destination) / relative
        with (local_path(source) / relative).open("rb") as original:
            write_atomically(target_path, lambda file: shutil.copyfileobj(original, file))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy run folders between any two locations.")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("sync", help="copy SRC's files to DEST, skipping identical ones")
    copy.add_argument("source", metavar="SRC", help="a run folder or a tree of them (path or URL)")
    copy.add_argument("destination", metavar="DEST", help="where they go (path or URL)")
    arguments = parser.parse_args(argv)

    def sync_and_report() -> None:
        if not is_remote(arguments.source) and not local_path(arguments.source).is_dir():
            raise ConfigError(f"SRC {arguments.source} is not a folder; pass a run folder")
        copied, same = sync(arguments.source, arguments.destination)
        print(f"synced {arguments.source} -> {arguments.destination}: {copied} copied, {same} same")

    return run_command("storage sync", sync_and_report)


if __name__ == "__main__":
    sys.exit(main())
