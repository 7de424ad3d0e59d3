"""The guide "Bring your own data and model" (torch-template's docs), done as it says.

Every command it shows is run here, and its dataset and model modules are added to a copy of
src/, registered and trained. The template's own tests check that the guide's commands and code
are exactly the ones in this file, so the guide cannot drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import yaml

from {{ cookiecutter.package_name }} import predict, train
from {{ cookiecutter.package_name }}.data import pack
from {{ cookiecutter.package_name }}.data.image_folder import open_image_folder
from {{ cookiecutter.package_name }}.inference import load_trained_model

from helpers import read_metrics, step_losses

if TYPE_CHECKING:
    from helpers import MakeImageFolder

PACKAGE = "{{ cookiecutter.package_name }}"
# The guide's commands: `python -m <package>.<module>`, then the arguments.
TRAIN_ON_FOLDER = ("train", "--config", "configs/imagefolder.yaml", "data.root=data/shapes",
                   "data.image_size=16", "train.epochs=4")  # fmt: skip
PACK_FOLDER = ("data.pack", "data/shapes", "--image-size", "16")
PREDICT = ("predict", "--checkpoint", "$run/checkpoints/best.pt", "data/shapes/circle/000.png")
TRAIN_OWN = ("train", "--config", "configs/smoke.yaml", "data.name=npz", "data.root=data/arrays",
             "model.name=tiny_resnet")  # fmt: skip
GUIDE_COMMANDS = (TRAIN_ON_FOLDER, PACK_FOLDER, PREDICT, TRAIN_OWN)

# The guide's code, block by block.
NPZ_DATASET = '''\
"""Images from NumPy files: data.root holds train.npz, val.npz and test.npz, each with
`images` (N, H, W) uint8 and `labels` (N,) integers, and classes.txt, one name per line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..config import DataConfig
from ..errors import DatasetMissingError
from .preprocessing import Preprocessing


def read_arrays(config: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    path = Path(config.root) / f"{split}.npz"
    if not path.is_file():
        raise DatasetMissingError(f"{path} does not exist; write it with numpy.savez")
    with np.load(path) as arrays:
        return arrays["images"], arrays["labels"]


def preprocessing(config: DataConfig) -> Preprocessing:
    """Shape and normalisation from the training images, class names from classes.txt."""
    images, _ = read_arrays(config, "train")
    pixels = images / 255
    names = (Path(config.root) / "classes.txt").read_text(encoding="utf-8").split()
    return Preprocessing(
        channels=1,
        height=images.shape[1],
        width=images.shape[2],
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
        class_names=tuple(names),
    )


def build_split(config: DataConfig, seed: int, split: str) -> TensorDataset:
    images, labels = read_arrays(config, split)
    pixels = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W)
    inputs = preprocessing(config).pixels_to_input(pixels)
    return TensorDataset(inputs, torch.from_numpy(labels).long())
'''
DATASET_IMPORT = """\
from . import image_folder, mnist, npz_arrays, synthetic
"""
DATASET_REGISTRY = """\
DATASETS: dict[str, DatasetModule] = {
    "synthetic": synthetic,
    "mnist": mnist,
    "imagefolder": image_folder,
    "npz": npz_arrays,
}
"""
TINY_RESNET = '''\
"""A small residual network: a convolution, two residual blocks, global average pooling."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig

# The parameters that map features to classes: fine-tuning gives them new classes.
HEAD: tuple[str, ...] = ("head",)


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.second = nn.Conv2d(width, width, kernel_size=3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(features + self.second(torch.relu(self.first(features))))


class TinyResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
        self.blocks = nn.Sequential(ResidualBlock(width), ResidualBlock(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(torch.relu(self.stem(images)))
        logits: torch.Tensor = self.head(features.mean(dim=(2, 3)))
        return logits


def build(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> TinyResNet:
    return TinyResNet(input_shape[0], num_classes, config.width)
'''
MODEL_IMPORT = """\
from . import cnn, mlp, tiny_resnet
"""
MODEL_REGISTRY = """\
MODELS: dict[str, ModelModule] = {
    "cnn": cnn,
    "mlp": mlp,
    "tiny_resnet": tiny_resnet,
}
"""


def run_guide_command(command: Sequence[str], run: Path | None = None) -> int:
    """One of the guide's commands, in this process; `$run` stands for the run folder."""
    module, *arguments = command
    mains: dict[str, Callable[[list[str]], int]] = {
        "train": train.main, "data.pack": pack.main, "predict": predict.main,
    }  # fmt: skip
    return mains[module]([argument.replace("$run", str(run)) for argument in arguments])


def runs_of(name: str) -> set[Path]:
    return set(Path("outputs", name).glob("*"))


def test_the_guide_trains_on_an_image_folder_then_on_its_pack(
    tmp_path: Path,
    project_root: Path,
    make_image_folder: MakeImageFolder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(project_root / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)  # as in the project's folder: configs/, data/, outputs/
    make_image_folder(Path("data/shapes"), per_class=100)  # 300 pictures of 3 shapes
    folders = []
    for command, says in (
        (TRAIN_ON_FOLDER, "data: no pack at data/shapes.pack"),
        (PACK_FOLDER, "packed 300 images of 3 classes"),
        (TRAIN_ON_FOLDER, "data: reading the pack data/shapes.pack"),
    ):
        before = runs_of("imagefolder")
        assert run_guide_command(command) == 0
        assert says in capsys.readouterr().out
        folders += list(runs_of("imagefolder") - before)
    from_files, from_pack = folders
    assert step_losses(from_pack) == step_losses(from_files)  # the same pixels, bit for bit
    evaluations = [r for r in read_metrics(from_pack) if "val_accuracy" in r]
    assert evaluations[-1]["val_accuracy"] >= 0.9

    # The checkpoint's normalisation: the training images' own statistics, which predict applies.
    trained = load_trained_model(from_pack / "checkpoints" / "best.pt")
    folder = open_image_folder(trained.config.data)
    pixels = folder.images.read(folder.splits["train"]) / 255
    assert trained.preprocessing.mean == pytest.approx(pixels.mean(axis=(0, 2, 3)), abs=1e-9)
    assert trained.preprocessing.std == pytest.approx(pixels.std(axis=(0, 2, 3)), abs=1e-9)
    assert run_guide_command(PREDICT, run=from_pack) == 0
    line = json.loads(capsys.readouterr().out)
    first = torch.from_numpy(folder.images.read(np.arange(1)))  # circle/000.png
    with torch.no_grad():
        inputs = trained.preprocessing.pixels_to_input(first)  # as the training set had it
        probabilities = trained.model(inputs).softmax(dim=1)[0]
    assert line["label"] == "circle"
    assert line["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)


def write_arrays(root: Path) -> None:
    """The guide's NumPy files: 16x16 pictures of horizontal or vertical stripes, with noise."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("horizontal\nvertical\n", encoding="utf-8")
    generator = np.random.default_rng(0)
    for split, count in (("train", 256), ("val", 64), ("test", 64)):
        labels = generator.integers(0, 2, count)
        stripes = (np.arange(16) // 2 % 2 * 160).astype(np.int16)
        images = np.where(labels[:, None, None] == 0, stripes[None, :, None], stripes[None, None])
        noisy = images + generator.integers(0, 96, (count, 16, 16))
        np.savez(root / f"{split}.npz", images=noisy.astype(np.uint8), labels=labels)


def replace_once(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text(encoding="utf-8")
    changed, count = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE | re.DOTALL)
    assert count == 1, f"{path} no longer holds {pattern!r}: update the guide and this test"
    path.write_text(changed, encoding="utf-8")


@pytest.mark.slow
def test_the_guide_adds_a_dataset_and_a_model_and_trains_them(
    tmp_path: Path, project_root: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(project_root / "src", source, ignore=shutil.ignore_patterns("__pycache__"))
    package = source / PACKAGE
    (package / "data" / "npz_arrays.py").write_text(NPZ_DATASET, encoding="utf-8")
    (package / "models" / "tiny_resnet.py").write_text(TINY_RESNET, encoding="utf-8")
    replace_once(package / "data" / "__init__.py", r"^from \. import .*?\n", DATASET_IMPORT)
    replace_once(package / "data" / "__init__.py", r"^DATASETS: .*?^\}\n", DATASET_REGISTRY)
    replace_once(package / "models" / "__init__.py", r"^from \. import .*?\n", MODEL_IMPORT)
    replace_once(package / "models" / "__init__.py", r"^MODELS: .*?^\}\n", MODEL_REGISTRY)
    shutil.copytree(project_root / "configs", tmp_path / "configs")
    write_arrays(tmp_path / "data" / "arrays")

    module, *arguments = TRAIN_OWN
    result = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.{module}", *arguments],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "outputs" / "smoke").iterdir()
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert (config["data"]["name"], config["model"]["name"]) == ("npz", "tiny_resnet")
    evaluations = [r for r in read_metrics(run) if "val_accuracy" in r]
    assert evaluations[-1]["val_accuracy"] >= 0.9
