"""Where training stands, and the policy that reads it: when to evaluate, save `last.pt` and
sync with the host, when early stopping is due, and why a run stops.

`TrainState` is saved in every checkpoint (it is one of the parts checkpoint.py restores), so a
resumed run knows its epoch, its position in the epoch and its history exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig


@dataclass
class TrainState:
    """Where training stands, and the history the guards and early stopping need."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # loader batches (micro-batches) finished in the unfinished epoch
    step: int = 0  # optimizer steps finished, counted from 1 in metrics.jsonl
    current_epoch_losses: list[float] = field(default_factory=list)
    epoch_mean_losses: list[float] = field(default_factory=list)
    best_val_loss: float = math.inf  # the lowest so far: best.pt holds those weights
    # Early stopping: the loss an evaluation must beat by `early_stop_min_delta`, and how many
    # evaluations in a row have not.
    early_stop_reference: float = math.inf
    evaluations_without_improvement: int = 0

    def advance(self, batches: int) -> None:
        """One optimizer step over `batches` loader batches."""
        self.step += 1
        self.batches_done += batches

    def epoch_loss_so_far(self) -> float:
        return sum(self.current_epoch_losses) / len(self.current_epoch_losses)

    def close_epoch(self) -> None:
        self.epoch_mean_losses.append(self.epoch_loss_so_far())
        self.epoch += 1
        self.batches_done, self.current_epoch_losses = 0, []

    def epoch_means(self) -> list[float]:
        """Mean loss of every epoch trained in, the unfinished one too (after train.max_steps)."""
        partial = [self.epoch_loss_so_far()] if self.current_epoch_losses else []
        return [*self.epoch_mean_losses, *partial]

    def record_evaluation(self, val_loss: float, train_config: TrainConfig) -> bool:
        """Keep score for best.pt and early stopping; True when this is the best so far."""
        if val_loss < self.early_stop_reference - train_config.early_stop_min_delta:
            self.early_stop_reference, self.evaluations_without_improvement = val_loss, 0
        else:
            self.evaluations_without_improvement += 1
        is_best = val_loss < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_loss)
        return is_best

    def out_of_patience(self, train_config: TrainConfig) -> bool:
        """Early stopping is due: that many evaluations in a row without a real gain."""
        patience = train_config.early_stop_patience
        return patience > 0 and self.evaluations_without_improvement >= patience

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


@dataclass(frozen=True)
class Cadence:
    """Which optimizer steps evaluate, save `last.pt` and sync with the host.

    An epoch's last step and the run's last step do all three; a sync is also due whenever
    anything else is, since every decision needs the synced losses.
    """

    log_every: int
    eval_every: int
    checkpoint_every: int
    last_step: int  # train.max_steps, or every step of every epoch

    @classmethod
    def of(cls, train_config: TrainConfig, steps_per_epoch: int) -> Cadence:
        all_steps = train_config.epochs * steps_per_epoch
        return cls(
            log_every=train_config.log_every,
            eval_every=train_config.eval_every,
            checkpoint_every=train_config.checkpoint_every,
            last_step=min(train_config.max_steps or all_steps, all_steps),
        )

    def evaluates(self, step: int, end_of_epoch: bool) -> bool:
        return end_of_epoch or step == self.last_step or every(step, self.eval_every)

    def checkpoints(self, step: int, end_of_epoch: bool) -> bool:
        return end_of_epoch or step == self.last_step or every(step, self.checkpoint_every)

    def syncs(self, step: int, end_of_epoch: bool) -> bool:
        return (
            step % self.log_every == 0
            or self.evaluates(step, end_of_epoch)
            or self.checkpoints(step, end_of_epoch)
        )


def every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


class Stop(enum.Enum):
    """Why the loop ended; the value is run.json's status."""

    SIGNAL = "interrupted"
    TIME_LIMIT = "time_limit"
    EARLY = "stopped_early"
    LAST_STEP = "completed"


def why_stop(
    state: TrainState,
    train_config: TrainConfig,
    last_step: int,
    *,
    stop_requested: bool,
    timed_out: bool,
) -> Stop | None:
    """At a host sync: whether the run ends here, and why (None: it goes on)."""
    if state.step >= last_step:  # all done: "completed", whatever else this sync brought
        return Stop.LAST_STEP
    if stop_requested:
        return Stop.SIGNAL
    if timed_out:
        return Stop.TIME_LIMIT
    return Stop.EARLY if state.out_of_patience(train_config) else None


def finished_already(state: TrainState, train_config: TrainConfig, last_step: int) -> bool:
    """A resumed run that has nothing left to train (it ended, or ran out of patience)."""
    return state.step >= last_step or state.out_of_patience(train_config)


def early_stop_reason(train_config: TrainConfig, state: TrainState) -> str:
    return (
        f"val_loss did not improve by more than train.early_stop_min_delta="
        f"{train_config.early_stop_min_delta:g} for train.early_stop_patience="
        f"{train_config.early_stop_patience} evaluations; best {state.best_val_loss:.4f}"
    )
