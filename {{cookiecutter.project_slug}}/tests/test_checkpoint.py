"""Checkpoints: complete, atomic, and resuming to exactly the losses of an uninterrupted run."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint, save_checkpoint
from {{ cookiecutter.package_name }}.errors import PreemptedError, TrainingFailedError
from {{ cookiecutter.package_name }}.guards import check_finite_weights
from {{ cookiecutter.package_name }}.train import main
from {{ cookiecutter.package_name }}.trainer import Trainer

from helpers import read_metrics, step_losses, training_records

if TYPE_CHECKING:
    from helpers import CopyReferenceRun, ReferenceRuns, StopAtSync, TrainSmoke


def test_checkpoint_holds_everything_a_resume_needs(reference_run: ReferenceRuns) -> None:
    output_dir = reference_run("train.epochs=2")
    state = load_checkpoint(output_dir / "checkpoints" / "last.pt")
    assert set(state) == {
        "model", "optimizer", "scheduler", "scaler", "rng", "train_state", "config", "manifest",
        "preprocessing", "tracker_run_id",
    }  # fmt: skip
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["train_state"]["epoch"] == 2
    assert (output_dir / "checkpoints" / "best.pt").is_file()
    assert (output_dir / "run.json").is_file()


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(
    train_smoke: TrainSmoke, reference_run: ReferenceRuns, reference_run_copy: CopyReferenceRun
) -> None:
    straight = reference_run("train.epochs=4")
    reference_run_copy("split", "train.epochs=2")  # 2 epochs of 4, saved at the epoch's end
    split = train_smoke("split", "train.epochs=4", "resume=auto")
    assert step_losses(split) == step_losses(straight)  # bitwise, not approximately


def start_training(
    project_root: Path, smoke_config: Path, *overrides: str
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.train", "--config"]
    return subprocess.Popen(
        [*command, str(smoke_config), *overrides],
        cwd=project_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_steps(process: subprocess.Popen[str], metrics: Path, steps: int) -> None:
    deadline = time.monotonic() + 60
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= steps):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resume_completes_exactly(
    project_root: Path,
    smoke_config: Path,
    tmp_path: Path,
    train_smoke: TrainSmoke,
    reference_run: ReferenceRuns,
) -> None:
    interrupted = tmp_path / "interrupted"
    overrides = ["train.epochs=10"]  # 160 steps: still training when the signal lands at ~20
    process = start_training(project_root, smoke_config, f"output_dir={interrupted}", *overrides)
    wait_for_steps(process, interrupted / "metrics.jsonl", 20)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "resume=auto" in stderr
    stopped_at = load_checkpoint(interrupted / "checkpoints" / "last.pt")["train_state"]["step"]
    assert json.loads((interrupted / "run.json").read_text())["status"] == "interrupted"

    train_smoke("interrupted", *overrides, "resume=auto")
    straight = reference_run(*overrides)
    assert 0 < stopped_at < len(step_losses(straight))
    assert step_losses(interrupted) == step_losses(straight)


@pytest.mark.slow
def test_a_kill_after_a_mid_epoch_checkpoint_resumes_exactly(
    project_root: Path,
    smoke_config: Path,
    tmp_path: Path,
    train_smoke: TrainSmoke,
    reference_run: ReferenceRuns,
) -> None:
    """SIGKILL saves nothing: the run continues from the last `train.checkpoint_every` save."""
    killed = tmp_path / "killed"
    # A checkpoint every 5 steps and 16 steps an epoch: most saves fall mid-epoch.
    overrides = ["train.epochs=10", "train.checkpoint_every=5"]
    process = start_training(project_root, smoke_config, f"output_dir={killed}", *overrides)
    wait_for_steps(process, killed / "metrics.jsonl", 40)
    process.kill()
    process.communicate(timeout=60)
    saved = load_checkpoint(killed / "checkpoints" / "last.pt")["train_state"]
    logged = max(record["step"] for record in read_metrics(killed))

    train_smoke("killed", *overrides, "resume=auto")
    straight = reference_run(*overrides)
    assert saved["step"] % 5 == 0
    assert saved["batches_done"] > 0  # a mid-epoch checkpoint
    assert saved["step"] <= logged  # steps after the save were logged, then redone on resume
    assert step_losses(killed) == step_losses(straight)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"weights": torch.ones(3)}, path)
    with pytest.raises(Exception, match="pickle"):
        # A lambda cannot be pickled, so torch.save fails after it has started writing.
        save_checkpoint({"weights": torch.zeros(3), "broken": lambda: None}, path)
    assert torch.equal(load_checkpoint(path)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_a_nan_step_between_syncs_is_named_at_the_next_sync(small_trainer: Trainer) -> None:
    labels = torch.zeros(4, dtype=torch.long)
    good, bad = (torch.randn(4, 1, 16, 16), labels), (torch.full((4, 1, 16, 16), math.nan), labels)
    small_trainer.step([good], measure_norm=False)
    small_trainer.step([bad], measure_norm=False)
    small_trainer.step([good], measure_norm=True)
    # Steps 11 to 13 of epoch 2: the second is named, not the one that synced.
    with pytest.raises(TrainingFailedError, match="non-finite values at epoch 2, step 12"):
        small_trainer.sync(epoch=2, step=13, stop=False, timed_out=False)
    # The NaN reached the weights; the check before every checkpoint is what keeps them off disk.
    with pytest.raises(TrainingFailedError, match="non-finite weights after epoch 0"):
        check_finite_weights(small_trainer.parameters, epoch=0)


def test_a_sync_returns_every_step_since_the_last_with_its_rate(small_trainer: Trainer) -> None:
    batch = (torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,)))
    for measure_norm in (False, False, True):
        small_trainer.step([batch], measure_norm)
    synced = small_trainer.sync(epoch=0, step=3, stop=True, timed_out=False)
    assert [record.step for record in synced.steps] == [1, 2, 3]
    assert [record.lr for record in synced.steps] == [0.1, 0.1, 0.1]
    assert all(math.isfinite(loss) for loss in synced.losses)
    assert (synced.stop_requested, synced.timed_out) == (True, False)
    assert synced.grad_norm > 0


def test_syncing_needs_the_gradient_norm_of_the_last_step(small_trainer: Trainer) -> None:
    batch = (torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))
    small_trainer.step([batch], measure_norm=False)
    with pytest.raises(ValueError, match="measure_norm"):
        small_trainer.sync(epoch=0, step=1, stop=False, timed_out=False)


def test_resume_from_a_missing_path_is_a_config_error(smoke_config: Path, tmp_path: Path) -> None:
    code = main(["--config", str(smoke_config), f"output_dir={tmp_path}", "resume=/no/such.pt"])
    assert code == 2


def test_mid_epoch_resume_keeps_schedule_and_clipping_exact(
    train_smoke: TrainSmoke,
    reference_run: ReferenceRuns,
    stop_at_sync: type[StopAtSync],
    tmp_path: Path,
) -> None:
    overrides = ["optim.scheduler=cosine", "optim.grad_clip=0.5"]
    straight = reference_run(*overrides)
    with pytest.raises(PreemptedError):
        # Syncs at steps 10, 16 (epoch end), 20: the third stops in the middle of epoch 1.
        train_smoke("split", *overrides, stop=stop_at_sync(3))
    split = tmp_path / "split"
    stopped = load_checkpoint(split / "checkpoints" / "last.pt")["train_state"]
    assert (stopped["epoch"], stopped["batches_done"], stopped["step"]) == (1, 4, 20)
    train_smoke("split", *overrides, "resume=auto")
    records = [r for r in read_metrics(straight) if "lr" in r]
    assert records[0]["lr"] > records[-1]["lr"] > 0  # cosine decays
    assert training_records(split) == training_records(straight)
    manifest = json.loads((split / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed"


def test_a_failed_run_is_recorded_in_run_json(train_smoke: TrainSmoke, tmp_path: Path) -> None:
    with pytest.raises(TrainingFailedError):
        train_smoke("run", "optim.lr=1e-12")
    manifest = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed"
    assert "did not decrease" in manifest["error"]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_diverging_run_stops_with_the_step_and_keeps_the_last_checkpoint(
    tmp_path: Path,
    smoke_config: Path,
    capsys: pytest.CaptureFixture[str],
    accumulate: int,
) -> None:
    output_dir = tmp_path / "run"
    # A learning rate this large drives the weights to NaN at step 2, after step 1 was saved.
    overrides = ["optim.lr=1e12", "train.checkpoint_every=1"]
    overrides.append(f"train.grad_accum_steps={accumulate}")
    code = main(["--config", str(smoke_config), f"output_dir={output_dir}", *overrides])
    assert code == 1
    error = capsys.readouterr().err
    assert "non-finite values at epoch 0, step 2" in error
    assert "last good checkpoint kept" in error
    kept = load_checkpoint(output_dir / "checkpoints" / "last.pt")
    assert kept["train_state"]["step"] == 1
    assert all(torch.isfinite(weights).all() for weights in kept["model"].values())
    assert json.loads((output_dir / "run.json").read_text(encoding="utf-8"))["status"] == "failed"


def test_a_damaged_checkpoint_stops_with_one_line_and_writes_nothing(
    reference_run_copy: CopyReferenceRun, smoke_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output_dir = reference_run_copy("run", "train.epochs=2")
    last = output_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    before = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    capsys.readouterr()
    overrides = [f"output_dir={output_dir}", "train.epochs=3", "resume=auto"]
    assert main(["--config", str(smoke_config), *overrides]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line, no traceback
    assert f"checkpoint {last} is damaged" in error
    assert f"resume={last.with_name('best.pt')}" in error
    assert {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()} == before


def test_a_checkpoint_from_an_older_trainer_is_refused_with_one_line(
    reference_run_copy: CopyReferenceRun, smoke_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output_dir = reference_run_copy("run", "train.epochs=2")
    last = output_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["progress"] = state.pop("train_state")  # the key before TrainState had its name
    save_checkpoint(state, last)
    capsys.readouterr()
    overrides = [f"output_dir={output_dir}", "train.epochs=3", "resume=auto"]
    assert main(["--config", str(smoke_config), *overrides]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"checkpoint {last} has no train_state" in error
    assert "new output_dir" in error


def test_resuming_with_another_model_is_refused_with_one_line_and_writes_nothing(
    reference_run_copy: CopyReferenceRun, smoke_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output_dir = reference_run_copy("run", "train.epochs=2")
    before = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    capsys.readouterr()
    overrides = [f"output_dir={output_dir}", "train.epochs=3", "resume=auto", "model.width=32"]
    assert main(["--config", str(smoke_config), *overrides]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line, no traceback
    last = output_dir / "checkpoints" / "last.pt"
    assert f"checkpoint {last}: its model does not fit this config (size mismatch for" in error
    assert "its run's config.yaml" in error
    # run.json still says how the run ended: a refused resume is no failure of the run.
    assert {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()} == before
