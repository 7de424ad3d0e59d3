"""run.json's environment: every installed package with its version, uv.lock's sha256, and the
packages a run needs whose versions differ from the lock (which the health check reports)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.health_check import main as health_check
from {{ cookiecutter.package_name }}.manifest import (
    describe_environment,
    normalize,
    without_artifacts,
)

# Reading uv.lock needs tomllib (Python 3.11+): on 3.10, run.json's lock_differences is None.
COMPARES_WITH_LOCK = sys.version_info >= (3, 11)
# The layout uv writes: a project whose extra needs pyyaml and whose dev group needs pytest.
LOCK = """version = 1
revision = 3
requires-python = ">=3.10"

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "numpy" },
]

[package.optional-dependencies]
export = [
    { name = "pyyaml" },
]

[package.dev-dependencies]
dev = [
    { name = "pytest" },
]

[[package]]
name = "numpy"
version = "NUMPY_VERSION"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pytest"
version = "0.0.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pyyaml"
version = "PYYAML_VERSION"
source = { registry = "https://pypi.org/simple" }
"""


def write_lock(folder: Path, numpy: str, pyyaml: str) -> None:
    text = LOCK.replace("NUMPY_VERSION", numpy).replace("PYYAML_VERSION", pyyaml)
    (folder / "uv.lock").write_text(text, encoding="utf-8")


def test_run_json_lists_every_installed_package_and_the_lock_it_matches(
    project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project_root)
    environment = describe_environment()
    packages = environment["packages"]
    distributions = importlib.metadata.distributions()
    assert set(packages) == {normalize(each.metadata["Name"]) for each in distributions}
    for name in ("torch", "numpy", "pytest", "{{ cookiecutter.project_slug }}"):
        assert packages[name] == importlib.metadata.version(name), name
    lock = project_root / "uv.lock"
    assert lock.is_file(), "no uv.lock: run bash scripts/setup_dev.sh, then commit uv.lock"
    assert environment["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    # nox and scripts/setup_dev.sh install from the lock, so the packages a run needs match it.
    assert environment["lock_differences"] == ([] if COMPARES_WITH_LOCK else None)


@pytest.mark.skipif(not COMPARES_WITH_LOCK, reason="comparing with uv.lock needs Python 3.11+")
def test_the_lock_is_read_whole_but_for_its_download_lists(project_root: Path) -> None:
    """run.json parses uv.lock without its sdist and wheels entries, for speed: everything else
    must come out as a full parse gives it."""
    tomllib = pytest.importorskip("tomllib")  # by name: type checking for Python 3.10 passes

    text = (project_root / "uv.lock").read_text(encoding="utf-8")
    full = tomllib.loads(text)
    assert any("wheels" in package for package in full["package"])  # this lock has them
    for package in full["package"]:
        package.pop("sdist", None)
        package.pop("wheels", None)
    assert tomllib.loads(without_artifacts(text)) == full


@pytest.mark.skipif(not COMPARES_WITH_LOCK, reason="comparing with uv.lock needs Python 3.11+")
def test_health_check_says_whether_the_packages_match_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    numpy, pyyaml = importlib.metadata.version("numpy"), importlib.metadata.version("pyyaml")
    write_lock(tmp_path, numpy, pyyaml)
    assert health_check([]) == 0
    assert "packages: as uv.lock (sha256 " in capsys.readouterr().out  # pytest 0.0.1: a dev tool

    write_lock(tmp_path, numpy="1.0", pyyaml="1.0")
    assert health_check([]) == 0  # a different environment can still train; it is reported
    output = capsys.readouterr().out
    assert "packages differ from uv.lock" in output
    assert f"numpy {numpy} installed, uv.lock has 1.0" in output
    assert f"pyyaml {pyyaml} installed, uv.lock has 1.0" in output  # needed by an extra
    assert "pytest" not in output
