"""Typed run configuration: plain dataclasses filled from a YAML file and `key=value` overrides.

Every value a run uses lives here with its default, so "where did this number come from?" has one
answer: the dataclass, then the YAML file, then the command line, in that order.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .atomic_files import write_text
from .errors import ConfigError


class ConfigLoader(yaml.SafeLoader):
    """YAML with only true/false as booleans (as YAML 1.2 has it).

    PyYAML follows YAML 1.1, where off/on/yes/no are booleans too: `train.amp=off` would arrive as
    False and be refused as not one of "off", "bf16", "fp16".
    """


BOOL_TAG = "tag:yaml.org,2002:bool"
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: builds no Python objects


@dataclass
class DataConfig:
    # A dataset registered in data/__init__.py's DATASETS: synthetic, mnist, imagefolder, yours.
    name: str = "{{ cookiecutter.dataset }}"
    # mnist: the folder of IDX files. imagefolder: a folder per class (or train/ and val/, and
    # optionally test/, folders of them).
    root: str = "data/mnist"
    num_train: int = 4096  # synthetic only
    num_val: int = 1024  # synthetic only
    image_size: int = 16  # synthetic; imagefolder resizes to this square; MNIST images are 28x28
    num_classes: int = 10  # synthetic only; MNIST has 10, imagefolder one per class folder
    num_workers: int = 0
    # imagefolder only. Without val/ (test/) folders, these shares of each class validate
    # (test), drawn with split_seed: the same images whatever the training seed.
    channels: int = 3  # 1: grayscale, 3: RGB
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    augment: bool = False  # random resized crop and horizontal flip of training images
    # The copy `python -m <package>.data.pack` made; "": <root>.pack beside the folder. Used when
    # it holds exactly the folder's current files, else the files are read (with a note).
    pack: str = ""
    skip_bad_images: bool = False  # leave out (and count) images Pillow cannot read; else stop


@dataclass
class ModelConfig:
    name: str = "cnn"  # a model registered in models/__init__.py's MODELS: cnn, mlp, yours
    width: int = 32  # CNN channels or MLP hidden units
    # Parameters that do not train (fine_tuning.py): "none", "backbone" (all but the model's
    # HEAD), or parameter-name prefixes separated by commas, e.g. "features.0,features.3".
    freeze: str = "none"


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["constant", "cosine"] = "constant"  # cosine decays to 0 over the run
    warmup_steps: int = 0  # optimizer steps of linear warm-up to `lr` before the schedule
    grad_clip: float = 0.0  # clip the gradient norm to this; 0 measures it without clipping
    # The backbone's learning rate as a share of `lr` (its own parameter group); the head keeps
    # `lr`. 1.0: one group, as without fine-tuning.
    backbone_lr_scale: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64  # global batch, split evenly across ranks
    deterministic: bool = True
    amp: Literal["off", "bf16", "fp16"] = "off"  # mixed precision on CUDA; ignored on CPU
    compile: bool = False  # torch.compile the model (needs a C compiler on CPU)
    device: str = "auto"  # "auto" picks CUDA when available
    # torch's threads for CPU work in this process; 0: torch's choice (OMP_NUM_THREADS where set,
    # as sweep and search set it per job, else one per core). A tiny model gains little from more
    # and loses much when the cores are busy: their threads spin (smoke.yaml: 1).
    cpu_threads: int = 0
    require_loss_decrease: bool = True  # fail the run if the last epoch is no better than the first
    # Steps between host syncs (syncs also come at each epoch's end and wherever an evaluation or
    # checkpoint is due): every step's loss is still logged, the gradient norm at the syncs;
    # NaN/inf, signals and the time limit are acted on at a sync.
    log_every: int = 10
    # Micro-batches of `batch_size` per optimizer step: the effective batch is their product.
    grad_accum_steps: int = 1
    max_steps: int = 0  # stop after this many optimizer steps, whatever `epochs` says; 0: off
    # Steps between evaluations / `last.pt` saves; 0: at each epoch's end only (always done).
    eval_every: int = 0
    checkpoint_every: int = 0
    # Stop when val_loss has not improved by more than `early_stop_min_delta` for this many
    # evaluations in a row; 0: off.
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    # Wall-clock budget of this process: save `last.pt` and exit 124 when reached; 0: off.
    time_limit_minutes: float = 0.0
    # Serve Prometheus metrics (step, loss, throughput, memory, GPU use) on this port while
    # training, at http://metrics_host:PORT/metrics (torchrun: PORT + local rank); 0: off.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 serves other machines too


@dataclass
class TrackingConfig:
    # Where metrics go besides metrics.jsonl (always written).
    backend: Literal["none", "tensorboard", "wandb", "mlflow"] = "{{ cookiecutter.tracking }}"
    project: str = "{{ cookiecutter.project_slug }}"  # W&B project / MLflow experiment name


@dataclass
class Config:
    # New runs go to outputs/<name>/<UTC time> unless output_dir is set; `name` defaults to the
    # config file's name (configs/smoke.yaml: smoke). See run_folder.py.
    name: str = "default"
    seed: int = 0
    output_dir: str = ""  # the run folder itself; a new run into one holding a run is refused
    # Where runs without output_dir get their <name>/<UTC time> folders. Either may be a URL
    # (s3://bucket/prefix, gs://..., az://...): see storage.py and docs "Remote storage".
    runs_root: str = "outputs"
    # A run whose output_dir is remote waits this long at its end for the last uploads, then
    # exits 1 naming the local folder and the command that uploads it later.
    upload_wait_seconds: float = 120.0
    # "": a new run. "auto": continue from last.pt (output_dir's, or the latest run of `name`
    # without output_dir), or start a new run if there is none. A path: that checkpoint.
    resume: str = ""
    # A new run whose model starts from these weights (fine_tuning.py): a checkpoint, an export
    # (.pt, .safetensors) or a state_dict file. Not a resume: optimizer, schedule, step and RNG
    # start fresh. With resume, the resumed run goes on from its own checkpoint instead.
    init_from: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


POSITIVE_INTEGERS = (
    "train.epochs",
    "train.batch_size",
    "train.log_every",
    "train.grad_accum_steps",
    "model.width",
    "data.image_size",
)
# 0 switches these off (see their comments in the dataclasses above).
NON_NEGATIVE = (
    "optim.warmup_steps",
    "optim.grad_clip",
    "optim.weight_decay",
    "data.num_workers",
    "train.max_steps",
    "train.eval_every",
    "train.checkpoint_every",
    "train.early_stop_patience",
    "train.early_stop_min_delta",
    "train.time_limit_minutes",
    "upload_wait_seconds",
    "train.metrics_port",
    "train.cpu_threads",
)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Build a Config from defaults, then the YAML file at `path`, then `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_yaml_mapping(Path(path))
        values.setdefault("name", Path(path).stem)
    return build_config(values, overrides)


def build_config(values: dict[str, Any], overrides: typing.Sequence[str] = ()) -> Config:
    """A Config from nested `values` (from YAML or a checkpoint), then `key=value` overrides."""
    values = copy.deepcopy(values)
    for override in overrides:
        key, separator, raw_value = override.partition("=")
        if not separator or not key:
            raise ConfigError(f"override {override!r} is not key=value; e.g. train.epochs=3")
        set_dotted(values, key.strip(), parse_yaml(raw_value) if raw_value else "")
    config: Config = build_dataclass(Config, values, prefix="")
    check_values(config)
    return config


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass --config configs/default.yaml")
    try:
        loaded = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {loaded!r}")
    return loaded


def set_dotted(values: dict[str, Any], dotted_key: str, value: object) -> None:
    *parents, leaf = dotted_key.split(".")
    node = values
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted_key}: {part} is a value, not a section")
        node = child
    node[leaf] = value


def build_dataclass(cls: type[Any], values: object, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.')} must be a section (key: value lines)")
    hints = typing.get_type_hints(cls)
    known = {spec.name for spec in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"unknown key {prefix}{key}; valid keys here: {', '.join(sorted(known))}"
            )
    arguments = {key: convert(hints[key], value, f"{prefix}{key}") for key, value in values.items()}
    return cls(**arguments)


def convert(expected: Any, value: object, key: str) -> object:
    """Check `value` against the annotation `expected`; ints are accepted where floats are."""
    if dataclasses.is_dataclass(expected):
        return build_dataclass(typing.cast(type[Any], expected), value, prefix=f"{key}.")
    if typing.get_origin(expected) is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(choices)}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads `1e-3` as a string; people still mean a number.
        try:
            return float(value)
        except ValueError:
            pass
    # bool is a subclass of int: `epochs=true` must not pass as 1.
    if isinstance(expected, type) and type(value) is expected:
        return value
    name = getattr(expected, "__name__", str(expected))
    raise ConfigError(f"{key}={value!r} should be of type {name}; e.g. {key}={example(expected)}")


def example(expected: Any) -> str:
    return {int: "3", float: "0.001", bool: "true", str: "text"}.get(expected, "...")


def dotted_value(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_values(config: Config) -> None:
    for key in POSITIVE_INTEGERS:
        if dotted_value(config, key) < 1:
            raise ConfigError(f"{key}={dotted_value(config, key)} must be at least 1")
    for key in NON_NEGATIVE:
        if dotted_value(config, key) < 0:
            raise ConfigError(f"{key}={dotted_value(config, key)} must be 0 or more")
    if config.train.metrics_port > 65535:
        raise ConfigError(
            f"train.metrics_port={config.train.metrics_port} is past 65535; use a port from 1 to "
            "65535, e.g. train.metrics_port=9100, or 0 for no endpoint"
        )
    if config.optim.lr <= 0:
        raise ConfigError(f"optim.lr={config.optim.lr} must be positive; e.g. optim.lr=0.001")
    if config.optim.backbone_lr_scale <= 0:  # fine-tuning; a backbone that must not learn: freeze
        raise ConfigError(
            f"optim.backbone_lr_scale={config.optim.backbone_lr_scale} must be positive, e.g. 0.1;"
            " to keep the backbone as it is, use model.freeze=backbone"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config.name):
        raise ConfigError(
            f"name={config.name!r} becomes a folder name: use letters, digits, '.', '_' or '-'; "
            "e.g. name=baseline"
        )
    if config.data.num_classes < 2:
        raise ConfigError("data.num_classes must be at least 2")
    check_data_values(config.data)


def check_data_values(data: DataConfig) -> None:
    if data.channels not in (1, 3):
        raise ConfigError(f"data.channels={data.channels}: use 1 (grayscale) or 3 (RGB)")
    for key, share in (("val_fraction", data.val_fraction), ("test_fraction", data.test_fraction)):
        if not 0 <= share < 1:
            raise ConfigError(f"data.{key}={share} must be at least 0 and below 1, e.g. 0.1")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction:g}"
            " leaves nothing to train on; keep their sum below 1"
        )


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
