"""Reading a pack that `python -m <package>.data.pack` made (the format: pack.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetDamagedError
from .folder_layout import FileEntry, Listing

PACK_FORMAT = 1
METADATA = "pack.json"


def default_pack_path(root: Path) -> Path:
    return root.with_name(f"{root.name}.pack")


class PackedImages:
    """The pack's pixels through a memory map, opened on first read (in each DataLoader worker:
    a memory map is never pickled, so workers share the page cache, not copies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.array: np.ndarray | None = None

    def read(self, rows: np.ndarray) -> np.ndarray:
        if self.array is None:
            self.array = np.load(self.path, mmap_mode="r")
        return np.asarray(self.array[rows])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "array": None}


@dataclass(frozen=True)
class Pack:
    files: tuple[FileEntry, ...]  # the packed images, in row order (sorted by path)
    skipped: tuple[tuple[FileEntry, str], ...]  # unreadable files left out, with the reason
    labels: np.ndarray
    sums: np.ndarray
    images: PackedImages


def open_pack(
    folder: Path, listing: Listing, image_size: int, channels: int
) -> tuple[Pack | None, str]:
    """The pack at `folder` if it fits the listing and the config; else None and why not."""
    metadata_path = folder / METADATA
    if not metadata_path.is_file():
        return None, f"no pack at {folder}"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    made_for = (metadata.get("format"), metadata["image_size"], metadata["channels"])
    if made_for != (PACK_FORMAT, image_size, channels):
        return None, (
            f"the pack at {folder} holds {made_for[1]}x{made_for[1]} images of {made_for[2]} "
            f"channel(s), not data.image_size={image_size} data.channels={channels}"
        )
    files = tuple(FileEntry(*row) for row in metadata["files"])
    skipped = tuple((FileEntry(*row[:3]), str(row[3])) for row in metadata["skipped"])
    if tuple(sorted([*files, *(entry for entry, _ in skipped)])) != listing.files:
        return None, f"the pack at {folder} is out of date: {listing.root} changed since"
    try:
        shape = np.load(folder / "images.npy", mmap_mode="r").shape
        labels = np.load(folder / "labels.npy")
        sums = np.load(folder / "pixel_sums.npy")
    except (OSError, ValueError):  # missing, or shorter than its header says
        shape = ()
    if shape != (len(files), channels, image_size, image_size):
        raise DatasetDamagedError(
            f"{folder} does not hold the {len(files)} images its {METADATA} lists; pack again "
            f"with `python -m {__package__}.pack {listing.root} {folder} --image-size {image_size}`"
        )
    return Pack(files, skipped, labels, sums, PackedImages(folder / "images.npy")), ""
