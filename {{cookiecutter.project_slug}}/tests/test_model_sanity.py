"""Cheap checks that catch most wiring bugs before any long run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }}.config import ModelConfig
from {{ cookiecutter.package_name }}.health_check import main as health_check
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.models.cnn import GridAvgPool2d, pooling_matrix

NUM_CLASSES = 10
INPUT_SHAPE = (1, 16, 16)


@pytest.fixture(params=["cnn", "mlp"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name=request.param, width=16), INPUT_SHAPE, NUM_CLASSES)


def batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, *INPUT_SHAPE, generator=generator)
    return images, torch.randint(0, NUM_CLASSES, (size,), generator=generator)


def test_loss_at_init_is_near_chance(model: nn.Module) -> None:
    images, labels = batch(256)
    loss = nn.functional.cross_entropy(model(images), labels).item()
    assert loss == pytest.approx(math.log(NUM_CLASSES), rel=0.1)


def test_every_trainable_parameter_gets_a_gradient(model: nn.Module) -> None:
    images, labels = batch()
    nn.functional.cross_entropy(model(images), labels).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_model_can_overfit_one_small_batch(model: nn.Module) -> None:
    images, labels = batch(16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_health_check_passes_on_cpu_and_fails_when_cuda_is_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert health_check([]) == 0
    assert "health check passed" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert health_check(["--require-cuda"]) == 1
        assert "--gpus all" in capsys.readouterr().err


@pytest.mark.parametrize(("height", "width"), [(8, 8), (14, 14), (7, 16), (5, 4)])
def test_grid_pooling_matches_adaptive_pooling(height: int, width: int) -> None:
    images = torch.randn(3, 5, height, width)
    expected = nn.functional.adaptive_avg_pool2d(images, 4)
    torch.testing.assert_close(GridAvgPool2d(4)(images), expected)
    # The matrix form, which deterministic CUDA runs use for unequal windows.
    rows, columns = pooling_matrix(height, 4, images), pooling_matrix(width, 4, images)
    torch.testing.assert_close(rows @ images @ columns.T, expected)
