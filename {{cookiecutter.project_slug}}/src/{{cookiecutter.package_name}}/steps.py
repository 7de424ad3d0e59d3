"""One optimizer step and one evaluation pass, shared by every process of a run.

Each training step syncs with the host once: the rank-averaged loss, the gradient norm and
whether any rank was asked to stop travel together, so every rank takes the same decision.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from .distributed import DistributedContext, average_across_ranks

Batch = tuple[torch.Tensor, ...]  # (images, labels), as TensorDataset yields them


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the global batch (all ranks)
    grad_norm: float
    stop_requested: bool  # some rank received SIGTERM/SIGINT
    stepped: bool  # False when the optimizer step was skipped (non-finite values)


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


def mixed_precision(tools: StepTools) -> contextlib.AbstractContextManager[object]:
    """Autocast when AMP is on; otherwise no context at all (entering a disabled one costs time)."""
    if tools.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(tools.device.type, dtype=tools.autocast_dtype)


def gradient_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    if max_norm > 0:
        clipped_from: torch.Tensor = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return clipped_from  # the norm before clipping
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    # One fused kernel for all parameters (torch >= 2.6), instead of one per parameter.
    total_norm = getattr(nn.utils, "get_total_norm", None)
    if total_norm is not None:
        fused: torch.Tensor = total_norm(gradients)
        return fused
    per_parameter = torch.stack([torch.linalg.vector_norm(g) for g in gradients])
    total: torch.Tensor = torch.linalg.vector_norm(per_parameter)
    return total


def train_step(tools: StepTools, batch: Batch, stop_requested: bool) -> StepResult:
    images, labels = (tensor.to(tools.device, non_blocking=True) for tensor in batch)
    with mixed_precision(tools):
        loss = nn.functional.cross_entropy(tools.model(images), labels)
    tools.optimizer.zero_grad(set_to_none=True)
    tools.scaler.scale(loss).backward()
    tools.scaler.unscale_(tools.optimizer)  # the norm and clipping must see true gradients
    norm = gradient_norm(tools.model, tools.grad_clip)
    if tools.context.is_distributed:
        stop_flag = torch.tensor(float(stop_requested), device=tools.device)
        shared = average_across_ranks(
            torch.stack([loss.detach().float(), stop_flag]), tools.context
        )
        loss_value, stop_share, norm_value = torch.cat([shared, norm.reshape(1).float()]).tolist()
    else:  # one process: nothing to agree on, so no flag tensor on the hot path
        loss_value, norm_value = torch.stack([loss.detach().float(), norm.float()]).tolist()
        stop_share = float(stop_requested)
    # fp16's scaler expects the odd inf gradient (it skips that step and lowers the scale);
    # anywhere else a non-finite loss or gradient means the run is broken.
    finite = math.isfinite(loss_value) and (math.isfinite(norm_value) or tools.scaler.is_enabled())
    if finite:
        tools.scaler.step(tools.optimizer)
        tools.scaler.update()
        if tools.step_scheduler:
            tools.scheduler.step()
    return StepResult(loss_value, norm_value, stop_share > 0, stepped=finite)


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
