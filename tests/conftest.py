from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bakes commit with a fixed identity, whatever the machine's git config holds."""
    for variable in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{variable}_NAME", "Template Tests")
        monkeypatch.setenv(f"GIT_{variable}_EMAIL", "tests@example.com")
