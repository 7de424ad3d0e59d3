"""The knobs long runs need: warm-up, max_steps, mid-epoch evaluation and checkpoints, early
stopping, a time limit, CPU threads. Each keeps a resumed run exact. (Gradient accumulation,
which must train like a bigger batch, is tested with the other batch splits in
test_distributed.py.)"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint
from {{ cookiecutter.package_name }}.errors import PreemptedError
from {{ cookiecutter.package_name }}.preemption import TIME_LIMIT_EXIT_CODE, TimeBudget
from {{ cookiecutter.package_name }}.train import main

from helpers import read_metrics, step_losses, training_records

if TYPE_CHECKING:
    from helpers import CopyReferenceRun, CrashAtSync, ReferenceRuns, StopAtSync, TrainSmoke

SMOKE_LR, SMOKE_STEPS, STEPS_PER_EPOCH = 0.003, 48, 16  # configs/smoke.yaml


def manifest(output_dir: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((output_dir / "run.json").read_text(encoding="utf-8"))
    return loaded


def evaluations(output_dir: Path) -> list[dict[str, float]]:
    return [r for r in read_metrics(output_dir) if "val_loss" in r]


def rates(output_dir: Path) -> list[float]:
    return [r["lr"] for r in read_metrics(output_dir) if "lr" in r]


def test_warmup_rises_linearly_then_hands_over_to_the_schedule(train_smoke: TrainSmoke) -> None:
    cosine = rates(train_smoke("cosine", "optim.warmup_steps=8", "optim.scheduler=cosine"))
    for step in range(1, 9):  # torchtitan's form: step k of 8 runs at k/9 of the rate
        assert cosine[step - 1] == pytest.approx(SMOKE_LR * step / 9)
    assert cosine[8] == pytest.approx(SMOKE_LR)  # the schedule starts where warm-up ends
    assert all(later < earlier for earlier, later in itertools.pairwise(cosine[8:]))
    assert 0 < cosine[-1] < SMOKE_LR / 50  # decays to nearly 0 over the steps after warm-up
    constant = rates(train_smoke("constant", "optim.warmup_steps=8"))
    assert constant[:8] == cosine[:8]
    assert constant[8:] == [pytest.approx(SMOKE_LR)] * (SMOKE_STEPS - 8)


def test_warmup_resumes_exactly(
    train_smoke: TrainSmoke, reference_run: ReferenceRuns, stop_at_sync: type[StopAtSync]
) -> None:
    knobs = ["optim.warmup_steps=12", "optim.scheduler=cosine"]
    straight = reference_run(*knobs)
    with pytest.raises(PreemptedError):  # syncs at steps 10 and 16: stops before warm-up ends
        train_smoke("split", *knobs, stop=stop_at_sync(1))
    split = train_smoke("split", *knobs, "resume=auto")
    assert training_records(split) == training_records(straight)


def test_max_steps_stops_mid_epoch_and_resume_carries_on_exactly(
    train_smoke: TrainSmoke, reference_run: ReferenceRuns, reference_run_copy: CopyReferenceRun
) -> None:
    stopped = reference_run_copy("split", "train.max_steps=20")
    assert len(step_losses(stopped)) == 20
    # A schedule is planned over the steps the run will take: cosine reaches ~0 at max_steps.
    cosine = rates(train_smoke("cosine", "train.max_steps=20", "optim.scheduler=cosine"))
    assert len(cosine) == 20
    assert cosine[-1] < SMOKE_LR / 50
    assert [r["step"] for r in evaluations(stopped)] == [16, 20]  # an epoch's end, then the last
    assert (manifest(stopped)["status"], manifest(stopped)["step"]) == ("completed", 20)
    position = load_checkpoint(stopped / "checkpoints" / "last.pt")["train_state"]
    assert (position["epoch"], position["batches_done"], position["step"]) == (1, 4, 20)

    resumed = train_smoke("split", "resume=auto")  # max_steps off: on to the end of epoch 3
    assert step_losses(resumed) == step_losses(reference_run())
    more_than_the_epochs = train_smoke("epochs-first", "train.max_steps=1000")
    assert len(step_losses(more_than_the_epochs)) == SMOKE_STEPS


def test_eval_every_evaluates_mid_epoch_and_best_pt_follows_it(
    reference_run: ReferenceRuns,
) -> None:
    output_dir = reference_run("train.eval_every=5")
    evaluated = evaluations(output_dir)
    assert [r["step"] for r in evaluated] == [5, 10, 15, 16, 20, 25, 30, 32, 35, 40, 45, 48]
    best = min(evaluated, key=lambda r: r["val_loss"])
    best_state = load_checkpoint(output_dir / "checkpoints" / "best.pt")["train_state"]
    assert best_state["step"] == best["step"]
    assert best_state["best_val_loss"] == best["val_loss"]
    # An evaluation's train_loss is the mean loss of its epoch so far.
    at_step_5 = step_losses(output_dir)[:5]
    assert evaluated[0]["train_loss"] == pytest.approx(sum(at_step_5) / 5)


def test_checkpoint_every_saves_mid_epoch_and_a_crash_resumes_from_there(
    train_smoke: TrainSmoke,
    reference_run: ReferenceRuns,
    crash_at_sync: type[CrashAtSync],
    tmp_path: Path,
) -> None:
    knobs = ["train.checkpoint_every=6"]
    # Syncs at steps 6 (a save), 10 (a log), 12 (a save): the crash comes before the third.
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_smoke("crashed", *knobs, stop=crash_at_sync(3))
    crashed = tmp_path / "crashed"
    saved = load_checkpoint(crashed / "checkpoints" / "last.pt")["train_state"]
    assert (saved["epoch"], saved["batches_done"], saved["step"]) == (0, 6, 6)
    assert len(step_losses(crashed)) == 10  # logged past the save; redone after the resume
    assert manifest(crashed)["status"] == "failed"
    assert manifest(crashed)["error"] == "RuntimeError: simulated crash at a host sync"

    train_smoke("crashed", *knobs, "resume=auto")
    assert step_losses(crashed) == step_losses(reference_run(*knobs))


@pytest.mark.parametrize("stopped_at_sync", [None, 12])
def test_early_stopping_ends_the_run_with_exit_0_and_says_why(
    train_smoke: TrainSmoke,
    reference_run: ReferenceRuns,
    stop_at_sync: type[StopAtSync],
    smoke_config: Path,
    tmp_path: Path,
    stopped_at_sync: int | None,
) -> None:
    knobs = ["train.epochs=30", "train.early_stop_patience=2", "train.early_stop_min_delta=0.05"]
    output_dir = tmp_path / "run"
    resume = []
    if stopped_at_sync is not None:  # stopped between two evaluations without a real gain
        with pytest.raises(PreemptedError):
            train_smoke("run", *knobs, stop=stop_at_sync(stopped_at_sync))
        saved = load_checkpoint(output_dir / "checkpoints" / "last.pt")["train_state"]
        assert saved["evaluations_without_improvement"] == 1  # the count the resume must keep
        resume = ["resume=auto"]
    code = main(["--config", str(smoke_config), f"output_dir={output_dir}", *knobs, *resume])
    assert code == 0
    record = manifest(output_dir)
    assert record["status"] == "stopped_early"
    assert "train.early_stop_patience=2" in str(record["stop_reason"])
    losses = [r["val_loss"] for r in evaluations(output_dir)]
    assert len(losses) < 30  # an evaluation per epoch: it stopped before the last
    best_before = min(losses[:-2])
    assert all(loss >= best_before - 0.05 for loss in losses[-2:])  # two without a real gain
    if resume:  # the counter of evaluations without a gain survived the stop
        assert step_losses(output_dir) == step_losses(reference_run(*knobs))


def test_time_limit_saves_exits_124_and_resume_continues_exactly(
    train_smoke: TrainSmoke, smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output_dir = tmp_path / "run"
    overrides = [f"output_dir={output_dir}", "train.epochs=30", "train.time_limit_minutes=0.001"]
    code = main(["--config", str(smoke_config), *overrides])
    assert code == TIME_LIMIT_EXIT_CODE == 124
    assert "train.time_limit_minutes=0.001" in capsys.readouterr().err
    assert manifest(output_dir)["status"] == "time_limit"
    stopped_at = load_checkpoint(output_dir / "checkpoints" / "last.pt")["train_state"]["step"]
    assert 0 < stopped_at == len(step_losses(output_dir)) < 30 * STEPS_PER_EPOCH

    more = f"train.max_steps={stopped_at + 12}"
    resumed = train_smoke("run", "train.epochs=30", more, "resume=auto")
    assert manifest(resumed)["status"] == "completed"
    assert step_losses(resumed) == step_losses(train_smoke("straight", "train.epochs=30", more))


@pytest.mark.parametrize(
    "knobs",
    [
        ["train.epochs=2"],
        ["train.max_steps=20"],
        ["train.epochs=30", "train.early_stop_patience=2", "train.early_stop_min_delta=0.05"],
    ],
    ids=["all-epochs", "max-steps", "stopped-early"],
)
def test_resuming_a_finished_run_trains_nothing_and_leaves_its_files(
    train_smoke: TrainSmoke,
    reference_run_copy: CopyReferenceRun,
    capsys: pytest.CaptureFixture[str],
    knobs: list[str],
) -> None:
    output_dir = reference_run_copy("run", *knobs)
    before = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    capsys.readouterr()
    train_smoke("run", *knobs, "resume=auto")
    assert "nothing to train" in capsys.readouterr().out
    after = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    assert after == before


def test_the_time_budget_runs_out_only_after_its_minutes() -> None:
    assert not TimeBudget(0).spent()  # off
    budget = TimeBudget(0.0005)  # 30 ms
    assert not budget.spent()
    time.sleep(0.05)
    assert budget.spent()


def test_cpu_threads_sets_torchs_threads_for_the_run(train_smoke: TrainSmoke) -> None:
    before = torch.get_num_threads()  # 1 in every test process (conftest.py)
    try:
        train_smoke("run", "train.cpu_threads=2", "train.epochs=1", "data.num_train=128")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
