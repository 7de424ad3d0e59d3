from __future__ import annotations

import pytest

from tests.git_identity import GIT_IDENTITY


def set_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in GIT_IDENTITY.items():
        monkeypatch.setenv(variable, value)


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    set_git_identity(monkeypatch)
