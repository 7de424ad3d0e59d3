"""Option combinations that get the full treatment (install, the project's own nox, smoke-train).

One table for pytest and nox alike: `nox -s "smoke(tensorboard)"` runs one row.
"""

from __future__ import annotations

SMOKE_COMBINATIONS: dict[str, dict[str, str]] = {
    "default": {},
    # Each tracking backend adds its own dependency and writes its own files.
    "tensorboard": {"tracking": "tensorboard"},
    "wandb": {"tracking": "wandb"},
    "mlflow": {"tracking": "mlflow"},
}


def as_answers(combination: str) -> list[str]:
    """`key=value` arguments for `python -m tests.baking`."""
    return [f"{key}={value}" for key, value in SMOKE_COMBINATIONS[combination].items()]
