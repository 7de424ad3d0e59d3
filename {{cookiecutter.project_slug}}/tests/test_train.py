from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import TrainingFailedError
from {{ cookiecutter.package_name }}.guards import check_loss_decreased
from {{ cookiecutter.package_name }}.reproducibility import configure_determinism
from {{ cookiecutter.package_name }}.train import main, run

from helpers import read_metrics, step_losses

if TYPE_CHECKING:
    from helpers import ReferenceRuns


def test_smoke_training_lowers_the_loss(smoke_config: Path, tmp_path: Path) -> None:
    config = load_config(smoke_config, [f"output_dir={tmp_path}"])
    final = run(config)
    records = read_metrics(tmp_path)
    epochs = [r for r in records if "train_loss" in r]
    assert len(epochs) == config.train.epochs
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert final["val_accuracy"] > 1 / config.data.num_classes  # better than chance
    assert (tmp_path / "config.yaml").is_file()


def test_every_step_is_logged_with_step_epoch_and_loss(reference_run: ReferenceRuns) -> None:
    steps = [r for r in read_metrics(reference_run("train.epochs=2")) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert {r["epoch"] for r in steps} == {0, 1}


def test_the_gradient_norm_is_logged_at_every_host_sync(smoke_config: Path, tmp_path: Path) -> None:
    overrides = [f"output_dir={tmp_path}", "train.epochs=2", "train.log_every=5"]
    run(load_config(smoke_config, overrides))
    records = read_metrics(tmp_path)
    # Every 5 steps, and at each epoch's last step (16 steps per epoch in the smoke config).
    assert [r["step"] for r in records if "grad_norm" in r] == [5, 10, 15, 16, 20, 25, 30, 32]
    assert all(r["grad_norm"] > 0 for r in records if "grad_norm" in r)


def test_the_sync_cadence_does_not_change_the_losses(smoke_config: Path, tmp_path: Path) -> None:
    for every in (1, 7):
        overrides = [f"output_dir={tmp_path / str(every)}", "train.epochs=2"]
        run(load_config(smoke_config, [*overrides, f"train.log_every={every}"]))
    assert step_losses(tmp_path / "1") == step_losses(tmp_path / "7")


def test_same_seed_gives_identical_losses(
    smoke_config: Path, tmp_path: Path, reference_run: ReferenceRuns
) -> None:
    first = reference_run("train.epochs=2")  # an earlier run of the session, maybe elsewhere
    run(load_config(smoke_config, [f"output_dir={tmp_path}", "train.epochs=2"]))
    assert step_losses(tmp_path) == step_losses(first)


def test_config_error_exits_2_with_the_key_named(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(smoke_config), f"output_dir={tmp_path}", "train.epoch=3"])
    assert code == 2
    assert "unknown key train.epoch" in capsys.readouterr().err


def test_a_loss_that_does_not_fall_fails_the_run(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A learning rate this small leaves the loss flat, so the run must report that it did not learn.
    code = main(["--config", str(smoke_config), f"output_dir={tmp_path}", "optim.lr=1e-12"])
    assert code == 1
    assert "did not decrease" in capsys.readouterr().err


@pytest.mark.parametrize("compiling", [False, True])
def test_determinism_switch_really_flips(compiling: bool) -> None:
    try:
        configure_determinism(True, compiling=compiling)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        configure_determinism(False, compiling=compiling)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        configure_determinism(True)


@pytest.mark.parametrize("epoch_means", [[2.0, 2.0], [2.0, 2.1], [2.0, 1.99999]])
def test_flat_or_rising_loss_is_a_failure(smoke_config: Path, epoch_means: list[float]) -> None:
    with pytest.raises(TrainingFailedError, match="did not decrease"):
        check_loss_decreased(load_config(smoke_config), epoch_means)


def test_falling_loss_passes_and_the_check_can_be_switched_off(smoke_config: Path) -> None:
    check_loss_decreased(load_config(smoke_config), [2.0, 1.5])
    config = load_config(smoke_config, ["train.require_loss_decrease=false"])
    check_loss_decreased(config, [2.0, 2.5])
