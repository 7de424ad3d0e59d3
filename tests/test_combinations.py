"""Every row of the combinations table bakes into exactly the files its options call for."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from tests.baking import bake, leftover_template_syntax, package_name, parse_answer, text_files
from tests.combinations import CHECK_COMBINATIONS, SMOKE_COMBINATIONS
from tests.gitlab_platform import GITLAB_FILES
from tests.test_bake import DEFAULT_FILES, generated_files

OPTION_FILES = {
    "docker": {".dockerignore", "Dockerfile", ".github/workflows/docker.yml",
               "scripts/start_jupyter.sh"},
    "gpu_ci": {".github/workflows/gpu.yml", ".github/workflows/train-on-label.yml"},
}  # fmt: skip
NOTEBOOK = "notebooks/01_explore_data.ipynb"


def expected_files(answers: dict[str, str | bool], project: Path) -> set[str]:
    package = package_name(project)
    files = {name.replace("my_torch_project", package) for name in DEFAULT_FILES}
    for option, paths in OPTION_FILES.items():
        if answers.get(option) is False:
            files -= paths
    if answers.get("include_notebooks") is True:
        files.add(NOTEBOOK)
    if answers.get("ci_platform") == "gitlab":
        files = {name for name in files if not name.startswith(".github/")} | GITLAB_FILES
    return files


def test_smoke_rows_are_check_rows_too() -> None:
    assert set(SMOKE_COMBINATIONS.values()) <= set(CHECK_COMBINATIONS)
    assert "default" in SMOKE_COMBINATIONS


@pytest.mark.parametrize("row", list(CHECK_COMBINATIONS))
def test_row_bakes_exactly_its_files_with_no_template_leftovers(tmp_path: Path, row: str) -> None:
    answers = {key: parse_answer(value) for key, value in CHECK_COMBINATIONS[row].items()}
    project = bake(tmp_path, **answers)
    assert generated_files(project) == expected_files(answers, project)
    assert leftover_template_syntax(project) == []
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    if "description" in answers:
        assert pyproject["project"]["description"] == answers["description"]
    for path in text_files(project):
        if path.suffix in {".yml", ".yaml"}:
            assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path
    assert len(project.name) <= 64
