"""The tracking backend chosen at bake time writes where its README section says."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.train import run

if TYPE_CHECKING:
    from helpers import TrainSmoke

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
    chosen = chosen_backend()
    assert load_config().tracking.backend == chosen
    assert load_config(smoke_config.with_name("default.yaml")).tracking.backend == chosen
    if chosen != "none":  # its package is a dependency, so it must be importable
        assert importlib.util.find_spec(IMPORT_NAME[chosen]) is not None


@pytest.mark.parametrize("backend", ["wandb", "mlflow"])
def test_a_resumed_run_continues_the_same_tracker_run(
    train_smoke: TrainSmoke, backend: str
) -> None:
    pytest.importorskip(IMPORT_NAME[backend], reason=f"this bake tracks with {chosen_backend()}")
    tracking = f"tracking.backend={backend}"
    output_dir = train_smoke("run", "train.epochs=1", tracking)
    run_id = load_checkpoint(output_dir / "checkpoints" / "last.pt")["tracker_run_id"]
    assert run_id
    train_smoke("run", "train.epochs=2", "resume=auto", tracking)
    assert load_checkpoint(output_dir / "checkpoints" / "last.pt")["tracker_run_id"] == run_id
    assert tracker_run_ids(output_dir, backend) == [run_id]


def tracker_run_ids(output_dir: Path, backend: str) -> list[str]:
    """The run ids the tracker itself recorded, read from its offline files."""
    if backend == "wandb":
        # Each offline segment is a folder offline-run-<time>-<run id>[-<n>] holding
        # run-<run id>.wandb; `wandb sync` uploads each segment into the run of that id.
        logs = output_dir.glob("wandb/offline-run-*/run-*.wandb")
        ids = [log.stem.removeprefix("run-") for log in logs]
        assert len(ids) == 2  # the first segment and the resumed one
        return sorted(set(ids))
    # Imported by name: only the mlflow bake has the package (and its types).
    mlflow_tracking: Any = importlib.import_module("mlflow.tracking")
    client = mlflow_tracking.MlflowClient(tracking_uri=(output_dir / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("{{ cookiecutter.project_slug }}")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    steps = [metric.step for metric in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert max(steps) == 32  # both segments' steps, in the one run
    return [run.info.run_id for run in runs]


def chosen_backend() -> str:
    return "{{ cookiecutter.tracking }}"
