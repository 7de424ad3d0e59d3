"""data.name=imagefolder: layouts and split, augmentation, packs, unreadable files, registries."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package_name }}.config import DataConfig, load_config
from {{ cookiecutter.package_name }}.data import build_split
from {{ cookiecutter.package_name }}.data.image_folder import open_image_folder
from {{ cookiecutter.package_name }}.data.images import ImageSplit, read_pixels
from {{ cookiecutter.package_name }}.data.loaders import make_loader
from {{ cookiecutter.package_name }}.data.pack import main as pack
from {{ cookiecutter.package_name }}.distributed import DistributedContext
from {{ cookiecutter.package_name }}.errors import (
    ConfigError,
    DatasetDamagedError,
    DatasetMissingError,
    PreemptedError,
)
from {{ cookiecutter.package_name }}.train import load_training_config
from {{ cookiecutter.package_name }}.train import main as train

from helpers import step_losses

if TYPE_CHECKING:
    from helpers import MakeImageFolder, StopAtSync, TrainSmoke


def folder_config(root: Path, *overrides: str) -> DataConfig:
    return load_config(
        None, ["data.name=imagefolder", f"data.root={root}", "data.image_size=16", *overrides]
    ).data


def train_on(config: Path, root: Path, *overrides: str) -> list[str]:
    """train.main's arguments for one epoch of `config` on the image folder at `root`."""
    return [
        "--config", str(config), "data.name=imagefolder", f"data.root={root}",
        "data.image_size=16", "train.epochs=1", "train.require_loss_decrease=false", *overrides,
    ]  # fmt: skip


def test_class_folders_are_split_per_class_with_split_seed(
    tmp_path: Path, make_image_folder: MakeImageFolder
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=20)
    folder = open_image_folder(
        folder_config(root, "data.val_fraction=0.25", "data.test_fraction=0.1")
    )
    assert folder.preprocessing.class_names == ("circle", "cross", "square")
    labels = folder.labels.numpy()
    for split, per_class in (("train", 13), ("val", 5), ("test", 2)):
        assert np.bincount(labels[folder.splits[split]]).tolist() == [per_class] * 3, split
    every = np.concatenate(list(folder.splits.values()))
    assert sorted(every.tolist()) == list(range(60))  # each image in exactly one split
    shares = ["data.val_fraction=0.25", "data.test_fraction=0.1"]
    again = open_image_folder(folder_config(root, *shares, "seed=7"))  # not the training seed
    assert np.array_equal(again.splits["val"], folder.splits["val"])
    other = open_image_folder(folder_config(root, *shares, "data.split_seed=1"))
    assert not np.array_equal(other.splits["val"], folder.splits["val"])


def test_train_and_val_folders_are_used_as_they_are(
    tmp_path: Path, make_image_folder: MakeImageFolder
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=10, split_folders=True)
    (root / "README.txt").write_text("not an image", encoding="utf-8")
    folder = open_image_folder(folder_config(root, "data.test_fraction=0"))
    assert [len(folder.splits[split]) for split in ("train", "val")] == [24, 6]  # as written
    with pytest.raises(DatasetMissingError, match=r"the test split of .* is empty"):
        build_split(folder_config(root, "data.test_fraction=0"), 0, "test")
    with_test = open_image_folder(folder_config(root, "data.test_fraction=0.25"))
    assert [len(with_test.splits[split]) for split in ("train", "val", "test")] == [18, 6, 6]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist; set data.root to a folder"),
        ("one-class", "holds 1 class folder(s); a classifier needs at least two"),
        ("empty-class", "holds no images; remove it or add some"),
        ("val-only-class", "is a class that"),
    ],
)
def test_a_folder_that_cannot_train_is_refused_with_the_fix(
    tmp_path: Path, make_image_folder: MakeImageFolder, layout: str, message: str
) -> None:
    root = tmp_path / "shapes"
    if layout == "one-class":
        make_image_folder(root, per_class=2)
        for name in ("cross", "square"):
            for path in (root / name).iterdir():
                path.unlink()
            (root / name).rmdir()
    elif layout == "empty-class":
        make_image_folder(root, per_class=2)
        (root / "triangle").mkdir()
    elif layout == "val-only-class":
        make_image_folder(root, per_class=5, split_folders=True)
        (root / "val" / "triangle").mkdir()
        (root / "val" / "circle" / "000.png").rename(root / "val" / "triangle" / "000.png")
    with pytest.raises(DatasetMissingError, match=re.escape(message)):
        open_image_folder(folder_config(root))


def test_augmentation_depends_only_on_seed_epoch_and_image(
    tmp_path: Path, make_image_folder: MakeImageFolder
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=8)
    config = load_config(None, [
        "data.name=imagefolder", f"data.root={root}", "data.image_size=16", "data.augment=true",
        "data.num_workers=2", "train.batch_size=6",
    ])  # fmt: skip
    train = build_split(config.data, 0, "train")
    assert isinstance(train, ImageSplit)
    first = train[(1, 3)][0]
    assert torch.equal(first, train[(1, 3)][0])
    assert not torch.equal(first, train[(2, 3)][0])  # another epoch, another crop
    assert not torch.equal(first, build_split(config.data, 5, "train")[(1, 3)][0])  # seed
    plain = build_split(config.data, 0, "val")[0][0]  # validation images are not augmented
    assert torch.equal(plain, build_split(config.data, 0, "val")[0][0])

    def epoch_batches(workers: int) -> list[torch.Tensor]:
        config.data.num_workers = workers
        loader, sampler = make_loader(train, config, DistributedContext(), shuffle=True)
        sampler.set_epoch(1)
        return [images for images, _ in loader]

    in_workers, here = epoch_batches(2), epoch_batches(0)
    assert len(here) == 3
    assert all(torch.equal(a, b) for a, b in zip(in_workers, here, strict=True))


def test_an_augmented_run_resumed_mid_epoch_gives_the_same_losses(
    tmp_path: Path,
    make_image_folder: MakeImageFolder,
    train_smoke: TrainSmoke,
    stop_at_sync: type[StopAtSync],
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=12)
    overrides = [
        "data.name=imagefolder", f"data.root={root}", "data.image_size=16", "data.augment=true",
        "train.batch_size=6", "train.epochs=2", "train.log_every=3",
        "train.require_loss_decrease=false",
    ]  # fmt: skip
    straight = train_smoke("straight", *overrides)
    with pytest.raises(PreemptedError):
        # 5 steps an epoch, syncs at steps 3, 5 (epoch end), 6, ...: stops at step 6, mid-epoch
        train_smoke("split", *overrides, stop=stop_at_sync(3))
    split = train_smoke("split", *overrides, "resume=auto")
    assert step_losses(split) == step_losses(straight)


def test_a_pack_holds_the_decoded_images_and_is_used_only_while_current(
    tmp_path: Path, make_image_folder: MakeImageFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=4)
    assert pack([str(root), "--image-size", "16", "--workers", "0"]) == 0
    packed = tmp_path / "shapes.pack"  # the default place, where training looks
    metadata = json.loads((packed / "pack.json").read_text(encoding="utf-8"))
    files = [row[0] for row in metadata["files"]]
    assert files == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert metadata["class_names"] == ["circle", "cross", "square"]
    images = np.load(packed / "images.npy")
    assert np.array_equal(images[5], read_pixels(root / files[5], 3, 16))
    assert np.load(packed / "labels.npy").tolist() == [0] * 4 + [1] * 4 + [2] * 4
    digest = hashlib.sha256((packed / "images.npy").read_bytes()).hexdigest()
    assert metadata["images_sha256"] == digest
    capsys.readouterr()

    from_pack = open_image_folder(folder_config(root))
    assert "data: reading the pack" in capsys.readouterr().out
    from_files = open_image_folder(folder_config(root, "data.pack=nowhere"))
    assert from_files.preprocessing == from_pack.preprocessing
    rows = np.arange(12)
    assert np.array_equal(from_files.images.read(rows), from_pack.images.read(rows))

    changed = root / files[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    capsys.readouterr()
    open_image_folder(folder_config(root))
    assert f"the pack at {packed} is out of date: {root} changed since" in capsys.readouterr().out
    assert pack([str(root), "--image-size", "8", "--workers", "0"]) == 0  # packs again
    open_image_folder(folder_config(root))
    assert "holds 8x8 images of 3 channel(s), not data.image_size=16" in capsys.readouterr().out
    assert pack([str(root), str(root / "inside"), "--image-size", "8"]) == 2
    assert "put the pack beside it" in capsys.readouterr().err
    (packed / "labels.npy").unlink()
    with pytest.raises(DatasetDamagedError, match=r"does not hold the 12 images .* pack again"):
        open_image_folder(folder_config(root, "data.image_size=8"))


def test_a_fresh_pack_is_used_whatever_the_class_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "signs"  # "a-b/..." sorts before "a/..." as text, after it as paths
    for name in ("a", "a-b"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (4, 4), (index * 80, 0, 0)).save(root / name / f"{index}.png")
    assert pack([str(root), "--image-size", "4", "--workers", "0"]) == 0
    folder = open_image_folder(folder_config(root, "data.image_size=4", "data.test_fraction=0"))
    assert "data: reading the pack" in capsys.readouterr().out
    assert folder.preprocessing.class_names == ("a", "a-b")


@pytest.mark.parametrize("packed", [False, True], ids=["files", "pack"])
def test_an_unreadable_image_stops_the_run_or_is_skipped_when_asked(
    tmp_path: Path,
    make_image_folder: MakeImageFolder,
    capsys: pytest.CaptureFixture[str],
    smoke_config: Path,
    packed: bool,
) -> None:
    root = make_image_folder(tmp_path / "shapes", per_class=6)
    bad = root / "cross" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    if packed:
        assert pack([str(root), "--image-size", "16", "--workers", "0"]) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1
        assert f"{bad} is not an image Pillow can read" in error
        assert "or pass --skip-bad-images" in error
        assert not (tmp_path / "shapes.pack").exists()  # nothing half-made
        assert pack([str(root), "--image-size", "16", "--workers", "0", "--skip-bad-images"]) == 0
        assert "skipped 1 unreadable images" in capsys.readouterr().out
    output_dir = tmp_path / "run"
    assert train(train_on(smoke_config, root, f"output_dir={output_dir}")) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line, no traceback
    assert f"{bad} is not an image Pillow can read" in error
    assert "or set data.skip_bad_images=true" in error
    assert not output_dir.exists()  # stopped before training
    skip = "data.skip_bad_images=true"
    assert train(train_on(smoke_config, root, f"output_dir={output_dir}", skip)) == 0
    assert "data: skipped 1 unreadable images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.name=imagefolders", "choose one of ['imagefolder', 'mnist', 'synthetic']"),
        ("model.name=resnet", "choose one of ['cnn', 'mlp']"),
        ("data.channels=2", "data.channels=2: use 1 (grayscale) or 3 (RGB)"),
        ("data.val_fraction=0.95", "data.test_fraction = 1.05 leaves nothing to train on"),
    ],
)
def test_unknown_names_and_bad_image_settings_exit_2_with_one_line(
    smoke_config: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_training_config(smoke_config, [override])
    assert train(["--config", str(smoke_config), override]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert message in error
