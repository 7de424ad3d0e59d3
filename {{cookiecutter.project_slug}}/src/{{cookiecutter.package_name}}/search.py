"""Search hyperparameters with Optuna: `python -m <package>.search --config CONFIG --trials N
--space KEY=SPEC [--space ...] [--metric val_loss|val_accuracy] [--direction minimize|maximize]
[--prune] [--jobs N] [--study NAME] [--storage URL|journal] [--seed S] [--slurm [--dry-run]]
[key=value ...]`.

Each trial is an ordinary training run in its own folder, `outputs/<name>/search/<study>/
trial-0007`, with the values it drew in run.json ("search"). The study itself lives beside its
trials: study.db (SQLite, the default), or study.journal (`--storage journal`, a journal file that
works on a shared filesystem; the default for a new study with --slurm), or any Optuna storage URL
(`--storage postgresql://...` for workers on many machines). best.json holds the best trial.

With a remote runs_root (`runs_root=s3://bucket/prefix`) the study folder is on the store: each
trial is a remote run there, and so is best.json. The study storage cannot live in a bucket: by
default it stays on this machine, in the study's local folder under the cache
(`$XDG_CACHE_HOME/<package>/searches/<key>-<study>`, with the trials' train.log files), and
`--storage URL` (e.g. PostgreSQL) lets workers on several machines share one study; `--slurm`
with a remote runs_root needs such a URL.

It survives crashes: the same command again continues until N trials are complete or pruned. A
trial whose process died (SIGKILL, a lost node) is marked failed and its values run again in its
own folder, continuing from its last.pt. `--jobs N` starts N workers on this machine, `--slurm` a
job array of `--jobs` workers; every worker takes trials from the one study. `--prune` lets
Optuna's median pruner stop hopeless trials at an evaluation (run.json: "pruned"). The same
`--seed` and space suggest the same values in a fresh study. `python -m <package>.report STUDY`
tables and plots the trials.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic_files import write_text
from .errors import ConfigError, MissingPackageError, PreemptedError, run_command, sync_extra
from .preemption import StopRequest
from .search_space import parse_space
from .search_worker import FINISHED, Search, work, write_best
from .storage import is_remote, join_location, local_side, open_remote
from .sweep import threads_per_job
from .train import load_training_config

# What Trainer.evaluate returns, and which way is better (a new metric: add it here too).
EVALUATION_METRICS = {"val_loss": "minimize", "val_accuracy": "maximize"}
INSTALL = f"search needs Optuna, the search extra: {sync_extra('search')}"
# Optuna's default of 5 finished trials before pruning leaves little to prune in a short search.
PRUNE_AFTER_TRIALS = 3
# How long a worker waits for another's transaction on an SQLite study (milliseconds each,
# but a loaded machine can stall one): Python's default of 5 s would fail a worker for it.
SQLITE_WAIT_SECONDS = 60.0
# bash, in the job array's script (a constant: braces in an f-string would read as template syntax)
REQUEUE_THIS_TASK = 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"'


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Search hyperparameters with Optuna.")
    parser.add_argument("--config", type=Path, required=True, help="e.g. configs/default.yaml")
    parser.add_argument("--trials", type=int, required=True, help="complete or pruned trials")
    parser.add_argument(
        "--space", action="append", default=[], metavar="KEY=SPEC",
        help="SPEC: log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH or choice:A,B,...",
    )  # fmt: skip
    parser.add_argument("--metric", default="val_loss", help="val_loss or val_accuracy")
    parser.add_argument("--direction", help="minimize or maximize (default: the metric's)")
    parser.add_argument("--prune", action="store_true", help="stop hopeless trials early")
    parser.add_argument("--jobs", type=int, default=1, help="workers (with --slurm: array tasks)")
    parser.add_argument("--study", help="default: the searched keys, e.g. lr_width")
    parser.add_argument("--storage", default="", help="journal, or an Optuna storage URL")
    parser.add_argument("--seed", type=int, default=0, help="of the sampler")
    parser.add_argument("--slurm", action="store_true", help="submit a SLURM job array")
    parser.add_argument("--dry-run", action="store_true", help="with --slurm: print the script")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="for every trial")
    return parser.parse_args(argv)


def plan_search(arguments: argparse.Namespace) -> Search:
    """Every check that needs no study: a bad argument stops here, before anything is written."""
    for name in ("trials", "jobs"):
        if getattr(arguments, name) < 1:
            raise ConfigError(f"--{name} {getattr(arguments, name)}: must be at least 1")
    if arguments.dry_run and not arguments.slurm:
        raise ConfigError("--dry-run prints the SLURM script: add --slurm")
    for item in arguments.overrides:
        if item.startswith(("output_dir=", "resume=")):
            raise ConfigError(
                f"{item}: the search sets it for each trial (<study folder>/trial-NNNN); "
                "leave it out, or choose the folder with name= and --study"
            )
    if arguments.metric not in EVALUATION_METRICS:
        raise ConfigError(
            f"--metric {arguments.metric}: the trainer's evaluations write "
            f"{' and '.join(EVALUATION_METRICS)}; choose one"
        )
    direction = arguments.direction or EVALUATION_METRICS[arguments.metric]
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"--direction {direction}: choose minimize or maximize")
    base = tuple(arguments.overrides)
    space = parse_space(arguments.space, arguments.config, base)
    study = arguments.study or "_".join(dimension.key.rsplit(".", 1)[-1] for dimension in space)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study):
        raise ConfigError(f"--study {study}: a folder name; use letters, digits, '.', '_', '-'")
    config = load_training_config(arguments.config, base)
    location = join_location(config.runs_root, config.name, "search", study)
    if is_remote(location):
        if arguments.slurm and arguments.storage in ("", "journal"):
            raise ConfigError(
                f"--slurm with runs_root={config.runs_root}: the array's workers on several "
                "machines share one study only through a database; add --storage URL, e.g. "
                "postgresql://user@host/database"
            )
        open_remote(location).check_writable()  # no bucket, no credentials: stop before a trial
    return Search(
        config_path=arguments.config, base=base, space=tuple(space), trials=arguments.trials,
        metric=arguments.metric, direction=direction, prune=arguments.prune, seed=arguments.seed,
        study=study, location=location, folder=local_side(location, "searches"),
        storage=arguments.storage,
    )  # fmt: skip


def import_optuna() -> Any:
    """Optuna, quiet (one line per trial is ours to print), or one line saying how to get it."""
    try:
        optuna = importlib.import_module("optuna")
    except ImportError:
        raise MissingPackageError(INSTALL) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_choice(search: Search, slurm: bool) -> str:
    """journal or a URL: what --storage says, else what the study folder holds, else the
    default for a new study (SQLite; a journal file for workers on a cluster's shared disk)."""
    if search.storage:
        return search.storage
    if search.journal.is_file():
        return "journal"
    if search.database.is_file() or not slurm:
        return f"sqlite:///{search.database.resolve()}"
    return "journal"


def open_storage(optuna: Any, search: Search, choice: str) -> Any:
    try:
        if choice == "journal":
            search.folder.mkdir(parents=True, exist_ok=True)
            path = str(search.journal)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
        if choice.startswith("sqlite:///") and not search.storage:
            search.folder.mkdir(parents=True, exist_ok=True)  # the default: study.db in it
        if choice.startswith("sqlite"):  # sqlite:///... and sqlite+pysqlite:///...
            storage = optuna.storages.RDBStorage(
                choice, engine_kwargs={"connect_args": {"timeout": SQLITE_WAIT_SECONDS}}
            )
            return one_writer_at_a_time(storage)
        return optuna.storages.RDBStorage(choice)
    except Exception as error:  # whatever stops a storage opening is the URL's
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"--storage {choice}: cannot open it ({reason}); give journal or a URL Optuna "
            "opens, e.g. sqlite:///study.db or postgresql://user@host/database"
        ) from None


def one_writer_at_a_time(storage: Any) -> Any:
    """An SQLite study that workers (--jobs) share safely. Optuna changes a trial by reading it
    with SELECT ... FOR UPDATE and writing it in one transaction; SQLite ignores FOR UPDATE, and
    Python's sqlite3 begins a transaction only at the write, so two workers could both read a
    trial as it was and both change it: both take one waiting trial and train it in one folder,
    or both fail a dead trial and enqueue its re-run twice. So every transaction begins with
    BEGIN IMMEDIATE, which takes SQLite's write lock before its first read, and workers take
    turns (each waits up to SQLITE_WAIT_SECONDS). SQLAlchemy's recipe for SQLite transactions:
    https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
    """
    if storage.engine.url.database in (None, "", ":memory:"):
        return storage  # in memory: one connection, of this process alone (dispose would drop it)
    event = importlib.import_module("sqlalchemy.event")

    def no_implicit_begin(connection: Any, _record: Any) -> None:
        connection.isolation_level = None  # sqlite3 leaves BEGIN to us

    def begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", no_implicit_begin)
    event.listen(storage.engine, "begin", begin_immediate)
    storage.engine.dispose()  # the connections Optuna opened before: new ones get both
    return storage


def open_study(optuna: Any, search: Search, choice: str) -> Any:
    """The study, created on first use; a study started with another metric or space is refused
    (its trials could not be compared)."""
    study = optuna.create_study(
        study_name=search.study, storage=open_storage(optuna, search, choice),
        direction=search.direction, load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS)
        if search.prune else optuna.pruners.NopPruner(),
    )  # fmt: skip
    wanted = {
        "metric": search.metric,
        "direction": search.direction,
        "space": {dimension.key: dimension.spec for dimension in search.space},
    }
    recorded = study.user_attrs.get("search")
    if recorded is None:
        study.set_user_attr("search", wanted)
    elif recorded != wanted:
        spaces = " ".join(f"--space {key}={spec}" for key, spec in recorded["space"].items())
        raise ConfigError(
            f"--study {search.study} was started with --metric {recorded['metric']} --direction "
            f"{recorded['direction']} {spaces}; run it with those, or start another with --study"
        )
    return study


def worker_arguments(search: Search, storage: str) -> list[str]:
    """The command line of a worker of this search (--jobs and --slurm start them)."""
    spaces = [item for dimension in search.space
              for item in ("--space", f"{dimension.key}={dimension.spec}")]  # fmt: skip
    return [
        "--config", str(search.config_path), "--trials", str(search.trials), *spaces,
        "--metric", search.metric, "--direction", search.direction, "--study", search.study,
        "--storage", storage, "--seed", str(search.seed),
        *(["--prune"] if search.prune else []), *search.base,
    ]  # fmt: skip


def run_workers(search: Search, storage: str, jobs: int, stop: StopRequest) -> int:
    """`jobs` worker processes on this machine, each with its share of the cores; returns the
    first non-zero exit code. A stop request (SIGTERM, Ctrl-C) is passed on to each."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job(jobs))}
    command = [sys.executable, "-m", f"{__package__}.search", *worker_arguments(search, storage)]
    workers = [subprocess.Popen(command, env=environment) for _ in range(jobs)]
    passed_on = False
    while any(worker.poll() is None for worker in workers):
        if stop.requested and not passed_on:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(stop.signal_number or signal.SIGTERM)
            passed_on = True
        time.sleep(0.2)
    return next((worker.returncode for worker in workers if worker.returncode), 0)


def slurm_script(search: Search, storage: str, jobs: int) -> str:
    """A job array of `jobs` workers, each taking trials from the study until it has N."""
    worker = shlex.join([".venv/bin/python", "-m", f"{__package__}.search",
                         *worker_arguments(search, storage)])  # fmt: skip
    return f"""#!/usr/bin/env bash
# A search of {search.trials} trials by {jobs} workers as a SLURM job array, written by
# `python -m {__package__}.search`. Each task is a worker that takes trials from study
# {search.study} until {search.trials} are complete or pruned. Run from the repository root with
# .venv present; adjust the resources to your cluster.
#SBATCH --job-name=search-{search.study}
#SBATCH --array=0-{jobs - 1}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output={search.folder}/slurm-%A_%a.log
set -euo pipefail
status=0
srun {worker} || status=$?
# SIGTERM (120 s before the time limit, or a preemption) saved the trial's last.pt and put the
# trial back in the study: this task is requeued to go on with it. SLURM itself requeues only
# after a node failure or a preemption, never at the time limit.
if [ "$status" -eq 143 ] || [ "$status" -eq 124 ]; then
  {REQUEUE_THIS_TASK}
fi
exit "$status"
"""


def submit(script: str, search: Search) -> None:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError(
            "--slurm: sbatch not found; run on the cluster's login node, or add --dry-run"
        )
    write_text(search.slurm_script, script)
    subprocess.run([sbatch, str(search.slurm_script)], check=True)


def search(arguments: argparse.Namespace, stop: StopRequest) -> int:
    """Returns a worker's non-zero exit code, or 0."""
    plan = plan_search(arguments)
    optuna = import_optuna()
    storage = storage_choice(plan, arguments.slurm)
    if arguments.slurm and arguments.dry_run:  # nothing opened, nothing written
        print(slurm_script(plan, storage, arguments.jobs), end="")
        return 0
    study = open_study(optuna, plan, storage)
    if arguments.slurm:
        submit(slurm_script(plan, storage, arguments.jobs), plan)
        return 0
    trials = study.get_trials(deepcopy=False)
    finished = sum(trial.state.name in FINISHED for trial in trials)
    print(f"study {plan.study} in {plan.location}: {finished} of {plan.trials} trials finished")
    if plan.remote and plan.storage in ("", "journal"):
        kept = plan.journal if storage == "journal" else plan.database
        print(
            f"the study itself is on this machine, in {kept}; workers on several machines "
            "share one study with --storage URL, e.g. postgresql://user@host/database"
        )
    jobs = min(arguments.jobs, max(plan.trials - finished, 1))  # no worker without a trial
    if jobs > 1:
        code = run_workers(plan, storage, jobs, stop)
        if code:
            return code
    else:
        work(optuna, plan, study, stop)
    write_best(plan, study)
    counts = collections.Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    print(f"study {plan.study}: {', '.join(f'{n} {state}' for state, n in sorted(counts.items()))}"
          f"; best in {plan.best}; tables and plots: "
          f"python -m {__package__}.report {plan.location}")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop = StopRequest()
    stop.install()  # SIGTERM/Ctrl-C: the trial saves last.pt and goes back to the study
    worker_code = 0

    def run_search() -> None:
        nonlocal worker_code
        try:
            worker_code = search(arguments, stop)
        except PreemptedError as error:  # the trial is back in the study, not for resume=auto
            reason = str(error).split(";", 1)[0]  # "stopped by SIGTERM"
            print(f"search: {reason}; the trial saved last.pt, and the same command goes on "
                  "with it", file=sys.stderr)  # fmt: skip
            worker_code = error.exit_code

    try:
        code = run_command("search", run_search)
    finally:
        stop.uninstall()
    if code == 0 and stop.requested:  # stopped between trials
        return 128 + (stop.signal_number or signal.SIGTERM)
    return code or worker_code


if __name__ == "__main__":
    sys.exit(main())
