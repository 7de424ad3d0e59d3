"""`train.metrics_port=PORT`: a Prometheus endpoint, http://HOST:PORT/metrics, while a run trains.

One sink (sinks.py) on every rank, each on PORT + its local rank (torchrun), serving gauges set
from the summary records: the step, epoch and loss, and the telemetry of telemetry.py. The names
below are the whole interface: monitoring/grafana-dashboard.json draws exactly these (a test
checks it), monitoring/prometheus.yml scrapes them. Off by default (port 0); the host defaults to
127.0.0.1, so nothing is reachable from other machines unless asked (`train.metrics_host=0.0.0.0`).
"""

from __future__ import annotations

import errno

import torch.distributed as dist

from .distributed import DistributedContext
from .errors import ConfigError
from .sinks import Record

HIGHEST_PORT = 65535
MIB = 2**20
# Exported name -> (the record value it shows, its factor to the unit the name says, help).
GAUGES: dict[str, tuple[str, float, str]] = {
    "training_step": ("step", 1.0, "Optimizer steps done"),
    "training_epoch": ("epoch", 1.0, "Epoch being trained (from 0)"),
    "training_loss": ("loss", 1.0, "Training loss of the latest synced step"),
    "training_samples_per_second": ("samples_per_second", 1.0, "Samples per second, all ranks"),
    "training_data_wait_ratio": (
        "data_wait_fraction", 1.0, "Share of wall time spent waiting for the data loader"
    ),
    "training_peak_rss_bytes": ("peak_rss_mib", MIB, "Peak resident memory of this process"),
    "training_cuda_peak_allocated_bytes": (
        "cuda_peak_allocated_mib", MIB, "Peak memory the CUDA allocator handed out"
    ),
    "training_cuda_peak_reserved_bytes": (
        "cuda_peak_reserved_mib", MIB, "Peak memory the CUDA allocator reserved"
    ),
    "training_gpu_utilization_percent": (
        "gpu_utilization_percent", 1.0, "GPU utilisation (NVML)"
    ),
    "training_gpu_memory_used_bytes": ("gpu_memory_used_mib", MIB, "GPU memory in use (NVML)"),
}  # fmt: skip


def check_port(port: int, local_rank: int) -> int:
    """The port this rank serves on; refuses one past the last port."""
    mine = port + local_rank
    if not 0 < mine <= HIGHEST_PORT:
        raise ConfigError(
            f"train.metrics_port={port}: local rank {local_rank} would serve on {mine}, past "
            f"{HIGHEST_PORT}; choose a lower port, or 0 to switch the endpoint off"
        )
    return mine


class PrometheusSink:
    """Gauges for one rank, served from a thread of this process until `close`."""

    def __init__(self, host: str, port: int, context: DistributedContext) -> None:
        # Imported here, not above: prometheus_client takes ~0.1 s to import, and every run
        # imports this module while few serve metrics.
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()  # not the global one: a process may train twice
        self.gauges = {
            name: Gauge(name, help_text, ["rank"], registry=self.registry).labels(str(context.rank))
            for name, (_, _, help_text) in GAUGES.items()
        }
        mine = check_port(port, context.local_rank)
        try:
            self.server, self.thread = start_http_server(mine, addr=host, registry=self.registry)
        except OSError as error:
            reason = "in use" if error.errno == errno.EADDRINUSE else f"unusable ({error})"
            raise ConfigError(
                f"train.metrics_port={port}: port {mine} on {host} is {reason}; choose another "
                "port (under torchrun each rank takes PORT + its local rank), or 0 for no endpoint"
            ) from None

    def log(self, record: Record) -> None:
        if not record.summary or record.kind != "step":
            return
        values = {"step": float(record.step), "epoch": float(record.epoch), **record.values}
        for name, (source, factor, _) in GAUGES.items():
            if source in values:
                self.gauges[name].set(values[source] * factor)

    def flush(self) -> None:
        pass  # scraped from memory

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def open_endpoint(host: str, port: int, context: DistributedContext) -> PrometheusSink | None:
    """Every rank's endpoint, or None with port 0. Under torchrun every rank learns whether all
    could open theirs, so a rank whose port is taken stops them all, not only itself."""
    if port == 0:
        return None
    sink: PrometheusSink | None = None
    failure: str | None = None
    try:
        sink = PrometheusSink(host, port, context)
    except ConfigError as error:
        failure = str(error)
    if context.is_distributed:
        failures: list[str | None] = [None] * context.world_size
        dist.all_gather_object(failures, failure)
        failure = next((found for found in failures if found is not None), None)
    if failure is not None:
        if sink is not None:
            sink.close()
        raise ConfigError(failure)
    return sink
