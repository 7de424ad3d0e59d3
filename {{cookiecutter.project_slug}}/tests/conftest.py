from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def smoke_config() -> Path:
    return PROJECT_ROOT / "configs" / "smoke.yaml"
