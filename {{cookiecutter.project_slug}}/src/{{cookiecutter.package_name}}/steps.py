"""One optimizer step, the host sync that checks a window of steps, and one evaluation pass.

A step leaves its loss on the device. Every `train.log_every` steps, and at the end of each
epoch, one host sync fetches the losses of the steps since the last sync, the gradient norm of
the current step and whether any rank was asked to stop, so every rank takes the same decision.
On a GPU that keeps the host queueing work ahead of the device; on a CPU it saves the per-step
gradient norm, which cost ~8% of a small model's step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .distributed import DistributedContext, average_across_ranks

Batch = tuple[torch.Tensor, ...]  # (images, labels), as TensorDataset yields them


@dataclass(frozen=True)
class StepOutput:
    loss: torch.Tensor  # this rank's mean loss, detached, still on the device
    grad_norm: torch.Tensor | None  # measured on sync steps and whenever clipping needs it


@dataclass(frozen=True)
class SyncResult:
    losses: list[float]  # one per step since the last sync, each the mean over all ranks
    grad_norm: float  # of the step that synced
    stop_requested: bool  # some rank received SIGTERM/SIGINT
    first_non_finite: int | None  # index into `losses` of the first bad step, if any


@dataclass
class StepTools:
    """Everything a step needs besides the batch; built once per run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full precision
    grad_clip: float  # 0: measure the norm, do not clip
    context: DistributedContext
    # A constant schedule never changes the rate; skipping its Python step saves ~1% of a small
    # model's step.
    step_scheduler: bool = True
    # Walking the module tree for its parameters costs ~10 us per call; the list never changes.
    parameters: list[nn.Parameter] = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]


def mixed_precision(tools: StepTools) -> contextlib.AbstractContextManager[object]:
    """Autocast when AMP is on; otherwise no context at all (entering a disabled one costs time)."""
    if tools.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(tools.device.type, dtype=tools.autocast_dtype)


def gradient_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """The total 2-norm of all gradients, before clipping them to `max_norm` (0: no clipping)."""
    if max_norm > 0:
        clipped_from: torch.Tensor = nn.utils.clip_grad_norm_(parameters, max_norm)
        return clipped_from
    gradients = [p.grad for p in parameters if p.grad is not None]
    # One fused kernel for all parameters (torch >= 2.6), instead of one per parameter.
    total_norm = getattr(nn.utils, "get_total_norm", None)
    if total_norm is not None:
        fused: torch.Tensor = total_norm(gradients)
        return fused
    per_parameter = torch.stack([torch.linalg.vector_norm(g) for g in gradients])
    total: torch.Tensor = torch.linalg.vector_norm(per_parameter)
    return total


def train_step(tools: StepTools, batch: Batch, measure_norm: bool) -> StepOutput:
    """Forward, backward and optimizer step, without waiting for the device."""
    images, labels = (tensor.to(tools.device, non_blocking=True) for tensor in batch)
    with mixed_precision(tools):
        loss = nn.functional.cross_entropy(tools.model(images), labels)
    tools.optimizer.zero_grad(set_to_none=True)
    tools.scaler.scale(loss).backward()
    norm = None
    if measure_norm or tools.grad_clip > 0:
        tools.scaler.unscale_(tools.optimizer)  # the norm and clipping must see true gradients
        norm = gradient_norm(tools.parameters, tools.grad_clip)
    # fp16's scaler skips a step with inf gradients itself (and lowers the scale); any other
    # non-finite value is caught at the next sync, before anything is checkpointed.
    tools.scaler.step(tools.optimizer)
    tools.scaler.update()
    if tools.step_scheduler:
        tools.scheduler.step()
    return StepOutput(loss.detach().float(), norm)


def sync_steps(
    tools: StepTools, losses: list[torch.Tensor], latest: StepOutput, stop_requested: bool
) -> SyncResult:
    """One host sync for the steps since the last one (and, across ranks, one all-reduce).

    `losses` ends with `latest.loss`; `latest` is a step run with `measure_norm=True`.
    """
    if latest.grad_norm is None:
        raise ValueError("sync_steps needs the gradient norm: run that step with measure_norm=True")
    norm, values = latest.grad_norm.float().reshape(1), torch.stack(losses)
    if tools.context.is_distributed:  # the norm is the same on every rank (DDP averages grads)
        stop_flag = torch.tensor([float(stop_requested)], device=tools.device)
        values = average_across_ranks(torch.cat([values, stop_flag]), tools.context)
        *loss_values, stop_share, norm_value = torch.cat([values, norm]).tolist()
    else:  # one process: nothing to agree on, so no flag tensor
        *loss_values, norm_value = torch.cat([values, norm]).tolist()
        stop_share = float(stop_requested)
    bad = [i for i, value in enumerate(loss_values) if not math.isfinite(value)]
    # fp16's scaler expects the odd inf gradient; anywhere else it means the run is broken.
    if not (math.isfinite(norm_value) or tools.scaler.is_enabled()):
        bad.append(len(loss_values) - 1)
    return SyncResult(loss_values, norm_value, stop_share > 0, min(bad) if bad else None)


@torch.no_grad()
def evaluate(tools: StepTools, loader: torch.utils.data.DataLoader[Batch]) -> dict[str, float]:
    """Validation loss and accuracy over every rank's shard."""
    tools.model.eval()
    totals = torch.zeros(3, device=tools.device)  # summed loss, correct, count
    for images, labels in loader:
        images, labels = images.to(tools.device), labels.to(tools.device)
        with mixed_precision(tools):
            logits = tools.model(images)
        totals[0] += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        totals[1] += (logits.argmax(dim=1) == labels).sum()
        totals[2] += len(labels)
    tools.model.train()
    summed = average_across_ranks(totals, tools.context) * tools.context.world_size
    loss_sum, correct, count = summed.tolist()
    return {"val_loss": loss_sum / count, "val_accuracy": correct / count}


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Learning-rate factor per optimizer step: constant, or cosine from 1 down to 0."""

    def cosine(step: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    factor = cosine if kind == "cosine" else (lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision runs on CUDA only; on a CPU `train.amp` is ignored (see README)."""
    if amp == "off" or device.type != "cuda":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16
