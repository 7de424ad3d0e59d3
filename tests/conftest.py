"""Fixtures of the template's tests (helpers they share are in tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.baking import bake
from tests.combinations import row_answers
from tests.helpers import set_git_identity


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    set_git_identity(monkeypatch)


@pytest.fixture(scope="session")
def baked_row(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`baked_row(row)`: the project of one row of tests/combinations.py, baked once per session
    and shared by every test that asks for it, so those tests only read it."""
    projects: dict[str, Path] = {}

    def baked(row: str) -> Path:
        if row not in projects:
            with pytest.MonkeyPatch.context() as patch:  # session scope: no autouse fixture
                set_git_identity(patch)
                projects[row] = bake(tmp_path_factory.mktemp(row), **row_answers(row))
        return projects[row]

    return baked
