"""Loss guards: a run that produces non-finite values or does not learn is a failed run."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .errors import TrainingFailedError

# A "decrease" smaller than this fraction is rounding noise, not learning.
MIN_RELATIVE_DECREASE = 1e-4


def non_finite_message(epoch: int, step: int | None) -> str:
    """Why the run stopped on NaN/inf; `step` is the first step seen with a non-finite value."""
    what = f"values at epoch {epoch}, step {step}" if step is not None else "weights"
    where = "" if step is not None else f" after epoch {epoch}"
    return (
        f"non-finite {what}{where}; nothing after it was saved, the last good checkpoint kept; "
        "lower optim.lr, set optim.grad_clip, or check the data for NaN/inf"
    )


def check_loss_decreased(config: Config, epoch_mean_losses: list[float]) -> None:
    """A run that does not learn is a failed run: compare the last epoch's mean with the first's."""
    if not config.train.require_loss_decrease or len(epoch_mean_losses) < 2:
        return
    first, last = epoch_mean_losses[0], epoch_mean_losses[-1]
    if not last < first * (1 - MIN_RELATIVE_DECREASE):
        raise TrainingFailedError(
            f"mean training loss did not decrease ({first:.4f} in the first epoch, {last:.4f} "
            "in the last); check optim.lr and the data, or set train.require_loss_decrease=false"
        )


def check_finite_weights(parameters: list[nn.Parameter], epoch: int) -> None:
    """Before every checkpoint: weights gone NaN/inf must never be saved as the last good ones."""
    if not all(bool(torch.isfinite(p).all()) for p in parameters):
        raise TrainingFailedError(non_finite_message(epoch, None))
