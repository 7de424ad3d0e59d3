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
    """Ruff lint and format check (`nox -s lint -- --fix` to apply fixes)."""
    session.install("--group", "lint")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/, tests/ and this file."""
    session.install("-e", ".", "--group", "typecheck")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """pytest against the installed package (not the source tree), as users get it."""
    session.install(".", "--group", "test")
    session.run("pytest", *session.posargs)


@nox.session
def smoke(session: nox.Session) -> None:
    """Train for a few seconds on the CPU; fails unless the loss is finite and goes down."""
    session.install(".")
    output_dir = session.create_tmp() + "/smoke"
    session.run(
        "python", "-m", f"{PACKAGE}.train", "--config", "configs/smoke.yaml",
        f"output_dir={output_dir}", *session.posargs,
    )  # fmt: skip
