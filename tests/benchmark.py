"""What users feel, measured: `nox -s bench` (not part of the default `nox`).

`python -m tests.benchmark PROJECT OUTPUT_DIR [--tiny]` takes a baked project whose package is
installed in this environment and writes results.json, results.md and throughput.png to
OUTPUT_DIR, and the data loading benchmark's data.json and data.md (tests/benchmark_data.py).
Every figure is the median of several runs with min and max; the three training loops run
interleaved in one process so their ratios hold on a noisy machine.

--tiny runs every step of the bench at its smallest (one round, one batch size, two runs of each
command, a few images, `nox --list` for bake -> green): `nox -s bench-tiny`, part of the default
`nox`, so a change that breaks the bench fails CI. Its figures mean nothing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tests import benchmark_data, benchmark_storage, benchmark_telemetry
from tests.baking import TEMPLATE_ROOT, package_name
from tests.benchmark_loops import LOOPS, WIDTH, Loop
from tests.benchmark_stats import WINDOW, paired, per_step_seconds, summary
from tests.git_identity import GIT_IDENTITY

# Steps per run: enough windows for a stable median, about half a second per run on 2 CPU cores.
STEPS = {8: 300, 32: 150, 64: 100, 128: 60}
# Set by the bench session for its own timings; bake -> green runs without them, as users do.
BENCH_ONLY_VARIABLES = ("UV_COMPILE_BYTECODE", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")
BASELINE = "hand loop"  # every other loop is compared with this one


@dataclass(frozen=True)
class Setting:
    steps: dict[int, int]  # batch size -> steps per run of a training loop
    rounds: int  # of the training loops
    runs: int  # of each timed command
    import_runs: int  # of each timed import (they share no state)
    green_runs: int
    green_command: tuple[str, ...]  # run in a fresh bake once set up: its whole `nox`
    data: benchmark_data.Scale
    storage: benchmark_storage.Scale


FULL = Setting(
    steps=STEPS, rounds=15, runs=5, import_runs=5, green_runs=3,
    green_command=("nox", "--non-interactive"), data=benchmark_data.FULL,
    storage=benchmark_storage.FULL,
)  # fmt: skip
# Two runs of each command: the second is where runs that share state collide (a smoke run
# refused because its output folder already holds a run); an import shares none, so once.
# Bake -> green sets the bake up as the full bench does, then `nox --list` reads its noxfile
# without the minutes of its sessions.
TINY = Setting(
    steps={8: 4 * WINDOW}, rounds=1, runs=2, import_runs=1, green_runs=1,
    green_command=("nox", "--list"), data=benchmark_data.TINY, storage=benchmark_storage.TINY,
)  # fmt: skip


def wall(
    commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Wall-clock seconds of each command, run one after another."""
    times = []
    for command in commands:
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return summary(times)


def measure_loops(
    package: str,
    steps: dict[int, int],
    rounds: int,
    device: str = "cpu",
    loops: dict[str, Loop] = LOOPS,
) -> dict[str, Any]:
    """Per-step seconds of every loop, and each loop's overhead over the hand loop per round."""
    seconds: dict[str, dict[int, list[float]]] = {name: {b: [] for b in steps} for name in loops}
    for loop in loops.values():  # warm-up: first-call costs (imports, allocator) out of the way
        per_step_seconds(loop(package, 4 * WINDOW, 8, device))
    for round_number in range(rounds):
        for batch, batch_steps in steps.items():
            # Every other round in reverse order, so a machine slowly speeding up or slowing
            # down favours no loop.
            order = list(loops.items())[:: -1 if round_number % 2 else 1]
            for name, loop in order:
                seconds[name][batch].append(
                    per_step_seconds(loop(package, batch_steps, batch, device))
                )
    return {
        "seconds": {
            n: {b: summary(s) for b, s in by_batch.items()} for n, by_batch in seconds.items()
        },
        "overhead": {
            name: {
                b: paired(
                    [ours / hand - 1 for ours, hand in zip(s, seconds[BASELINE][b], strict=True)]
                )
                for b, s in by_batch.items()
            }
            for name, by_batch in seconds.items()
            if name != BASELINE
        },
    }


# What the generated README has a new user do before `nox`: set up (it makes uv.lock and the
# smoke baseline, which the lock and smoke sessions need) and commit what it made.
SET_UP = (
    ("bash", "scripts/setup_dev.sh"),
    ("git", "add", "uv.lock", "baselines/smoke.json"),
    ("git", "commit", "--quiet", "-m", "build: lock the environment and the smoke baseline"),
)


def bake_to_green(runs: int, command: tuple[str, ...]) -> dict[str, float]:
    """A fresh bake, set up as its README says, then `command`, its full `nox` (own
    environments, warm package caches)."""
    # As in a user's shell: the bench session's bytecode switches would make every one of the
    # project's sessions compile torch at install (~10 s each), where only `tests` does.
    user_env = {k: v for k, v in os.environ.items() if k not in BENCH_ONLY_VARIABLES}
    times = []
    for _ in range(runs):
        scratch = tempfile.mkdtemp(prefix="bake-to-green-")
        started = time.perf_counter()
        baked = subprocess.run(
            [sys.executable, "-m", "tests.baking", scratch], cwd=TEMPLATE_ROOT, check=True,
            capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY},
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        for step in (*SET_UP, command):
            checks = subprocess.run(
                step, cwd=baked, capture_output=True, text=True,
                env={**user_env, **GIT_IDENTITY}, check=False,
            )  # fmt: skip
            if checks.returncode:  # kept for a look: a project that fails its own checks is a bug
                sys.exit(f"{checks.stdout[-8000:]}{checks.stderr[-4000:]}\nbake -> green: "
                         f"{' '.join(step)} failed in the baked project (output above); it is "
                         f"kept in {baked}")  # fmt: skip
        times.append(time.perf_counter() - started)
        shutil.rmtree(scratch)
    return summary(times)


def write_plot(loops: dict[str, Any], title: str, path: Path) -> None:
    """Samples per second by batch size, one line per loop."""
    batch_sizes = list(loops["seconds"][BASELINE])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, by_batch in loops["seconds"].items():
        rates = [b / by_batch[b]["median"] for b in batch_sizes]
        axes.plot(batch_sizes, rates, marker="o", label=name)
    axes.set(xscale="log", xlabel="batch size", ylabel="samples / s (median)", title=title)
    axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def seconds(value: dict[str, float]) -> str:
    return f"{value['median']:.2f} s ({value['min']:.2f}-{value['max']:.2f})"


def percent(value: dict[str, float]) -> str:
    return f"{value['median'] * 100:+.1f}% ({value['q1'] * 100:+.1f} to {value['q3'] * 100:+.1f})"


def method(rounds: int, loops: int = len(LOOPS)) -> str:
    return (
        f"Each loop trains the project's SmallCNN (width {WIDTH}) on its synthetic data with "
        f"AdamW; {rounds} rounds run the {loops} loops back to back at each batch size. Time per "
        f"step: the median over every window of {WINDOW} consecutive steps of one run (each "
        "window holds one of the trainer's host syncs), median (min-max) over the rounds. "
        "Overhead: the median (and quartiles) over rounds of each round's ratio to the hand loop."
    )


def loops_table(loops: dict[str, Any]) -> list[str]:
    names = list(loops["seconds"])
    lines = [
        "| batch | " + " | ".join(f"{n} (ms/step)" for n in names) + " | "
        + " | ".join(f"{n} vs {BASELINE}" for n in names if n != BASELINE) + " |",
        "| --- " * (2 * len(names)) + "|",
    ]  # fmt: skip
    for batch in loops["seconds"][BASELINE]:
        times = [loops["seconds"][n][batch] for n in names]
        cells = [
            f"{t['median'] * 1e3:.3f} ({t['min'] * 1e3:.2f}-{t['max'] * 1e3:.2f})" for t in times
        ]
        cells += [percent(loops["overhead"][n][batch]) for n in names if n != BASELINE]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks", "",
        f"Machine: {results['machine']}. torch {results['torch']}, Python {results['python']}. "
        "Regenerate with `nox -s bench`.", "",
        "| what | median (min-max) |", "| --- | --- |",
    ]  # fmt: skip
    for label, key in (
        ("bake (`cookiecutter --no-input`)", "bake"),
        (
            "bake -> green (fresh bake, `setup_dev.sh`, commit, its full `nox`; warm caches)",
            "bake_to_green",
        ),
        ("smoke-train CLI (`python -m <package>.train --config configs/smoke.yaml`)", "smoke_cli"),
        ("`python -c 'import torch'`", "import_torch"),
        ("`python -c 'import <package>.train'`", "import_train"),
        # torch.optim's optimizers import torch._dynamo when first built and stepped
        # (torch/optim/optimizer.py), so every training process pays for it.
        ("`python -c 'import torch, torch._dynamo'` (what torch.optim imports)", "import_dynamo"),
    ):
        lines.append(f"| {label} | {seconds(results[key])} |")
    lines += ["", "## Training loops", "", method(results["rounds"]), ""]
    lines += loops_table(results["loops"])
    lines += ["", "![throughput by batch size](throughput.png)", ""]
    lines += benchmark_storage.markdown(results["storage"])
    lines += ["What telemetry and the metrics endpoint cost a step: [telemetry](telemetry.md).", ""]
    lines += ["Input pipelines over an image folder: [data loading](data.md).", ""]
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def environment() -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def main(project: Path, output_dir: Path, setting: Setting = FULL) -> None:
    package = package_name(project)
    python = [sys.executable, "-c"]
    runs, imports = range(setting.runs), range(setting.import_runs)
    results: dict[str, Any] = {**environment(), "rounds": setting.rounds}
    with tempfile.TemporaryDirectory() as scratch:
        bake = ["cookiecutter", "--no-input", str(TEMPLATE_ROOT), "-o", scratch, "-f"]
        results["bake"] = wall([bake for _ in runs], Path(scratch), {**os.environ, **GIT_IDENTITY})
    results["import_torch"] = wall([[*python, "import torch"] for _ in imports], project)
    results["import_train"] = wall([[*python, f"import {package}.train"] for _ in imports], project)
    results["import_dynamo"] = wall(
        [[*python, "import torch, torch._dynamo"] for _ in imports], project
    )
    with tempfile.TemporaryDirectory() as scratch:
        # A folder of its own for each run: a run refuses a folder that holds another run's files.
        smoke = [sys.executable, "-m", f"{package}.train", "--config", "configs/smoke.yaml"]
        results["smoke_cli"] = wall([[*smoke, f"output_dir={scratch}/{n}"] for n in runs], project)
    results["loops"] = measure_loops(package, setting.steps, setting.rounds)
    results["storage"] = benchmark_storage.main(project, package, setting.storage)
    benchmark_telemetry.main(project, output_dir, setting.rounds)  # telemetry.json and .md
    benchmark_data.main(project, output_dir, setting.data)
    partial = output_dir / "results-partial.json"  # the loops survive a failing bake -> green
    write_json(results, partial)
    results["bake_to_green"] = bake_to_green(setting.green_runs, setting.green_command)
    partial.unlink()
    write_json(results, output_dir / "results.json")
    text = markdown(results)
    (output_dir / "results.md").write_text(text, encoding="utf-8")
    print(text)
    title = f"SmallCNN training throughput, {platform.machine()} CPU x{os.cpu_count()}"
    write_plot(results["loops"], title, output_dir / "throughput.png")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    tiny = "--tiny" in arguments
    paths = [argument for argument in arguments if argument != "--tiny"]
    if len(paths) != 2:
        sys.exit("usage: python -m tests.benchmark PROJECT OUTPUT_DIR [--tiny]")
    if shutil.which("nox") is None:
        sys.exit("nox is not installed in this environment; run through `nox -s bench`")
    main(Path(paths[0]), Path(paths[1]), TINY if tiny else FULL)
