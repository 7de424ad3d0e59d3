"""`data.name=imagefolder`: your own images, a folder per class (layouts: folder_layout.py).

They are read from the folder's pack (pack.py) while it is current, and otherwise decoded from
the files every epoch, after one pass at the start that checks every file and measures the
statistics. Both give the same pixels, split and normalisation, hence the same losses.

Normalisation: per channel, the mean and standard deviation of the training split's pixels,
from exact integer sums. The checkpoint saves them with the class names, so `predict` repeats
them. An image Pillow cannot read stops the run before training, naming the file, unless
`data.skip_bad_images=true`: then it is left out and counted.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DatasetDamagedError, DatasetMissingError
from .folder_layout import FileEntry, Listing, SplitRule, list_image_folder, split_rows
from .images import FolderImages, ImageSplit, PixelReader, decode_files, unreadable_message
from .packed import METADATA, default_pack_path, open_pack
from .preprocessing import Preprocessing


class ImageFolder(NamedTuple):
    images: PixelReader  # every readable image, in path order
    labels: torch.Tensor
    splits: dict[str, np.ndarray]  # rows of `images` per split
    preprocessing: Preprocessing


class FolderKey(NamedTuple):
    """Everything an ImageFolder depends on; equal keys give the same folder."""

    listing: Listing
    pack: Path
    pack_stamp: tuple[int, int] | None  # pack.json's modification time and size
    image_size: int
    channels: int
    skip_bad_images: bool
    split: SplitRule
    workers: int


def note(text: str) -> None:
    """A line about the data, printed once per run (by rank 0 under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"data: {text}", flush=True)


def open_image_folder(config: DataConfig) -> ImageFolder:
    """The folder `config` names: from its pack while current, else from the files."""
    listing = list_image_folder(Path(config.root))
    pack = Path(config.pack) if config.pack else default_pack_path(Path(config.root))
    stamp = (pack / METADATA).stat() if (pack / METADATA).is_file() else None
    return load_image_folder(
        FolderKey(
            listing, pack, None if stamp is None else (stamp.st_mtime_ns, stamp.st_size),
            config.image_size, config.channels, config.skip_bad_images, SplitRule.of(config),
            config.num_workers,
        )
    )  # fmt: skip


# A run asks for the train split, the val split and the preprocessing: one pass over the
# files (and one set of notes) serves all three. A changed file changes the key.
@functools.lru_cache(maxsize=4)
def load_image_folder(key: FolderKey) -> ImageFolder:
    listing, size, channels = key.listing, key.image_size, key.channels
    pack, why_not = open_pack(key.pack, listing, size, channels)
    images: PixelReader
    if pack is not None:
        note(f"reading the pack {key.pack} ({len(pack.files)} images)")
        files, labels, sums, unreadable = pack.files, pack.labels, pack.sums, pack.skipped
        images = pack.images
    else:
        note(
            f"{why_not}: decoding the {len(listing.files)} image files once to check them and "
            f"measure their statistics. Faster epochs: python -m {__package__}.pack "
            f"{listing.root} {key.pack} --image-size {size} --channels {channels}"
        )
        files, labels, sums, unreadable = scan(listing, size, channels, key.workers)
        images = FolderImages([listing.root / entry.path for entry in files], channels, size)
    if unreadable:
        (first, reason), others = unreadable[0], len(unreadable) - 1
        if not key.skip_bad_images:
            fix = "or set data.skip_bad_images=true to train without it"
            message = unreadable_message(listing.root / first.path, reason, fix, others)
            raise DatasetDamagedError(message)
        note(
            f"skipped {len(unreadable)} unreadable images (data.skip_bad_images=true), e.g. "
            f"{listing.root / first.path} ({reason})"
        )
    if listing.ignored:
        note(
            f"ignored {len(listing.ignored)} files that are not images in class folders, e.g. "
            f"{listing.root / listing.ignored[0]}"
        )
    splits = split_rows([entry.path for entry in files], labels, listing, key.split)
    mean, std = channel_statistics(sums[splits["train"]], size)
    preprocessing = Preprocessing(channels, size, size, mean, std, listing.class_names)
    return ImageFolder(images, torch.from_numpy(labels), splits, preprocessing)


def scan(
    listing: Listing, size: int, channels: int, workers: int
) -> tuple[tuple[FileEntry, ...], np.ndarray, np.ndarray, tuple[tuple[FileEntry, str], ...]]:
    """Decode every file once: the readable ones, their labels and pixel sums, the others."""
    paths = [listing.root / entry.path for entry in listing.files]
    kept, sums, unreadable = [], [], []
    decoded_files = decode_files(paths, channels, size, workers, keep_pixels=False)
    for entry, decoded in zip(listing.files, decoded_files, strict=True):
        if decoded.sums is None:
            unreadable.append((entry, decoded.error))
        else:
            kept.append(entry)
            sums.append(decoded.sums)
    labels = np.array([listing.label_of(entry.path) for entry in kept], dtype=np.int64)
    all_sums = np.stack(sums) if sums else np.zeros((0, channels, 2), dtype=np.int64)
    return tuple(kept), labels, all_sums, tuple(unreadable)


def channel_statistics(sums: np.ndarray, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel of pixels in [0, 1], from per-image sums (N, C, 2)."""
    totals = sums.sum(axis=0)  # int64: exact, whatever the order
    count = len(sums) * size * size
    mean = totals[:, 0] / count / 255
    variance = np.maximum(totals[:, 1] / count / 255**2 - mean**2, 0.0)
    # One grey level at least: a channel that never changes must not divide by zero.
    std = np.maximum(np.sqrt(variance), 1 / 255)
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


def build_split(config: DataConfig, seed: int, split: str) -> ImageSplit:
    folder = open_image_folder(config)
    rows = folder.splits[split]
    if len(rows) == 0:
        raise DatasetMissingError(
            f"the {split} split of {config.root} is empty: add a {split}/ folder of class "
            f"folders, or set data.{split}_fraction above 0"
        )
    augment_seed = seed if split == "train" and config.augment else None
    return ImageSplit(folder.images, rows, folder.labels, folder.preprocessing, augment_seed)


def preprocessing(config: DataConfig) -> Preprocessing:
    return open_image_folder(config).preprocessing
