"""Reject bad answers before cookiecutter writes a project.

Each problem is printed as one line naming the field, the bad value and the fix, and the hook
exits 1 so cookiecutter removes the half-made project directory. `sys.exit` rather than `assert`:
asserts vanish under `python -O` / PYTHONOPTIMIZE. The checks are plain functions of an answers
mapping: only the `__main__` block holds Jinja, so tests import this file unrendered.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Mapping

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
OLDEST_TORCH = (2, 4)
CHOICES = {
    "license": ("MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary"),
    "dataset": ("synthetic", "mnist"),
    "tracking": ("none", "tensorboard", "wandb", "mlflow"),
    "ci_platform": ("github", "gitlab"),
}
YES_NO_FIELDS = ("docker", "gpu_ci", "include_notebooks")
FREE_TEXT_FIELDS = ("project_name", "description", "author_name")
# Importing the generated package must not hide one of these (or the reverse).
SHADOWED_NAMES = {
    "torch", "torchvision", "torchaudio", "numpy", "yaml", "nox", "pytest",
    "test", "tests", "src", "setuptools", "pip", "site",
}  # fmt: skip

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
PACKAGE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")  # short: it lands in import lines
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
GITHUB_OWNER_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")
RUNNER_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
# The GPU workflows add one of these to gpu_runner_labels: train-on-label.yml's job, which may
# hold secrets, needs `gpu-trusted`; gpu.yml's, which runs pull requests' code, `gpu-untrusted`.
# Either among the shared labels would let one runner serve both.
TRUST_LABELS = ("gpu-trusted", "gpu-untrusted")
TORCH_VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?$")
# name:tag, optionally pinned to its content by digest: name:tag@sha256:<64 hex digits>.
IMAGE_PATTERN = re.compile(r"^[a-z0-9._/-]+:[A-Za-z0-9._-]+(?:@sha256:[0-9a-f]{64})?$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def problems(answers: Mapping[str, object]) -> list[str]:
    """One line per bad answer, naming the field, the bad value and the fix; [] if all are good."""
    found: list[str] = []

    def text(field: str) -> str:
        value = answers.get(field, "")
        return value if isinstance(value, str) else str(value)

    def reject(field: str, reason: str, fix: str) -> None:
        found.append(f"{field}={answers.get(field)!r} {reason}. Fix: {fix}.")

    for field in FREE_TEXT_FIELDS:
        if CONTROL_CHARACTERS.search(text(field)):
            reject(field, "contains a control character (tab, newline, ...)", "use plain text")
    if not text("project_name").strip():
        reject("project_name", "is empty", "give the project a name")

    slug = text("project_slug")
    if not SLUG_PATTERN.match(slug):
        reject(
            "project_slug",
            "is not a valid directory/distribution name",
            "use 1-64 lowercase letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit, e.g. project_slug=my-project",
        )

    package = text("package_name")
    example = "e.g. package_name=my_project"
    if not PACKAGE_PATTERN.match(package):
        reject(
            "package_name",
            "is not a lowercase Python identifier of at most 40 characters",
            f"use lowercase letters, digits and '_', not starting with a digit, {example}",
        )
    elif keyword.iskeyword(package):
        reject("package_name", "is a Python keyword", f"choose another name, {example}")
    elif package in SHADOWED_NAMES or package in getattr(sys, "stdlib_module_names", ()):
        reject(
            "package_name",
            "would shadow a standard-library or dependency module",
            f"choose a more specific name, {example}",
        )

    if not EMAIL_PATTERN.match(text("author_email")):
        reject("author_email", "is not an email address", "use a form like name@example.com")

    if not GITHUB_OWNER_PATTERN.match(text("github_owner")):
        reject(
            "github_owner",
            "is not a GitHub user or organisation name",
            "use letters, digits and single '-', up to 39 characters",
        )

    if text("python_version") not in SUPPORTED_PYTHONS:
        reject(
            "python_version",
            "is not supported",
            f"choose one of {', '.join(SUPPORTED_PYTHONS)}",
        )

    torch_match = TORCH_VERSION_PATTERN.match(text("torch_version"))
    if not torch_match:
        reject("torch_version", "is not a version like 2.6 or 2.6.0", "use torch_version=2.6")
    elif (int(torch_match[1]), int(torch_match[2])) < OLDEST_TORCH:
        oldest = ".".join(map(str, OLDEST_TORCH))
        reject("torch_version", f"is older than {oldest}", f"use torch_version={oldest} or newer")

    for field, allowed in CHOICES.items():
        if text(field) not in allowed:
            reject(field, "is not one of the choices", f"choose one of {', '.join(allowed)}")

    for field in YES_NO_FIELDS:
        if not isinstance(answers.get(field), bool):
            reject(field, "is not yes or no", f"use {field}=yes or {field}=no")

    if not IMAGE_PATTERN.match(text("docker_base_image")):
        reject(
            "docker_base_image",
            "is not an image reference with a tag",
            "use a pinned tag, optionally with its digest, e.g. "
            "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime or the same followed by "
            "@sha256:<64 lowercase hex digits>",
        )

    labels = text("gpu_runner_labels").split(",")
    if not all(RUNNER_LABEL_PATTERN.match(label.strip()) for label in labels):
        reject(
            "gpu_runner_labels",
            "is not a comma-separated list of runner labels",
            "use labels of letters, digits, '-', '_' or '.', e.g. self-hosted,linux,gpu",
        )
    trust_labels = sorted({label.strip().lower() for label in labels} & set(TRUST_LABELS))
    if trust_labels:
        reject(
            "gpu_runner_labels",
            f"contains {', '.join(trust_labels)}, which the GPU workflows add themselves",
            "leave gpu-trusted and gpu-untrusted out: the training job adds the first, the "
            "pull-request test job the second, and each runner gets one of them",
        )
    return found


def main(answers: Mapping[str, object]) -> int:
    found = problems(answers)
    for problem in found:
        print(f"torch-template: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    # The only line cookiecutter's rendering changes, so that tests import this file as it is and
    # call problems()/main() with answers of their own. The answers arrive as JSON inside a raw
    # string, never spliced into code: `tojson` escapes quotes and backslashes, so no answer can
    # end the string literal and run as Python.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}""")))
