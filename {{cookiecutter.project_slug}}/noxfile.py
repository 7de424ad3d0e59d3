"""The project's checks: `nox` runs them all, `nox -s NAME` one. CI runs these same sessions.

CPU-only machine? `UV_TORCH_BACKEND=cpu nox` installs the small CPU build of torch instead of the
CUDA one (uv's PyTorch integration).
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.5"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "smoke"]

PACKAGE = "{{ cookiecutter.package_name }}"


@nox.session
def lint(session: nox.Session) -> None:
    """Every pre-commit hook on every file: ruff, mypy, YAML/TOML, workflows, Dockerfile, ..."""
    session.install("-e", ".", "--group", "hooks")
    tracked = session.run("git", "ls-files", silent=True, external=True, success_codes=[0, 128])
    if not str(tracked).strip():
        session.error("pre-commit checks only files git tracks, and it tracks none: git add -A")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/, tests/ and this file."""
    session.install("-e", ".", "--group", "typecheck")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """pytest against the installed package (not the source tree), as users get it."""
    # Bytecode compiled once at install: the tests start many Python processes, and each would
    # otherwise recompile torch when bytecode writing is off (PYTHONDONTWRITEBYTECODE, some CIs).
    # The onnx extra too, so that `export --format onnx` is checked with ONNX Runtime.
    session.install(".[onnx]", "--group", "test", env={"UV_COMPILE_BYTECODE": "1"})
    session.run("pytest", *session.posargs)


@nox.session
def smoke(session: nox.Session) -> None:
    """Train for a few seconds on the CPU; fails unless the loss is finite and goes down.
    Each run writes to a new folder, outputs/smoke/<UTC time>."""
    session.install(".")
    session.run(
        "python", "-m", f"{PACKAGE}.train", "--config", "configs/smoke.yaml", *session.posargs
    )
