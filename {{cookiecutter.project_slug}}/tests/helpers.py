"""Helpers the test modules share (conftest.py holds only fixtures): reading a run's records,
folders built once per session (reference runs), stand-ins for SIGTERM and for a crash, tiny
searches and a search that hangs to be killed, DDP in a one-process group, tiny MNIST files
and image folders."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from filelock import FileLock
from PIL import Image, ImageDraw
from torch.nn.parallel import DistributedDataParallel

from {{ cookiecutter.package_name }} import search
from {{ cookiecutter.package_name }}.config import load_config, to_dict
from {{ cookiecutter.package_name }}.preemption import StopRequest
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.train import run


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """Every record of the run's metrics.jsonl, in order."""
    return RunFiles(run).read_metrics()


# What training computes in a metrics.jsonl record; the rest (samples/s, memory, GPU use) is
# telemetry, measured from the wall clock and never the same twice.
TRAINING_KEYS = {
    "step",
    "epoch",
    "lr",
    "loss",
    "grad_norm",
    "train_loss",
    "val_loss",
    "val_accuracy",
}


def training_records(run: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records with only what training computes in them."""
    return [
        {key: value for key, value in record.items() if key in TRAINING_KEYS}
        for record in read_metrics(run)
    ]


def step_losses(run: Path) -> list[float]:
    """The loss of every optimizer step of the run in `run`, in order."""
    return RunFiles(run).step_losses()


class TrainSmoke(Protocol):
    def __call__(self, name: str, *overrides: str, stop: StopRequest | None = None) -> Path: ...


class SharedFolders:
    """Folders built once per test session and then only read. The first test that asks for a
    name builds it, in whichever process it runs (pytest-xdist's workers share `root` and wait
    for each other on a lock); every later request, from any test, gets the same folder.

    What each folder held when built is recorded, and `changed()` compares: a test that wrote
    into one would change what every later test compares with. Copy one before changing it
    (`shutil.copytree`, as the `reference_run_copy` fixture does).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.used: dict[Path, str] = {}  # folder -> digest of its contents when built

    def get(self, name: str, build: Callable[[Path], None]) -> Path:
        """`root/name`, made by `build(folder)` unless an earlier request made it."""
        folder = self.root / name
        built = self.root / f"{name}.sha256"  # written last: a build cut short has none
        with FileLock(self.root / f"{name}.lock"):
            if not built.is_file():
                if folder.exists():
                    shutil.rmtree(folder)
                build(folder)
                built.write_text(folder_digest(folder), encoding="utf-8")
        self.used[folder] = built.read_text(encoding="utf-8")
        return folder

    def changed(self) -> list[Path]:
        """The folders this process used whose contents are no longer what was built."""
        return [folder for folder, built in self.used.items() if folder_digest(folder) != built]


def folder_digest(folder: Path) -> str:
    """sha256 over the relative path of everything below `folder` and each file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class ReferenceRuns:
    """Runs of the smoke config, each trained once per session (SharedFolders): the straight
    run a stop-and-resume test compares with, a finished run a test damages a copy of.
    `reference_run(*overrides)` is the folder of the run those overrides give. Runs are told
    apart by the whole config they train with: `train.batch_size=64` (the smoke config's own
    value) and no override are one run."""

    def __init__(self, folders: SharedFolders, smoke_config: Path) -> None:
        self.folders = folders
        self.smoke_config = smoke_config

    def __call__(self, *overrides: str) -> Path:
        config = load_config(self.smoke_config, list(overrides))
        if config.output_dir or config.resume:
            raise ValueError("a reference run chooses its own folder and starts from scratch")
        whole_config = json.dumps(to_dict(config), sort_keys=True).encode()
        readable = re.sub(r"[^\w.=-]+", "_", "_".join(overrides))[:80] or "smoke"
        name = f"run-{readable}-{hashlib.sha256(whole_config).hexdigest()[:12]}"

        def train(folder: Path) -> None:
            # Its console lines would otherwise land in the output of whichever test asked first.
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                run(dataclasses.replace(config, output_dir=str(folder)))

        return self.folders.get(name, train)


class CopyReferenceRun(Protocol):
    def __call__(self, name: str, *overrides: str) -> Path: ...


class StopAtSync(StopRequest):
    """Acts as if SIGTERM arrived just before the n-th host sync (the real signal has its own test).

    The loop reads `requested` once per sync: every `train.log_every` steps, at each epoch's end,
    and wherever an evaluation or checkpoint is due.
    """

    def __init__(self, sync: int) -> None:
        super().__init__()
        self.remaining = sync

    @property
    def requested(self) -> bool:
        self.remaining -= 1
        if self.remaining == 0:
            self.at_that_sync()
        return self.signal_number is not None

    def at_that_sync(self) -> None:
        self.signal_number = signal.SIGTERM


class CrashAtSync(StopAtSync):
    """Crashes the run at the n-th host sync, before anything that sync would save, as a kill
    would (but a kill leaves run.json at "running"; this crash is recorded as failed)."""

    def at_that_sync(self) -> None:
        raise RuntimeError("simulated crash at a host sync")


NO_OPTUNA = "the search extra is not installed: uv sync --locked --inexact --extra search"
# A search's trials: four steps an epoch, evaluated at each epoch's end, well under a second.
TINY_TRIAL = ["data.num_train=128", "data.num_val=32", "train.batch_size=32", "train.epochs=2",
              "model.width=4", "train.require_loss_decrease=false"]  # fmt: skip
# 16 steps: last.pt at step 4, syncs at 4, 8, 10, 12, 16
LONGER_TRIAL = [*TINY_TRIAL, "train.epochs=4"]
SEARCH_SPACE = ["--space", "optim.lr=log:0.001:0.01", "--space", "model.width=int:4:8"]


def run_search(arguments: list[str]) -> str:
    """search.main's exit code must be 0; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert search.main(arguments) == 0, printed.getvalue()
    return printed.getvalue()


class HangAtSync(StopAtSync):
    """Stops the process for good at the n-th host sync, so that a kill lands mid-trial."""

    def at_that_sync(self) -> None:
        time.sleep(600)


def search_until_killed(arguments: list[str], folder: Path, sync: int) -> None:
    """A search in a forked process (torch is imported already: no start-up to wait for) that
    hangs at the `sync`-th read of its stop request: the worker reads it once, then its first
    trial at each host sync (of LONGER_TRIAL, 3: step 8, after last.pt at step 4; 2: step 4,
    before its first checkpoint)."""
    # The parent's OpenMP threads do not survive a fork: one thread, or the first op hangs.
    torch.set_num_threads(1)
    os.chdir(folder)
    search.search(search.parse_arguments(arguments), HangAtSync(sync))


@contextlib.contextmanager
def one_process_ddp(
    model: torch.nn.Module, folder: Path, on_all_reduce: Callable[[int], object] | None = None
) -> Iterator[DistributedDataParallel]:
    """`model` under DDP in a gloo group of this process alone (its rendezvous file in folder),
    the group destroyed on exit; `on_all_reduce(bucket index)` is called at each gradient
    all-reduce.

    The all-reduce is a comm hook that does in this thread what default_hooks.allreduce_hook does
    for one process (the identity), so gloo's worker thread gets no work: that thread frees each
    work item's state, which needs the GIL, and dropping the last reference to the process group
    (DDP's, when the test lets go of the model) joins the thread while holding the GIL. Under
    load the two met and the test hung for ever (seen with gdb and py-spy: ~ProcessGroupGloo in
    thread::join from the Reducer's dealloc, the worker in take_gil; pytorch/pytorch#56297).
    """
    dist.init_process_group(
        "gloo", init_method=f"file://{folder / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        ddp = DistributedDataParallel(model)

        def all_reduce(bucket: Any) -> torch.futures.Future[torch.Tensor]:
            if on_all_reduce is not None:
                on_all_reduce(bucket.index())
            reduced: torch.futures.Future[torch.Tensor] = torch.futures.Future()
            reduced.set_result(bucket.buffer().div_(dist.get_world_size()))
            return reduced

        # A lambda: DDP refuses a hook whose `bucket` is annotated as anything but GradBucket,
        # which torch's type stubs do not export.
        ddp.register_comm_hook(None, lambda state, bucket: all_reduce(bucket))
        yield ddp
    finally:
        dist.destroy_process_group()


class WriteIdx(Protocol):
    def __call__(self, path: Path, array: np.ndarray) -> None: ...


class MakeTinyMnist(Protocol):
    def __call__(self, root: Path, compressed: bool = True) -> Path: ...


def write_idx_file(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file, gzipped when `path` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


class MakeImageFolder(Protocol):
    def __call__(self, root: Path, per_class: int = 40, split_folders: bool = False) -> Path: ...


SHAPES = ("circle", "cross", "square")  # the class folders make_image_folder writes
# Other shapes of the same drawing: a source that fine-tuning to SHAPES can learn from.
OTHER_SHAPES = ("block", "ring", "saltire", "triangle")


def draw_shape(shape: str, generator: np.random.Generator) -> Image.Image:
    """A 24x24 RGB picture: a shape of random colour, size and place on a random dark ground."""
    ground = tuple(int(value) for value in generator.integers(0, 90, 3))
    ink = tuple(int(value) for value in generator.integers(150, 256, 3))
    image = Image.new("RGB", (24, 24), ground)
    draw = ImageDraw.Draw(image)
    half = int(generator.integers(6, 10))
    x, y = (int(value) for value in generator.integers(half + 1, 23 - half, 2))
    box = (x - half, y - half, x + half, y + half)
    if shape == "circle":
        draw.ellipse(box, fill=ink)
    elif shape == "square":
        draw.rectangle(box, outline=ink, width=2)
    elif shape == "block":
        draw.rectangle(box, fill=ink)
    elif shape == "ring":
        draw.ellipse(box, outline=ink, width=2)
    elif shape == "triangle":
        corners = [(x, y - half), (x - half, y + half), (x + half, y + half)]
        draw.polygon(corners, outline=ink, width=2)
    elif shape == "saltire":
        draw.line((x - half, y - half, x + half, y + half), fill=ink, width=2)
        draw.line((x - half, y + half, x + half, y - half), fill=ink, width=2)
    else:
        draw.line((x - half, y, x + half, y), fill=ink, width=2)
        draw.line((x, y - half, x, y + half), fill=ink, width=2)
    return image
