"""What telemetry and the Prometheus endpoint cost (issue #26's budget: at most 1% of a step).

`python -m tests.benchmark_telemetry PROJECT OUTPUT_DIR [ROUNDS]` takes a baked project whose
package is installed in this environment (as `nox -s bench` installs it) and trains its
`train.run` two ways, interleaved round by round so their ratio holds on a noisy machine:

- "with": as every run trains (telemetry.py at each host sync), plus the endpoint of
  `train.metrics_port`, scraped once a second over loopback (Prometheus's default is every 15 s);
- "without": the same trainer with the telemetry replaced by one that measures nothing, and no
  endpoint.

Per-step times come from when each training batch was fetched (tests/benchmark_stats.py), so
start-up, evaluation and the checkpoint are outside them. Writes telemetry.json and telemetry.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.baking import package_name
from tests.benchmark_loops import LEARNING_RATE, SCRATCH, WIDTH, project_modules, time_batches
from tests.benchmark_stats import WINDOW, paired, per_step_seconds, summary

BATCH_SIZES = (8, 64)  # the smallest step (where a fixed cost weighs most) and the default batch
STEPS = {8: 300, 64: 100}
ROUNDS = 15
ARMS = ("without", "with")


class NoTelemetry:
    """The "without" arm: the interface of telemetry.Telemetry, measuring nothing."""

    note = None

    def __init__(self, *_: Any) -> None:
        pass

    def timed(self, steps: Iterator[Any]) -> Iterator[Any]:
        return steps

    def measure(self) -> dict[str, float]:
        return {}

    def totals(self) -> dict[str, float]:
        return {}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def scraping(port: int) -> Iterator[None]:
    """GET /metrics once a second while the run trains (failures ignored: not serving yet)."""
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        yield
    finally:
        stop.set()
        scraper.join()


def trainer_run(package: str, steps: int, batch_size: int, arm: str) -> list[float]:
    """One run of the baked trainer; the fetch time of each training batch."""
    modules = project_modules(package)
    train_module: Any = modules["train"]
    make_loader, telemetry = train_module.make_loader, train_module.Telemetry
    timed: list[list[float]] = []

    def timed_make_loader(*args: Any, shuffle: bool, **kwargs: Any) -> Any:
        made, sampler = make_loader(*args, shuffle=shuffle, **kwargs)
        if shuffle:  # the training loader, not validation's
            timed.append(time_batches(made))
        return made, sampler

    port = free_port()
    with tempfile.TemporaryDirectory(dir=SCRATCH) as output_dir:
        overrides = [
            f"output_dir={output_dir}", "train.epochs=1", f"train.batch_size={batch_size}",
            f"data.num_train={steps * batch_size}", f"data.num_val={batch_size}",
            f"model.width={WIDTH}", f"optim.lr={LEARNING_RATE}", "tracking.backend=none",
            "data.name=synthetic", "train.device=cpu", "train.deterministic=true",
            "train.require_loss_decrease=false",
            *([f"train.metrics_port={port}"] if arm == "with" else []),
        ]  # fmt: skip
        config = modules["config"].load_config(None, overrides)
        train_module.make_loader = timed_make_loader
        if arm == "without":
            train_module.Telemetry = NoTelemetry
        try:
            with scraping(port), contextlib.redirect_stdout(io.StringIO()):
                train_module.run(config)
        finally:
            train_module.make_loader, train_module.Telemetry = make_loader, telemetry
    (stamps,) = timed
    return stamps


def measure(package: str, rounds: int) -> dict[str, Any]:
    seconds: dict[str, dict[int, list[float]]] = {arm: {b: [] for b in BATCH_SIZES} for arm in ARMS}
    for arm in ARMS:  # warm-up: imports, the allocator, the first server thread
        per_step_seconds(trainer_run(package, 4 * WINDOW, 8, arm))
    for round_number in range(rounds):
        for batch in BATCH_SIZES:
            for arm in ARMS[:: -1 if round_number % 2 else 1]:
                seconds[arm][batch].append(
                    per_step_seconds(trainer_run(package, STEPS[batch], batch, arm))
                )
    return {
        "seconds": {arm: {b: summary(s) for b, s in by.items()} for arm, by in seconds.items()},
        "overhead": {
            batch: paired(
                [
                    with_ / without - 1
                    for with_, without in zip(
                        seconds["with"][batch], seconds["without"][batch], strict=True
                    )
                ]
            )
            for batch in BATCH_SIZES
        },
    }


def markdown(results: dict[str, Any], rounds: int) -> str:
    lines = [
        "# Telemetry and endpoint overhead",
        "",
        f"Median per-step seconds over {rounds} interleaved rounds (CPU, SmallCNN width {WIDTH});",
        "overhead: median (quartiles) of each round's with/without - 1. Budget: at most 1%.",
        "",
        "| batch | without | with | overhead |",
        "| --- | --- | --- | --- |",
    ]
    for batch in BATCH_SIZES:
        seconds = results["seconds"]
        cost = results["overhead"][batch]
        lines.append(
            f"| {batch} | {seconds['without'][batch]['median'] * 1e3:.3f} ms | "
            f"{seconds['with'][batch]['median'] * 1e3:.3f} ms | {cost['median']:+.2%} "
            f"({cost['q1']:+.2%} to {cost['q3']:+.2%}) |"
        )
    return "\n".join(lines) + "\n"


def main(project: Path, output_dir: Path, rounds: int = ROUNDS) -> None:
    results = measure(package_name(project), rounds)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "telemetry.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    text = markdown(results, rounds)
    (output_dir / "telemetry.md").write_text(text, "utf-8")
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
