"""A search's worker: it takes trials from the study until N are complete or pruned.

Each trial trains in this process, its output in its folder's train.log. A trial records which
process runs it and renews a heartbeat, so that any worker can tell a trial whose process died
(SIGKILL, a lost node) from a live one: the dead one is marked failed and its values are run again
in its own folder, from its last.pt. SIGTERM or Ctrl-C stops the trial at its next sync, after
last.pt, and puts it back in the study the same way.

A study folder on a store (`runs_root=s3://...`) keeps its trials and best.json there: each trial
is an ordinary remote run (storage.py: a staging copy, background uploads), and a trial run again
goes on from the last.pt on the store. What cannot live in a bucket stays on this machine, in the
study's local folder (storage.local_side): the default study storage, train.log files and the
SLURM script.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, PreemptedError, PrunedError, TrainingFailedError
from .preemption import StopRequest
from .remote_runs import settle_for_rerun
from .run_files import METRICS, RunFiles
from .search_space import Dimension, override
from .storage import fetch_tree, holds_run, is_remote, join_location, write_whole
from .train import load_training_config, run

HEARTBEAT_SECONDS = 60.0  # a running trial says it is alive this often
# A running trial of another machine whose heartbeat is this old has died (its node was lost).
DEAD_AFTER_SECONDS = 600.0
FINISHED = ("COMPLETE", "PRUNED")  # the trial states that count towards --trials
# The study folder's own files, beside its trials' run folders (run_files.py names what is in
# those): the default SQLite study, the journal-file study, the best trial, the SLURM script.
# Of a study on a store, only best.json is there: the others are in its local folder.
STUDY_DATABASE = "study.db"
STUDY_JOURNAL = "study.journal"
BEST = "best.json"
SLURM_SCRIPT = "search.sbatch"


@dataclass(frozen=True)
class Search:
    """One search, as the command line asked for it, checked."""

    config_path: Path
    base: tuple[str, ...]  # key=value for every trial
    space: tuple[Dimension, ...]
    trials: int
    metric: str
    direction: str
    prune: bool
    seed: int
    study: str
    location: str  # the study folder, a path or a URL: its trials and best.json
    # On this machine: the study folder itself, or for a URL its local folder in the cache.
    # It holds the default study storage, the trials' train.log and the SLURM script.
    folder: Path
    storage: str  # "" (study.db or study.journal, whichever the folder has), "journal" or a URL

    @property
    def remote(self) -> bool:
        return is_remote(self.location)

    @property
    def database(self) -> Path:
        return self.folder / STUDY_DATABASE

    @property
    def journal(self) -> Path:
        return self.folder / STUDY_JOURNAL

    @property
    def best(self) -> str:
        return join_location(self.location, BEST)

    @property
    def slurm_script(self) -> Path:
        return self.folder / SLURM_SCRIPT

    def run_folder(self, trial: Any) -> str:
        """trial-0007 for trial 7; a trial run again after its process died keeps the folder."""
        return str(trial.user_attrs.get("run_folder", f"trial-{trial.number:04d}"))

    def trial_location(self, trial: Any) -> str:
        """The trial's output_dir: below the study folder, a path or a URL."""
        return join_location(self.location, self.run_folder(trial))

    def train_log(self, trial: Any) -> Path:
        """What the trial printed: in its folder, or for a remote one in the local folder."""
        return RunFiles(self.folder / self.run_folder(trial)).train_log


def work(optuna: Any, search: Search, study: Any, stop: StopRequest) -> None:
    states = optuna.trial.TrialState
    failed = 0
    while not stop.requested:
        fail_dead_trials(optuna, search, study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(trial.state.name in FINISHED for trial in trials)
        taken = sum(trial.state == states.RUNNING for trial in trials)  # by live workers
        waiting = any(trial.state == states.WAITING for trial in trials)
        # Two workers that look at once may both start one more: at most a trial too many.
        if finished >= search.trials or (finished + taken >= search.trials and not waiting):
            return
        if failed >= search.trials:
            raise TrainingFailedError(
                f"{failed} trials failed in a row; see their train.log in {search.folder}"
            )
        study.sampler = sampler_for(optuna, search.seed, len(trials))  # the next trial's number
        state = run_trial(optuna, search, study, study.ask(), stop)
        failed = failed + 1 if state == "failed" else 0
        write_best(search, study)


def sampler_for(optuna: Any, seed: int, number: int) -> Any:
    """TPE seeded by --seed and the trial's number: a fresh study with the same seed and space
    suggests the same values, and a study continued after a crash does not repeat its first."""
    entropy = np.random.SeedSequence([seed, number]).generate_state(1)[0]
    return optuna.samplers.TPESampler(seed=int(entropy))


def run_trial(optuna: Any, search: Search, study: Any, trial: Any, stop: StopRequest) -> str:
    """Train one trial and tell the study how it ended; returns complete, pruned or failed."""
    states = optuna.trial.TrialState
    rerun_of = trial.user_attrs.get("rerun_of")  # the number of the trial whose process died
    folder, log_file = search.trial_location(trial), search.train_log(trial)
    try:
        trial.set_user_attr("run_folder", search.run_folder(trial))
        trial.set_user_attr("worker", this_worker())
        trial.set_user_attr("heartbeat", time.time())
        values = {dimension.key: dimension.suggest(trial) for dimension in search.space}
        if rerun_of is None and holds_run(folder):
            raise ConfigError(
                f"{folder} holds a run that study {search.study} does not know (was the study "
                "deleted?); move the folder away, or use another --study"
            )
        if rerun_of is not None and search.remote:
            settle_for_rerun(folder)  # what the dead process left in its staging copy
        resume = "" if rerun_of is None else "auto"  # a new trial never takes over a folder
        overrides = [*search.base, *(override(key, value) for key, value in values.items()),
                     f"output_dir={folder}", f"resume={resume}"]  # fmt: skip
        config = load_training_config(search.config_path, overrides)
        reported = carry_over_reports(optuna, study, trial, rerun_of)
        described = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else
                              f"{key}={value}" for key, value in values.items())  # fmt: skip
        print(f"trial {trial.number}: {described} in {folder}", flush=True)

        def evaluated(step: int, metrics: dict[str, float]) -> None:
            value = metrics[search.metric]
            if step not in reported:  # a resumed trial redoes the steps after its last.pt
                trial.report(value, step)
                reported.add(step)
            if search.prune and trial.should_prune():
                raise PrunedError(
                    f"stopped at step {step}: {search.metric} {value:.4f} is worse than the "
                    "median of the earlier trials there"
                )

        entries = {"search": {
            "study": search.study, "trial": trial.number, "metric": search.metric,
            "direction": search.direction, "params": values, "rerun_of": rerun_of,
            "space": {dimension.key: dimension.spec for dimension in search.space},
        }}  # fmt: skip
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with heartbeat(trial), train_log(log_file):
            final = run(config, stop, on_evaluation=evaluated, manifest_entries=entries)
    except PrunedError as error:
        study.tell(trial, state=states.PRUNED)
        return ended(trial, "pruned", str(error))
    except (TrainingFailedError, torch.OutOfMemoryError) as error:  # these values do not train
        trial.set_user_attr("failure", str(error))
        study.tell(trial, state=states.FAIL)
        return ended(trial, "failed", f"{error} (see {log_file})")
    except PreemptedError:  # last.pt saved: the trial goes back to the study, to continue
        study.tell(trial, state=states.FAIL)
        run_again(study, trial, search.run_folder(trial))
        raise
    except BaseException:
        study.tell(trial, state=states.FAIL)
        raise
    if search.metric in final:
        value = final[search.metric]
    else:  # nothing was left to train (killed after its last checkpoint): its records have it
        value = last_evaluation(folder, search.metric)
    study.tell(trial, value)
    return ended(trial, "complete", f"{search.metric} {value:.4f}")


def ended(trial: Any, state: str, detail: str) -> str:
    print(f"trial {trial.number}: {state}, {detail}", flush=True)
    return state


def last_evaluation(folder: str, metric: str) -> float:
    """A trial killed after its last checkpoint has nothing left to train: its metrics.jsonl
    holds the last evaluation (a remote trial's is read from a fresh local copy)."""
    files = RunFiles(fetch_tree(folder, lambda relative: relative == METRICS))
    evaluations = [record for record in files.read_metrics() if metric in record]
    if not evaluations:
        raise TrainingFailedError(f"{folder}: no evaluation of {metric} to report")
    return float(evaluations[-1][metric])


def carry_over_reports(optuna: Any, study: Any, trial: Any, rerun_of: int | None) -> set[int]:
    """A trial run again continues its dead predecessor's curve, so the pruner sees all of it."""
    if rerun_of is None:
        return set()
    earlier = study.get_trials(deepcopy=False)[rerun_of].intermediate_values
    for step, value in sorted(earlier.items()):
        trial.report(value, step)
    return set(earlier)


def run_again(study: Any, trial: Any, run_folder: str) -> None:
    params = study.get_trials(deepcopy=False)[trial.number].params
    study.enqueue_trial(params, user_attrs={"run_folder": run_folder, "rerun_of": trial.number})


def fail_dead_trials(optuna: Any, search: Search, study: Any) -> None:
    """Running trials whose process is gone are failed, and their values run again."""
    states = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        if is_alive(trial):
            continue
        try:
            study.tell(trial.number, state=states.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker found it first, and runs it again
        run_again(study, trial, search.run_folder(trial))
        print(f"trial {trial.number}: its process died; it runs again from "
              f"{search.trial_location(trial)}", flush=True)  # fmt: skip


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": started(os.getpid())}


def started(pid: int) -> str | None:
    """When process `pid` started (Linux: /proc), so that a reused pid is not taken for it;
    None when it is not running, is a zombie, or /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def is_alive(trial: Any) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker and worker["host"] == socket.gethostname():
        if worker["started"] is not None:  # Linux: the same pid, started at the same time
            return bool(started(worker["pid"]) == worker["started"])
        try:  # no /proc (macOS): the pid alone
            os.kill(worker["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
        return True
    last_beat = trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp())
    return time.time() - float(last_beat) < DEAD_AFTER_SECONDS


@contextlib.contextmanager
def heartbeat(trial: Any) -> Iterator[None]:
    """While a trial trains, its `heartbeat` attribute is renewed: workers on other machines
    tell a live trial from one whose node was lost."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat may pass
                trial.set_user_attr("heartbeat", time.time())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def train_log(log_file: Path) -> Iterator[None]:
    """What the trial's training prints goes to its train.log, as a sweep's runs do."""
    with log_file.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        yield


def write_best(search: Search, study: Any) -> None:
    """best.json: the best complete trial's values, metric and folder, and the trial counts."""
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state.name == "COMPLETE"]
    if not complete:
        return
    best = study.best_trial
    folder = best.user_attrs.get("run_folder")
    summary = {
        "study": search.study, "metric": search.metric, "direction": search.direction,
        "value": best.value, "trial": best.number, "params": best.params,
        "run": join_location(search.location, folder) if folder else None,  # None: added by hand
        "trials": dict(collections.Counter(trial.state.name.lower() for trial in trials)),
    }  # fmt: skip
    # Workers may write at once: each writes it whole (its own temp file, or one object).
    write_whole(search.best, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
