"""Helpers shared by the template's tests: running the tools, a bake's files, and a template
repository that moves on (for the `cruft update` tests). Test modules import from here, never
from one another; fixtures live in conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.baking import TEMPLATE_ROOT
from tests.git_identity import GIT_IDENTITY

# What a copy of this checkout leaves out: git's own folder, environments and caches.
NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "demo", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"
)
# Template files the update tests edit, as the template repository names them.
PACKAGE_SOURCE = "{{cookiecutter.project_slug}}/src/{{cookiecutter.package_name}}"
RUN_LOG = f"{PACKAGE_SOURCE}/run_log.py"
CNN = f"{PACKAGE_SOURCE}/models/cnn.py"
README = "{{cookiecutter.project_slug}}/README.md"


def set_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in GIT_IDENTITY.items():
        monkeypatch.setenv(variable, value)


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the nox session's environment)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed; run the tests through `nox -s tests`"
    return found


def run(
    *command: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command with the tests' git identity; with `check`, a failure shows its output."""
    env = {**os.environ, **GIT_IDENTITY, **(env or {})}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


def generated_files(project: Path) -> set[str]:
    """Every file of a bake, relative to it, git's own folder left out."""
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def commit(repository: Path, message: str) -> None:
    run("git", "add", "-A", cwd=repository)
    # --allow-empty: a clean checkout (CI's) committed over its own clone changes nothing.
    run("git", "commit", "-q", "--allow-empty", "-m", message, cwd=repository)


def snapshot(repository: Path) -> Path:
    """This checkout's working tree, committed as the first commit of a new repository."""
    shutil.copytree(TEMPLATE_ROOT, repository, ignore=NOT_TEMPLATE)
    run("git", "init", "-q", "-b", "main", cwd=repository)
    commit(repository, "template v1")
    return repository


def publish(template: Path, root: Path) -> Path:
    """A bare clone at root/your-org/torch-template.git and a cookiecutter config whose `gh:`
    leads there, as `gh:` leads to GitHub; returns the config file."""
    root.mkdir(parents=True, exist_ok=True)
    run("git", "clone", "-q", "--bare", str(template),
        str(root / "your-org" / "torch-template.git"), cwd=root)  # fmt: skip
    config = root / "cookiecutter.yaml"
    config.write_text(
        f"cookiecutters_dir: {root / 'cookiecutters'}\nreplay_dir: {root / 'replay'}\n"
        f"abbreviations:\n  gh: file://{root}/{{0}}.git\n",
        encoding="utf-8",
    )
    return config


def bake_the_readme_way(config: Path, output: Path, *options: str) -> Path:
    """`cookiecutter gh:<org>/torch-template`, as the README says, with no questions."""
    output.mkdir(parents=True, exist_ok=True)
    run(tool("cookiecutter"), "--no-input", "--config-file", str(config), *options,
        "gh:your-org/torch-template", "--output-dir", str(output), cwd=output.parent)  # fmt: skip
    return output / "my-torch-project"


def cruft_state(project: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    return state


def template_version(template: Path) -> str:
    context = json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))
    version: str = context["_template_version"]
    return version
