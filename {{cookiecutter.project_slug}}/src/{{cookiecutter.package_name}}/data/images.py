"""Image files to model inputs: decoding with Pillow, seeded augmentation, and the Dataset that
the image-folder dataset and its packed copy both feed.

Decoding is what `predict` does to an image file (convert to L or RGB, bilinear resize to the
trained size), so a model sees the same pixels in training and in prediction. Augmentation draws
each image's crop and flip from (seed, epoch, image) alone: the same in every DataLoader worker,
in any batch and after a resume, so runs stay bitwise repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..errors import DatasetDamagedError, UnreadableImageError
from .loaders import Batch
from .preprocessing import Preprocessing

CROP_SCALE = (0.25, 1.0)  # share of the image's area a random crop keeps
CROP_RATIO = (3 / 4, 4 / 3)  # width / height of a random crop
DECODE_BATCH = 64  # files per task when decoding a folder with workers


def read_pixels(path: Path, channels: int, size: int, width: int | None = None) -> np.ndarray:
    """uint8 pixels (channels, size, width or size) of an image file: the one decoder, used by
    the image datasets and by `predict`, so a model sees the same pixels in both."""
    height, width = size, width or size
    if channels not in (1, 3):
        raise UnreadableImageError(f"images decode to 1 or 3 channels, not {channels}")
    # Imported on first use: every command imports this module, through the dataset registry,
    # and a run on another dataset need not pay for Pillow's import at start-up.
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{type(error).__name__}: {error}") from None
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.array(image, dtype=np.uint8).reshape(height, width, channels)  # a writable copy
    # Contiguous (C, S, S): a channels-last batch would take other convolution kernels, whose
    # rounding differs, and the files would no longer train exactly as their pack does.
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def unreadable_message(path: Path | str, reason: str, fix: str, others: int = 0) -> str:
    more = f" (and {others} more unreadable files)" if others else ""
    return f"{path} is not an image Pillow can read ({reason}){more}; replace or delete it, {fix}"


def pixel_sums(pixels: np.ndarray) -> np.ndarray:
    """Per channel, the sum and the sum of squares of an image's pixels: (channels, 2) int64.
    Exact integers, so the normalisation statistics do not depend on the order of summing."""
    values = pixels.reshape(pixels.shape[0], -1).astype(np.int64)
    return np.stack([values.sum(axis=1), (values * values).sum(axis=1)], axis=1)


class Decoded(NamedTuple):
    pixels: np.ndarray | None  # (C, S, S) uint8; None when unreadable or not asked for
    sums: np.ndarray | None  # pixel_sums(pixels); None when unreadable
    error: str  # "" when readable


class DecodeFiles(Dataset[Decoded]):
    def __init__(self, paths: Sequence[Path], channels: int, size: int, keep_pixels: bool) -> None:
        self.paths, self.channels, self.size, self.keep_pixels = paths, channels, size, keep_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Decoded:
        try:
            pixels = read_pixels(self.paths[index], self.channels, self.size)
        except UnreadableImageError as error:
            return Decoded(None, None, str(error))
        return Decoded(pixels if self.keep_pixels else None, pixel_sums(pixels), "")


def as_list(items: list[Decoded]) -> list[Decoded]:
    return items


def decode_files(
    paths: Sequence[Path], channels: int, size: int, workers: int, keep_pixels: bool
) -> Iterator[Decoded]:
    """Every file decoded once, in order, by `workers` processes (0: this one)."""
    files = DecodeFiles(paths, channels, size, keep_pixels)
    # A generator of its own: a DataLoader draws its workers' base seed from the one it is
    # given, and that draw must not move the global RNG that initialises the model.
    loader = DataLoader(
        files, batch_size=DECODE_BATCH, num_workers=workers, collate_fn=as_list,
        generator=torch.Generator(),
    )  # fmt: skip
    for decoded in loader:
        yield from decoded


class PixelReader(Protocol):
    """Where a split's uint8 pixels come from: the image files, or the packed array."""

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Pixels (len(rows), C, S, S) of the images at `rows`, in that order."""
        ...


class FolderImages:
    """Decodes the files at every read: each epoch pays Pillow's decoding again."""

    def __init__(self, paths: Sequence[Path], channels: int, size: int) -> None:
        self.paths, self.channels, self.size = paths, channels, size

    def read(self, rows: np.ndarray) -> np.ndarray:
        images = []
        for row in rows.tolist():
            try:
                images.append(read_pixels(self.paths[row], self.channels, self.size))
            except UnreadableImageError as error:  # changed on disk since the run started
                fix = "then start the run again"
                raise DatasetDamagedError(
                    unreadable_message(self.paths[row], str(error), fix)
                ) from None
        return np.stack(images)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads each uint64 over all 64 bits (wrapping multiplication)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = values ^ (values >> np.uint64(31))
    return mixed


def sample_uniforms(seed: int, epochs: np.ndarray, indices: np.ndarray, count: int) -> np.ndarray:
    """(len(indices), count) numbers in [0, 1), a pure function of (seed, epoch, index): no
    generator state, so workers, batch composition and resumes cannot change them. Counter-based
    like Philox or JAX's keys, but vectorised over a whole batch in a few NumPy operations."""
    key = mix64(np.array([seed % 2**64], dtype=np.uint64))
    key = mix64(key ^ epochs.astype(np.uint64))
    key = mix64(key ^ (indices.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    draws = mix64(key[:, None] + np.arange(1, count + 1, dtype=np.uint64)[None, :])
    # Annotated: some NumPy versions type this expression as Any (mypy's no-any-return).
    uniforms: np.ndarray = (draws >> np.uint64(11)).astype(np.float64) / 2.0**53
    return uniforms


def random_resized_crop_and_flip(pixels: torch.Tensor, uniforms: np.ndarray) -> torch.Tensor:
    """Each image (float, N x C x S x S) cropped to a random box and resized back to S x S
    (bilinear), half of them mirrored; uniforms: (N, 5) numbers in [0, 1)."""
    number, _, _, size = pixels.shape
    u = torch.from_numpy(uniforms)
    low, high = CROP_SCALE
    area = low + (high - low) * u[:, 0]
    ratio = torch.exp(math.log(CROP_RATIO[0]) + math.log(CROP_RATIO[1] / CROP_RATIO[0]) * u[:, 1])
    # Half width and height of the box in grid_sample's [-1, 1] coordinates (1: the whole image).
    half_width = torch.sqrt(area * ratio).clamp(max=1.0)
    half_height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (2 * u[:, 2] - 1) * (1 - half_width)
    centre_y = (2 * u[:, 3] - 1) * (1 - half_height)
    half_width = torch.where(u[:, 4] < 0.5, -half_width, half_width)  # negative: mirrored
    # Output pixel centres in [-1, 1]; element-wise arithmetic only, so every sample's grid is
    # bitwise the same whatever the batch or the number of threads.
    steps = ((torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1)[None, :]
    grid_x = (centre_x[:, None] + half_width[:, None] * steps).float()
    grid_y = (centre_y[:, None] + half_height[:, None] * steps).float()
    grid = torch.stack(
        [
            grid_x[:, None, :].expand(number, size, size),
            grid_y[:, :, None].expand(number, size, size),
        ],
        dim=-1,
    )
    return torch.nn.functional.grid_sample(
        pixels, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class ImageSplit(Dataset[Batch]):
    """One split of an image dataset as (input, label) pairs: pixels from a PixelReader,
    augmented when `augment_seed` is set, normalised as `preprocessing` says.

    It reads whole batches (`reads_whole_batches`, see loaders.py): the loader hands
    `__getitems__` one batch's (epoch, index) keys and takes the finished batch as it is, so
    reading, augmenting and normalising run once per batch, not once per image.
    """

    reads_whole_batches = True

    def __init__(
        self,
        images: PixelReader,
        rows: np.ndarray,
        labels: torch.Tensor,
        preprocessing: Preprocessing,
        augment_seed: int | None,
    ) -> None:
        self.images, self.rows, self.labels = images, rows, labels
        self.preprocessing, self.augment_seed = preprocessing, augment_seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> Batch:
        """One (input, label) pair; `key`: an index, or (epoch, index) for its augmentation."""
        inputs, labels = self.__getitems__([key])
        return inputs[0], labels[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> Batch:
        """The batch (inputs (N, C, S, S), labels (N,)) of `keys`, in their order."""
        pairs = [key if isinstance(key, tuple) else (0, key) for key in keys]
        epochs = np.array([epoch for epoch, _ in pairs], dtype=np.int64)
        rows = self.rows[np.array([index for _, index in pairs], dtype=np.int64)]
        pixels = torch.from_numpy(self.images.read(rows))
        if self.augment_seed is not None:
            uniforms = sample_uniforms(self.augment_seed, epochs, rows, count=5)
            pixels = random_resized_crop_and_flip(pixels.to(torch.float32), uniforms)
        inputs = self.preprocessing.normalise_(batch_tensor(pixels.shape).copy_(pixels))
        return inputs, self.labels[torch.from_numpy(rows)]


def batch_tensor(shape: Sequence[int]) -> torch.Tensor:
    """An empty float32 tensor for a batch. In a DataLoader worker it is made in shared memory,
    as `default_collate` makes its batches there: the batch reaches the training process without
    being copied (a batch in private memory is copied whole into shared memory on the way)."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape))
    storage: torch.UntypedStorage = torch.UntypedStorage._new_shared(4 * math.prod(shape))
    return torch.empty(0).set_(storage).view(tuple(shape))  # float32: 4 bytes each
