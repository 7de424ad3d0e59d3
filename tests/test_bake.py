"""The default bake: exact file set, no template leftovers, valid configs, a clean first commit."""

from __future__ import annotations

import ast
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.baking import bake, leftover_template_syntax, text_files
from tests.combinations import DEFAULT_FILES
from tests.helpers import generated_files


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def default_project(baked_row: Callable[[str], Path]) -> Path:
    return baked_row("default")


def test_default_bake_has_exactly_the_expected_files(default_project: Path) -> None:
    assert default_project.name == "my-torch-project"
    assert generated_files(default_project) == DEFAULT_FILES


def test_no_template_syntax_is_left(default_project: Path) -> None:
    assert leftover_template_syntax(default_project) == []


def test_leftover_check_catches_syntax_but_not_github_expressions(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("name: {{ cookiecutter.project_name }}\n")
    (tmp_path / "ok.yml").write_text("run: echo ${{ github.sha }}\n")
    assert leftover_template_syntax(tmp_path) == [
        "bad.txt:1: name: {{ cookiecutter.project_name }}"
    ]


def test_every_python_file_parses(default_project: Path) -> None:
    for path in text_files(default_project):
        if path.suffix == ".py":
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_pyproject_and_configs_parse(default_project: Path) -> None:
    pyproject = tomllib.loads((default_project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "my-torch-project"
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert "torch>=2.6" in pyproject["project"]["dependencies"]
    for config in (default_project / "configs").glob("*.yaml"):
        assert isinstance(yaml.safe_load(config.read_text(encoding="utf-8")), dict)


def test_first_commit_tracks_every_generated_file(default_project: Path) -> None:
    assert git(default_project, "branch", "--show-current").strip() == "main"
    assert git(default_project, "log", "--format=%s").strip() == (
        "chore: generate project from torch-template"
    )
    assert set(git(default_project, "ls-files").split()) == DEFAULT_FILES
    assert git(default_project, "status", "--porcelain") == ""
    assert git(default_project, "config", "commit.template").strip() == ".gitmessage"


def test_setup_script_is_executable(default_project: Path) -> None:
    assert (default_project / "scripts" / "setup_dev.sh").stat().st_mode & 0o111


@pytest.mark.parametrize("license_name", ["MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary"])
def test_each_license_names_the_author(tmp_path: Path, license_name: str) -> None:
    project = bake(tmp_path, license=license_name, author_name="Ada Lovelace")
    text = (project / "LICENSE").read_text(encoding="utf-8")
    assert "Ada Lovelace" in text
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    expected = "LicenseRef-Proprietary" if license_name == "Proprietary" else license_name
    assert pyproject["project"]["license"] == expected


def test_mnist_option_sets_the_default_dataset(baked_row: Callable[[str], Path]) -> None:
    project = baked_row("dataset-mnist")
    default = yaml.safe_load((project / "configs" / "default.yaml").read_text(encoding="utf-8"))
    assert default["data"]["name"] == "mnist"
    smoke = yaml.safe_load((project / "configs" / "smoke.yaml").read_text(encoding="utf-8"))
    assert smoke["data"]["name"] == "synthetic"  # the smoke run never needs a download


def test_unknown_override_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="projct_name"):
        bake(tmp_path, projct_name="typo")


def test_baking_twice_over_the_same_directory_adds_no_commit(tmp_path: Path) -> None:
    from cookiecutter.main import cookiecutter

    from tests.baking import TEMPLATE_ROOT

    project = bake(tmp_path)
    cookiecutter(
        str(TEMPLATE_ROOT), no_input=True, output_dir=str(tmp_path), overwrite_if_exists=True
    )
    assert len(git(project, "log", "--format=%H").split()) == 1


@pytest.mark.parametrize("ignored", [True, False], ids=["ignored-there", "tracked-there"])
def test_inside_another_repository_a_bake_gets_its_own_only_where_that_one_ignores_it(
    tmp_path: Path, ignored: bool
) -> None:
    """A folder the outer repository tracks is the outer one's to commit; an ignored one (the
    template's ./demo, where `nox -s demo` bakes) is no part of it: without a repository of its
    own, the project's hooks, commits and tags would land in the outer one."""
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "--quiet")
    (outer / ".gitignore").write_text("/demo/\n", encoding="utf-8")
    project = bake(outer / ("demo" if ignored else "packages"))
    if ignored:
        assert Path(git(project, "rev-parse", "--show-toplevel").strip()) == project.resolve()
        assert git(project, "log", "--format=%s").strip() == (
            "chore: generate project from torch-template"
        )
        assert git(project, "status", "--porcelain") == ""
    else:
        assert not (project / ".git").exists()
        assert Path(git(project, "rev-parse", "--show-toplevel").strip()) == outer.resolve()


@pytest.mark.parametrize(
    ("row", "dependency"),
    [
        ("default", None),
        ("tracking-tensorboard", "tensorboard"),
        ("tracking-wandb", "wandb"),
        ("tracking-mlflow", "mlflow-skinny"),
    ],
)
def test_tracking_option_adds_only_its_dependency(
    baked_row: Callable[[str], Path], row: str, dependency: str | None
) -> None:
    project = baked_row(row)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    names = {entry.split(">")[0] for entry in pyproject["project"]["dependencies"]}
    base = {"torch", "numpy", "pyyaml", "pillow", "fsspec", "safetensors"}
    base |= {"prometheus-client", "nvidia-ml-py"}
    assert names - base == ({dependency} if dependency else set())
