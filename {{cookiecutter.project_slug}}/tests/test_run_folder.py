"""Two runs never share a folder, and a new run never touches an earlier run's files."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import ConfigError, PreemptedError
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.train import main, run

if TYPE_CHECKING:
    from helpers import CopyReferenceRun, StopAtSync


def contents(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_folders(root: Path) -> list[Path]:
    runs = root / "outputs" / "smoke"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_changes_nothing(
    reference_run_copy: CopyReferenceRun, smoke_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = reference_run_copy("run", "train.epochs=1")
    before = contents(first)
    capsys.readouterr()
    code = main(["--config", str(smoke_config), f"output_dir={first}", "train.epochs=1"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"output_dir={first} already holds a run" in error
    assert "resume=auto" in error
    assert contents(first) == before


def test_an_output_dir_that_is_a_file_is_refused_before_the_run_starts(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("a file, not a folder\n", encoding="utf-8")
    code = main(["--config", str(smoke_config), f"output_dir={existing}", "train.epochs=1"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"output_dir={existing} is a file, not a folder" in captured.err
    assert "run folder:" not in captured.out  # refused before the run said where it writes
    assert sorted(tmp_path.iterdir()) == [existing]
    assert existing.read_text(encoding="utf-8") == "a file, not a folder\n"


def test_runs_without_output_dir_get_a_new_folder_each(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(smoke_config), "train.epochs=1"]) == 0
    (first,) = run_folders(tmp_path)
    before = contents(first)
    assert main(["--config", str(smoke_config), "train.epochs=1"]) == 0
    assert len(run_folders(tmp_path)) == 2
    assert contents(first) == before
    for folder in run_folders(tmp_path):
        manifest = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "completed"


def test_resume_auto_without_output_dir_continues_the_latest_run(
    smoke_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop_at_sync: type[StopAtSync],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(smoke_config), "train.epochs=1"]) == 0  # an older, finished run
    with pytest.raises(PreemptedError):
        run(load_config(smoke_config), stop_at_sync(2))
    older, stopped = run_folders(tmp_path)
    assert main(["--config", str(smoke_config), "resume=auto"]) == 0
    assert run_folders(tmp_path) == [older, stopped]  # no new folder
    manifest = json.loads((stopped / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed"
    assert manifest["resumed_from"] == str(
        stopped.relative_to(tmp_path) / "checkpoints" / "last.pt"
    )


def test_a_run_that_fails_before_writing_leaves_no_empty_folder(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    damaged = tmp_path / "downloaded.pt"
    damaged.write_bytes(b"not a checkpoint")
    # A checkpoint outside any run folder resumes into a new folder, made before it is read.
    assert main(["--config", str(smoke_config), f"resume={damaged}"]) == 1
    assert run_folders(tmp_path) == []


def test_name_must_be_a_plain_folder_name(smoke_config: Path) -> None:
    assert load_config(smoke_config).name == "smoke"  # from the file's name
    with pytest.raises(ConfigError, match=r"name='\.\./elsewhere'"):
        load_config(smoke_config, ["name=../elsewhere"])


def limit_file_size(size: int) -> None:
    """In the child: files past `size` bytes fail to write with EFBIG, as a disk that fills."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(
    smoke_config: Path, reference_run_copy: CopyReferenceRun
) -> None:
    run_folder = reference_run_copy("run", "train.epochs=1")
    files = RunFiles(run_folder)
    saved = files.last.read_bytes()
    # Resumed for one more epoch where no file may be as large as a checkpoint.
    resumed = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", "--config",
         str(smoke_config), f"output_dir={run_folder}", "resume=auto", "train.epochs=2"],
        capture_output=True, text=True, check=False,
        preexec_fn=lambda: limit_file_size(len(saved) - 1),
    )  # fmt: skip
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.strip().splitlines() == [
        f"training failed: could not write {files.last} (File too large); the file is larger "
        "than this process may write (ulimit -f); write elsewhere"
    ]
    assert files.last.read_bytes() == saved  # the last good checkpoint, untouched
    assert sorted(path.name for path in files.checkpoints.iterdir()) == ["best.pt", "last.pt"]
    assert files.read_manifest()["status"] == "failed"


def test_an_output_dir_that_cannot_be_made_is_one_line_and_exit_1(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    assert main(["--config", str(smoke_config), f"output_dir={blocker / 'run'}"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"training failed: could not write {blocker / 'run'}")
    assert line.endswith("a part of the path is a file, not a folder; choose another path")
