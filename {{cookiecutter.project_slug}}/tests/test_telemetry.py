"""Every run measures throughput, data-loader wait and memory at each host sync (telemetry.py),
into metrics.jsonl and run.json, and serves them to Prometheus when asked (prometheus.py)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.data.loaders import Batch
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.prometheus import GAUGES
from {{ cookiecutter.package_name }}.report import write_report
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.sinks import Record, telemetry
from {{ cookiecutter.package_name }}.telemetry import Telemetry
from {{ cookiecutter.package_name }}.train import main, run

from helpers import TrainSmoke, read_metrics

TELEMETRY = {"samples_per_second", "data_wait_fraction", "peak_rss_mib"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_each_sync_carries_telemetry_and_run_json_its_totals(train_smoke: TrainSmoke) -> None:
    run_folder = train_smoke("run", "train.log_every=4")
    steps = [record for record in read_metrics(run_folder) if "loss" in record]
    synced = [record for record in steps if "grad_norm" in record]
    assert len(synced) >= len(steps) // 4
    for record in synced:
        assert record.keys() >= TELEMETRY
        assert record["samples_per_second"] > 0
        assert 0 <= record["data_wait_fraction"] <= 1
        assert record["peak_rss_mib"] > 10  # a Python process with torch: far more than 10 MiB
        assert not {"cuda_peak_allocated_mib", "gpu_utilization_percent"} & record.keys()  # CPU
    assert not any(TELEMETRY & record.keys() for record in steps if "grad_norm" not in record)
    totals = RunFiles(run_folder).read_manifest()["telemetry"]
    assert totals["mean_samples_per_second"] > 0
    assert totals["peak_rss_mib"] == max(record["peak_rss_mib"] for record in synced)
    pytest.importorskip("matplotlib")
    write_report([run_folder], run_folder / "report")
    assert (run_folder / "report" / "telemetry.png").read_bytes().startswith(b"\x89PNG")
    assert "![telemetry.png](telemetry.png)" in (run_folder / "report" / "report.md").read_text()


def slow_steps(count: int, delay: float) -> Iterator[tuple[int, list[Batch]]]:
    """A loader that takes `delay` seconds per step of two 8-sample batches."""
    for _ in range(count):
        time.sleep(delay)
        yield 0, [(torch.zeros(8, 1), torch.zeros(8)), (torch.zeros(8, 1), torch.zeros(8))]


def test_waiting_for_the_loader_is_measured_as_the_share_of_wall_time() -> None:
    telemetry_ = Telemetry(torch.device("cpu"), world_size=2)
    for _ in telemetry_.timed(slow_steps(3, 0.05)):
        pass  # no work: nearly all the time is waiting
    waited = telemetry_.measure()
    for _ in telemetry_.timed(slow_steps(2, 0.0)):
        time.sleep(0.05)  # the work: nearly no waiting
    worked = telemetry_.measure()
    assert waited["data_wait_fraction"] > 0.9
    assert worked["data_wait_fraction"] < 0.1
    # 3 steps x 16 samples x 2 ranks in ~0.15 s: about 640 samples/s, never above.
    assert 300 < waited["samples_per_second"] <= 640
    assert telemetry_.totals()["mean_samples_per_second"] == pytest.approx(
        (96 + 64) / telemetry_.total_seconds
    )
    assert telemetry_.note is None  # no GPU asked for, so nothing is missing


def test_the_live_console_line_shows_throughput_wait_and_memory() -> None:
    values = {"loss": 1.0, "samples_per_second": 1234.4, "data_wait_fraction": 0.25,
              "peak_rss_mib": 512.2, "cuda_peak_allocated_mib": 2048.0}  # fmt: skip
    line = telemetry(Record("step", 10, 0, values))
    assert line == "1234 samples/s  data wait 25%  peak 2048 MiB"  # on CUDA the allocator's peak


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    found = re.findall(r'^(training_\w+)\{rank="0"\} (\S+)$', text, flags=re.MULTILINE)
    return {name: float(value) for name, value in found}


def test_the_endpoint_serves_the_step_as_the_run_advances(
    smoke_config: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = load_config(smoke_config, [
        f"output_dir={tmp_path / 'run'}", f"train.metrics_port={port}", "train.log_every=1",
        "data.num_train=2048", "train.epochs=2",
    ])  # fmt: skip
    failure: list[BaseException] = []

    def train() -> None:
        try:
            run(config)
        except BaseException as error:  # seen by the test below
            failure.append(error)

    trainer = threading.Thread(target=train)
    trainer.start()
    seen: list[dict[str, float]] = []
    while trainer.is_alive():
        try:
            scraped = scrape(port)
        except OSError:  # not serving yet, or already closed
            scraped = {}
        if "training_loss" in scraped:  # a step has been synced
            seen.append(scraped)
        time.sleep(0.01)
    trainer.join()
    assert not failure
    steps = [sample["training_step"] for sample in seen]
    assert len(set(steps)) >= 2, f"saw steps {sorted(set(steps))}"
    assert steps == sorted(steps)  # it only advances
    last = seen[-1]
    assert last["training_samples_per_second"] > 0
    assert 0 <= last["training_data_wait_ratio"] <= 1
    assert last["training_peak_rss_bytes"] > 10 * 2**20
    with socket.socket() as probe:  # the run closed its endpoint: nothing listens there
        # (the scrapes' closed connections may still linger on the port, which this allows)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_a_port_in_use_stops_the_run_before_it_trains(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output_dir = tmp_path / "run"
        arguments = ["--config", str(smoke_config), f"output_dir={output_dir}",
                     f"train.metrics_port={port}"]  # fmt: skip
        assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"config error: train.metrics_port={port}: port {port} on 127.0.0.1 is in use; choose "
        "another port (under torchrun each rank takes PORT + its local rank), or 0 for no endpoint"
    )
    assert not (output_dir / "metrics.jsonl").exists()


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_port_out_of_range_is_refused(smoke_config: Path, port: str) -> None:
    with pytest.raises(ConfigError, match=f"train.metrics_port={port}"):
        load_config(smoke_config, [f"train.metrics_port={port}"])


def test_the_dashboard_draws_exactly_the_exported_metrics(project_root: Path) -> None:
    monitoring = project_root / "monitoring"
    dashboard = json.loads((monitoring / "grafana-dashboard.json").read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    drawn = {name for query in queries for name in re.findall(r"\btraining_\w+", query)}
    assert drawn == set(GAUGES)
    scrape_config = yaml.safe_load((monitoring / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = scrape_config["scrape_configs"]
    assert "127.0.0.1:9100" in job["static_configs"][0]["targets"]
