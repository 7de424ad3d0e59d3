"""run.json: what produced a run (code, environment, seed) and how it ended.

Written at the start (status "running") and rewritten at the end, so even a crashed run says
which commit and environment it came from. The environment is every installed distribution with
its version, and the sha256 of the uv.lock it was installed from, with any package whose version
differs from that lock (torch is not in the lock: its version and CUDA are recorded beside it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .atomic_files import write_json
from .run_files import RunFiles

# The Dockerfile sets this to the image's tag, so a run records the exact environment it ran in.
IMAGE_TAG_VARIABLE = "CONTAINER_IMAGE_TAG"
LOCK_FILE = "uv.lock"


def git_output(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout, or git is not installed
    return result.stdout.strip()


def describe_environment() -> dict[str, Any]:
    # Imported here: the pre-commit hook scripts/check_environment.py imports this module for the
    # lock comparison, in environments without torch (nox's lint session).
    import torch

    status = git_output("status", "--porcelain", "--untracked-files=no")
    packages = installed_packages()
    return {
        # Inside the image there is no .git; the Dockerfile passes the commit instead.
        "git_sha": git_output("rev-parse", "HEAD") or os.environ.get("GIT_COMMIT"),
        "git_dirty": None if status is None else bool(status),
        "git_branch": git_output("rev-parse", "--abbrev-ref", "HEAD"),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "image_tag": os.environ.get(IMAGE_TAG_VARIABLE),
        **describe_lock(find_lock(), packages),
        "packages": packages,
    }


def normalize(name: str) -> str:
    """`PyYAML`, `pyyaml` and `py_yaml` are one distribution (PEP 503); uv.lock writes it so."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> dict[str, str]:
    """Name -> version of every distribution Python can import from, sorted by name. Where a
    name is installed twice on sys.path, the first one wins, as it does for imports."""
    return dict(scanned_packages())


@functools.cache
def scanned_packages() -> tuple[tuple[str, str], ...]:
    """installed_packages, read once per process: a process that trains many runs (a search
    worker's trials, the tests) would read every package's metadata again for each (~0.1 s)."""
    found: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:  # an install cut short can leave a folder without metadata
            found.setdefault(normalize(name), distribution.version)
    return tuple(sorted(found.items()))


def find_lock() -> Path | None:
    """The uv.lock of the checkout being run: in the working directory (the project's root, or
    /app in the image), else beside the source tree of an editable install."""
    for folder in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (folder / LOCK_FILE).is_file():
            return folder / LOCK_FILE
    return None


def describe_lock(lock: Path | None, packages: dict[str, str]) -> dict[str, Any]:
    """The lock's sha256, and `lock_differences`: None where there is no lock to compare with."""
    if lock is None:
        return {"lock_sha256": None, "lock_differences": None}
    data = lock.read_bytes()
    return {
        "lock_sha256": hashlib.sha256(data).hexdigest(),
        "lock_differences": lock_differences(data.decode("utf-8"), packages),
    }


def lock_differences(lock_text: str, packages: dict[str, str]) -> list[str] | None:
    """One line per installed package that the project needs at run time whose version is not
    the one uv.lock pins. Not compared: torch (not in the lock), the image's own packages and
    the dependency groups (lint and test tools), which do not change what a run computes."""
    needed = pinned_at_run_time(lock_text)
    if needed is None:
        return None
    differences = []
    for name, version in packages.items():
        pinned = needed.get(name, frozenset())
        if pinned and version not in pinned:
            listed = " or ".join(sorted(pinned))
            differences.append(f"{name} {version} installed, {LOCK_FILE} has {listed}")
    return differences


@functools.lru_cache(maxsize=2)
def pinned_at_run_time(lock_text: str) -> dict[str, frozenset[str]] | None:
    """The versions uv.lock pins for each package the project needs at run time, parsed once
    per lock text, as installed_packages is read once per process; None on Python 3.10."""
    try:  # by name, so that type checking for Python 3.10 passes too
        toml = importlib.import_module("tomllib")
    except ModuleNotFoundError:  # Python 3.10: tomllib is new in 3.11
        return None
    entries = toml.loads(without_artifacts(lock_text)).get("package", [])
    locked: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        locked.setdefault(entry["name"], []).append(entry)
    return {
        name: frozenset(entry["version"] for entry in locked.get(name, []) if "version" in entry)
        for name in runtime_closure(locked)
    }


def without_artifacts(lock_text: str) -> str:
    """uv.lock less its `sdist = {...}` lines and `wheels = [...]` lists: the URLs and hashes of
    the files to download, which are two thirds of the text and which nothing here reads. Parsing
    what is left takes a tenth of the time (about 0.1 s less at every run's start)."""
    kept: list[str] = []
    in_wheels = False
    for line in lock_text.splitlines(keepends=True):
        if in_wheels:
            in_wheels = line.strip() != "]"
        elif line.startswith("wheels = ["):
            in_wheels = not line.rstrip().endswith("]")
        elif not line.startswith("sdist = "):
            kept.append(line)
    return "".join(kept)


def runtime_closure(locked: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The project (uv.lock's editable or virtual package) with all its extras, and everything
    those need in turn, as uv.lock records the dependencies; its dependency groups left out."""
    projects = [
        entry for entries in locked.values() for entry in entries
        if {"editable", "virtual"} & set(entry.get("source", {}))
    ]  # fmt: skip
    # Each project as a dependency on itself with every one of its extras.
    pending = [
        {"name": project["name"], "extra": list(project.get("optional-dependencies", {}))}
        for project in projects
    ]
    needed: set[str] = set()
    expanded: set[tuple[str, str | None]] = set()  # (name, extra): None stands for the base
    while pending:
        dependency = pending.pop()
        name = dependency["name"]
        for part in (None, *dependency.get("extra", [])):
            if (name, part) in expanded:
                continue
            expanded.add((name, part))
            for entry in locked.get(name, []):
                if part is None:
                    pending.extend(entry.get("dependencies", []))
                else:
                    pending.extend(entry.get("optional-dependencies", {}).get(part, []))
        needed.add(name)
    return needed


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Manifest:
    """One run's run.json: what produced it, from the start, and how it ended, at the end."""

    def __init__(self, files: RunFiles, **details: Any) -> None:
        self.files = files
        self.values: dict[str, Any] = {
            "status": "running", "started": now(), **details, **describe_environment(),
        }  # fmt: skip

    def write(self) -> None:
        write_json(self.files.manifest, self.values)

    def finish(self, status: str, **details: Any) -> None:
        """The last word: completed, stopped_early, interrupted, time_limit, pruned or failed."""
        self.values.update(status=status, ended=now(), **details)
        self.write()
