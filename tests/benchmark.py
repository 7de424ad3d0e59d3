"""What users feel, measured: `nox -s bench` (not part of the default `nox`).

`python -m tests.benchmark PROJECT OUTPUT_DIR` takes a baked project whose package is installed in
this environment and writes results.json, results.md and throughput.png to OUTPUT_DIR. Every
figure is the median of several runs with min and max; the three training loops run interleaved
in one process so their ratios hold on a noisy machine.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tests.baking import TEMPLATE_ROOT, package_name
from tests.benchmark_loops import LOOPS
from tests.git_identity import GIT_IDENTITY

BATCH_SIZES = (8, 32, 64, 128)
ROUNDS = 7
# N per batch size: per-step time = (time of 2N steps - time of N steps) / N.
STEPS = {8: 200, 32: 100, 64: 60, 128: 40}


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def wall(
    command: list[str], cwd: Path, runs: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return summary(times)


def per_step_seconds(loop: Callable[[str, int, int], float], package: str, batch: int) -> float:
    steps = STEPS[batch]
    return (loop(package, 2 * steps, batch) - loop(package, steps, batch)) / steps


def measure_loops(package: str) -> dict[str, dict[int, dict[str, float]]]:
    samples: dict[str, dict[int, list[float]]] = {
        name: {b: [] for b in BATCH_SIZES} for name in LOOPS
    }
    for loop in LOOPS.values():  # warm-up: first-call costs (imports, allocator) out of the way
        loop(package, 8, 8)
    for _ in range(ROUNDS):
        for batch in BATCH_SIZES:
            for name, loop in LOOPS.items():
                samples[name][batch].append(per_step_seconds(loop, package, batch))
    return {
        name: {b: summary(s) for b, s in by_batch.items()} for name, by_batch in samples.items()
    }


def bake_to_green(runs: int) -> dict[str, float]:
    """A fresh bake, then its full `nox` (own environments, warm package caches)."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            baked = subprocess.run(
                [sys.executable, "-m", "tests.baking", scratch], cwd=TEMPLATE_ROOT, check=True,
                capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY},
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            subprocess.run(["nox", "--non-interactive"], cwd=baked, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return summary(times)


def write_plot(loops: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, by_batch in loops.items():
        rates = [b / by_batch[b]["median"] for b in BATCH_SIZES]
        axes.plot(BATCH_SIZES, rates, marker="o", label=name)
    title = f"Training throughput, SmallCNN, {platform.machine()} CPU x{os.cpu_count()}"
    axes.set(xscale="log", xlabel="batch size", ylabel="samples / s (median)", title=title)
    axes.set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def seconds(value: dict[str, float]) -> str:
    return f"{value['median']:.2f} s ({value['min']:.2f}-{value['max']:.2f})"


def markdown(results: dict[str, Any]) -> str:
    loops = results["loops"]
    lines = [
        "# Benchmarks", "",
        f"Machine: {results['machine']}. torch {results['torch']}, Python {results['python']}.",
        f"Median of {ROUNDS} interleaved rounds (min-max); per-step times by differencing "
        "N and 2N steps (N = 200, 100, 60, 40 for batch 8, 32, 64, 128). "
        "Regenerate with `nox -s bench`.", "",
        "| what | median (min-max) |", "| --- | --- |",
    ]  # fmt: skip
    for label, key in (
        ("bake (`cookiecutter --no-input`)", "bake"),
        ("bake -> green (fresh bake + its full `nox`, warm caches)", "bake_to_green"),
        ("smoke-train CLI (`python -m <package>.train --config configs/smoke.yaml`)", "smoke_cli"),
        ("`python -c 'import torch'`", "import_torch"),
        ("`python -c 'import <package>.train'`", "import_train"),
    ):
        lines.append(f"| {label} | {seconds(results[key])} |")
    lines += [
        "", "Per optimizer step (ms, median), and overhead against the hand-written loop:", "",
        "| batch | hand | template trainer | Lightning | trainer vs hand | Lightning vs hand |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for batch in BATCH_SIZES:
        hand, ours, lightning = (loops[n][batch]["median"] for n in LOOPS)
        lines.append(
            f"| {batch} | {hand * 1e3:.2f} | {ours * 1e3:.2f} | {lightning * 1e3:.2f} | "
            f"{(ours / hand - 1) * 100:+.1f}% | {(lightning / hand - 1) * 100:+.1f}% |"
        )
    lines += ["", "![throughput by batch size](throughput.png)", ""]
    return "\n".join(lines)


def main(project: Path, output_dir: Path) -> None:
    package = package_name(project)
    python = [sys.executable, "-c"]
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        results["bake"] = wall(
            ["cookiecutter", "--no-input", str(TEMPLATE_ROOT), "-o", scratch, "-f"],
            cwd=Path(scratch), runs=5, env={**os.environ, **GIT_IDENTITY},
        )  # fmt: skip
    results["import_torch"] = wall([*python, "import torch"], project, runs=5)
    results["import_train"] = wall([*python, f"import {package}.train"], project, runs=5)
    with tempfile.TemporaryDirectory() as scratch:
        smoke = [
            "-m",
            f"{package}.train",
            "--config",
            "configs/smoke.yaml",
            f"output_dir={scratch}",
        ]
        results["smoke_cli"] = wall([sys.executable, *smoke], project, runs=5)
    results["loops"] = measure_loops(package)
    results["bake_to_green"] = bake_to_green(runs=3)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (output_dir / "results.md").write_text(markdown(results), encoding="utf-8")
    write_plot(results["loops"], output_dir / "throughput.png")
    print(markdown(results))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.benchmark PROJECT OUTPUT_DIR")
    if shutil.which("nox") is None:
        sys.exit("nox is not installed in this environment; run through `nox -s bench`")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
