"""The template's checks. `nox` runs lint, tests, docs, combinations and smoke(...); `nox -s demo`
bakes a project to try, `nox -s bench` measures it.

Every session bakes through tests/baking.py and installs torch only from where
tests/torch_source.py says (a local CPU wheel, or the PyTorch CPU index), never a CUDA build.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nox

TEMPLATE_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(TEMPLATE_ROOT))  # nox does not put the noxfile's folder on sys.path

from tests.baking import package_name  # noqa: E402
from tests.combinations import (  # noqa: E402
    CHECK_COMBINATIONS,
    FULL_SUITE,
    SMOKE_COMBINATIONS,
    as_answers,
)
from tests.git_identity import GIT_IDENTITY  # noqa: E402
from tests.torch_source import torch_install_env  # noqa: E402

nox.needs_version = ">=2025.5"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests", "docs", "combinations", "smoke"]

LINTED = ["hooks", "tests", "docs/hooks.py", "noxfile.py"]


def bake(session: nox.Session, output_dir: Path, *answers: str) -> Path:
    """Bake with tests/baking.py inside the session's environment; returns the project path."""
    shutil.rmtree(output_dir, ignore_errors=True)
    # A fixed identity, so the post-gen hook always makes the first commit: pre-commit (the
    # baked project's lint session) only checks files that git tracks.
    printed = session.run(
        "python", "-m", "tests.baking", str(output_dir), *answers, silent=True, env=GIT_IDENTITY
    )  # fmt: skip
    return Path(str(printed).strip().splitlines()[-1])


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff and mypy (strict) over the hooks, tests and this file."""
    session.install("--group", "lint")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("mypy", *LINTED)


@nox.session
def tests(session: nox.Session) -> None:
    """pytest over tests/: bakes, hook rejections, generated-file checks."""
    session.install("--group", "test")
    session.run("pytest", *session.posargs)


@nox.session
@nox.parametrize("combination", list(SMOKE_COMBINATIONS), ids=list(SMOKE_COMBINATIONS))
def smoke(session: nox.Session, combination: str) -> None:
    """Bake one combination and run its own `nox`: lint, typecheck, tests, smoke-train."""
    session.install("--group", "test")
    # Outside this repository: ruff skips every file under a `.nox` folder, so a project baked
    # into .nox/ would "pass" lint with nothing checked.
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-smoke-"))
    project = bake(session, scratch, *as_answers(SMOKE_COMBINATIONS[combination]))
    session.chdir(project)
    session.log(f"baked into {project}; it is kept there if a check fails")
    env = torch_install_env(scratch)
    # What the project's first `bash scripts/setup_dev.sh` does, and the commit it then asks for
    # (tests/test_lockfile.py runs the script itself): its nox sessions install from uv.lock,
    # and its smoke session checks training against baselines/smoke.json.
    session.run("uv", "lock", env=env)
    session.run("nox", "--non-interactive", "-s", "baseline", env=env)
    session.run("git", "add", "uv.lock", "baselines/smoke.json", external=True)
    session.run(
        "git", "commit", "--quiet", "-m", "build: lock the environment", external=True,
        env=GIT_IDENTITY,
    )  # fmt: skip
    if combination == FULL_SUITE:
        session.run("nox", "--non-interactive", env=env)
    else:
        # lint and typecheck (pre-commit, mypy included) already ran on this row in the
        # combinations session; here what only an install of the row shows.
        session.run("nox", "--non-interactive", "-s", "lock", "smoke", env=env)
        # Only these tests read the tracking backend: every other one trains configs/smoke.yaml,
        # whose backend is `none`, and would repeat the default row to the bit.
        tracking_tests = ["tests/test_tracking.py", "tests/test_config.py"]
        session.run("nox", "--non-interactive", "-s", "tests", "--", *tracking_tests, env=env)
    shutil.rmtree(scratch)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly: warnings and broken links fail."""
    session.install("mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "pyyaml>=6.0")
    site = Path(session.create_tmp()).resolve() / "site"
    session.run(
        "mkdocs", "build", "--strict", "--config-file", "docs/mkdocs.yml", "--site-dir", str(site),
        env={"NO_MKDOCS_2_WARNING": "1"},  # a banner about MkDocs 2, not about these docs
    )  # fmt: skip


@nox.session
def combinations(session: nox.Session) -> None:
    """Every row of tests/combinations.py: the baked project's own hooks, and its import."""
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-combinations-"))
    env = {**torch_install_env(scratch), "MYPY_CACHE_DIR": str(scratch / "mypy-cache")}
    session.install("--group", "test", env=env)
    # One environment serves every row: the default project's dependencies and hook tools, plus
    # nbstripout for the notebook rows. mypy reads each project's source through mypy_path.
    reference = bake(session, scratch / "reference")
    session.install(str(reference), "--group", f"{reference}/pyproject.toml:hooks", env=env)
    session.install("nbstripout>=0.8", env=env)
    rows = session.posargs or list(CHECK_COMBINATIONS)
    for row in rows:
        session.chdir(TEMPLATE_ROOT)
        project = bake(session, scratch / row, *as_answers(row))
        session.log(f"[{row}] {project}")
        session.chdir(project)
        session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", env=env)
        package = package_name(project)
        session.run("python", "-c", f"import {package}", env={**env, "PYTHONPATH": "src"})
    shutil.rmtree(scratch)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not in `nox`): bake, bake->green, smoke CLI, trainer vs hand loop/Lightning,
    and input pipelines over an image folder (tests/benchmark_data.py).

    Results go to docs/content/benchmarks/ (or the folder given after --).
    """
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-bench-"))
    # Timings as users see them: bytecode written and compiled at install.
    env = {**torch_install_env(scratch), "UV_COMPILE_BYTECODE": "1", "PYTHONDONTWRITEBYTECODE": ""}
    session.install("--group", "test", env=env)
    project = bake(session, scratch / "reference")
    session.install(str(project), "lightning>=2.4", "matplotlib>=3.8", env=env)
    output_dir = Path(session.posargs[0] if session.posargs else "docs/content/benchmarks")
    output_dir = output_dir.resolve()
    session.run("python", "-m", "tests.benchmark", str(project), str(output_dir), env=env)
    shutil.rmtree(scratch)


@nox.session
def demo(session: nox.Session) -> None:
    """Bake a project into ./demo (or the folder given after --), set it up and smoke-train it."""
    session.install("--group", "test")
    output_dir = Path(session.posargs[0] if session.posargs else "demo").resolve()
    project = bake(session, output_dir)
    session.chdir(project)
    # The generated README's one set-up command, run exactly as a user would run it.
    session.run("bash", "scripts/setup_dev.sh", external=True, env=torch_install_env(output_dir))
    # The Quickstart's training commands, as a user types them after activating .venv.
    package = package_name(project)
    for config in ("configs/smoke.yaml", "configs/default.yaml"):
        session.run(".venv/bin/python", "-m", f"{package}.train", "--config", config, external=True)
    session.log(
        f"Your demo project is in {project}. Next: cd {project} && source .venv/bin/activate, "
        "then read its README.md (training, tests, CPU-only tips)."
    )


@nox.session(name="example-report", default=False)
def example_report(session: nox.Session) -> None:
    """Regenerate docs/content/comparing-experiments/ (not in `nox`): a 2 learning rates x 2 seeds
    sweep of a fresh bake's smoke config, and its report with plots."""
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-example-"))
    env = {**torch_install_env(scratch), "UV_COMPILE_BYTECODE": "1"}
    session.install("--group", "test", env=env)
    project = bake(session, scratch / "example")
    session.install(str(project), "matplotlib>=3.8", env=env)
    package = package_name(project)
    published = TEMPLATE_ROOT / "docs" / "content" / "comparing-experiments"
    session.chdir(project)
    root = "outputs/smoke/sweep"  # relative: the report names runs as a user would see them
    session.run(
        "python", "-m", f"{package}.sweep", "--config", "configs/smoke.yaml", "--seeds", "0,1",
        "--grid", "optim.lr=0.001,0.003", "--output-root", root, "--jobs", "2",
    )  # fmt: skip
    session.run("python", "-m", f"{package}.report", root, "--out", str(published))
    shutil.rmtree(scratch)
