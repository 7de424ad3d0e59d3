"""Experiment tracking besides metrics.jsonl: TensorBoard, Weights & Biases or MLflow.

All three work offline by default, so a run never fails for want of a network or an account:
- tensorboard writes event files to output_dir/tensorboard (`tensorboard --logdir outputs`);
- wandb runs in offline mode unless WANDB_MODE says otherwise (`wandb sync` uploads later);
- mlflow logs to output_dir/mlruns unless MLFLOW_TRACKING_URI names a server.
A tracker's run id is saved in every checkpoint, so a resumed run (`resume=auto`, a SLURM requeue)
continues the same W&B or MLflow run instead of opening a second one. Each tracker is a sink
(sinks.py) that takes the summary records: the last step of each host sync, every evaluation.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Protocol

from .config import Config, to_dict
from .errors import MissingPackageError
from .sinks import Record, Sink

PACKAGE_FOR_BACKEND = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny"}
# Read once, at import: mlflow.set_tracking_uri() exports the variable itself, so reading it
# later would send every later run of this process to the first run's folder.
USER_MLFLOW_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


class Tracker(Sink, Protocol):
    @property
    def run_id(self) -> str | None:
        """The tracker's own id of this run (saved in checkpoints); None where there is none."""


class NoTracker:
    run_id = None

    def log(self, record: Record) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.run_id = None  # a resumed run writes on into the same folder

    def log(self, record: Record) -> None:
        if record.summary:
            for name, value in record.values.items():
                self.writer.add_scalar(name, value, record.step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, config: Config, output_dir: Path, resume_run_id: str | None) -> None:
        wandb: Any = importlib.import_module("wandb")
        self.run = wandb.init(
            project=config.tracking.project,
            dir=str(output_dir),
            config=to_dict(config),
            mode=os.environ.get("WANDB_MODE", "offline"),
            id=resume_run_id,
            resume="allow" if resume_run_id else None,
        )
        self.run_id: str | None = str(self.run.id)

    def log(self, record: Record) -> None:
        if record.summary:
            self.run.log(record.values, step=record.step)

    def flush(self) -> None:
        pass  # wandb writes from its own process

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, config: Config, output_dir: Path, resume_run_id: str | None) -> None:
        self.mlflow: Any = importlib.import_module("mlflow")
        if USER_MLFLOW_TRACKING_URI:
            self.mlflow.set_tracking_uri(USER_MLFLOW_TRACKING_URI)
        else:
            # A local folder needs no server; MLflow 3 asks for this opt-in to use one.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.mlflow.set_tracking_uri((output_dir / "mlruns").resolve().as_uri())
        self.mlflow.set_experiment(config.tracking.project)
        run = self.mlflow.start_run(run_id=resume_run_id)
        self.run_id: str | None = str(run.info.run_id)
        if resume_run_id is None:
            # MLflow refuses to change a logged parameter, and a resume may change train.epochs.
            self.mlflow.log_params(flatten(to_dict(config)))

    def log(self, record: Record) -> None:
        if record.summary:
            self.mlflow.log_metrics(record.values, step=record.step)

    def flush(self) -> None:
        pass  # each call above is written at once

    def close(self) -> None:
        self.mlflow.end_run()


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def open_tracker(
    config: Config, output_dir: Path, enabled: bool, resume_run_id: str | None = None
) -> Tracker:
    """The tracker `tracking.backend` names; only the main process (`enabled`) tracks.
    `resume_run_id` (saved in the checkpoint a run resumes from) continues that tracker run."""
    backend = config.tracking.backend
    if not enabled or backend == "none":
        return NoTracker()
    try:
        if backend == "tensorboard":
            return TensorBoardTracker(output_dir / "tensorboard")
        if backend == "wandb":
            return WandbTracker(config, output_dir, resume_run_id)
        return MlflowTracker(config, output_dir, resume_run_id)
    except ImportError:
        package = PACKAGE_FOR_BACKEND[backend]
        raise MissingPackageError(
            f"tracking.backend={backend} needs the {package} package; install it with "
            f"`uv pip install {package}` or use tracking.backend=none"
        ) from None
