"""Checkpoints: complete, atomic, and resuming to exactly the losses of an uninterrupted run."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint, save_checkpoint
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.distributed import DistributedContext
from {{ cookiecutter.package_name }}.guards import TrainingFailedError, check_finite_weights
from {{ cookiecutter.package_name }}.models import SmallCNN
from {{ cookiecutter.package_name }}.preemption import PreemptedError, StopRequest
from {{ cookiecutter.package_name }}.run_log import read_metrics
from {{ cookiecutter.package_name }}.train import run
from {{ cookiecutter.package_name }}.trainer import Trainer, build_scheduler

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def step_losses(output_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(output_dir / "metrics.jsonl") if "loss" in r]


def test_checkpoint_holds_everything_a_resume_needs(smoke_config: Path, tmp_path: Path) -> None:
    run(load_config(smoke_config, [f"output_dir={tmp_path}", "train.epochs=2"]))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert set(state) == {
        "model", "optimizer", "scheduler", "scaler", "rng", "train_state", "config", "manifest"
    }  # fmt: skip
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["train_state"]["epoch"] == 2
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "run.json").is_file()


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(
    smoke_config: Path, tmp_path: Path
) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(load_config(smoke_config, [f"output_dir={straight}", "train.epochs=4"]))
    run(load_config(smoke_config, [f"output_dir={split}", "train.epochs=2"]))
    run(load_config(smoke_config, [f"output_dir={split}", "train.epochs=4", "resume=auto"]))
    assert step_losses(split) == step_losses(straight)  # bitwise, not approximately


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resume_completes_exactly(
    smoke_config: Path, tmp_path: Path
) -> None:
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    overrides = ["train.epochs=30"]  # long enough to still be training when the signal lands
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", "--config"]
    process = subprocess.Popen(
        [*command, str(smoke_config), f"output_dir={interrupted}", *overrides],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = interrupted / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 20):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "resume=auto" in stderr
    stopped_at = load_checkpoint(interrupted / "checkpoints" / "last.pt")["train_state"]["step"]

    run(load_config(smoke_config, [f"output_dir={interrupted}", *overrides, "resume=auto"]))
    run(load_config(smoke_config, [f"output_dir={straight}", *overrides]))
    assert 0 < stopped_at < len(step_losses(straight))
    assert step_losses(interrupted) == step_losses(straight)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"weights": torch.ones(3)}, path)
    with pytest.raises(Exception, match="pickle"):
        # A lambda cannot be pickled, so torch.save fails after it has started writing.
        save_checkpoint({"weights": torch.zeros(3), "broken": lambda: None}, path)
    assert torch.equal(load_checkpoint(path)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def small_cpu_trainer() -> Trainer:
    """A tiny CNN with AdamW on the CPU, full precision, one process, no clipping."""
    model = SmallCNN(in_channels=1, num_classes=10, width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, "constant", total_steps=10),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        context=DistributedContext(),
    )


def test_a_nan_step_between_syncs_is_named_at_the_next_sync() -> None:
    trainer = small_cpu_trainer()
    labels = torch.zeros(4, dtype=torch.long)
    good, bad = (torch.randn(4, 1, 16, 16), labels), (torch.full((4, 1, 16, 16), math.nan), labels)
    trainer.step([good], measure_norm=False)
    trainer.step([bad], measure_norm=False)
    trainer.step([good], measure_norm=True)
    # Steps 11 to 13 of epoch 2: the second is named, not the one that synced.
    with pytest.raises(TrainingFailedError, match="non-finite values at epoch 2, step 12"):
        trainer.sync(epoch=2, last_step=13, stop=False, timed_out=False)
    # The NaN reached the weights; the check before every checkpoint is what keeps them off disk.
    with pytest.raises(TrainingFailedError, match="non-finite weights after epoch 0"):
        check_finite_weights(trainer.parameters, epoch=0)


def test_a_sync_returns_every_step_since_the_last_with_its_rate() -> None:
    trainer = small_cpu_trainer()
    batch = (torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))
    for measure_norm in (False, False, True):
        trainer.step([batch], measure_norm)
    synced = trainer.sync(epoch=0, last_step=3, stop=True, timed_out=False)
    assert [record.step for record in synced.steps] == [1, 2, 3]
    assert [record.lr for record in synced.steps] == [0.1, 0.1, 0.1]
    assert synced.losses[0] > synced.losses[-1]  # a constant batch is learned
    assert (synced.stop_requested, synced.timed_out) == (True, False)
    assert synced.grad_norm > 0


def test_syncing_needs_the_gradient_norm_of_the_last_step() -> None:
    trainer = small_cpu_trainer()
    batch = (torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))
    trainer.step([batch], measure_norm=False)
    with pytest.raises(ValueError, match="measure_norm"):
        trainer.sync(epoch=0, last_step=1, stop=False, timed_out=False)


def test_resume_from_a_missing_path_is_a_config_error(smoke_config: Path, tmp_path: Path) -> None:
    from {{ cookiecutter.package_name }}.train import main

    code = main(["--config", str(smoke_config), f"output_dir={tmp_path}", "resume=/no/such.pt"])
    assert code == 2


class StopAtSync(StopRequest):
    """Acts as if SIGTERM arrived just before the n-th host sync (the real signal has its own test).

    The loop reads `requested` once per sync: every `train.log_every` steps and at each epoch end.
    """

    def __init__(self, sync: int) -> None:
        super().__init__()
        self.remaining = sync

    @property
    def requested(self) -> bool:
        self.remaining -= 1
        if self.remaining == 0:
            self.signal_number = signal.SIGTERM
        return self.signal_number is not None


def test_mid_epoch_resume_keeps_schedule_and_clipping_exact(
    smoke_config: Path, tmp_path: Path
) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    overrides = ["optim.scheduler=cosine", "optim.grad_clip=0.5"]
    run(load_config(smoke_config, [f"output_dir={straight}", *overrides]))
    with pytest.raises(PreemptedError):
        # Syncs at steps 10, 16 (epoch end), 20: the third stops in the middle of epoch 1.
        run(load_config(smoke_config, [f"output_dir={split}", *overrides]), StopAtSync(3))
    stopped = load_checkpoint(split / "checkpoints" / "last.pt")["train_state"]
    assert (stopped["epoch"], stopped["batches_done"], stopped["step"]) == (1, 4, 20)
    run(load_config(smoke_config, [f"output_dir={split}", *overrides, "resume=auto"]))
    records = [r for r in read_metrics(straight / "metrics.jsonl") if "lr" in r]
    assert records[0]["lr"] > records[-1]["lr"] > 0  # cosine decays
    assert read_metrics(split / "metrics.jsonl") == read_metrics(straight / "metrics.jsonl")
    manifest = json.loads((split / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed"


def test_a_failed_run_is_recorded_in_run_json(smoke_config: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingFailedError):
        run(load_config(smoke_config, [f"output_dir={tmp_path}", "optim.lr=1e-12"]))
    manifest = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed"
    assert "did not decrease" in manifest["error"]


def test_a_diverging_run_stops_with_the_step_and_keeps_the_last_checkpoint(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package_name }}.train import main

    run(load_config(smoke_config, [f"output_dir={tmp_path}", "train.epochs=2"]))
    last = tmp_path / "checkpoints" / "last.pt"
    before = last.read_bytes()
    # A learning rate this large drives the weights to NaN within a few steps.
    code = main(["--config", str(smoke_config), f"output_dir={tmp_path}", "optim.lr=1e12"])
    assert code == 1
    error = capsys.readouterr().err
    assert "non-finite values at epoch 0, step" in error
    assert "last good checkpoint kept" in error
    assert last.read_bytes() == before
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["status"] == "failed"
