"""run.json: what produced a run (code, environment, seed) and how it ended.

Written at the start (status "running") and rewritten at the end, so even a crashed run says
which commit and environment it came from.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# The Dockerfile sets this to the image's tag, so a run records the exact environment it ran in.
IMAGE_TAG_VARIABLE = "CONTAINER_IMAGE_TAG"


def git_output(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout, or git is not installed
    return result.stdout.strip()


def describe_environment() -> dict[str, Any]:
    status = git_output("status", "--porcelain", "--untracked-files=no")
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
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Through a temp file and a rename: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
