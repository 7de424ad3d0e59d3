"""Sweeps run each combination once, continue what was interrupted, and report on it all."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from {{ cookiecutter.package_name }} import report, sweep
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import PreemptedError
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.train import run

if TYPE_CHECKING:
    from helpers import SharedFolders, StopAtSync

SMALL = ["train.epochs=2", "data.num_train=512", "data.num_val=128"]
GRID = ["--seeds", "0,1", "--grid", "optim.lr=0.001,0.003"]
RUN_NAMES = ["lr-0.001_seed-0", "lr-0.001_seed-1", "lr-0.003_seed-0", "lr-0.003_seed-1"]


@pytest.fixture(scope="session")
def swept(
    smoke_config: Path, shared_folders: SharedFolders, stop_at_sync: type[StopAtSync]
) -> tuple[Path, str]:
    """A 2 x 2 sweep in which one run was stopped by SIGTERM before the sweep started, made once
    per session and only read; the sweep root and what the sweep printed."""

    def sweep_with_a_stopped_run(folder: Path) -> None:
        root = folder / "sweep"
        stopped = load_config(smoke_config, [*SMALL, "optim.lr=0.003", "seed=1",
                                             f"output_dir={root / RUN_NAMES[3]}"])  # fmt: skip
        with pytest.raises(PreemptedError):
            run(stopped, stop_at_sync(2))
        arguments = ["--config", str(smoke_config), *GRID, "--output-root", str(root)]
        printed = run_sweep([*arguments, "--jobs", "2", *SMALL])
        (folder / "printed.txt").write_text(printed, encoding="utf-8")

    folder = shared_folders.get("sweep", sweep_with_a_stopped_run)
    return folder / "sweep", (folder / "printed.txt").read_text(encoding="utf-8")


def run_sweep(arguments: list[str]) -> str:
    """sweep.main's exit code must be 0; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert sweep.main(arguments) == 0
    return printed.getvalue()


def test_a_sweep_trains_every_combination_and_continues_an_interrupted_run(
    swept: tuple[Path, str],
) -> None:
    root, printed = swept
    assert sorted(path.name for path in root.iterdir()) == RUN_NAMES
    for name in RUN_NAMES:
        manifest = json.loads((root / name / "run.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "completed", name
        config = load_config(root / name / "config.yaml")
        assert (config.seed, config.optim.lr) == (int(name[-1]), float(name.split("_")[0][3:]))
    assert "4 runs, 0 already finished" in printed
    continued = (root / RUN_NAMES[3] / "train.log").read_text(encoding="utf-8")
    assert "resumed from" in continued  # the stopped run went on from its checkpoint


def test_running_the_same_sweep_again_trains_nothing(
    swept: tuple[Path, str], smoke_config: Path
) -> None:
    root, _ = swept
    before = {name: (root / name / "metrics.jsonl").read_bytes() for name in RUN_NAMES}
    arguments = ["--config", str(smoke_config), *GRID, "--output-root", str(root), *SMALL]
    assert "4 runs, 4 already finished" in run_sweep(arguments)
    assert {name: (root / name / "metrics.jsonl").read_bytes() for name in RUN_NAMES} == before


def test_slurm_dry_run_prints_one_array_task_per_run_and_writes_nothing(
    smoke_config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sweep"
    script = run_sweep(["--config", str(smoke_config), *GRID, "--output-root", str(root),
                        "--slurm", "--dry-run"])  # fmt: skip
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "#SBATCH --array=0-3\n" in script
    assert "exec bash scripts/slurm_train.sbatch" in script
    for index, name in enumerate(RUN_NAMES):
        assert f"  {index}) overrides=(" in script
        assert f"output_dir={root / name})" in script
    assert not root.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "optim.lrr=0.1,0.3"], "unknown key optim.lrr"),
        (["--grid", "optim.lr=0.1,,0.3"], "--grid optim.lr=0.1,,0.3: an empty value"),
        (["--grid", "optim.lr=fast"], "optim.lr='fast' should be of type float"),
        (["--seeds", "0,zero"], "--seeds 0,zero: use integers"),
        (["output_dir=elsewhere"], "output_dir=elsewhere: the sweep sets it for each run"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_and_writes_nothing(
    smoke_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    root = tmp_path / "sweep"
    code = sweep.main(["--config", str(smoke_config), "--output-root", str(root), *arguments])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert message in error
    assert not root.exists()


def test_report_compares_configurations_over_seeds(swept: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = swept
    assert report.main([str(root), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| run | optim.lr | seed | commit | status |" in text
    for name in RUN_NAMES:
        assert f"| {name} | " in text
    groups = [line for line in text.splitlines() if line.startswith("| optim.lr=")]
    assert [line.split(" | ")[1:3] for line in groups] == [["2", "0, 1"], ["2", "0, 1"]]
    assert all(" ± " in line for line in groups)
    if importlib.util.find_spec("matplotlib") is not None:
        assert "![loss.png](loss.png)" in text
        assert (tmp_path / "loss.png").stat().st_size > 10_000
        assert (tmp_path / "validation.png").stat().st_size > 10_000
    else:
        assert "Plots need matplotlib" in text


def test_report_without_matplotlib_writes_tables_and_says_how_to_get_plots(
    swept: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = swept
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert report.main([str(root / RUN_NAMES[0]), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| lr-0.001_seed-0 |" not in text  # one run: its folder is the report's base
    assert "| . | " in text
    assert "uv pip install matplotlib" in text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.md"]


def test_report_names_a_run_it_cannot_read_and_reports_the_rest(
    swept: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = swept
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("run.json", "config.yaml"):
        (damaged / name).write_bytes((root / RUN_NAMES[0] / name).read_bytes())
    # Damage inside the file (a line cut short at its very end is a kill, and is left out).
    lines = '{"step": 1, "loss": 2.3}\n{"step": 2, "lo\n{"step": 3, "loss": 2.2}\n'
    (damaged / "metrics.jsonl").write_text(lines, "utf-8")
    out = tmp_path / "out"
    assert report.main([str(root), str(damaged), "--out", str(out)]) == 0
    assert f"skipped {damaged / 'metrics.jsonl'} line 2 is not JSON" in capsys.readouterr().err
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "## Skipped" in text
    assert "line 2 is not JSON" in text
    assert text.count("| completed |") == 4


def test_a_last_line_cut_short_by_a_kill_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.3}\n{"step": 2, "lo', "utf-8")
    assert RunFiles(tmp_path).read_metrics() == [{"step": 1, "loss": 2.3}]


def test_report_of_a_folder_without_runs_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no runs (folders with run.json)" in error
