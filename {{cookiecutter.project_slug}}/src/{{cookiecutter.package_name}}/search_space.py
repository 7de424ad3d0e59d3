"""The space a search draws from: `--space KEY=SPEC`, each checked against the config before any
trial runs, so a typo stops the search with one line and nothing written.

SPEC is `log:LOW:HIGH` (log-uniform), `float:LOW:HIGH`, `int:LOW:HIGH` (both ends included) or
`choice:A,B,...`. `log:` on an integer key (model.width) draws integers on a log scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import parse_yaml, to_dict
from .errors import ConfigError
from .tracking import flatten
from .train import load_training_config

FORMS = "log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH or choice:A,B,..."
SET_BY_SEARCH = ("name", "output_dir", "resume")  # each trial's folder is the search's choice


@dataclass(frozen=True)
class Dimension:
    key: str  # a dotted config key, e.g. optim.lr
    spec: str  # as given: log:1e-4:1e-2 (the study and every trial's run.json keep it)
    kind: str  # log, float, int or choice
    low: float = 0.0
    high: float = 0.0
    integer: bool = False  # the key holds an int: draw integers
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this key (a fixed one for a trial run again)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        log = self.kind == "log"
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=log)
        return trial.suggest_float(self.key, self.low, self.high, log=log)


def parse_space(items: Sequence[str], config_path: Path, base: Sequence[str]) -> list[Dimension]:
    """Every `--space` item, each value it can take checked by building that config."""
    if not items:
        raise ConfigError("--space: give at least one, e.g. --space optim.lr=log:1e-4:1e-2")
    current = flatten(to_dict(load_training_config(config_path, base)))
    dimensions: list[Dimension] = []
    for item in items:
        key, separator, spec = item.partition("=")
        where = f"--space {item}"
        if not separator or not key or not spec:
            raise ConfigError(f"{where}: use KEY=SPEC, SPEC {FORMS}; e.g. optim.lr=log:1e-4:1e-2")
        if key in SET_BY_SEARCH:
            raise ConfigError(f"{where}: the search sets {key} for each trial; search other keys")
        if key not in current:
            raise ConfigError(f"{where}: unknown key {key}; e.g. optim.lr, model.width")
        if any(dimension.key == key for dimension in dimensions):
            raise ConfigError(f"--space {key} is given twice; keep one")
        dimension = parse_spec(key, spec, current[key], where)
        for value in ends_and_choices(dimension):
            try:
                load_training_config(config_path, [*base, override(key, value)])
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        dimensions.append(dimension)
    return dimensions


def parse_spec(key: str, spec: str, current: object, where: str) -> Dimension:
    kind, _, rest = spec.partition(":")
    if kind == "choice":
        raw = rest.split(",")
        if not rest or "" in raw:
            raise ConfigError(f"{where}: list the values, e.g. {key}=choice:A,B")
        choices = tuple(parse_yaml(value) for value in raw)
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: a value is listed twice")
        return Dimension(key, spec, kind, choices=choices)
    bounds = rest.split(":")
    if kind not in ("log", "float", "int") or len(bounds) != 2:
        raise ConfigError(f"{where}: SPEC must be {FORMS}")
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise ConfigError(
            f"{where}: {key} is not a number ({current!r}); search it with {key}=choice:A,B"
        )
    integer = isinstance(current, int)
    if kind == "float" and integer:
        raise ConfigError(f"{where}: {key} is an integer; use int:LOW:HIGH or log:LOW:HIGH")
    if kind == "int" and not integer:
        raise ConfigError(f"{where}: {key} is a float; use float:LOW:HIGH or log:LOW:HIGH")
    try:
        low, high = (float(int(bound)) if integer else float(bound) for bound in bounds)
    except ValueError:
        numbers = "integers" if integer else "numbers"
        raise ConfigError(f"{where}: LOW and HIGH must be {numbers}, e.g. {kind}:1:4") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{where}: LOW {bounds[0]} must be below HIGH {bounds[1]}")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{where}: log: needs LOW above 0; use float:LOW:HIGH to include 0")
    return Dimension(key, spec, kind, low, high, integer)


def ends_and_choices(dimension: Dimension) -> list[Any]:
    """The values to check: every choice, or both ends of a range."""
    if dimension.kind == "choice":
        return list(dimension.choices)
    if dimension.integer:
        return [int(dimension.low), int(dimension.high)]
    return [dimension.low, dimension.high]


def override(key: str, value: Any) -> str:
    """key=value as config.py parses it back to the same value (floats: repr round-trips)."""
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"
