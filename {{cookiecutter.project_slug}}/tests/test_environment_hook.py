"""The pre-commit hook `environment-matches-lock` refuses a commit from an environment whose
packages are not the versions uv.lock pins (scripts/check_environment.py); and the environments
nox installs hold the source as it is now."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

HOOK_ID = "environment-matches-lock"
PACKAGE = "{{ cookiecutter.package_name }}"


LOCK = """version = 1
requires-python = ">=3.10"

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "pyyaml" }]

[[package]]
name = "pyyaml"
version = "PINNED"
source = { registry = "https://pypi.org/simple" }
"""


def lock_pinning_pyyaml(pinned: str) -> str:
    """A uv.lock of a project that needs PyYAML, pinned at `pinned`."""
    return LOCK.replace("PINNED", pinned)


def check_environment(project_root: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """The hook's command, as pre-commit runs it, in `folder` (whose uv.lock it compares)."""
    script = project_root / "scripts" / "check_environment.py"
    return subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, check=False
    )


def test_the_hook_refuses_an_environment_with_a_package_at_another_version(
    project_root: Path, tmp_path: Path
) -> None:
    (tmp_path / "uv.lock").write_text(lock_pinning_pyyaml("5.1"), encoding="utf-8")
    result = check_environment(project_root, tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"the environment of {sys.executable} differs from uv.lock: pyyaml {version('pyyaml')} "
        "installed, uv.lock has 5.1. Fix: bash scripts/setup_dev.sh (to commit anyway, once: "
        f"SKIP={HOOK_ID} git commit ...)\n"
    )


def test_the_hook_lets_an_environment_as_locked_commit(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uv.lock").write_text(lock_pinning_pyyaml(version("pyyaml")), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts src/ first
    script = runpy.run_path(str(project_root / "scripts" / "check_environment.py"))
    assert script["problem"]() is None
    assert script["main"]() == 0


def test_the_hook_runs_before_every_commit(project_root: Path) -> None:
    config = yaml.safe_load((project_root / ".pre-commit-config.yaml").read_text("utf-8"))
    [hook] = [hook for repo in config["repos"] for hook in repo["hooks"] if hook["id"] == HOOK_ID]
    assert hook["entry"] == "python scripts/check_environment.py"
    assert hook["always_run"] is True
    assert hook["pass_filenames"] is False
    assert hook["stages"] == ["pre-commit"]


def test_an_edit_in_src_reaches_the_next_install_of_the_project_as_a_wheel(
    project_root: Path, tmp_path: Path
) -> None:
    """nox's sessions install the project as a wheel (noxfile.install_locked: --no-editable),
    and uv reuses a wheel it built until a file of [tool.uv] cache-keys changes: an edit in
    src/ must be one, or nox tests the code of an earlier build."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (scripts/setup_dev.sh and nox install it)")
    project = tmp_path / "project"
    shutil.copytree(project_root / "src", project / "src", ignore=shutil.ignore_patterns("__py*"))
    for name in ("pyproject.toml", "uv.lock", "README.md", "LICENSE"):
        if (project_root / name).is_file():
            shutil.copy2(project_root / name, project / name)
    environment = tmp_path / "environment"
    sync = [uv, "sync", "--locked", "--inexact", "--no-default-groups", "--no-editable"]
    sync.append("--offline")  # what it installs is in uv's cache: the session installed it
    variables = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(environment)}

    def install() -> None:
        result = subprocess.run(sync, cwd=project, env=variables, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr  # e.g. UV_NO_CACHE set: nothing cached

    install()
    source = project / "src" / PACKAGE / "__init__.py"
    source.write_text(source.read_text(encoding="utf-8") + "EDITED = True\n", encoding="utf-8")
    install()
    [installed] = environment.glob(f"lib/python*/site-packages/{PACKAGE}/__init__.py")
    assert installed.read_text(encoding="utf-8").endswith("EDITED = True\n")
