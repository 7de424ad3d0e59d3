"""The option combinations the template is checked with: one table for pytest and nox alike.

CHECK_COMBINATIONS get the fast checks (`nox -s combinations -- odd-text` runs one row); the rows
named in SMOKE_COMBINATIONS are also installed and run through their own nox, e.g.
`nox -s "smoke(tensorboard)"`. The default smoke row runs the baked project's whole `nox`; the
tracking rows run its lock check and smoke-train, and of the tests only those that read the
tracking backend (test_tracking.py, test_config.py): every other test trains configs/smoke.yaml,
whose backend is `none`, and would repeat the default row to the bit, and the combinations
session has already run every row's pre-commit hooks (ruff, mypy --strict, ...).
"""

from __future__ import annotations

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
    # GitLab instead of GitHub, with the options that change its pipeline.
    "gitlab": {"ci_platform": "gitlab"},
    "gitlab-no-docker": {"ci_platform": "gitlab", "docker": "no"},
    "gitlab-no-gpu-ci": {"ci_platform": "gitlab", "gpu_ci": "no"},
    "gitlab-tracking-mlflow": {"ci_platform": "gitlab", "tracking": "mlflow"},
    # Odd but valid text: must stay text in TOML, YAML, Markdown and never reach a shell.
    "odd-text": {"description": ODD_TEXT, "author_name": ODD_TEXT},
    "unicode-name": {"project_name": "Ünïcödé Café — Vision 2"},
    "very-long-name": {"project_name": "An Extremely Long Project Name " * 4},
}  # fmt: skip


# Rows that also get the full treatment, by session id -> row of CHECK_COMBINATIONS. Each
# tracking backend adds its own dependency and writes its own files.
FULL_SUITE = "default"
SMOKE_COMBINATIONS = {
    "default": "default",
    "tensorboard": "tracking-tensorboard",
    "wandb": "tracking-wandb",
    "mlflow": "tracking-mlflow",
    "gitlab": "gitlab",
}
# The tests a smoke row runs besides lock and smoke-train (the default row runs them all): those
# that read what the row changes. Tracking rows: the backend; the GitLab row: its bot scripts.
TRACKING_TESTS = ["tests/test_tracking.py", "tests/test_config.py"]
SMOKE_TESTS = {
    "gitlab": ["tests/test_gitlab_automation.py", "tests/test_workflow_scripts.py"],
}


def as_answers(row: str) -> list[str]:
    """`key=value` arguments for `python -m tests.baking` for one row of CHECK_COMBINATIONS."""
    return [f"{key}={value}" for key, value in CHECK_COMBINATIONS[row].items()]
