"""The command a new user runs first, run exactly that way: a real subprocess."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def run_cli(project_root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", *arguments],
        cwd=project_root,
        capture_output=True,
        text=True,
        check=False,
    )


def git_status(project_root: Path) -> set[str] | None:
    """`git status` of the work tree, untracked files included; None outside a git work tree."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project_root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return set(result.stdout.splitlines()) if result.returncode == 0 else None


@dataclass(frozen=True)
class ReadmeRun:
    result: subprocess.CompletedProcess[str]
    folder: Path  # the run folder it printed, relative to the project
    status_before: set[str] | None
    status_after: set[str] | None


@pytest.fixture(scope="module")
def readme_run(project_root: Path) -> Iterator[ReadmeRun]:
    """The README's first command, as it is: a new folder under outputs/smoke/ (removed after
    this module's tests), with `git status` before and after it. One run for both tests below
    (each start of the command costs a torch import), which pytest-xdist keeps in one worker
    (their xdist_group)."""
    before = git_status(project_root)
    result = run_cli(project_root, "--config", "configs/smoke.yaml")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.split("run folder: ")[1].split("\n")[0])
    try:
        yield ReadmeRun(result, folder, before, git_status(project_root))
    finally:
        shutil.rmtree(project_root / folder)


@pytest.mark.xdist_group("readme_run")
def test_smoke_train_from_the_command_line(project_root: Path, readme_run: ReadmeRun) -> None:
    assert readme_run.result.returncode == 0, readme_run.result.stderr
    assert "done:" in readme_run.result.stdout
    assert (project_root / readme_run.folder / "metrics.jsonl").is_file()


def test_bad_override_exits_2_with_one_line(project_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        project_root, "--config", "configs/smoke.yaml", f"output_dir={tmp_path}", "optim.lr=fast"
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "optim.lr" in result.stderr


def run_in_terminal(project_root: Path, output_dir: Path, ci: bool) -> str:
    """Run the smoke config with stdout on a pseudo-terminal, as a person at a shell would."""
    import os
    import pty

    controller, terminal = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        env["CI"] = "true"
    process = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", "--config",
         "configs/smoke.yaml", f"output_dir={output_dir}", "train.epochs=2"],
        cwd=project_root, stdout=terminal, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=120)
    os.close(controller)
    assert process.returncode == 0
    return b"".join(chunks).decode()


@pytest.mark.slow
def test_a_terminal_gets_a_live_line_and_ci_gets_plain_lines(
    project_root: Path, tmp_path: Path
) -> None:
    live = run_in_terminal(project_root, tmp_path / "live", ci=False)
    assert "\r" in live
    assert "samples/s" in live
    # The live line itself (drawn at the first host sync, step 10), not only the epoch lines.
    assert re.search(r"\repoch 1/2 \[[#.]{20}\] 10/16  loss \d", live), live
    plain = run_in_terminal(project_root, tmp_path / "plain", ci=True)
    assert "\r" not in plain.replace("\r\n", "\n")
    assert plain.count("epoch ") == 2  # one line per epoch, no live line


@pytest.mark.xdist_group("readme_run")
def test_a_smoke_run_leaves_git_status_unchanged(project_root: Path, readme_run: ReadmeRun) -> None:
    """Outputs, checkpoints and caches are ignored: training never dirties the work tree."""
    if readme_run.status_before is None:
        pytest.skip("not inside a git work tree")
    assert readme_run.folder.parent == Path("outputs") / "smoke"
    assert (project_root / readme_run.folder / "checkpoints" / "last.pt").is_file()
    assert readme_run.status_after == readme_run.status_before


def test_console_scripts_are_installed() -> None:
    """One script per command, each calling that module's main (one is run: each start costs a
    torch import)."""
    scripts, package = Path(sys.executable).parent, "{{ cookiecutter.package_name }}"
    for command in ("train", "evaluate", "predict", "export", "sweep", "report"):
        script = (scripts / f"{{ cookiecutter.project_slug }}-{command}").read_text()
        assert f"from {package}.{command} import main" in script, command
    train = scripts / "{{ cookiecutter.project_slug }}-train"
    result = subprocess.run([str(train), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "key=value" in result.stdout
