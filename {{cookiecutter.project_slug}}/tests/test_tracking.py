"""The tracking backend chosen at bake time writes where its README section says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import ConfigError, load_config
from {{ cookiecutter.package_name }}.train import run

# Where each backend leaves its records inside output_dir.
OUTPUT_FOLDER = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}
IMPORT_NAME = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


@pytest.mark.parametrize("backend", ["tensorboard", "wandb", "mlflow"])
def test_backend_writes_offline_or_explains_how_to_install(
    smoke_config: Path, tmp_path: Path, backend: str
) -> None:
    config = load_config(
        smoke_config, [f"output_dir={tmp_path}", "train.epochs=2", f"tracking.backend={backend}"]
    )
    if importlib.util.find_spec(IMPORT_NAME[backend]) is None:
        with pytest.raises(ConfigError, match="uv pip install"):
            run(config)
        assert list(tmp_path.iterdir()) == []  # refused before anything was written
        return
    run(config)
    folder = tmp_path / OUTPUT_FOLDER[backend]
    assert folder.is_dir()
    assert any(path.is_file() for path in folder.rglob("*"))


def test_default_backend_is_the_one_chosen_at_bake_time(smoke_config: Path) -> None:
    chosen = "{{ cookiecutter.tracking }}"
    assert load_config().tracking.backend == chosen
    assert load_config(smoke_config.with_name("default.yaml")).tracking.backend == chosen
    if chosen != "none":  # its package is a dependency, so it must be importable
        assert importlib.util.find_spec(IMPORT_NAME[chosen]) is not None
