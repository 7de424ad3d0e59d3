"""Input pipelines over one image folder, measured: images per second of an epoch.

`python -m tests.benchmark_data PROJECT OUTPUT_DIR [--tiny]` (also part of `nox -s bench`) writes
data.json and data.md to OUTPUT_DIR; --tiny runs every step on a few images (`nox -s bench-tiny`,
which only proves the code runs). One folder of PNG files, generated once, is read by:

- the anchor: torchvision's `ImageFolder` with `Resize`, `ToTensor` and `Normalize`, the pipeline
  most PyTorch code starts from. torchvision does not import beside the CPU build of torch that
  this bench installs, so the same per-item steps are written out here: open the file with PIL,
  convert to RGB, resize, to a float tensor, normalise;
- the project's folder loader (`data.name=imagefolder` without a pack);
- the project's packed loader (after `python -m <package>.data.pack`), also with `data.augment`.

Each at 0 and 2 DataLoader workers. A few batches warm each loader up (workers started, files in
the page cache), then one whole epoch is timed; several rounds run every pipeline back to back,
and the table gives the median (min-max) over rounds.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.baking import package_name

CLASSES, SIZE = 10, 64
WORKERS = (0, 2)
WARM_UP_BATCHES = 5
ANCHOR = "anchor (ImageFolder pipeline)"


@dataclass(frozen=True)
class Scale:
    images: int
    batch: int
    rounds: int


FULL = Scale(images=20_000, batch=256, rounds=3)
# Every step once, in seconds: enough batches for the warm-up and a timed epoch.
TINY = Scale(images=2 * WARM_UP_BATCHES * 8, batch=8, rounds=1)


def make_folder(root: Path, images: int) -> None:
    """`images` smooth colour pictures with a little noise, SIZE x SIZE, CLASSES class folders."""
    generator = np.random.default_rng(0)
    for index in range(images):
        folder = root / f"class_{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(generator.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.int16)
        noisy = smooth + generator.integers(-8, 9, smooth.shape, dtype=np.int16)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{index:05d}.png")


class AnchorImageFolder:
    """torchvision.datasets.ImageFolder(root, transforms.Compose([Resize((SIZE, SIZE)),
    ToTensor(), Normalize(mean, std)])), step by step as torchvision runs it per item (a
    DataLoader needs only __getitem__ and __len__ of it)."""

    def __init__(self, root: Path, mean: list[float], std: list[float]) -> None:
        classes = sorted(folder.name for folder in root.iterdir() if folder.is_dir())
        self.samples = [
            (path, label) for label, name in enumerate(classes)
            for path in sorted((root / name).iterdir())
        ]  # fmt: skip
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        with path.open("rb") as file:  # torchvision's pil_loader
            image = Image.open(file).convert("RGB")
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)  # Resize (PIL input)
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True))  # ToTensor
        tensor = pixels.view(SIZE, SIZE, 3).permute(2, 0, 1).contiguous().float().div(255)
        return tensor.sub(self.mean).div(self.std), label  # Normalize


def epoch_seconds(loader: Any, sampler: Any) -> float:
    """Warm up on a few batches, then time one whole epoch."""
    if sampler is not None:
        sampler.set_epoch(0)
    batches: Iterator[Any] = iter(loader)
    for _ in range(WARM_UP_BATCHES):
        next(batches)
    if sampler is not None:
        sampler.set_epoch(1)
    started = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - started


class Pipelines:
    """Builds each pipeline's DataLoader over the same folder."""

    def __init__(self, package: str, folder: Path, pack: Path, batch: int) -> None:
        self.folder, self.pack, self.batch = folder, pack, batch
        self.config = importlib.import_module(f"{package}.config")
        self.data = importlib.import_module(f"{package}.data")
        self.loaders = importlib.import_module(f"{package}.data.loaders")
        self.context = importlib.import_module(f"{package}.distributed").DistributedContext()

    def project_config(self, workers: int, pack: Path, *overrides: str) -> Any:
        return self.config.build_config({}, [
            "data.name=imagefolder", f"data.root={self.folder}", f"data.pack={pack}",
            f"data.image_size={SIZE}", "data.channels=3", "data.val_fraction=0",
            "data.test_fraction=0", f"data.num_workers={workers}", f"train.batch_size={self.batch}",
            *overrides,
        ])  # fmt: skip

    def project(self, workers: int, pack: Path, *overrides: str) -> tuple[Any, Any]:
        config = self.project_config(workers, pack, *overrides)
        dataset = self.data.build_split(config.data, config.seed, "train")
        loader, sampler = self.loaders.make_loader(dataset, config, self.context, shuffle=True)
        return loader, sampler

    def anchor(self, workers: int) -> tuple[Any, Any]:
        preprocessing = self.data.preprocessing_for(self.project_config(0, self.pack).data)
        dataset = AnchorImageFolder(self.folder, list(preprocessing.mean), list(preprocessing.std))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=self.batch, shuffle=True, num_workers=workers,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        return loader, None

    def table(self) -> dict[str, Callable[[int], tuple[Any, Any]]]:
        no_pack = self.folder.with_name("no-pack-here")
        return {
            ANCHOR: self.anchor,
            "folder loader (no pack)": lambda workers: self.project(workers, no_pack),
            "packed loader": lambda workers: self.project(workers, self.pack),
            "packed loader, data.augment=true": lambda workers: self.project(
                workers, self.pack, "data.augment=true"
            ),
        }


def measure(package: str, scratch: Path, scale: Scale) -> dict[str, Any]:
    folder, pack = scratch / "images", scratch / "images.pack"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    make_folder(folder, scale.images)
    results: dict[str, Any] = {
        "images": scale.images, "batch": scale.batch, "rounds": scale.rounds,
        "generate_seconds": time.perf_counter() - started,
    }  # fmt: skip
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", f"{package}.data.pack", str(folder), str(pack),
         "--image-size", str(SIZE), "--workers", "2"],
        check=True, capture_output=True,
    )  # fmt: skip
    results["pack_seconds"] = time.perf_counter() - started
    pipelines = Pipelines(package, folder, pack, scale.batch)
    started = time.perf_counter()  # the folder loader's pass over every file at start
    pipelines.project(0, folder.with_name("no-pack-here"))
    results["folder_start_seconds"] = time.perf_counter() - started
    seconds: dict[str, dict[int, list[float]]] = {}
    for round_number in range(scale.rounds):
        order = list(pipelines.table().items())[:: -1 if round_number % 2 else 1]
        for name, build in order:
            for workers in WORKERS:
                loader, sampler = build(workers)
                seconds.setdefault(name, {}).setdefault(workers, [])
                seconds[name][workers].append(epoch_seconds(loader, sampler))
                del loader  # its worker processes end here
    results["images_per_second"] = {
        name: {
            str(workers): {
                "median": scale.images / statistics.median(times),
                "min": scale.images / max(times),
                "max": scale.images / min(times),
            }
            for workers, times in by_workers.items()
        }
        for name, by_workers in seconds.items()
    }
    results["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    return results


def markdown(results: dict[str, Any]) -> str:
    rates, images, batch = results["images_per_second"], results["images"], results["batch"]
    header = " | ".join(f"{w} workers: images/s" for w in WORKERS)
    ratios = " | ".join(f"{w} workers: vs anchor" for w in WORKERS)
    lines = [
        "# Data loading", "",
        f"Machine: {results['machine']}. torch {results['torch']}, Python {results['python']}. "
        "Regenerate with `nox -s bench` (or `python -m tests.benchmark_data PROJECT OUTPUT_DIR` "
        "in its environment).", "",
        f"One folder of {images:,} PNG files ({SIZE}x{SIZE} RGB, {CLASSES} class folders, in the "
        f"page cache), read at {SIZE}x{SIZE} in batches of {batch}. Images per second of one "
        f"whole epoch after a warm-up of {WARM_UP_BATCHES} batches; median (min-max) over "
        f"{results['rounds']} rounds that run every pipeline back to back. The anchor is "
        "torchvision's "
        "`ImageFolder` with `Resize`, `ToTensor` and `Normalize`, written out step by step in "
        "`tests/benchmark_data.py`: torchvision itself does not import beside the CPU build of "
        "torch used here.", "",
        f"| pipeline | {header} | {ratios} |",
        "| --- " * (1 + 2 * len(WORKERS)) + "|",
    ]  # fmt: skip
    for name, by_workers in rates.items():
        cells = [
            f"{by_workers[str(w)]['median']:,.0f} ({by_workers[str(w)]['min']:,.0f}-"
            f"{by_workers[str(w)]['max']:,.0f})"
            for w in WORKERS
        ]
        cells += [
            f"{by_workers[str(w)]['median'] / rates[ANCHOR][str(w)]['median']:.2f}x"
            for w in WORKERS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Once per folder: `python -m <package>.data.pack` (2 workers) took "
        f"{results['pack_seconds']:.1f} s, with Python's start; without a pack, the folder "
        f"loader's pass over every file at the start of a run (checks and statistics) took "
        f"{results['folder_start_seconds']:.1f} s.",
        "",
        f"The machine's 1-minute load average was {results['load_average']['before']:.2f} before "
        f"and {results['load_average']['after']:.2f} after: work of other processes slows every "
        "pipeline, and the rounds interleave them so that it slows them alike.",
        "",
    ]
    return "\n".join(lines)


def main(project: Path, output_dir: Path, scale: Scale = FULL) -> None:
    package = package_name(project)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        results |= measure(package, Path(scratch), scale)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "data.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = markdown(results)
    (output_dir / "data.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    tiny = "--tiny" in arguments
    paths = [argument for argument in arguments if argument != "--tiny"]
    if len(paths) != 2:
        sys.exit("usage: python -m tests.benchmark_data PROJECT OUTPUT_DIR [--tiny]")
    main(Path(paths[0]), Path(paths[1]), TINY if tiny else FULL)
