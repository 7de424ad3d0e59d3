"""A commit pins the whole environment: the first `scripts/setup_dev.sh` of a fresh bake makes
uv.lock (and the smoke baseline) and asks for them to be committed; a second clone's setup then
installs exactly the same packages from it (--locked), its runs record the lock's hash, and
`nox -s lock` (CI) fails once pyproject.toml and uv.lock disagree.

One test, as it sets up two environments: torch comes from where tests/torch_source.py says (a
local CPU wheel, or the PyTorch CPU index), never a CUDA build; everything else from PyPI or uv's
cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from tests.baking import bake
from tests.helpers import run, tool
from tests.torch_source import torch_install_env


def stdout_of(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return run(*command, cwd=cwd, env=env).stdout


def installed(project: Path) -> dict[str, str]:
    """Name -> version in the project's .venv (the editable project itself left out)."""
    frozen = stdout_of(tool("uv"), "pip", "freeze", "--python", str(project / ".venv"), cwd=project)
    return dict(line.split("==") for line in frozen.splitlines() if "==" in line)


def test_a_second_clone_installs_exactly_what_the_first_setup_locked(tmp_path: Path) -> None:
    first = bake(tmp_path / "first")
    env = {
        **os.environ,
        **torch_install_env(tmp_path),
        # No bytecode compiled ahead (setup_dev.sh's default): these environments start Python
        # twice each, and Python writes bytecode for what they import.
        "UV_COMPILE_BYTECODE": "0",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    output = stdout_of("bash", "scripts/setup_dev.sh", cwd=first, env=env)
    assert "New: uv.lock baselines/smoke.json. Commit them" in output
    assert stdout_of("git", "status", "--porcelain", cwd=first) == "?? baselines/\n?? uv.lock\n"
    stdout_of("git", "add", "uv.lock", "baselines/smoke.json", cwd=first)
    stdout_of("git", "commit", "--quiet", "-m", "build: lock the environment", cwd=first, env=env)

    second = tmp_path / "second"
    stdout_of("git", "clone", "--quiet", str(first), str(second), cwd=tmp_path)
    output = stdout_of("bash", "scripts/setup_dev.sh", cwd=second, env=env)
    assert "New:" not in output
    assert stdout_of("git", "status", "--porcelain", cwd=second) == ""  # the lock, used as it is
    packages = installed(second)
    assert "torch" in packages
    assert packages == installed(first)

    # The smoke run that setup_dev.sh trained names every package and the lock.
    [manifest_path] = (second / "outputs" / "smoke").glob("*/run.json")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    lock_hash = hashlib.sha256((second / "uv.lock").read_bytes()).hexdigest()
    assert (manifest["lock_sha256"], manifest["lock_differences"]) == (lock_hash, [])
    assert manifest["packages"]["my-torch-project"] == "0.1.0"
    normalized = {re.sub(r"[-_.]+", "-", name).lower(): v for name, v in packages.items()}
    assert {name: manifest["packages"][name] for name in normalized} == normalized

    # A dependency added to pyproject.toml but not locked: CI's `nox -s lock` fails.
    pyproject = second / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"numpy>=1.26",', '"numpy>=1.26", "six>=1.16",'), "utf-8")
    check = subprocess.run(
        [tool("nox"), "--non-interactive", "-s", "lock"],
        cwd=second, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode != 0
    assert "needs to be updated" in check.stdout + check.stderr
