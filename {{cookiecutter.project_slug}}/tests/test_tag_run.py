"""Tagging a finished run: a real git repository, a real training run, a real annotated tag."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.tag_run import main as tag_run
from {{ cookiecutter.package_name }}.train import run


def git(repository: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_tag_points_at_the_runs_commit_and_carries_its_metrics(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Tests")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "tests@example.com")
    git(tmp_path, "init", "-q")
    (tmp_path / "notes.txt").write_text("experiment\n")
    git(tmp_path, "add", "notes.txt")
    git(tmp_path, "commit", "-q", "-m", "exp: baseline")
    run_commit = git(tmp_path, "rev-parse", "HEAD")
    monkeypatch.chdir(tmp_path)
    run(load_config(smoke_config, ["name=baseline", "train.epochs=2"]))
    (run_dir,) = (tmp_path / "outputs" / "baseline").iterdir()  # outputs/baseline/<UTC time>
    (tmp_path / "notes.txt").write_text("later work\n")
    git(tmp_path, "commit", "-q", "-am", "feat: later work")

    assert tag_run([str(run_dir)]) == 0
    tag = git(tmp_path, "tag", "--list", f"exp/baseline-{run_dir.name}-*")
    assert git(tmp_path, "rev-list", "-n", "1", tag) == run_commit
    message = git(tmp_path, "tag", "--list", "--format=%(contents)", tag)
    assert "val_accuracy" in message
    assert "config sha256" in message


def test_an_unfinished_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text('{"status": "interrupted", "git_sha": "abc"}')
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert tag_run([str(tmp_path)]) == 1
    assert "not 'completed'" in capsys.readouterr().err
