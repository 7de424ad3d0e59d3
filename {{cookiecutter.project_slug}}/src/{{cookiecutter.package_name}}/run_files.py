"""What a run folder holds: the name of every file in it, and the functions that read them.

    run.json          what produced the run and how it ended (manifest.py writes it)
    config.yaml       the full config it ran with
    metrics.jsonl     one JSON object per optimizer step and per evaluation (sinks.py)
    checkpoints/      last.pt (to resume) and best.pt (the lowest val_loss) (checkpoint.py)
    report/           what `report` writes when given this folder
    train.log         a sweep's record of each run's console output
    baseline-check.png  what `baseline check` drew when this run differed from the baseline

Every module that needs one of these paths asks a `RunFiles`; none spells a name itself, so a
new file, or a run folder kept somewhere else, is a change here and in its one writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import RunUnreadableError

MANIFEST = "run.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
REPORT = "report"
TRAIN_LOG = "train.log"
BASELINE_PLOT = "baseline-check.png"
# Any of these means a run has written here: a new run must not touch them.
RUN_MARKERS = (MANIFEST, METRICS, CONFIG, CHECKPOINTS)


@dataclass(frozen=True)
class RunFiles:
    """The files of the run folder `root` (which need not exist yet)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def train_log(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def baseline_plot(self) -> Path:
        return self.root / BASELINE_PLOT

    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_MARKERS)

    def owns(self, checkpoint: Path) -> bool:
        """`checkpoint` is one of this run's checkpoints."""
        return checkpoint.resolve().parent == self.checkpoints.resolve()

    def read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunUnreadableError(f"{self.manifest} unreadable ({error})") from None
        if not isinstance(manifest, dict):
            raise RunUnreadableError(f"{self.manifest} holds no JSON object")
        return manifest

    def status(self) -> str | None:
        """run.json's status, or None before a run has written one (or when it is unreadable)."""
        try:
            status = self.read_manifest().get("status")
        except RunUnreadableError:
            return None
        return str(status) if status is not None else None

    def read_config(self) -> dict[str, Any]:
        try:
            config = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise RunUnreadableError(f"{self.config} unreadable ({error})") from None
        if not isinstance(config, dict):
            raise RunUnreadableError(f"{self.config} holds no mapping of keys")
        return config

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl, in order ([] before the first). A last line cut short
        by a kill is left out: `resume=auto` redoes that step."""
        if not self.metrics.is_file():
            return []
        text = self.metrics.read_text(encoding="utf-8")
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines):  # no newline after it: the write was cut short
                    break
                raise RunUnreadableError(f"{self.metrics} line {number} is not JSON") from None
        return records

    def step_losses(self) -> list[float]:
        """The loss of every optimizer step, in order."""
        return [float(record["loss"]) for record in self.read_metrics() if "loss" in record]


@dataclass(frozen=True)
class RunFolder:
    """The folder a run was given (run_folder.py chooses it), and where it starts from."""

    path: Path  # where the run writes: the run folder, or the staging copy of a remote one
    resume: Path | None  # the checkpoint to continue from; None starts a new run
    created: bool = False  # made for this run (it is removed again if the run never wrote)
    note: str | None = None  # what the run should say about this choice, if anything
    uri: str | None = None  # the remote folder (storage.py) `path` is uploaded to, if any

    @property
    def location(self) -> str:
        """Where the run lives, as the user named it: the URL, or the local folder."""
        return self.uri or str(self.path)


def run_of_checkpoint(checkpoint: Path) -> RunFiles | None:
    """The run whose `checkpoints/` folder holds `checkpoint`, or None for a file elsewhere."""
    run = RunFiles(checkpoint.parent.parent)
    inside = checkpoint.parent.name == CHECKPOINTS and run.manifest.is_file()
    return run if inside else None


def other_checkpoint(checkpoint: Path) -> Path | None:
    """best.pt for last.pt and the other way round: a run's second chance; None for other files."""
    if checkpoint.name not in (LAST, BEST):
        return None
    return checkpoint.with_name(LAST if checkpoint.name == BEST else BEST)


def runs_below(folders: Sequence[Path]) -> list[RunFiles]:
    """Every run folder (one with run.json) at or below each of `folders`, each once, in order."""
    found: list[RunFiles] = []
    for folder in folders:
        for manifest in sorted(folder.rglob(MANIFEST)):
            run = RunFiles(manifest.parent)
            if run not in found:
                found.append(run)
    return found


def resumable_runs(runs_root: Path) -> Iterator[RunFiles]:
    """The runs directly below `runs_root` (any folder name: a SLURM job's `slurm-<id>` too) that
    saved a `last.pt`."""
    if runs_root.is_dir():
        for last in runs_root.glob(f"*/{CHECKPOINTS}/{LAST}"):
            yield RunFiles(last.parent.parent)
