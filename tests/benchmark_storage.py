"""What a remote run folder costs a step: the same run writing to S3 and writing locally.

The store is moto's S3 server on 127.0.0.1, in a process of its own (its work still competes
with training for the machine's cores: a store on another machine costs the step less). Each
round trains the smoke config once into a local folder and once into a bucket, back to back,
with a checkpoint every `checkpoint_every` steps; the figure is the median over rounds of the
per-round ratio of seconds per step (remote / local), from the run's own training time (first
step to last, checkpoints and evaluations in it) and its step count.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.benchmark_stats import paired


@dataclass(frozen=True)
class Scale:
    epochs: int
    checkpoint_every: int
    rounds: int


FULL = Scale(epochs=6, checkpoint_every=10, rounds=7)
TINY = Scale(epochs=1, checkpoint_every=4, rounds=1)


def seconds_per_step(package: str, project: Path, output_dir: str, scale: Scale) -> float:
    config = importlib.import_module(f"{package}.config")
    train = importlib.import_module(f"{package}.train")
    overrides = [
        f"output_dir={output_dir}", f"train.epochs={scale.epochs}",
        "train.require_loss_decrease=false", f"train.checkpoint_every={scale.checkpoint_every}",
    ]  # fmt: skip
    loaded = config.load_config(project / "configs" / "smoke.yaml", overrides)
    # The run's own "seconds": from its first step to its last, checkpoints and evaluations
    # included; not the set-up before (the bucket's write probe) nor the wait for the last
    # uploads after, which a step never waits for.
    final = train.run(loaded)
    steps = scale.epochs * 16  # the smoke config: 1024 samples in batches of 64
    return float(final["seconds"]) / steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto's server did not start on port {port}")


def main(project: Path, package: str, scale: Scale) -> dict[str, Any]:
    """Per-step seconds, local and remote, and their paired ratio."""
    s3fs: Any = importlib.import_module("s3fs")
    # The store in a process of its own, as a real one is elsewhere: in this process its request
    # handling would hold the GIL against the training thread.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    saved = dict(os.environ)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    wait_for_port(port)
    local: list[float] = []
    remote: list[float] = []
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
        with tempfile.TemporaryDirectory() as scratch:
            os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
            for index in range(scale.rounds):
                local.append(seconds_per_step(package, project, f"{scratch}/local-{index}", scale))
                url = f"s3://{bucket}/run-{index}"
                remote.append(seconds_per_step(package, project, url, scale))
    finally:
        server.terminate()
        server.wait()
        os.environ.clear()
        os.environ.update(saved)
    ratios = [there / here for there, here in zip(remote, local, strict=True)]
    return {
        "checkpoint_every": scale.checkpoint_every,
        "local_seconds_per_step": statistics.median(local),
        "remote_seconds_per_step": statistics.median(remote),
        "remote_over_local": paired(ratios),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    ratio = results["remote_over_local"]
    return [
        "## A run folder on S3",
        "",
        f"The smoke config with a checkpoint every {results['checkpoint_every']} steps, into a "
        "local folder and into a bucket of a moto S3 server on 127.0.0.1, back to back in each "
        "round (tests/benchmark_storage.py).",
        "",
        "| writing to | seconds per step (median) |",
        "| --- | --- |",
        f"| local folder | {results['local_seconds_per_step'] * 1e3:.2f} ms |",
        f"| S3 (moto, loopback) | {results['remote_seconds_per_step'] * 1e3:.2f} ms |",
        "",
        f"Remote over local, per round: {ratio['median']:.3f} (quartiles {ratio['q1']:.3f} to "
        f"{ratio['q3']:.3f}).",
        "",
    ]


if __name__ == "__main__":
    import sys

    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2], TINY), indent=2))
