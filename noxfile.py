"""The template's checks. `nox` runs lint, tests, docs, bench-tiny, combinations and smoke(...);
`nox -s demo` bakes a project to try, `nox -s bench` measures it.

Every session bakes through tests/baking.py and installs torch only from where
tests/torch_source.py says (a local CPU wheel, or the PyTorch CPU index), never a CUDA build.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import shutil
import subprocess
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
    SMOKE_TESTS,
    TRACKING_TESTS,
    as_answers,
    same_python_together,
)
from tests.git_identity import GIT_IDENTITY  # noqa: E402
from tests.torch_source import torch_install_env  # noqa: E402

nox.needs_version = ">=2025.5"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests", "docs", "bench-tiny", "combinations", "smoke"]

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


def write_bytecode(session: nox.Session) -> None:
    """Python writes bytecode for what it imports into the session's environment, not the work
    tree: for the sessions that start many Python processes on one environment (bakes, hooks,
    cruft, git hooks). Where bytecode writing is off (PYTHONDONTWRITEBYTECODE, set on some
    machines and CIs), each of those processes would compile every module it imports again;
    with the prefix, each module is compiled once per environment (the standard library's too,
    whose own bytecode Python then ignores). On a machine that sets the variable this took the
    tests session from 208 to 194 CPU-s and combinations from 261 to 245."""
    session.env["PYTHONDONTWRITEBYTECODE"] = ""  # empty: off, as if unset
    session.env["PYTHONPYCACHEPREFIX"] = str(Path(session.virtualenv.location, "bytecode"))


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff and mypy (strict) over the hooks, tests and this file; shellcheck, tests/*.sh."""
    session.install("--group", "lint")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("mypy", *LINTED)
    session.run("shellcheck", *(str(script) for script in sorted(Path("tests").glob("*.sh"))))


@nox.session
def tests(session: nox.Session) -> None:
    """pytest over tests/: bakes, hook rejections, generated-file checks."""
    write_bytecode(session)
    session.install("--group", "test")
    # One worker per core, each test module on one worker (its module fixtures set up once):
    # the tests wait on one child process at a time (cookiecutter, git, cruft, linters).
    session.run("pytest", "-n", "auto", "--dist", "loadfile", *session.posargs)


@nox.session
@nox.parametrize("combination", list(SMOKE_COMBINATIONS), ids=list(SMOKE_COMBINATIONS))
def smoke(session: nox.Session, combination: str) -> None:
    """Bake one combination and run its own `nox` (lock, lint, typecheck, tests, smoke-train);
    the other rows, what their install changes (see below)."""
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
    locked = ["uv.lock"]
    if combination == FULL_SUITE:
        session.run("nox", "--non-interactive", "-s", "baseline", env=env)
        locked.append("baselines/smoke.json")
    session.run("git", "add", *locked, external=True)
    session.run(
        "git", "commit", "--quiet", "-m", "build: lock the environment", external=True,
        env=GIT_IDENTITY,
    )  # fmt: skip
    if combination == FULL_SUITE:
        session.run("nox", "--non-interactive", env=env)
    else:
        # lint and typecheck (pre-commit, mypy included) already ran on this row in the
        # combinations session; here what only an install of the row shows: its lock, and the
        # tests that read what the row changes. Every other test, and the smoke-train with its
        # baseline, trains configs/smoke.yaml, whose backend is `none`, so it would repeat the
        # default row to the bit (the tracking tests train with the row's backend).
        session.run("nox", "--non-interactive", "-s", "lock", env=env)
        row_tests = SMOKE_TESTS.get(combination, TRACKING_TESTS)
        # In one process (-n 0): each pytest-xdist worker, and its controller, imports torch
        # through conftest.py (~4 s of CPU each) for a few seconds of tests.
        session.run(
            "nox", "--non-interactive", "-s", "tests", "--", "-n", "0", *row_tests, env=env
        )  # fmt: skip
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
    write_bytecode(session)
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-combinations-"))
    env = torch_install_env(scratch)
    session.install("--group", "test", env=env)
    # One environment serves every row: the default project's dependencies and hook tools, plus
    # nbstripout for the notebook rows. mypy reads each project's source through mypy_path.
    reference = bake(session, scratch / "reference")
    session.install(str(reference), "--group", f"{reference}/pyproject.toml:hooks", env=env)
    session.install("nbstripout>=0.8", env=env)
    first, *rest = session.posargs or list(CHECK_COMBINATIONS)
    # The first row alone fills mypy's cache for torch and the other packages (most of mypy's
    # time); every lane then starts from a copy of it. Rows are independent processes, so the
    # lanes use every core that a single row's mypy would leave idle.
    failures = check_rows(session, scratch, [first], env, lanes=1)
    lanes = max(1, min(len(same_python_together(rest)), os.cpu_count() or 1))
    warm_cache = scratch / "mypy-cache-0"
    for lane in range(1, lanes if warm_cache.is_dir() else 0):  # none if the first row failed
        shutil.copytree(warm_cache, scratch / f"mypy-cache-{lane}")
    failures += check_rows(session, scratch, rest, env, lanes)
    if failures:
        session.error(f"rows failed: {', '.join(failures)} (output above)")
    shutil.rmtree(scratch)


def check_rows(
    session: nox.Session, scratch: Path, rows: list[str], env: dict[str, str], lanes: int
) -> list[str]:
    """Bake each row, run its pre-commit hooks and import its package, `lanes` rows at a time;
    returns the rows that failed, whose output is printed."""
    session_bin = str(session.bin)
    # As session.run builds it: the session's variables (None unsets one), then the call's.
    base = dict(os.environ)
    for name, value in session.env.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    base.update(env, PATH=f"{session_bin}{os.pathsep}{os.environ['PATH']}")
    base["VIRTUAL_ENV"] = str(Path(session_bin).parent)
    free_lanes: queue.SimpleQueue[int] = queue.SimpleQueue()
    for lane in range(lanes):
        free_lanes.put(lane)

    def check(job: list[str]) -> list[tuple[str, str | None]]:
        lane = free_lanes.get()
        try:
            lane_env = {**base, "MYPY_CACHE_DIR": str(scratch / f"mypy-cache-{lane}")}
            return [(row, check_row(scratch / row, row, lane_env)) for row in job]
        finally:
            free_lanes.put(lane)

    failures = []
    with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
        for results in pool.map(check, same_python_together(rows)):
            for row, failure in results:
                if failure is None:
                    session.log(f"[{row}] pre-commit and import passed")
                else:
                    print(failure)
                    failures.append(row)
    return failures


def check_row(output_dir: Path, row: str, env: dict[str, str]) -> str | None:
    """None if the row's project passes its hooks and imports; else the failing output."""

    def failed(command: list[str], cwd: Path, **extra: str) -> str | None:
        result = subprocess.run(
            command, cwd=cwd, env={**env, **GIT_IDENTITY, **extra}, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return None
        return f"[{row}] {' '.join(command)} failed\n{result.stdout}\n{result.stderr}"

    bake_command = ["python", "-m", "tests.baking", str(output_dir), *as_answers(row)]
    if failure := failed(bake_command, TEMPLATE_ROOT):
        return failure
    [project] = output_dir.iterdir()
    pre_commit = ["pre-commit", "run", "--all-files", "--show-diff-on-failure"]
    import_package = ["python", "-c", f"import {package_name(project)}"]
    return failed(pre_commit, project) or failed(import_package, project, PYTHONPATH="src")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not in `nox`): bake, bake->green, smoke CLI, trainer vs hand loop/Lightning,
    and input pipelines over an image folder (tests/benchmark_data.py).

    Results go to docs/content/benchmarks/ (or the folder given after --).
    """
    output_dir = Path(session.posargs[0] if session.posargs else "docs/content/benchmarks")
    # Timings as users see them: bytecode written and compiled at install.
    run_benchmark(session, output_dir.resolve(), {"UV_COMPILE_BYTECODE": "1"})


@nox.session(name="bench-tiny")
def bench_tiny(session: nox.Session) -> None:
    """Every step of `nox -s bench` at its smallest (tests/benchmark.py's TINY), into a scratch
    folder, so that a change that breaks the bench breaks `nox`. Its figures mean nothing."""
    # Outside this repository (not session.create_tmp(), which also points TMPDIR into .nox/):
    # a project baked inside it would have no git repository of its own to commit to.
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-bench-tiny-"))
    run_benchmark(session, scratch / "benchmarks", {}, "--tiny")
    shutil.rmtree(scratch)


def run_benchmark(
    session: nox.Session, output_dir: Path, install_env: dict[str, str], *options: str
) -> None:
    """Install a fresh bake with Lightning and matplotlib, then run tests/benchmark.py on it."""
    scratch = Path(tempfile.mkdtemp(prefix="torch-template-bench-"))
    # Bytecode written, as in a user's shell, so each Python start does not recompile torch.
    env = {**torch_install_env(scratch), **install_env, "PYTHONDONTWRITEBYTECODE": ""}
    session.install("--group", "test", env=env)
    project = bake(session, scratch / "reference")
    # moto's S3 server and s3fs: the remote run folder's step time (tests/benchmark_storage.py).
    session.install(
        f"{project}[s3]", "lightning>=2.4", "matplotlib>=3.8", "moto[server]>=5.0", env=env
    )
    session.run("python", "-m", "tests.benchmark", str(project), str(output_dir), *options, env=env)
    if "--tiny" in options:  # the GPU bench's code too, on this CPU: its full run needs a GPU
        gpu_bench = ["python", "-m", "tests.benchmark_gpu", str(project), str(output_dir), "--tiny"]
        session.run(*gpu_bench, env=env)
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
