"""`cruft update` end to end: a template repository that moves on, a project a user has edited.

The template is copied into a temporary git repository (remote repositories are out of reach and
would not test this checkout anyway); `cruft create` and `cruft update` run as real commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.baking import TEMPLATE_ROOT
from tests.git_identity import GIT_IDENTITY

NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "demo", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"
)
RUN_LOG = "{{cookiecutter.project_slug}}/src/{{cookiecutter.package_name}}/run_log.py"
CNN = "{{cookiecutter.project_slug}}/src/{{cookiecutter.package_name}}/models/cnn.py"
README = "{{cookiecutter.project_slug}}/README.md"


def run(*command: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_IDENTITY}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def commit(repository: Path, message: str) -> None:
    run("git", "add", "-A", cwd=repository)
    run("git", "commit", "-q", "-m", message, cwd=repository)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    repository = tmp_path / "template"
    shutil.copytree(TEMPLATE_ROOT, repository, ignore=NOT_TEMPLATE)
    run("git", "init", "-q", "-b", "main", cwd=repository)
    commit(repository, "template v1")
    return repository


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    """A project made with `cruft create`, committed, then edited by its users."""
    created = run(tool("cruft"), "create", "--no-input", str(template),
                  "--output-dir", str(tmp_path / "work"), cwd=tmp_path)  # fmt: skip
    assert "git was left alone" in created.stdout  # cruft renders without cookiecutter's front end
    project = tmp_path / "work" / "my-torch-project"
    assert not (project / ".git").exists()
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit(project, "chore: generate project from torch-template")
    edit(project / "README.md", "## Train\n", "## Train\n\nOur team trains on the big box.\n")
    edit(project / "configs" / "default.yaml", "epochs: 10", "epochs: 40")
    cnn = project / "src" / "my_torch_project" / "models" / "cnn.py"
    edit(cnn, "POOLED_SIZE = 4", "POOLED_SIZE = 2  # our images are small")
    commit(project, "feat: our edits")
    return project


def test_update_brings_template_changes_and_keeps_user_edits(template: Path, project: Path) -> None:
    edit(template / RUN_LOG, '"""Everything', '"""(template v2) Everything')
    edit(template / README, "## Test\n", "## Test (template v2)\n")
    edit(template / CNN, "POOLED_SIZE = 4", "POOLED_SIZE = 8")  # a path the project skips
    commit(template, "template v2")
    assert run(tool("cruft"), "check", cwd=project, check=False).returncode != 0

    run(tool("cruft"), "update", "--skip-apply-ask", cwd=project)

    package = project / "src" / "my_torch_project"
    assert "(template v2)" in (package / "run_log.py").read_text(encoding="utf-8")
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "## Test (template v2)" in readme  # the template's change arrived
    assert "Our team trains on the big box." in readme  # beside the user's edit
    assert "POOLED_SIZE = 2  # our images are small" in (package / "models" / "cnn.py").read_text()
    assert "epochs: 40" in (project / "configs" / "default.yaml").read_text(encoding="utf-8")
    assert not list(project.rglob("*.rej"))
    nested = [p for p in project.rglob(".git") if p != project / ".git"]
    assert nested == []  # the post-gen hook made no repository inside the update
    assert run(tool("cruft"), "check", cwd=project, check=False).returncode == 0


def test_a_conflicting_update_is_visible_and_blocked_by_pre_commit(
    template: Path, project: Path
) -> None:
    # Both sides rewrite the same line, differently: a real conflict.
    edit(project / "README.md", "## Test\n", "## Checks we run\n")
    commit(project, "docs: rename the test section")
    edit(template / README, "## Test\n", "## Test (template v2)\n")
    commit(template, "template v2")

    run(tool("cruft"), "update", "--skip-apply-ask", cwd=project, check=False)

    leftovers = list(project.rglob("*.rej"))
    markers = "<<<<<<<" in (project / "README.md").read_text(encoding="utf-8")
    assert leftovers or markers, "the conflict was dropped silently"
    run("git", "add", "-A", cwd=project)
    guards = [
        run(tool("pre-commit"), "run", hook, "--all-files", cwd=project, check=False)
        for hook in ("no-update-leftovers", "check-merge-conflict")
    ]
    assert any(guard.returncode != 0 for guard in guards)
