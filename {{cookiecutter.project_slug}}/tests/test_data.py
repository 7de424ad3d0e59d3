from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }}.config import DataConfig
from {{ cookiecutter.package_name }}.data import build_split, mnist, synthetic
from {{ cookiecutter.package_name }}.data.mnist import (
    load_mnist,
    read_idx,
)
from {{ cookiecutter.package_name }}.data.synthetic import make_synthetic_splits
from {{ cookiecutter.package_name }}.errors import DatasetDamagedError, DatasetMissingError
from {{ cookiecutter.package_name }}.train import main

if TYPE_CHECKING:
    from helpers import MakeTinyMnist, WriteIdx


@pytest.mark.parametrize("compressed", [True, False])
def test_mnist_idx_files_load(
    tmp_path: Path, compressed: bool, make_tiny_mnist: MakeTinyMnist
) -> None:
    make_tiny_mnist(tmp_path, compressed)
    train, val = load_mnist(tmp_path)
    images, labels = train.tensors
    # The training files' last twelfth validates; the t10k files are the test split.
    assert images.shape == (22, 1, 28, 28)
    assert images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert len(val) == 2
    assert len(mnist.build_split(DataConfig(name="mnist", root=str(tmp_path)), 0, "test")) == 4


def test_idx_round_trip_keeps_values(tmp_path: Path, write_idx: WriteIdx) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), array)


def test_idx_with_bad_magic_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetDamagedError, match="magic"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "is not a complete gzip file"),
        (
            lambda data: gzip.compress(b"\x01\x02\x03\x04"),
            "is not an unsigned-byte IDX file (bad magic number)",
        ),
    ],
    ids=["cut-short", "bad-header"],
)
def test_a_damaged_mnist_file_stops_training_with_one_line(
    tmp_path: Path,
    smoke_config: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[bytes], bytes],
    message: str,
    make_tiny_mnist: MakeTinyMnist,
) -> None:
    make_tiny_mnist(tmp_path, compressed=True)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(damage(images.read_bytes()))
    overrides = ["data.name=mnist", f"data.root={tmp_path}", f"output_dir={tmp_path / 'run'}"]
    assert main(["--config", str(smoke_config), *overrides]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line, no traceback
    assert f"{images} {message}" in error
    assert "download again with" in error


def test_missing_mnist_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError, match="download it with"):
        load_mnist(tmp_path)


def test_synthetic_test_split_is_new_samples_and_leaves_the_others_alone() -> None:
    config = DataConfig(name="synthetic", num_train=32, num_val=8)
    train, val = make_synthetic_splits(32, 8, 10, 16, seed=3)
    assert torch.equal(synthetic.build_split(config, 3, "train").tensors[0], train.tensors[0])
    assert torch.equal(synthetic.build_split(config, 3, "val").tensors[0], val.tensors[0])
    test = synthetic.build_split(config, 3, "test").tensors[0]
    assert test.shape == val.tensors[0].shape
    assert not torch.equal(test, val.tensors[0])
    assert torch.equal(test, synthetic.build_split(config, 3, "test").tensors[0])
    assert build_split(config, 3, "test")[0][0].equal(test[0])  # what DATASETS hands out


def test_synthetic_data_is_the_same_for_the_same_seed() -> None:
    first, _ = make_synthetic_splits(32, 8, 10, 16, seed=3)
    second, _ = make_synthetic_splits(32, 8, 10, 16, seed=3)
    assert torch.equal(first.tensors[0], second.tensors[0])
    assert torch.equal(first.tensors[1], second.tensors[1])


def test_download_keeps_only_files_with_the_right_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_mnist: MakeTinyMnist
) -> None:
    """A real HTTP server on loopback plays two mirrors: one serves junk, one the real bytes."""
    import functools
    import hashlib
    import http.server
    import threading

    from {{ cookiecutter.package_name }}.data import mnist

    served = tmp_path / "served"
    (served / "bad").mkdir(parents=True)
    (served / "good").mkdir()
    make_tiny_mnist(served / "good", compressed=True)
    checksums = {}
    for path in sorted((served / "good").iterdir()):
        (served / "bad" / path.name).write_bytes(b"not the file")
        checksums[path.name] = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(mnist, "MIRRORS", (f"{base}/bad/", f"{base}/good/"))
    monkeypatch.setattr(mnist, "FILES_MD5", checksums)
    try:
        mnist.download(tmp_path / "mnist")
    finally:
        server.shutdown()
    train, val = load_mnist(tmp_path / "mnist")
    assert (len(train), len(val)) == (22, 2)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(checksums)
