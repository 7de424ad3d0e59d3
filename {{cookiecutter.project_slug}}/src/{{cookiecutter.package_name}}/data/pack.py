"""Pack an image folder once, train from the pack fast:
`python -m <package>.data.pack SRC [DEST] --image-size 64 [--channels 3] [--skip-bad-images]`.

Decoding a PNG or JPEG costs far more than training a small model on it, and an image folder is
decoded again every epoch. A pack decodes and resizes every image once into DEST (default:
SRC.pack beside SRC), which `data.name=imagefolder` then reads through a memory map:

    images.npy      uint8 (N, channels, size, size), the pixels `predict` would see
    labels.npy      int64 (N,)
    pixel_sums.npy  int64 (N, channels, 2): per image and channel, sum and sum of squares
    pack.json       class names, every source file (path, size, modification time), the files
                    left out as unreadable, size, channels, sha256 of images.npy

pack.json is written last, so a pack cut short has none and is never used. A training run uses
the pack only while it was made from exactly the files the folder holds (same paths, sizes and
modification times); otherwise it says so and reads the files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetDamagedError, run_command
from .folder_layout import FileEntry, Listing, list_image_folder
from .images import decode_files, unreadable_message
from .packed import METADATA, PACK_FORMAT, default_pack_path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def write_pack(
    root: Path, destination: Path, image_size: int, channels: int, skip_bad: bool, workers: int
) -> dict[str, Any]:
    """Decode every image of `root` into a pack at `destination`; returns its metadata."""
    listing = list_image_folder(root)
    if destination.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"DEST {destination} is inside SRC {root}; put the pack beside it")
    if destination.exists() and not (destination / METADATA).is_file():
        raise ConfigError(f"DEST {destination} exists and is not a pack; choose another DEST")
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        metadata = decode_into(partial, listing, image_size, channels, skip_bad, workers)
        # Swap the finished pack in; an older pack at DEST is removed only after that.
        previous = destination.with_name(f".{destination.name}.previous-{os.getpid()}")
        if destination.exists():
            destination.rename(previous)
        partial.rename(destination)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return metadata


def decode_into(
    folder: Path, listing: Listing, image_size: int, channels: int, skip_bad: bool, workers: int
) -> dict[str, Any]:
    count, shape = len(listing.files), (channels, image_size, image_size)
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (count, *shape))
    sums = np.zeros((count, channels, 2), dtype=np.int64)
    kept: list[FileEntry] = []
    skipped: list[tuple[str, int, int, str]] = []
    paths = [listing.root / entry.path for entry in listing.files]
    for entry, decoded in zip(
        listing.files, decode_files(paths, channels, image_size, workers, keep_pixels=True),
        strict=True,
    ):  # fmt: skip
        if decoded.pixels is None or decoded.sums is None:
            skipped.append((*entry, decoded.error))
            continue
        images[len(kept)], sums[len(kept)] = decoded.pixels, decoded.sums
        kept.append(entry)
    if skipped and not skip_bad:
        path, *_, reason = skipped[0]
        fix = "or pass --skip-bad-images to pack without it"
        message = unreadable_message(listing.root / path, reason, fix, len(skipped) - 1)
        raise DatasetDamagedError(f"{message}; nothing was packed")
    images.flush()
    del images
    if skipped:  # the array was sized for every file: keep the first len(kept) rows
        full = np.load(folder / "images.npy", mmap_mode="r")
        np.save(folder / "kept.npy", full[: len(kept)])
        del full
        (folder / "kept.npy").replace(folder / "images.npy")
    np.save(folder / "labels.npy", np.array([listing.label_of(e.path) for e in kept], np.int64))
    np.save(folder / "pixel_sums.npy", sums[: len(kept)])
    metadata = {
        "format": PACK_FORMAT,
        "source": str(listing.root.resolve()),
        "image_size": image_size,
        "channels": channels,
        "class_names": list(listing.class_names),
        "files": [list(entry) for entry in kept],
        "skipped": [list(entry) for entry in skipped],
        "images_sha256": sha256_of(folder / "images.npy"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # One line per key: readable at the top, and a million files make one line each list.
    lines = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in metadata.items()]
    (folder / METADATA).write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pack an image folder for fast training.")
    parser.add_argument("source", type=Path, metavar="SRC", help="the image folder (data.root)")
    parser.add_argument("destination", type=Path, nargs="?", metavar="DEST",
                        help="where the pack goes (default: SRC.pack beside SRC, where "
                        "training looks when data.pack is not set)")  # fmt: skip
    parser.add_argument("--image-size", type=int, required=True, help="= data.image_size")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3, help="= data.channels")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave out unreadable images (pack.json lists them)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decoding processes (0: this one)")  # fmt: skip
    arguments = parser.parse_args(argv)
    destination = arguments.destination or default_pack_path(arguments.source)
    return run_command("pack", lambda: pack_and_report(arguments, destination))


def pack_and_report(arguments: argparse.Namespace, destination: Path) -> None:
    started = time.perf_counter()
    if arguments.image_size < 1:
        raise ConfigError(f"--image-size {arguments.image_size} must be at least 1, e.g. 64")
    metadata = write_pack(
        arguments.source, destination, arguments.image_size, arguments.channels,
        arguments.skip_bad_images, arguments.workers,
    )  # fmt: skip
    size = arguments.image_size
    print(
        f"packed {len(metadata['files'])} images of {len(metadata['class_names'])} classes "
        f"({size}x{size}, {arguments.channels} channel(s)) from {arguments.source} into "
        f"{destination} in {time.perf_counter() - started:.1f}s"
    )
    if metadata["skipped"]:
        first = metadata["skipped"][0]
        print(f"skipped {len(metadata['skipped'])} unreadable images, e.g. {first[0]} ({first[3]})")


if __name__ == "__main__":
    sys.exit(main())
