"""Sweep seeds and a grid of config values: `python -m <package>.sweep --config PATH --seeds 0,1,2
[--grid key=v1,v2 ...] [--output-root DIR] [--jobs N] [--slurm [--dry-run]] [key=value ...]`.

Every combination of grid values and seeds is one ordinary training run in its own folder under
the output root (`lr-0.001_seed-0`), with its own config.yaml, run.json and metrics.jsonl.
Running the same sweep again trains nothing that completed and continues what was interrupted
(`resume=auto`), so a crashed sweep is finished by running the same command again. `--jobs N`
trains N runs at a time, each with its share of the CPU threads. `--slurm` writes a SLURM job
array (one task per unfinished run, each running scripts/slurm_train.sbatch, which requeues and
resumes) and submits it with sbatch; `--dry-run` prints it instead. Compare the runs with
`python -m <package>.report OUTPUT_ROOT`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .atomic_files import write_text
from .config import Config
from .errors import ConfigError, run_command
from .run_files import RunFiles
from .storage import join_location, local_side, remote_status
from .train import load_training_config

FINISHED = ("completed", "stopped_early")  # run.json statuses a re-run leaves alone
ALL_OVERRIDES = '"${overrides[@]}"'  # bash: every element of the task's array, each quoted


@dataclass(frozen=True)
class SweepRun:
    name: str  # the folder under the output root
    overrides: tuple[str, ...]  # key=value, seed included

    def folder(self, root: str) -> str:
        return join_location(root, self.name)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text}: use integers separated by commas, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: a seed is listed twice")
    return seeds


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """`--grid optim.lr=0.001,0.003` -> {"optim.lr": ["0.001", "0.003"]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, separator, values = item.partition("=")
        if not separator or not key:
            raise ConfigError(f"--grid {item}: use key=v1,v2, e.g. --grid optim.lr=0.001,0.003")
        choices = values.split(",")
        if "" in choices:
            raise ConfigError(f"--grid {item}: an empty value; list values like optim.lr=0.1,0.3")
        if key in ("seed", "output_dir", "resume"):
            raise ConfigError(f"--grid {item}: the sweep sets {key} itself; use --seeds for seeds")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        grid[key] = choices
    return grid


def folder_part(key: str, value: str) -> str:
    """`optim.lr`, `0.001` -> `lr-0.001`: short, and safe in a path."""
    return f"{key.rsplit('.', 1)[-1]}-{re.sub(r'[^A-Za-z0-9.+-]', '-', value)}"


def plan_runs(grid: dict[str, list[str]], seeds: Sequence[int]) -> list[SweepRun]:
    runs = []
    for values in itertools.product(*grid.values()):
        chosen = list(zip(grid, values, strict=True))
        for seed in seeds:
            parts = [folder_part(key, value) for key, value in chosen] + [f"seed-{seed}"]
            overrides = [f"{key}={value}" for key, value in chosen] + [f"seed={seed}"]
            runs.append(SweepRun("_".join(parts), tuple(overrides)))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two grid values give the same folder name; make the values differ")
    return runs


def check_every_run(config_path: Path, base: Sequence[str], runs: Sequence[SweepRun]) -> Config:
    """Every run's config is built now, so a bad key or value stops the sweep before it starts."""
    config = load_training_config(config_path, base)
    for sweep_run in runs:
        load_training_config(config_path, [*base, *sweep_run.overrides])
    return config


def status_of(folder: str) -> str | None:
    """run.json's status, or None before a run has written one."""
    return remote_status(folder)


def train_command(
    config_path: Path, base: Sequence[str], sweep_run: SweepRun, root: str
) -> list[str]:
    folder = sweep_run.folder(root)
    return [
        sys.executable, "-m", f"{__package__}.train", "--config", str(config_path),
        *base, *sweep_run.overrides, f"output_dir={folder}", "resume=auto",
    ]  # fmt: skip


def threads_per_job(jobs: int) -> int:
    """N runs at once share the cores (search.py's workers too)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def train_locally(
    config_path: Path, base: Sequence[str], runs: Sequence[SweepRun], root: str, jobs: int
) -> int:
    """Train the unfinished runs, `jobs` at a time; returns how many failed."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job(jobs))}

    def train_one(sweep_run: SweepRun) -> bool:
        folder = sweep_run.folder(root)
        # The run's console output: beside it, or in a local folder when the run is remote.
        files = RunFiles(local_side(folder, "sweep-logs"))
        files.root.mkdir(parents=True, exist_ok=True)
        with files.train_log.open("a", encoding="utf-8") as log:
            result = subprocess.run(
                train_command(config_path, base, sweep_run, root),
                stdout=log, stderr=subprocess.STDOUT, env=environment, check=False,
            )  # fmt: skip
        ended = status_of(folder) or "failed"
        print(f"{sweep_run.name}: {ended} (exit {result.returncode}; log: {files.train_log})")
        return result.returncode == 0

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        succeeded = list(pool.map(train_one, runs))
    return succeeded.count(False)


def slurm_script(
    config_path: Path, base: Sequence[str], runs: Sequence[SweepRun], root: str
) -> str:
    """A job array: task i trains runs[i] through scripts/slurm_train.sbatch (requeue, resume)."""
    arguments = [[*base, *run.overrides, f"output_dir={run.folder(root)}"] for run in runs]
    cases = "\n".join(
        f"  {index}) overrides=({shlex.join(task)}) ;;" for index, task in enumerate(arguments)
    )
    return f"""#!/usr/bin/env bash
# A sweep of {len(runs)} runs as a SLURM job array, written by `python -m {__package__}.sweep`.
# Each task is one run, trained by scripts/slurm_train.sbatch (SIGTERM before the time limit,
# requeue, resume=auto). Adjust the resources to your cluster.
#SBATCH --job-name={posixpath.basename(root.rstrip("/"))}
#SBATCH --array=0-{len(runs) - 1}
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output={local_side(root, "sweep-logs")}/slurm-%A_%a.log
set -euo pipefail
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac
exec bash scripts/slurm_train.sbatch {shlex.quote(str(config_path))} {ALL_OVERRIDES}
"""


def submit(script: str, root: str) -> None:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError(
            "--slurm: sbatch not found; run on the cluster's login node, or add --dry-run"
        )
    path = local_side(root, "sweep-logs") / "sweep.sbatch"
    write_text(path, script)
    subprocess.run([sbatch, str(path)], check=True)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train every combination of a grid and seeds.")
    parser.add_argument("--config", type=Path, required=True, help="e.g. configs/default.yaml")
    parser.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2")
    parser.add_argument("--output-root", help="default: <runs_root>/<name>/sweep (a path or URL)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time on this machine")
    parser.add_argument("--slurm", action="store_true", help="submit a SLURM job array")
    parser.add_argument("--dry-run", action="store_true", help="with --slurm: print the script")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="for every run")
    return parser.parse_args(argv)


def sweep(arguments: argparse.Namespace) -> int:
    """Returns the number of runs that failed."""
    if arguments.jobs < 1:
        raise ConfigError(f"--jobs {arguments.jobs}: must be at least 1")
    base = list(arguments.overrides)
    for override in base:
        if override.startswith(("output_dir=", "resume=", "seed=")):
            raise ConfigError(
                f"{override}: the sweep sets it for each run; use --output-root and --seeds"
            )
    runs = plan_runs(parse_grid(arguments.grid), parse_seeds(arguments.seeds))
    config = check_every_run(arguments.config, base, runs)
    root = arguments.output_root or join_location(config.runs_root, config.name, "sweep")
    unfinished = [run for run in runs if status_of(run.folder(root)) not in FINISHED]
    print(
        f"sweep in {root}: {len(runs)} runs, {len(runs) - len(unfinished)} already finished",
        file=sys.stderr if arguments.dry_run else sys.stdout,  # stdout: only the script
    )
    if arguments.slurm:
        script = slurm_script(arguments.config, base, unfinished, root)
        if not unfinished:
            return 0
        if arguments.dry_run:
            print(script, end="")
        else:
            submit(script, root)
        return 0
    failed = train_locally(arguments.config, base, unfinished, root, arguments.jobs)
    print(f"done: {len(unfinished) - failed} trained, {failed} failed; compare them with "
          f"`python -m {__package__}.report {root}`")  # fmt: skip
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    failed = 0

    def run_sweep() -> None:
        nonlocal failed
        failed = sweep(arguments)

    code = run_command("sweep", run_sweep)
    return code or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
