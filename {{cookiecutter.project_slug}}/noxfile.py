"""The project's checks: `nox` runs them all, `nox -s NAME` one. CI runs these same sessions.

Every session installs exactly what uv.lock pins, plus this machine's torch (the lock leaves it
out). CPU-only machine? `UV_TORCH_BACKEND=cpu nox` installs the small CPU build of torch instead
of the CUDA one (uv's PyTorch integration). Offline, once uv's cache holds the packages:
`UV_OFFLINE=1 nox`, or `nox -R` to reuse the session environments as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2025.5"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lock", "lint", "typecheck", "tests", "smoke"]

PACKAGE = "{{ cookiecutter.package_name }}"


def install_locked(session: nox.Session, *sync_options: str, torch: bool = True) -> None:
    """uv.lock's packages (the project, and the groups or extras named) into the session's
    environment, then torch for this machine (unless `torch` is False), as scripts/setup_dev.sh
    does for .venv."""
    environment = session.virtualenv.location
    # --python: the session's own interpreter (CI's matrix), not the one .python-version names.
    session.run_install(
        "uv", "sync", "--locked", "--inexact", "--no-default-groups", "--python", environment,
        *sync_options, env={"UV_PROJECT_ENVIRONMENT": environment},
    )  # fmt: skip
    if not torch:
        return
    # From /, so that uv skips this folder's [tool.uv], which excludes torch (pyproject.toml).
    session.run_install(
        "uv", "--directory", "/", "pip", "install", "--python", environment,
        "-r", str(Path("pyproject.toml").resolve()),
    )  # fmt: skip


@nox.session
def lock(session: nox.Session) -> None:
    """uv.lock is committed and agrees with pyproject.toml (uv lock --check)."""
    if not Path("uv.lock").is_file():
        session.error(
            "uv.lock is missing. Fix: bash scripts/setup_dev.sh (it makes the lock), then "
            "git add uv.lock && git commit -m 'build: lock the environment'"
        )
    session.run("uv", "lock", "--check")


@nox.session
def lint(session: nox.Session) -> None:
    """Every pre-commit hook on every file but mypy: ruff, YAML/TOML, workflows, Dockerfile, ...
    mypy is the typecheck session: the hook runs the same `mypy` on the same files, so running it
    here too would only repeat it (and this environment would need torch for it)."""
    install_locked(session, "--group", "hooks", torch=False)
    tracked = session.run("git", "ls-files", silent=True, external=True, success_codes=[0, 128])
    if not str(tracked).strip():
        session.error("pre-commit checks only files git tracks, and it tracks none: git add -A")
    skipped = ",".join(filter(None, [os.environ.get("SKIP"), "mypy"]))  # pre-commit's SKIP
    session.run(
        "pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs,
        env={"SKIP": skipped},
    )  # fmt: skip


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/, tests/ and this file."""
    install_locked(session, "--group", "typecheck")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """pytest against the installed package (not the source tree), as users get it, on every
    core (pytest-xdist; `nox -s tests -- -n 0` runs them in one process). Tests that share a
    module fixture worth making once are kept in one worker by their `xdist_group` mark."""
    # The onnx extra too, so that `export --format onnx` is checked with ONNX Runtime, and the
    # search extra (Optuna) for `search`.
    install_locked(
        session, "--no-editable", "--extra", "onnx", "--extra", "search", "--group", "test"
    )
    # The tests start many Python processes; with bytecode writing off (PYTHONDONTWRITEBYTECODE,
    # some CIs) each would compile torch's modules again (~4 s of CPU each). So bytecode is
    # written, for the modules imported only, into this session's environment (not the work
    # tree): once, and cheaper than compiling all of torch at install (~16 s of CPU).
    bytecode = {
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(Path(session.virtualenv.location, "bytecode")),
    }
    parallel = ["-n", "auto", "--dist", "loadgroup"]
    session.run("pytest", *parallel, *session.posargs, env=bytecode)


@nox.session
def smoke(session: nox.Session) -> None:
    """Train for a few seconds on the CPU; fails unless the loss is finite and goes down, and
    unless every step's loss matches baselines/smoke.json (baseline.py: identical in the
    environment that made it, within a measured tolerance elsewhere; a failure draws a plot,
    hence the plots group). Each run writes to a new folder, outputs/smoke/<UTC time>."""
    install_locked(session, "--no-editable", "--group", "plots")
    session.run(
        "python", "-m", f"{PACKAGE}.baseline", "check", "--config", "configs/smoke.yaml",
        *session.posargs,
    )  # fmt: skip


@nox.session(default=False)
def baseline(session: nox.Session) -> None:
    """Remake baselines/smoke.json after an intended change of training (then commit it)."""
    install_locked(session, "--no-editable", "--group", "plots")
    session.run(
        "python", "-m", f"{PACKAGE}.baseline", "update", "--config", "configs/smoke.yaml",
        *session.posargs,
    )  # fmt: skip
