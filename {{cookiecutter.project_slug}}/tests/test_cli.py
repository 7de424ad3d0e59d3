"""The command a new user runs first, run exactly that way: a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
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


def test_smoke_train_from_the_command_line(project_root: Path, tmp_path: Path) -> None:
    result = run_cli(project_root, "--config", "configs/smoke.yaml", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stdout
    assert (tmp_path / "metrics.jsonl").is_file()


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
         "configs/smoke.yaml", f"output_dir={output_dir}", "train.epochs=10"],
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
    plain = run_in_terminal(project_root, tmp_path / "plain", ci=True)
    assert "\r" not in plain.replace("\r\n", "\n")
    assert plain.count("epoch ") == 10


@pytest.mark.slow
def test_a_smoke_run_leaves_git_status_unchanged(project_root: Path) -> None:
    """Outputs, checkpoints and caches are ignored: training never dirties the work tree."""

    def status() -> set[str]:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=project_root, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.skip("not inside a git work tree")
        return set(result.stdout.splitlines())

    before = status()
    # The README's command as it is: a new folder under outputs/smoke/ on every run.
    result = run_cli(project_root, "--config", "configs/smoke.yaml")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.split("run folder: ")[1].split("\n")[0])
    try:
        assert folder.parent == Path("outputs") / "smoke"
        assert (project_root / folder / "checkpoints" / "last.pt").is_file()
        assert status() == before
    finally:
        shutil.rmtree(project_root / folder)


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
