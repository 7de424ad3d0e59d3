"""Option combinations that get the full treatment (install, the project's own nox, smoke-train).

One table for pytest and nox alike: `nox -s "smoke(tensorboard)"` runs one row. The default row
runs the baked project's whole test suite; the others skip its `slow` tests (real subprocesses:
torchrun, SIGTERM, a pseudo-terminal), which exercise nothing those options change.
"""

from __future__ import annotations

FULL_SUITE = "default"
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


# Fast checks on every supported combination: each option varied once from the defaults, the
# pairs that interact, and odd-but-valid text. pytest bakes each row and checks the file set and
# leftover syntax; `nox -s combinations` runs each baked project's own pre-commit hooks (ruff,
# mypy --strict, workflow schemas, zizmor, hadolint, shellcheck, ...) and imports its package.
ODD_TEXT = "Quotes \" ' \"\"\" ''' back\\slash # hash: colon $HOME `tick` $(touch x) Ünïcödé 🚀"
CHECK_COMBINATIONS: dict[str, dict[str, str]] = {
    "default": {},
    "license-bsd": {"license": "BSD-3-Clause"},
    "license-apache": {"license": "Apache-2.0"},
    "license-proprietary": {"license": "Proprietary"},
    "dataset-mnist": {"dataset": "mnist"},
    "tracking-tensorboard": {"tracking": "tensorboard"},
    "tracking-wandb": {"tracking": "wandb"},
    "tracking-mlflow": {"tracking": "mlflow"},
    "no-docker": {"docker": "no"},
    "no-gpu-ci": {"gpu_ci": "no"},
    "notebooks": {"include_notebooks": "yes"},
    "python-3.10": {"python_version": "3.10"},
    "python-3.12": {"python_version": "3.12"},
    "python-3.13": {"python_version": "3.13"},
    "oldest-torch": {"torch_version": "2.4"},
    "custom-runner-and-image": {
        "gpu_runner_labels": "self-hosted, linux, a100",
        "docker_base_image": "pytorch/pytorch:2.8.0-cuda12.6-cudnn9-runtime",
    },
    # Pairs that interact.
    "no-docker-no-gpu": {"docker": "no", "gpu_ci": "no"},
    "no-docker-with-gpu": {"docker": "no", "gpu_ci": "yes"},
    "mnist-with-wandb": {"dataset": "mnist", "tracking": "wandb"},
    "notebooks-python-3.13-no-docker": {
        "include_notebooks": "yes", "python_version": "3.13", "docker": "no"
    },
    # Odd but valid text: must stay text in TOML, YAML, Markdown and never reach a shell.
    "odd-text": {"description": ODD_TEXT, "author_name": ODD_TEXT},
    "unicode-name": {"project_name": "Ünïcödé Café — Vision 2"},
    "very-long-name": {"project_name": "An Extremely Long Project Name " * 4},
}  # fmt: skip


def check_answers(combination: str) -> list[str]:
    return [f"{key}={value}" for key, value in CHECK_COMBINATIONS[combination].items()]
