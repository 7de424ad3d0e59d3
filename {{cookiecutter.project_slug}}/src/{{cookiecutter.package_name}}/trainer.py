"""The optimizer step, the host sync that checks a window of steps, and one evaluation pass.

A step leaves its loss on the device. Every `train.log_every` steps (and whenever the loop must
decide something: an evaluation, a checkpoint, the end of an epoch), one host sync fetches the
losses of the steps since the last sync, the gradient norm of the current step and whether any
rank must stop, so every rank takes the same decision. On a GPU that keeps the host queueing work
ahead of the device; on a CPU it saves the per-step gradient norm (~8% of a small model's step).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import Config
from .data.loaders import Batch
from .distributed import DistributedContext, average_across_ranks
from .errors import TrainingFailedError
from .fine_tuning import parameter_groups
from .guards import non_finite_message


@dataclass(frozen=True)
class StepRecord:
    step: int
    lr: float  # the rate this step used
    loss: float  # the mean over its micro-batches and all ranks


@dataclass(frozen=True)
class Synced:
    """What one host sync learned about the steps since the previous one."""

    steps: list[StepRecord]
    grad_norm: float  # of the last step
    stop_requested: bool  # some rank received SIGTERM/SIGINT
    timed_out: bool  # some rank reached train.time_limit_minutes

    @property
    def losses(self) -> list[float]:
        return [record.loss for record in self.steps]


class SyncWindow:
    """The steps since the last host sync: their losses stay on the device until `fetch`."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.rates: list[float] = []

    def add(self, loss: torch.Tensor, rate: float) -> None:
        self.losses.append(loss)
        self.rates.append(rate)

    def fetch(
        self, grad_norm: torch.Tensor, flags: tuple[bool, bool], context: DistributedContext
    ) -> tuple[list[float], list[float], float, list[bool]]:
        """Empties the window in one transfer (and, across ranks, one all-reduce): its losses
        and rates, the norm, and each flag raised on any rank."""
        values = torch.stack(self.losses)
        norm = grad_norm.float().reshape(1)
        if context.is_distributed:  # the norm is the same on every rank (DDP averages grads)
            shared = torch.tensor([float(flag) for flag in flags], device=values.device)
            values = average_across_ranks(torch.cat([values, shared]), context)
            *losses, stop_share, time_share, norm_value = torch.cat([values, norm]).tolist()
            raised = [stop_share > 0, time_share > 0]
        else:  # one process: nothing to agree on, so no flag tensor
            *losses, norm_value = torch.cat([values, norm]).tolist()
            raised = list(flags)
        rates, self.losses, self.rates = self.rates, [], []
        return losses, rates, norm_value, raised


class Trainer:
    """Runs optimizer steps on one model; built once per run, by keyword."""

    def __init__(
        self,
        *,
        model: nn.Module,  # as trained: wrapped in DDP and/or compiled where asked
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        context: DistributedContext,
        autocast_dtype: torch.dtype | None = None,  # None: full precision
        grad_clip: float = 0.0,  # 0: measure the norm, do not clip
        step_scheduler: bool = True,  # False when the rate never changes: saves ~1% of a step
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.device = device
        self.context = context
        self.autocast_dtype = autocast_dtype
        self.grad_clip = grad_clip
        self.step_scheduler = step_scheduler
        self.window = SyncWindow()
        # Walking the module tree for its parameters costs ~10 us per call; the list never changes.
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        wrappers = (m for m in model.modules() if isinstance(m, DistributedDataParallel))
        self.ddp = next(wrappers, None)  # for no_sync() while accumulating
        self.grad_norm: torch.Tensor | None = None  # of the latest step, when it was measured

    def step(self, batches: Sequence[Batch], measure_norm: bool) -> None:
        """Forward and backward over each micro-batch, then one optimizer step; no host sync."""
        rate = float(self.scheduler.get_last_lr()[0])  # the rate this step uses
        self.window.add(self.accumulate_gradients(batches), rate)
        self.grad_norm = None
        if measure_norm or self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # the norm and clipping must see true gradients
            self.grad_norm = gradient_norm(self.parameters, self.grad_clip)
        # fp16's scaler skips a step with inf gradients itself (and lowers the scale); any other
        # non-finite value is caught at the next sync, before anything is checkpointed.
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.step_scheduler:
            self.scheduler.step()

    def accumulate_gradients(self, batches: Sequence[Batch]) -> torch.Tensor:
        """Gradients of the mean loss over all samples of `batches`; returns that loss, detached."""
        self.optimizer.zero_grad(set_to_none=True)
        if len(batches) == 1:  # no accumulation: the plain step, without weighting
            loss = self.loss(batches[0])
            self.scaler.scale(loss).backward()
            return loss.detach().float()
        samples = sum(len(labels) for _, labels in batches)
        total = torch.zeros((), device=self.device)
        for index, batch in enumerate(batches):
            with self.gradient_all_reduce(last=index == len(batches) - 1):
                # Each micro-batch's share of the mean: a smaller last batch weighs less, as it
                # would inside one big batch.
                weighted = self.loss(batch) * (len(batch[1]) / samples)
                self.scaler.scale(weighted).backward()
            total += weighted.detach().float()
        return total

    def gradient_all_reduce(self, last: bool) -> contextlib.AbstractContextManager[object]:
        """DDP all-reduces gradients in every backward; only the last micro-batch needs it.

        The context must hold the forward pass too: DDP decides there whether to reduce.
        """
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def loss(self, batch: Batch) -> torch.Tensor:
        images, labels = (tensor.to(self.device, non_blocking=True) for tensor in batch)
        with self.mixed_precision():
            return nn.functional.cross_entropy(self.model(images), labels)

    def sync(self, epoch: int, step: int, *, stop: bool, timed_out: bool) -> Synced:
        """Fetch and check the steps since the last sync, up to `step` (the one just run);
        raises if any was NaN/inf. `stop` and `timed_out` are this rank's flags."""
        if self.grad_norm is None:
            raise ValueError("sync needs the gradient norm: run the last step with measure_norm")
        losses, rates, norm, (stop_requested, time_up) = self.window.fetch(
            self.grad_norm, (stop, timed_out), self.context
        )
        first_step = step - len(losses) + 1
        bad = [index for index, value in enumerate(losses) if not math.isfinite(value)]
        # fp16's scaler expects the odd inf gradient; anywhere else it means the run is broken.
        if not (math.isfinite(norm) or self.scaler.is_enabled()):
            bad.append(len(losses) - 1)
        if bad:
            raise TrainingFailedError(non_finite_message(epoch, first_step + min(bad)))
        pairs = zip(rates, losses, strict=True)
        steps = [StepRecord(first_step + i, lr, loss) for i, (lr, loss) in enumerate(pairs)]
        return Synced(steps, norm, stop_requested, time_up)

    def evaluate(self, loader: torch.utils.data.DataLoader[Batch]) -> dict[str, float]:
        """Validation loss and accuracy over every rank's shard."""
        loss, accuracy = evaluate_model(
            self.model, loader, self.device, self.autocast_dtype, self.context
        )
        self.model.train()
        return {"val_loss": loss, "val_accuracy": accuracy}

    def mixed_precision(self) -> contextlib.AbstractContextManager[object]:
        return mixed_precision(self.device, self.autocast_dtype)


def evaluate_model(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[Batch],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    context: DistributedContext,
) -> tuple[float, float]:
    """Mean loss and accuracy over `loader` (every rank's shard); leaves `model` in eval mode.
    The `evaluate` command calls this too, so it reproduces the numbers training logged."""
    model.eval()
    totals = torch.zeros(3, device=device)  # summed loss, correct, count
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with mixed_precision(device, autocast_dtype):
                logits = model(images)
            totals[0] += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            totals[1] += (logits.argmax(dim=1) == labels).sum()
            totals[2] += len(labels)
    summed = average_across_ranks(totals, context) * context.world_size
    loss_sum, correct, count = summed.tolist()
    return loss_sum / count, correct / count


def mixed_precision(
    device: torch.device, autocast_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """Autocast when AMP is on; otherwise no context at all (a disabled one costs time)."""
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype)


def build_trainer(
    config: Config,
    model: nn.Module,
    device: torch.device,
    context: DistributedContext,
    total_steps: int,
) -> Trainer:
    """Optimizer, schedule, scaler and wrappers as `config` says, around `model` (on `device`)."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.model.name, config.optim),  # fine-tuning's groups
        lr=config.optim.lr,
        weight_decay=config.optim.weight_decay,
    )
    autocast_dtype = autocast_dtype_for(config.train.amp, device)
    trained: nn.Module = model
    if context.is_distributed:
        trained = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if config.train.compile:
        trained = torch.compile(trained)  # type: ignore[assignment]
    return Trainer(
        model=trained,
        optimizer=optimizer,
        scheduler=build_scheduler(
            optimizer, config.optim.scheduler, total_steps, config.optim.warmup_steps
        ),
        scaler=torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16),
        device=device,
        context=context,
        autocast_dtype=autocast_dtype,
        grad_clip=config.optim.grad_clip,
        step_scheduler=config.optim.scheduler != "constant" or config.optim.warmup_steps > 0,
    )


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate factor per optimizer step: linear warm-up, then constant or cosine to 0."""
    decay_steps = max(total_steps - warmup_steps, 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            # torchtitan's linear warm-up: (step + 1) / (warmup + 1), so step 0 never has rate 0.
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup_steps, decay_steps) / decay_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision runs on CUDA only; on a CPU `train.amp` is ignored (see README)."""
    if amp == "off" or device.type != "cuda":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16
