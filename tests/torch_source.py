"""Where uv should get torch from, so no test or CI run downloads a multi-GB CUDA build.

If pip's configuration (`pip config list`, which includes PIP_FIND_LINKS) names a find-links
directory holding a torch wheel for this Python, uv is pointed at that wheel: UV_FIND_LINKS plus a
constraint pinning its exact version. Otherwise uv is told to take CPU wheels from the PyTorch
index (UV_TORCH_BACKEND=cpu), as uv's PyTorch guide documents. Nothing here names a path of a
particular machine: it is all read at run time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

WHEEL_NAME = re.compile(r"^torch-(?P<version>[^-]+)-(?P<python>cp\d+)-")


def pip_config_listing() -> str:
    """`pip config list` from this interpreter's pip, or else the pip on PATH: environments made
    by uv (nox's sessions, the test session included) have no pip of their own, and without this
    the tests inside them would fall back to the PyTorch index."""
    for pip in ([sys.executable, "-m", "pip"], ["pip3"], ["pip"]):
        try:
            return subprocess.run(
                [*pip, "config", "list"], capture_output=True, text=True, check=True, timeout=60
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
    return ""


def pip_find_links() -> list[Path]:
    """Directories that pip's configuration adds with find-links (none if pip is absent)."""
    listing = pip_config_listing()
    directories = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            for entry in value.strip().strip("'\"").split():
                path = Path(entry.removeprefix("file://"))
                if path.is_dir():
                    directories.append(path)
    return directories


def local_torch_wheel() -> tuple[Path, str] | None:
    """(directory, version) of the newest local torch wheel built for this interpreter."""
    python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = []
    for directory in pip_find_links():
        for wheel in directory.glob("torch-*.whl"):
            match = WHEEL_NAME.match(wheel.name)
            if match and match["python"] == python_tag:
                found.append((match["version"], directory))
    if not found:
        return None
    version, directory = max(found, key=lambda item: release_numbers(item[0]))
    return directory, version


def release_numbers(version: str) -> tuple[int, ...]:
    """`2.13.0+cpu` -> (2, 13, 0): compare releases as numbers, not text."""
    return tuple(int(part) for part in re.findall(r"\d+", version.partition("+")[0]))


def torch_install_env(scratch_dir: Path) -> dict[str, str]:
    """Environment variables for any uv call that may install torch."""
    # Never let uv download a Python: a missing interpreter should fail loudly instead.
    env = {"UV_PYTHON_DOWNLOADS": "never"}
    local = local_torch_wheel()
    if local is None:
        env["UV_TORCH_BACKEND"] = "cpu"
        return env
    directory, version = local
    constraint = scratch_dir / "torch-constraint.txt"
    constraint.write_text(f"torch=={version}\n", encoding="utf-8")
    env["UV_FIND_LINKS"] = str(directory)
    env["UV_CONSTRAINT"] = str(constraint)
    return env


if __name__ == "__main__":
    print(local_torch_wheel() or "no local torch wheel; uv would use UV_TORCH_BACKEND=cpu")
