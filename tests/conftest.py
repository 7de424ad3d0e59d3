from __future__ import annotations

import pytest

# Bakes commit with this identity, whatever the machine's git config holds (or lacks).
GIT_IDENTITY = {
    f"GIT_{role}_{field}": value
    for role in ("AUTHOR", "COMMITTER")
    for field, value in (("NAME", "Template Tests"), ("EMAIL", "tests@example.com"))
}


def set_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in GIT_IDENTITY.items():
        monkeypatch.setenv(variable, value)


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    set_git_identity(monkeypatch)
