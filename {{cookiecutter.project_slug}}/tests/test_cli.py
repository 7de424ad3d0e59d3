"""The command a new user runs first, run exactly that way: a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_smoke_train_from_the_command_line(tmp_path: Path) -> None:
    result = run_cli("--config", "configs/smoke.yaml", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stdout
    assert (tmp_path / "metrics.jsonl").is_file()


def test_bad_override_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("--config", "configs/smoke.yaml", f"output_dir={tmp_path}", "optim.lr=fast")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "optim.lr" in result.stderr
