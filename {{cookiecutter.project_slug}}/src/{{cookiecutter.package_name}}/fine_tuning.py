"""Fine-tuning: a new run whose model starts from trained weights, with a new head where the
classes changed, and a frozen or slower backbone.

Each registered model names its head (`HEAD` in its module: prefixes of parameter names); every
other parameter is the backbone. `init_from` keeps each tensor whose name and shape match, leaves
the head as this run initialised it when the classes differ, and refuses weights that match
nothing or whose backbone does not fit. `model.freeze` turns off gradients before the optimizer
and DDP see the model (DDP then never waits for them: no unused-parameter errors), and
`optim.backbone_lr_scale` gives the backbone a parameter group of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .config import ModelConfig, OptimConfig
from .errors import CheckpointDamagedError, ConfigError
from .models import registered_model
from .run_files import run_of_checkpoint
from .storage import fetch_checkpoint
from .weights import Weights, parse_weights

NAMES_SHOWN = 6  # a line lists at most this many names of a kind, then says how many more


@dataclass(frozen=True)
class InitialWeights:
    """What `load_initial_weights` did: run.json's record, and the line the run prints."""

    record: dict[str, Any]
    summary: str


def head_prefixes(model_name: str) -> tuple[str, ...] | None:
    """The model module's HEAD, or None for a module written before models had to name one."""
    # getattr: a project's own models/__init__.py (cruft never updates it) may lack HEAD.
    head = getattr(registered_model(model_name), "HEAD", None)
    return tuple(head) if head is not None else None


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    """`features.0` holds `features.0.weight`, not `features.01.weight`."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def no_head_error(model_name: str, needed_for: str) -> ConfigError:
    return ConfigError(
        f"{needed_for} needs the head of model.name={model_name}, and its module names none: add "
        f'HEAD: tuple[str, ...] = ("head",) (the prefixes of its last layer\'s parameter names) '
        f"to models/{model_name}.py"
    )


def model_head(model: nn.Module, model_name: str, needed_for: str) -> tuple[str, ...]:
    """The model's HEAD, checked to name parameters of `model`."""
    head = head_prefixes(model_name)
    if head is None:
        raise no_head_error(model_name, needed_for)
    if not any(under(name, head) for name, _ in model.named_parameters()):
        raise ConfigError(
            f"models/{model_name}.py: HEAD={head} names no parameter of the model; its "
            f"parameters are {shortened([name for name, _ in model.named_parameters()])}"
        )
    return head


def frozen_prefixes(model: nn.Module, config: ModelConfig) -> tuple[str, ...]:
    """The parameter-name prefixes `model.freeze` names ("backbone": every top-level name that
    is not the head's)."""
    spec = config.freeze.strip()
    if spec in ("", "none"):
        return ()
    if spec == "backbone":
        head = model_head(model, config.name, "model.freeze=backbone")
        return tuple(name for name, _ in model.named_parameters() if not under(name, head))
    return tuple(prefix.strip() for prefix in spec.split(",") if prefix.strip())


def freeze_parameters(model: nn.Module, config: ModelConfig) -> str | None:
    """Turn off the gradients of the parameters `model.freeze` names; a line saying what was
    frozen, or None. Call before building the optimizer and wrapping in DDP or compile."""
    prefixes = frozen_prefixes(model, config)
    if not prefixes:
        return None
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(under(name, (prefix,)) for name in names):
            raise ConfigError(
                f"model.freeze={config.freeze}: {prefix!r} names no parameter of model.name="
                f"{config.name}; use none, backbone, or prefixes of {shortened(names)}"
            )
    frozen = [name for name in names if under(name, prefixes)]
    if len(frozen) == len(names):
        raise ConfigError(
            f"model.freeze={config.freeze} freezes every parameter, so nothing would train; "
            "leave the head out (model.freeze=backbone)"
        )
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    count = f"{len(frozen)} of {len(names)} parameters"
    return f"model.freeze={config.freeze}: {count} frozen ({shortened(frozen)})"


def parameter_groups(model: nn.Module, model_name: str, optim: OptimConfig) -> list[dict[str, Any]]:
    """The optimizer's groups: the head at `optim.lr` first (its rate is the one logged), then
    the trainable backbone at `lr * backbone_lr_scale`. One group at scale 1.0, as before
    fine-tuning existed, so older checkpoints resume."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if optim.backbone_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable]}]
    head = model_head(model, model_name, f"optim.backbone_lr_scale={optim.backbone_lr_scale}")
    groups = [
        {"params": [p for name, p in trainable if under(name, head)], "lr": optim.lr},
        {
            "params": [p for name, p in trainable if not under(name, head)],
            "lr": optim.lr * optim.backbone_lr_scale,
        },
    ]
    return [group for group in groups if group["params"]]  # a frozen backbone: no group


def refuse_init_from_own_run(init_from: str, run_folder: Path, resume: Path | None) -> None:
    """A fine-tune starts from another run's weights; from the run it writes is a resume."""
    if not init_from:
        return
    source = Path(init_from)
    run = run_of_checkpoint(source)
    same_run = run is not None and run.root.resolve() == run_folder.resolve()
    if same_run or (resume is not None and source.resolve() == resume.resolve()):
        raise ConfigError(
            f"init_from={init_from} and resume point at the same run ({run_folder}); to continue "
            "that run use resume alone, to fine-tune from it leave resume out (a new run)"
        )


def read_source(location: str) -> bytes:
    """The bytes of the file `init_from` names, a local path or a URL (s3://..., downloaded)."""
    path = fetch_checkpoint(location)
    if not path.is_file():
        raise ConfigError(
            f"init_from={location}: no such file; pass a checkpoint (outputs/<name>/<run>/"
            "checkpoints/best.pt), an export (.pt or .safetensors) or a state_dict file"
        )
    return path.read_bytes()


def load_initial_weights(
    location: str, model: nn.Module, model_name: str, class_names: tuple[str, ...]
) -> InitialWeights:
    """Load the weights at `location` into `model` (built for `class_names`), in place: every
    tensor whose name and shape match; the head only while the classes are the same."""
    data = read_source(location)
    try:
        source = parse_weights(data, location)
    except CheckpointDamagedError as error:
        raise ConfigError(f"init_from={location}: {error}") from None
    target = model.state_dict()
    head = head_prefixes(model_name) or ()
    classes_differ = source.class_names is not None and source.class_names != class_names
    kept: list[str] = []
    reinitialised: list[str] = []
    misfits: list[str] = []
    for name, tensor in target.items():
        fits = name in source.tensors and source.tensors[name].shape == tensor.shape
        if under(name, head):
            (reinitialised if classes_differ or not fits else kept).append(name)
        elif fits:
            kept.append(name)
        else:
            misfits.append(name)
    if not set(source.tensors) & set(target):
        raise ConfigError(
            f"init_from={location}: none of its {len(source.tensors)} tensors fits model.name="
            f"{model_name} (no name matches); pass weights of this model"
        )
    if misfits:
        raise ConfigError(misfit_message(location, model_name, source, target, misfits, head))
    model.load_state_dict({**target, **{name: source.tensors[name] for name in kept}})
    unused = sorted(set(source.tensors) - set(target))
    digest = hashlib.sha256(data).hexdigest()
    record = {
        "source": location, "sha256": digest, "format": source.form, "kept": len(kept),
        "reinitialised": reinitialised, "unused": unused,
    }  # fmt: skip
    why = head_reason(source, class_names) if reinitialised else ""
    summary = (
        f"init_from {location} ({source.form}, sha256 {digest[:12]}): kept {len(kept)} tensors; "
        f"re-initialised {shortened(reinitialised) if reinitialised else 'none'}{why}; "
        f"unused {shortened(unused) if unused else 'none'}"
    )
    return InitialWeights(record, summary)


def misfit_message(
    location: str,
    model_name: str,
    source: Weights,
    target: dict[str, Any],
    misfits: list[str],
    head: tuple[str, ...],
) -> str:
    name = misfits[0]
    found = (
        f"has shape {tuple(source.tensors[name].shape)}" if name in source.tensors else "is missing"
    )
    fix = "pass weights of the same model (model.* as the source run had them)"
    if not head:
        fix += f', or name the head in models/{model_name}.py: HEAD: tuple[str, ...] = ("head",)'
    return (
        f"init_from={location}: its backbone does not fit model.name={model_name}: {name} "
        f"{found}, the model's has {tuple(target[name].shape)} ({len(misfits)} such "
        f"tensor{'s' if len(misfits) > 1 else ''}); {fix}"
    )


def head_reason(source: Weights, class_names: tuple[str, ...]) -> str:
    if source.class_names is None or source.class_names == class_names:
        return " (its shape differs from the source's)"
    if len(source.class_names) != len(class_names):
        return f" ({len(class_names)} classes here, {len(source.class_names)} in the source)"
    return " (the class names differ from the source's)"


def shortened(names: list[str]) -> str:
    """`a, b, c` or `a, b, c and 5 more`: a log line stays one readable line."""
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"
