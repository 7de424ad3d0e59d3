"""The pre-commit hook `environment-matches-lock` refuses a commit from an environment whose
packages are not the versions uv.lock pins (scripts/check_environment.py)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

HOOK_ID = "environment-matches-lock"


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
