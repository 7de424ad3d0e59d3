"""Searches draw from their space, prune, survive a SIGKILL, share a study between workers, and
are reported; bad input stops them with one line and nothing written.

Kept lean: one small search (`searched`, made once for the module) serves every test that only
reads a finished study, trials are a few steps of a width-4 model, and only the tests about
processes (a SIGKILL, `--jobs 2`) start any.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }} import report, search
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import PreemptedError
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.search_report import axis_labels, position
from {{ cookiecutter.package_name }}.search_space import parse_space
from {{ cookiecutter.package_name }}.search_worker import fail_dead_trials, sampler_for

from helpers import LONGER_TRIAL as LONGER
from helpers import NO_OPTUNA, StopAtSync, read_metrics, run_search, search_until_killed
from helpers import SEARCH_SPACE as SPACE
from helpers import TINY_TRIAL as TINY

# Its module-scoped fixtures are made once: every test of this module in one xdist worker.
pytestmark = pytest.mark.xdist_group("search")

STUDY = Path("outputs", "smoke", "search", "lr_width")  # below the folder the search runs in


def load_study(folder: Path) -> Any:
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    storage = f"sqlite:///{folder / 'study.db'}"
    return optuna.load_study(study_name=folder.name, storage=storage)


def manifest(folder: Path) -> dict[str, Any]:
    return RunFiles(folder).read_manifest()


@pytest.fixture(scope="module")
def searched(smoke_config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 3-trial search of two keys; the folder it ran in and what it printed. Tests
    that use it only read it, or copy what they change."""
    pytest.importorskip("optuna", reason=NO_OPTUNA)
    where = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        printed = run_search(["--config", str(smoke_config), "--trials", "3", *SPACE, *TINY])
    return where, printed


def test_each_trial_is_a_run_with_its_values_and_best_json_names_the_best(
    searched: tuple[Path, str],
) -> None:
    where, printed = searched
    study = where / STUDY
    assert sorted(path.name for path in study.iterdir()) == [
        "best.json", "study.db", "trial-0000", "trial-0001", "trial-0002",
    ]  # fmt: skip
    values = {}
    for number in range(3):
        folder = study / f"trial-{number:04d}"
        entry = manifest(folder)["search"]
        assert manifest(folder)["status"] == "completed"
        assert (entry["study"], entry["trial"], entry["metric"]) == ("lr_width", number, "val_loss")
        config = load_config(RunFiles(folder).config)
        assert entry["params"] == {"optim.lr": config.optim.lr, "model.width": config.model.width}
        assert 0.001 <= config.optim.lr <= 0.01
        assert 4 <= config.model.width <= 8
        values[number] = read_metrics(folder)[-1]
    best = json.loads((study / "best.json").read_text(encoding="utf-8"))
    number = min(values, key=lambda trial: values[trial]["val_loss"])
    assert (best["trial"], best["value"]) == (number, values[number]["val_loss"])
    assert best["run"] == str(STUDY / f"trial-{number:04d}")
    assert best["trials"] == {"complete": 3}
    assert "0 of 3 trials finished" in printed


def test_the_same_command_again_trains_nothing(
    searched: tuple[Path, str], smoke_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, _ = searched
    monkeypatch.chdir(where)
    before = {path: path.read_bytes() for path in STUDY.glob("trial-*/metrics.jsonl")}
    printed = run_search(["--config", str(smoke_config), "--trials", "3", *SPACE, *TINY])
    assert "3 of 3 trials finished" in printed
    assert {path: path.read_bytes() for path in STUDY.glob("trial-*/metrics.jsonl")} == before


def test_the_same_seed_suggests_the_same_values_in_a_fresh_study(
    searched: tuple[Path, str], smoke_config: Path
) -> None:
    """The worker's sampler for each trial, in a new study: the values the search drew."""
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    where, _ = searched
    drawn = [trial.params for trial in load_study(where / STUDY).get_trials()]
    space = parse_space(SPACE[1::2], smoke_config, TINY)

    def suggestions(seed: int) -> list[dict[str, Any]]:
        fresh = optuna.create_study()
        values = []
        for number in range(3):
            fresh.sampler = sampler_for(optuna, seed, number)
            trial = fresh.ask()
            values.append({dimension.key: dimension.suggest(trial) for dimension in space})
            fresh.tell(trial, 1.0)
        return values

    assert suggestions(0) == drawn
    assert suggestions(1) != drawn


def test_a_hopeless_trial_is_pruned_and_counts_towards_the_trials(
    searched: tuple[Path, str], smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four earlier trials far better at every evaluation: the median pruner stops the next."""
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    where, _ = searched
    (tmp_path / STUDY).mkdir(parents=True)
    shutil.copy(where / STUDY / "study.db", tmp_path / STUDY / "study.db")
    study = load_study(tmp_path / STUDY)
    model = study.trials[0]
    for _ in range(4):
        study.add_trial(optuna.trial.create_trial(
            params=model.params, distributions=model.distributions, value=0.001,
            intermediate_values=dict.fromkeys(model.intermediate_values, 0.001),
        ))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    printed = run_search(["--config", str(smoke_config), "--trials", "8", *SPACE, "--prune", *TINY])
    assert "trial 7: pruned, stopped at step 4: val_loss" in printed
    run_json = manifest(STUDY / "trial-0007")
    assert run_json["status"] == "pruned"
    assert run_json["step"] == 4  # the first of its two evaluations
    states = [trial.state.name for trial in load_study(STUDY).get_trials()]
    assert states == ["COMPLETE"] * 7 + ["PRUNED"]  # 8 finished: nothing more was started


def test_sigterm_stops_a_trial_at_its_checkpoint_and_the_same_command_continues_it(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stop_at_sync: type[StopAtSync],
) -> None:  # fmt: skip
    pytest.importorskip("optuna", reason=NO_OPTUNA)
    monkeypatch.chdir(tmp_path)
    arguments = ["--config", str(smoke_config), "--trials", "1", *SPACE, *LONGER]
    # The stop is read once by the worker, then at each sync: the trial stops at step 8 of 16.
    with pytest.raises(PreemptedError, match="stopped by SIGTERM"):
        search.search(search.parse_arguments(arguments), stop_at_sync(3))
    stopped = STUDY / "trial-0000"
    assert manifest(stopped)["status"] == "interrupted"
    first, queued = load_study(STUDY).get_trials()
    assert (first.state.name, queued.state.name) == ("FAIL", "WAITING")
    assert queued.user_attrs == {"run_folder": "trial-0000", "rerun_of": 0}

    run_search(arguments)
    first, continued = load_study(STUDY).get_trials()
    assert (continued.state.name, continued.params) == ("COMPLETE", first.params)
    assert "at epoch 2, step 8" in RunFiles(stopped).train_log.read_text(encoding="utf-8")
    assert manifest(stopped)["status"] == "completed"
    assert sorted(path.name for path in (tmp_path / STUDY).glob("trial-*")) == ["trial-0000"]


@pytest.mark.slow
def test_a_killed_search_goes_on_from_the_trials_checkpoint_with_two_workers(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL mid-trial leaves it running in the study; the same command (here with --jobs 2,
    two worker processes on one study) fails it and trains its values on from its last.pt."""
    pytest.importorskip("optuna", reason=NO_OPTUNA)
    arguments = ["--config", str(smoke_config), "--trials", "2", *SPACE]
    process = multiprocessing.get_context("fork").Process(
        target=search_until_killed, args=([*arguments, *LONGER], tmp_path, 3), daemon=True
    )
    process.start()
    killed = tmp_path / STUDY / "trial-0000"
    deadline = time.monotonic() + 60
    try:
        while not RunFiles(killed).last.is_file():
            assert process.is_alive(), f"the search exited with {process.exitcode}"
            assert time.monotonic() < deadline, "the first trial never saved a checkpoint"
            time.sleep(0.02)
    finally:
        process.kill()
        process.join(timeout=60)
    assert manifest(killed)["status"] == "running"  # killed mid-trial: nothing recorded its end

    monkeypatch.chdir(tmp_path)
    run_search([*arguments, "--jobs", "2", *LONGER])
    trials = load_study(STUDY).get_trials()
    assert [trial.state.name for trial in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["worker"]["pid"] == process.pid
    rerun = next(trial for trial in trials if trial.user_attrs.get("rerun_of") == 0)
    assert rerun.params == trials[0].params
    assert rerun.user_attrs["run_folder"] == "trial-0000"
    assert "at epoch 1, step 4" in RunFiles(killed).train_log.read_text(encoding="utf-8")
    assert manifest(killed)["status"] == "completed"
    assert manifest(killed)["search"]["rerun_of"] == 0
    workers = {trial.user_attrs["worker"]["pid"] for trial in trials[1:]}
    assert len(workers) == 2  # one trial each: two worker processes shared the study
    assert os.getpid() not in workers
    assert sorted(path.name for path in (tmp_path / STUDY).glob("trial-*")) == [
        "trial-0000", *(f"trial-{trial.number:04d}" for trial in trials[1:] if trial != rerun)
    ]  # fmt: skip


WORKERS = 4


def look_at_once(arguments: list[str], folder: Path, barrier: Any, taken: Any) -> None:
    """One of WORKERS worker processes (forked: no start-up), each with its own connection to
    the study: at once with the others it fails the dead trials, then takes a waiting one."""
    optuna = search.import_optuna()
    os.chdir(folder)
    plan = search.plan_search(search.parse_arguments(arguments))
    study = search.open_study(optuna, plan, search.storage_choice(plan, slurm=False))
    barrier.wait()
    fail_dead_trials(optuna, plan, study)
    barrier.wait()
    taken.put(study.ask().number)


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_workers_that_look_at_once_fail_each_dead_trial_once_and_take_each_trial_once(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str
) -> None:
    """Optuna's check-and-set of a trial's state relies on row locks, which SQLite ignores:
    without search.one_writer_at_a_time two workers both re-queued one dead trial and both took
    one waiting trial (two processes training in one folder; seen with --jobs 2 in CI)."""
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    arguments = ["--config", str(smoke_config), "--trials", str(WORKERS), *SPACE]
    if storage == "journal":
        arguments += ["--storage", "journal"]
    monkeypatch.chdir(tmp_path)
    plan = search.plan_search(search.parse_arguments(arguments))
    choice = search.storage_choice(plan, slurm=False)
    study = search.open_study(optuna, plan, choice)
    # Running trials of a process that is gone: its pid is now another process's (this one's).
    dead = {"host": socket.gethostname(), "pid": os.getpid(), "started": "another start"}
    for _ in range(WORKERS):
        trial = study.ask()
        trial.suggest_float("optim.lr", 0.001, 0.01, log=True)
        trial.set_user_attr("worker", dead)
    context = multiprocessing.get_context("fork")
    # A worker that fails breaks the barrier for the others (timeout): the test fails, not hangs.
    barrier, taken = context.Barrier(WORKERS, timeout=60), context.SimpleQueue()
    workers = [
        context.Process(target=look_at_once, args=(arguments, tmp_path, barrier, taken))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join(timeout=120)
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    trials = search.open_study(optuna, plan, choice).get_trials()
    assert [trial.state.name for trial in trials[:WORKERS]] == ["FAIL"] * WORKERS
    reruns = sorted(trial.user_attrs["rerun_of"] for trial in trials[WORKERS:])
    assert reruns == list(range(WORKERS))  # each dead trial queued again once
    numbers = sorted(taken.get() for _ in range(WORKERS))
    assert numbers == [trial.number for trial in trials[WORKERS:]]  # one worker each


def test_report_on_a_study_ranks_the_trials_and_plots_them(
    searched: tuple[Path, str], tmp_path: Path
) -> None:
    where, _ = searched
    assert report.main([str(where / STUDY), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Search: study lr_width (val_loss, minimize)" in text
    best = json.loads((where / STUDY / "best.json").read_text(encoding="utf-8"))
    assert f"Best: trial {best['trial']}, val_loss {best['value']:.4f}, optim.lr=" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "trial-000" in line]
    trials = rows[:3]  # the search table comes first, then the runs table
    losses = [float(row.split(" | ")[3]) for row in trials]
    assert losses == sorted(losses)
    assert trials[0].startswith(f"| {best['trial']} | trial-000{best['trial']} | completed |")
    if importlib.util.find_spec("matplotlib") is not None:
        for image in ("lr_width-history.png", "lr_width-parallel.png"):
            assert f"![{image}]({image})" in text
            assert (tmp_path / image).stat().st_size > 10_000


def test_the_parallel_plot_labels_choices_by_their_values_and_log_keys_in_their_units() -> None:
    """Each label where the lines are drawn (0 bottom, 1 top): every choice drawn, by its value
    (not its index); a log key's lowest and highest in its own units; one value drawn, one
    label at the middle, where its lines run."""
    choice = "choice:8,16,32"
    drawn = [position(16, choice), position(32, choice), position(16, choice)]
    assert axis_labels(drawn, choice) == [(0.0, "16"), (1.0, "32")]
    log = "log:0.001:0.01"
    drawn = [position(0.004, log), position(0.001, log), position(0.01, log)]
    assert axis_labels(drawn, log) == [(0.0, "0.001"), (1.0, "0.01")]
    assert axis_labels([0.75, 0.75, float("nan")], None) == [(0.5, "0.75")]
    assert axis_labels([position(False, "choice:true,false")], "choice:true,false") == [
        (0.5, "false")
    ]


def test_slurm_dry_run_prints_a_shellcheck_clean_array_of_workers_and_writes_nothing(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna", reason=NO_OPTUNA)
    monkeypatch.chdir(tmp_path)
    script = run_search(["--config", str(smoke_config), "--trials", "20", *SPACE, "--jobs", "4",
                         "--prune", "--slurm", "--dry-run"])  # fmt: skip
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "#SBATCH --array=0-3\n" in script
    assert "--trials 20 --space optim.lr=log:0.001:0.01 --space model.width=int:4:8" in script
    assert "--study lr_width --storage journal --seed 0 --prune" in script  # a shared-disk study
    assert "--slurm" not in script.split("srun", 1)[1]  # each task is a worker
    assert list(tmp_path.iterdir()) == []
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}"
                              f"{os.environ.get('PATH', '')}")  # fmt: skip
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (the hooks group has it)")
    checked = subprocess.run([shellcheck, "-"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--space", "optim.lr=log:0.1"], "--space optim.lr=log:0.1: SPEC must be log:LOW:HIGH"),
        (["--space", "optim.lr=range:1:2"], "SPEC must be log:LOW:HIGH, float:LOW:HIGH"),
        (["--space", "optim.lr=log:0.1:0.01"], "LOW 0.1 must be below HIGH 0.01"),
        (["--space", "optim.lr=log:0:0.1"], "log: needs LOW above 0"),
        (["--space", "optim.lr=float:a:b"], "LOW and HIGH must be numbers"),
        (["--space", "optim.lrr=log:1e-4:1e-2"], "unknown key optim.lrr"),
        (["--space", "optim.scheduler=float:0:1"], "optim.scheduler is not a number"),
        (["--space", "model.width=float:4:8"], "model.width is an integer; use int:LOW:HIGH"),
        (["--space", "model.width=int:0:8"], "model.width=0 must be at least 1"),
        (["--space", "optim.scheduler=choice:cosine,linear"], "choose one of ['constant',"),
        (["--space", "model.name=choice:cnn,transformer"], "model.name"),
        (["--space", "output_dir=choice:a,b"], "the search sets output_dir for each trial"),
        ([], "--space: give at least one"),
        (["--trials", "0"], "--trials 0: must be at least 1"),
        (["--metric", "val_f1"], "--metric val_f1: the trainer's evaluations write val_loss"),
        (["output_dir=elsewhere"], "output_dir=elsewhere: the search sets it for each trial"),
        (["--dry-run"], "--dry-run prints the SLURM script: add --slurm"),
        # A relative SQLite URL in a folder that does not exist: no storage opens there.
        (
            ["--storage", "sqlite:///missing/study.db"],
            "--storage sqlite:///missing/study.db: cannot open it",
        ),
    ],
)
def test_bad_search_input_exits_2_with_one_line_and_writes_nothing(
    smoke_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    if "--storage" in arguments:
        pytest.importorskip("optuna", reason=NO_OPTUNA)
    monkeypatch.chdir(tmp_path)
    base = ["--config", str(smoke_config), "--trials", "2"]
    if not any(argument.startswith("--space") for argument in arguments) and arguments != []:
        base += ["--space", "optim.lr=log:1e-4:1e-2"]
    assert search.main([*base, *arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert message in error
    assert list(tmp_path.iterdir()) == []


def test_without_optuna_one_line_says_what_installs_it(
    smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    code = search.main(["--config", str(smoke_config), "--trials", "2",
                        "--space", "optim.lr=log:1e-4:1e-2"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "uv sync --locked --inexact --extra search" in error
    assert list(tmp_path.iterdir()) == []
