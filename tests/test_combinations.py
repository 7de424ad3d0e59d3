"""Every row of the combinations table bakes into exactly the files its options call for."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.baking import leftover_template_syntax, package_name, text_files
from tests.combinations import (
    CHECK_COMBINATIONS,
    SMOKE_COMBINATIONS,
    expected_files,
    row_answers,
    same_python_together,
)
from tests.helpers import generated_files


def test_smoke_rows_are_check_rows_too() -> None:
    assert set(SMOKE_COMBINATIONS.values()) <= set(CHECK_COMBINATIONS)
    assert "default" in SMOKE_COMBINATIONS


@pytest.mark.parametrize("row", list(CHECK_COMBINATIONS))
def test_row_bakes_exactly_its_files_with_no_template_leftovers(
    baked_row: Callable[[str], Path], row: str
) -> None:
    answers = row_answers(row)
    project = baked_row(row)
    assert generated_files(project) == expected_files(answers, package_name(project))
    assert leftover_template_syntax(project) == []
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    if "description" in answers:
        assert pyproject["project"]["description"] == answers["description"]
    for path in text_files(project):
        if path.suffix in {".yml", ".yaml"}:
            assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path
    assert len(project.name) <= 64
    # Notebooks are committed with their outputs stripped.
    hooks = (project / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert ("nbstripout" in hooks) == (answers.get("include_notebooks") is True)


def test_the_rows_of_one_python_version_are_one_job_of_the_combinations_lanes() -> None:
    jobs = same_python_together(list(CHECK_COMBINATIONS))
    assert sorted(row for job in jobs for row in job) == sorted(CHECK_COMBINATIONS)
    versions = [{CHECK_COMBINATIONS[row].get("python_version") for row in job} for job in jobs]
    assert all(len(of_job) == 1 for of_job in versions)  # one version a job
    chosen = [version for (version,) in versions if version is not None]
    assert len(chosen) == len(set(chosen))  # and a job a version
    assert all(len(job) == 1 for job, (version,) in zip(jobs, versions, strict=True) if not version)
    assert ["python-3.13", "notebooks-python-3.13-no-docker"] in jobs
