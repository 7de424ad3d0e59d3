"""The training loops on a CUDA GPU: `python -m tests.benchmark_gpu PROJECT OUTPUT_DIR [--tiny]`.

Runs where the GPU is, with that machine's own torch: PROJECT's package must be importable
(`PYTHONPATH=PROJECT/src`, as on a GPU machine that keeps its image's torch), and nothing else
of the template's environment is needed (no nox, no cookiecutter). Writes gpu.json and gpu.md to
OUTPUT_DIR: the hand loop, the template trainer and Lightning (where it imports), interleaved in
one process as the CPU bench runs them (tests/benchmark.py, same statistics), at two batch sizes.

--tiny runs the same code at its smallest, on the CPU where no CUDA device is (`nox -s
bench-tiny` does, so that a change that breaks this bench fails CI); its figures mean nothing.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from tests.baking import package_name
from tests.benchmark import BASELINE, loops_table, measure_loops, method, write_json
from tests.benchmark_loops import LOOPS
from tests.benchmark_stats import WINDOW

# Batch 64 is configs/default.yaml's, where a step of this small model is bound by launching
# its kernels; at 1024 each kernel has more to do, and the host's part of a step (the loader
# collating 1024 samples and pinning them) grows too, alike in every loop. Steps: about a second
# a run on an H200 (an estimate: this bench has not run on one yet).
STEPS = {64: 400, 1024: 200}
ROUNDS = 7
TINY_STEPS = {8: 4 * WINDOW}
TARGET = 0.97  # the trainer's throughput as a share of the hand loop's, at every batch size


def device_description() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"device": "cpu", "name": f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"}
    properties = torch.cuda.get_device_properties(0)
    return {
        "device": "cuda",
        "name": torch.cuda.get_device_name(0),
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "multiprocessors": properties.multi_processor_count,
        "capability": f"{properties.major}.{properties.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def lightning_available() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def throughput_lines(loops: dict[str, Any]) -> list[str]:
    """Each loop's samples per second as a share of the hand loop's, against TARGET."""
    lines = [f"| batch | {' | '.join(f'{n} / {BASELINE}' for n in loops['overhead'])} |"]
    lines.append("| --- " * (1 + len(loops["overhead"])) + "|")
    for batch in loops["seconds"][BASELINE]:
        ratios = [1 / (1 + loops["overhead"][n][batch]["median"]) for n in loops["overhead"]]
        lines.append(f"| {batch} | {' | '.join(f'{r:.3f}x' for r in ratios)} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    device = results["device"]
    lines = [
        "# GPU benchmark", "",
        f"Device: **{device['name']}**"
        + (
            f" ({device['memory_gib']} GiB, {device['multiprocessors']} multiprocessors, compute "
            f"capability {device['capability']}; CUDA {device['cuda']}, cuDNN {device['cudnn']})"
            if device["device"] == "cuda" else ""
        )
        + f". torch {results['torch']}, Python {results['python']}, {results['machine']}. "
        "Regenerate on a GPU machine with `PYTHONPATH=PROJECT/src python -m tests.benchmark_gpu "
        "PROJECT docs/content/benchmarks` from the template's root (PROJECT: a fresh bake).", "",
        method(results["rounds"], len(results["loops"]["seconds"]))
        + " On the GPU each loop copies its batches from pinned memory without blocking, and the "
        "time per step is read on the host: once the GPU's queue of launched kernels is full, the "
        "host waits for the GPU, so the time is that of the slower of the two.",
        "",
    ]  # fmt: skip
    if not results["lightning"]:
        lines += ["Lightning is not installed on this machine: its column is left out.", ""]
    lines += loops_table(results["loops"])
    lines += [
        "", f"Throughput as a share of the hand loop's (target: the trainer at least {TARGET}x):",
        "", *throughput_lines(results["loops"]), "",
    ]  # fmt: skip
    return "\n".join(lines)


def main(project: Path, output_dir: Path, tiny: bool) -> None:
    device = device_description()
    if device["device"] != "cuda" and not tiny:
        sys.exit("no CUDA device visible: run this on a GPU machine (or --tiny to try it here)")
    without_lightning = {name: loop for name, loop in LOOPS.items() if name != "Lightning"}
    loops = LOOPS if lightning_available() else without_lightning
    steps, rounds = (TINY_STEPS, 1) if tiny else (STEPS, ROUNDS)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "device": device,
        "rounds": rounds,
        "lightning": "Lightning" in loops,
        "loops": measure_loops(package_name(project), steps, rounds, device["device"], loops),
    }
    write_json(results, output_dir / "gpu.json")
    text = markdown(results)
    (output_dir / "gpu.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    paths = [argument for argument in arguments if argument != "--tiny"]
    if len(paths) != 2:
        sys.exit("usage: python -m tests.benchmark_gpu PROJECT OUTPUT_DIR [--tiny]")
    main(Path(paths[0]), Path(paths[1]), "--tiny" in arguments)
