"""What a run costs the machine, measured at each host sync without adding one.

- samples per second (all ranks) and the share of wall time spent waiting for the data loader,
  over the window since the previous sync: the loop's time in `next()` on the loader, against
  the time from the first batch of the window to the sync. Evaluations and checkpoints between
  two windows are in neither;
- peak memory so far: the process's peak resident size (every device), and on CUDA the
  allocator's peak allocated and reserved bytes (host-side counters: no device sync);
- on NVIDIA GPUs, utilisation and memory in use from NVML (the nvidia-ml-py package), read at
  most once a second. Without the package or a working driver those fields are left out and
  `note` says so once.

The values ride on the summary record of each sync (sinks.py), so metrics.jsonl, every tracker,
the console and the Prometheus endpoint all get them; `totals` goes into run.json.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from .data.loaders import Batch

MIB = 2**20
NVML_SECONDS = 1.0  # NVML's utilisation is itself an average over up to a second
Step = tuple[int, list[Batch]]  # (epoch, the loader batches of one optimizer step)


def peak_rss_mib() -> float | None:
    """The process's peak resident set size; None where `resource` does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


class Nvml:
    """One GPU's utilisation and memory from NVML, or nothing (with the reason in `note`)."""

    def __init__(self, device: torch.device) -> None:
        self.handle: Any = None
        self.note: str | None = None
        self.last: dict[str, float] = {}
        self.read_at = -NVML_SECONDS
        if device.type != "cuda":
            return
        try:
            self.nvml: Any = importlib.import_module("pynvml")
        except ImportError:
            self.note = "GPU utilisation not recorded: nvidia-ml-py is not installed"
            return
        try:
            self.nvml.nvmlInit()
            # By UUID: NVML numbers GPUs its own way, whatever CUDA_VISIBLE_DEVICES says.
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self.handle = self.nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except Exception as error:  # NVMLError and its many subclasses, or no uuid
            self.note = f"GPU utilisation not recorded: NVML failed ({error})"
            self.handle = None

    def read(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        if time.perf_counter() - self.read_at < NVML_SECONDS:
            return self.last
        try:
            utilization = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
            memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        except Exception as error:  # a driver that went away mid-run: leave the fields out
            self.note = f"GPU utilisation no longer recorded: NVML failed ({error})"
            self.handle = None
            return {}
        self.read_at = time.perf_counter()
        self.last = {
            "gpu_utilization_percent": float(utilization.gpu),
            "gpu_memory_used_mib": memory.used / MIB,
        }
        return self.last


class Telemetry:
    """One rank's measurements: wrap the loop's batches in `timed`, call `measure` at each sync."""

    def __init__(self, device: torch.device, world_size: int) -> None:
        self.device = device
        self.world_size = world_size  # every rank trains on as many samples as this one
        self.nvml = Nvml(device)
        self.window_start: float | None = None  # set by the first batch after a sync
        self.samples = 0
        self.waiting = 0.0
        self.total_samples = 0
        self.total_seconds = 0.0
        self.total_waiting = 0.0
        self.peaks: dict[str, float] = {}

    @property
    def note(self) -> str | None:
        """Why the GPU fields are missing, if they are: for the log, once."""
        return self.nvml.note

    def timed(self, steps: Iterator[Step]) -> Iterator[Step]:
        """`steps` as they come, timing the wait for each and counting its samples."""
        while True:
            asked = time.perf_counter()
            if self.window_start is None:
                self.window_start = asked
            try:
                step = next(steps)
            except StopIteration:
                return
            self.waiting += time.perf_counter() - asked
            self.samples += sum(len(labels) for _, labels in step[1])
            yield step

    def measure(self) -> dict[str, float]:
        """The window since the last sync, and the peaks so far; starts the next window."""
        now = time.perf_counter()
        seconds = max(now - (self.window_start or now), 1e-9)
        samples = self.samples * self.world_size
        values = {
            "samples_per_second": samples / seconds,
            "data_wait_fraction": min(self.waiting / seconds, 1.0),
        }
        self.total_samples += samples
        self.total_seconds += seconds
        self.total_waiting += self.waiting
        self.window_start, self.samples, self.waiting = None, 0, 0.0
        memory = self.memory()
        for name, value in memory.items():
            self.peaks[name] = max(value, self.peaks.get(name, 0.0))
        return {**values, **memory, **self.nvml.read()}

    def memory(self) -> dict[str, float]:
        values = {}
        rss = peak_rss_mib()
        if rss is not None:
            values["peak_rss_mib"] = rss
        if self.device.type == "cuda":
            values["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / MIB
            values["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved(self.device) / MIB
        return values

    def totals(self) -> dict[str, float]:
        """For run.json: mean throughput and data wait over every window, and the peaks."""
        if self.total_seconds == 0:
            return dict(self.peaks)
        return {
            "mean_samples_per_second": self.total_samples / self.total_seconds,
            "data_wait_fraction": self.total_waiting / self.total_seconds,
            **self.peaks,
        }
