"""The layouts of an image folder, its file list, and its split into train, val and test.

Two layouts, as torchvision's ImageFolder reads them:

    root/cat/001.png, root/dog/002.jpg, ...               a folder per class
    root/train/cat/..., root/val/cat/..., [root/test/...]  split folders of class folders

Class names are the class folders' names, sorted; a label is a name's place in that order.
Without val/ or test/ folders, that split is drawn from the training images: per class, a
`data.val_fraction` (`data.test_fraction`) share, chosen with `data.split_seed`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config import DataConfig
from ..errors import DatasetMissingError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
SPLIT_FOLDERS = ("train", "val", "test")


class FileEntry(NamedTuple):
    """An image file as found: what a pack records, to tell later whether it is still current."""

    path: str  # relative to the root, "/"-separated
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Listing:
    root: Path
    class_names: tuple[str, ...]
    files: tuple[FileEntry, ...]  # sorted by path
    split_folders: bool  # the train/ val/ [test/] layout
    ignored: tuple[str, ...]  # files that are not images, or not inside a class folder

    def label_of(self, path: str) -> int:
        parts = path.split("/")
        return self.class_names.index(parts[1] if self.split_folders else parts[0])


def visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, .ipynb_checkpoints, ...


def subfolders(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if child.is_dir() and visible(child))


def list_image_folder(root: Path) -> Listing:
    """Every image file under `root`, with the class names; refuses a folder it cannot use."""
    if not root.is_dir():
        raise DatasetMissingError(
            f"image folder {root} does not exist; set data.root to a folder holding one "
            "subfolder of images per class"
        )
    split_folders = (root / "train").is_dir()
    groups = [root / name for name in SPLIT_FOLDERS] if split_folders else [root]
    groups = [group for group in groups if group.is_dir()]
    class_names = tuple(folder.name for folder in subfolders(groups[0]))
    if len(class_names) < 2:
        raise DatasetMissingError(
            f"{groups[0]} holds {len(class_names)} class folder(s); a classifier needs at least "
            "two: one subfolder of images per class"
        )
    files, ignored = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or not all(visible(Path(part)) for part in relative.parts):
            continue
        depth = 2 if split_folders else 1  # the parts before the file: [split,] class
        inside = len(relative.parts) > depth and (
            not split_folders or relative.parts[0] in SPLIT_FOLDERS
        )
        if not inside or path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(relative.as_posix())
            continue
        class_name = relative.parts[depth - 1]
        if class_name not in class_names:
            raise DatasetMissingError(
                f"{root / Path(*relative.parts[:depth])} is a class that {groups[0]} does not "
                f"have; every class needs a folder there too"
            )
        stat = path.stat()
        files.append(FileEntry(relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    with_images = {entry.path.split("/")[depth - 1] for entry in files}
    for name in class_names:
        if name not in with_images:
            raise DatasetMissingError(f"{groups[0] / name} holds no images; remove it or add some")
    # Sorted by the path as text (a pack compares lists in this order), not as Path objects.
    return Listing(root, class_names, tuple(sorted(files)), split_folders, tuple(ignored))


def share_of(count: int, fraction: float) -> int:
    return math.floor(count * fraction + 0.5)  # rounded half up, the same on every platform


class SplitRule(NamedTuple):
    """The data.* keys that choose the split."""

    val_fraction: float
    test_fraction: float
    split_seed: int

    @classmethod
    def of(cls, config: DataConfig) -> SplitRule:
        return cls(config.val_fraction, config.test_fraction, config.split_seed)


def split_rows(
    paths: Sequence[str], labels: np.ndarray, listing: Listing, rule: SplitRule
) -> dict[str, np.ndarray]:
    """Row numbers (into `paths`) of each split, sorted. Split folders are used where present;
    a split without a folder is drawn per class from the training images."""
    folder = np.array([path.split("/")[0] if listing.split_folders else "" for path in paths])
    pool = np.flatnonzero(folder == ("train" if listing.split_folders else ""))
    splits = {split: np.flatnonzero(folder == split) for split in ("val", "test")}
    fractions = {
        split: 0.0 if listing.split_folders and (listing.root / split).is_dir() else share
        for split, share in (("val", rule.val_fraction), ("test", rule.test_fraction))
    }
    generator = np.random.default_rng(rule.split_seed)
    train, drawn = [], {"val": [splits["val"]], "test": [splits["test"]]}
    for label, name in enumerate(listing.class_names):
        members = pool[labels[pool] == label]
        members = members[generator.permutation(len(members))]
        val_count = share_of(len(members), fractions["val"])
        test_count = share_of(len(members), fractions["test"])
        if val_count + test_count >= len(members):
            raise DatasetMissingError(
                f"class {name} has {len(members)} training images: too few to also draw "
                f"validation and test images from (data.val_fraction={rule.val_fraction}, "
                f"data.test_fraction={rule.test_fraction}); add images or lower the fractions"
            )
        drawn["val"].append(members[:val_count])
        drawn["test"].append(members[val_count : val_count + test_count])
        train.append(members[val_count + test_count :])
    return {
        "train": np.sort(np.concatenate(train)),
        "val": np.sort(np.concatenate(drawn["val"])),
        "test": np.sort(np.concatenate(drawn["test"])),
    }
