"""MNIST read straight from its IDX files (gzipped or raw), with an optional verified download.

IDX is a tiny format: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, each dimension as a big-endian uint32, then the data. No torchvision needed.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..atomic_files import write_bytes
from ..config import DataConfig
from ..errors import DatasetDamagedError, DatasetMissingError, run_command
from .preprocessing import Preprocessing

IDX_UNSIGNED_BYTE = 0x08
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the training images' pixels in [0, 1]
VALIDATION_SHARE = 12  # one twelfth of the training files validates
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
# Checksums of the gzipped files as published with the dataset (torchvision uses the same).
FILES_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def fetch_again(root: Path) -> str:
    return f"delete it and download again with `python -m {__package__}.mnist --root {root}`"


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (`.gz` or raw) into a uint8 array of its declared shape."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:  # BadGzipFile, or a file cut short
            raise DatasetDamagedError(
                f"{path} is not a complete gzip file ({error}); {fetch_again(path.parent)}"
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UNSIGNED_BYTE:
        raise DatasetDamagedError(
            f"{path} is not an unsigned-byte IDX file (bad magic number); "
            f"{fetch_again(path.parent)}"
        )
    dimensions = raw[3]
    header_end = 4 + 4 * dimensions
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if data.size != int(np.prod(shape)):
        raise DatasetDamagedError(
            f"{path} holds {data.size} values but its header says {shape}; "
            f"{fetch_again(path.parent)}"
        )
    return data.reshape(shape)


def find_file(root: Path, gz_name: str) -> Path:
    for candidate in (root / gz_name, root / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DatasetMissingError(
        f"MNIST file {gz_name} (or its unzipped form) not found in {root}; download it with "
        f"`python -m {__package__}.mnist --root {root}` or set data.root to where it lives"
    )


def load_split(root: Path, prefix: str) -> TensorDataset:
    """`prefix` is "train" or "t10k" (the test split); images become normalised float32 of shape
    (N, 1, 28, 28)."""
    images = read_idx(find_file(root, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(find_file(root, f"{prefix}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise DatasetDamagedError(
            f"{root}: {len(images)} {prefix} images but {len(labels)} labels; "
            "both files must come from the same MNIST release: download them again"
        )
    pixels = torch.from_numpy(images.copy()).unsqueeze(1)  # frombuffer's array is read-only
    preprocessing = Preprocessing(1, 28, 28, (MNIST_MEAN,), (MNIST_STD,), ())
    targets = torch.from_numpy(labels.astype(np.int64))
    return TensorDataset(preprocessing.pixels_to_input(pixels), targets)


def load_mnist(root: Path) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation: the training files' last twelfth (5,000 of 60,000) validates, so
    that best.pt and early stopping never look at the test split."""
    images, labels = load_split(root, "train").tensors
    split = len(images) - max(1, len(images) // VALIDATION_SHARE)
    return (
        TensorDataset(images[:split], labels[:split]),
        TensorDataset(images[split:], labels[split:]),
    )


# A run asks for the train split, then the val split: both come from one decode of the training
# files. The key holds the files' modification times and sizes, so a changed file is read again.
@functools.lru_cache(maxsize=1)
def load_mnist_once(
    root: Path, stamps: tuple[tuple[int, int], ...]
) -> tuple[TensorDataset, TensorDataset]:
    return load_mnist(root)


def build_split(config: DataConfig, seed: int, split: str) -> TensorDataset:
    """Train and val from the training files, test from the t10k files (`seed` is not used)."""
    root = Path(config.root)
    if split == "test":
        return load_split(root, "t10k")
    files = [find_file(root, name) for name in TRAIN_FILES]  # .gz or unzipped, as read
    stamps = tuple((path.stat().st_mtime_ns, path.stat().st_size) for path in files)
    train, val = load_mnist_once(root, stamps)
    return train if split == "train" else val


def preprocessing(config: DataConfig) -> Preprocessing:
    digits = tuple(str(digit) for digit in range(10))
    return Preprocessing(1, 28, 28, (MNIST_MEAN,), (MNIST_STD,), digits)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def download(root: Path) -> None:
    """Fetch each missing file from the first mirror that answers; keep it only if its MD5 fits."""
    root.mkdir(parents=True, exist_ok=True)
    for name, expected_md5 in FILES_MD5.items():
        target = root / name
        if target.is_file() and md5_of(target) == expected_md5:
            continue
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name, timeout=60) as response:
                    data = response.read()  # about 10 MB at most
            except OSError as error:
                print(f"could not download {name} from {mirror}: {error}")
                continue
            if hashlib.md5(data, usedforsecurity=False).hexdigest() == expected_md5:
                write_bytes(target, data)  # whole: a cut download never carries the real name
                print(f"downloaded {name} from {mirror}")
                break
            print(f"checksum mismatch for {name} from {mirror}; trying the next mirror")
        else:
            raise DatasetMissingError(f"no mirror gave a valid {name}; copy it into {root} by hand")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download MNIST's IDX files, checksum-verified.")
    parser.add_argument("--root", type=Path, default=Path("data/mnist"))
    arguments = parser.parse_args(argv)
    return run_command("mnist download", lambda: download(arguments.root))


if __name__ == "__main__":
    sys.exit(main())
