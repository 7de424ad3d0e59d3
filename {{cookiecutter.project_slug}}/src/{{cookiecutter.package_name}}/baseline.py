"""Hold training to a stored result: `python -m <package>.baseline update|check --config FILE`.

`update` trains the config and writes baselines/<config name>.json: every optimizer step's
training loss, every evaluation's metrics, the config, and the environment that made them (torch,
device, platform, Python, CPU threads). `check` trains the same config again and compares:

- in the same environment every number must be identical, as training is bitwise repeatable
  there (reproducibility.py);
- in another one (CI's runner against a laptop's baseline) each number may differ by at most
  the TOLERANCE below, measured, not guessed (see its comment).

A failure prints the first differing numbers in a short table, draws the baseline against this
run into the run folder (with matplotlib) and says how to accept an intended change: `update`,
then commit the file. The first `bash scripts/setup_dev.sh` makes baselines/smoke.json; the nox
`smoke` session, and so CI, runs `check`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .atomic_files import write_json
from .config import Config, to_dict
from .distributed import device_type
from .errors import BaselineMismatchError, ConfigError, run_command
from .report import pyplot, save_figure
from .run_files import RunFiles
from .run_folder import new_run_folder
from .storage import local_path
from .tracking import flatten
from .train import load_training_config, run

BASELINES = Path("baselines")
FORMAT = 1
# Where a run writes and how it reports, not what it computes.
NOT_COMPARED = {
    "output_dir", "resume", "runs_root", "upload_wait_seconds", "train.metrics_port",
    "train.metrics_host",
}  # fmt: skip
EVALUATED = ("train_loss", "val_loss", "val_accuracy")
# Across environments: |now - baseline| <= TOLERANCE[name] for every step's loss and every
# evaluation's numbers. Measured on configs/smoke.yaml (48 steps, 3 evaluations, seed 0) in four
# CPU environments that round differently (1 and 2 threads, each with torch's AVX2 and its plain
# kernels, ATEN_CPU_CAPABILITY=default): step losses differed by at most 7.2e-7 (from step 2 on),
# validation losses by 6.6e-7, accuracies not at all. Against that, changing only the seed (8
# seeds, every pair) moved some step's loss by at least 0.26, validation loss by 0.041 and
# accuracy by 0.055 (14 of 256 samples). So: 1e-4 for losses (140 times the rounding seen, 2600
# times below a new seed) and one sample of the 256 for accuracy. A baseline made on a GPU and
# checked on a CPU is outside what was measured: make the baseline where CI runs (a CPU).
TOLERANCE = {"loss": 1e-4, "train_loss": 1e-4, "val_loss": 1e-4, "val_accuracy": 1 / 256}
SHOWN = 5  # differing numbers printed on failure


@dataclass(frozen=True)
class Difference:
    step: int
    name: str  # loss, or an evaluation's train_loss, val_loss, val_accuracy
    baseline: float
    now: float


def describe_environment(config: Config) -> dict[str, Any]:
    """What decides the rounding of every number training computes."""
    kind = device_type(config.train.device)
    device = torch.cuda.get_device_name() if kind == "cuda" else platform.processor() or "cpu"
    return {
        "torch": str(torch.__version__),
        "device": f"{kind}: {device}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }


def compared_config(config: Config) -> dict[str, Any]:
    return {k: v for k, v in flatten(to_dict(config)).items() if k not in NOT_COMPARED}


def train_and_read(config: Config) -> tuple[RunFiles, dict[str, Any]]:
    """Train `config` from scratch into a new run folder; its losses and evaluations."""
    # A run folder of its own (outputs/<name>/<time>), as a plain run gets, unless output_dir.
    folder = Path(config.output_dir or new_run_folder(local_path(config.runs_root) / config.name))
    config = dataclasses.replace(config, output_dir=str(folder), resume="")
    run(config)
    files = RunFiles(folder)
    losses, evaluations = [], []
    for record in files.read_metrics():
        if "loss" in record:
            losses.append(float(record["loss"]))
        if "val_loss" in record:
            names = ("step", *EVALUATED)
            evaluations.append({name: record[name] for name in names if name in record})
    return files, {"losses": losses, "evaluations": evaluations}


def make_command(action: str, config_file: Path) -> str:
    return f"python -m {__package__}.baseline {action} --config {config_file}"


def update(config_file: Path, overrides: Sequence[str]) -> Path:
    config = load_training_config(config_file, overrides)
    _, measured = train_and_read(config)
    path = baseline_path(config_file)
    write_json(path, {
        "format": FORMAT, "config_file": str(config_file), "config": compared_config(config),
        "environment": describe_environment(config), **measured,
    })  # fmt: skip
    print(f"baseline: wrote {path}; commit it, so that `check` (nox -s smoke, CI) holds to it")
    return path


def baseline_path(config_file: Path) -> Path:
    return BASELINES / f"{config_file.stem}.json"


def read_baseline(config_file: Path, config: Config) -> dict[str, Any]:
    """The stored baseline of `config_file`; refuses a missing, damaged or other config's one."""
    path = baseline_path(config_file)
    remake = f"`{make_command('update', config_file)}`, then commit {path}"
    if not path.is_file():
        raise ConfigError(f"no baseline {path} yet; make it with {remake}")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        shape_ok = (
            stored["format"] == FORMAT and isinstance(stored["config"], dict)
            and isinstance(stored["environment"], dict)
            and all(isinstance(value, float) for value in stored["losses"])
            and all(isinstance(entry["step"], int) for entry in stored["evaluations"])
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise ConfigError(f"{path} is damaged ({reason}); remake it with {remake}") from None
    if not shape_ok:
        reason = f"not a baseline of format {FORMAT}"
        raise ConfigError(f"{path} is damaged ({reason}); remake it with {remake}")
    here, there = compared_config(config), stored["config"]
    changed = sorted(key for key in here.keys() | there.keys() if there.get(key) != here.get(key))
    if changed:
        shown = ", ".join(
            f"{key} {there.get(key)!r} there, {here.get(key)!r} here" for key in changed[:3]
        )
        raise ConfigError(
            f"{path} was made from another config ({shown}); if that change is intended, {remake}"
        )
    return dict(stored)


def differences(
    baseline: dict[str, Any], now: dict[str, Any], tolerance: dict[str, float] | None
) -> list[Difference]:
    """Every number that differs (tolerance None: at all; else by more than its tolerance),
    in step order. A step or evaluation one side lacks differs (NaN there)."""
    losses = pad(baseline["losses"], now["losses"])
    pairs = [(step, "loss", stored, measured) for step, (stored, measured) in enumerate(losses, 1)]
    stored_at = {entry["step"]: entry for entry in baseline["evaluations"]}
    measured_at = {entry["step"]: entry for entry in now["evaluations"]}
    for step in sorted(stored_at.keys() | measured_at.keys()):
        for name in EVALUATED:
            stored = stored_at.get(step, {}).get(name, math.nan)
            measured = measured_at.get(step, {}).get(name, math.nan)
            if not (math.isnan(stored) and math.isnan(measured)):  # neither side has it
                pairs.append((step, name, stored, measured))
    found = []
    for step, name, stored, measured in pairs:
        if tolerance is None:
            same = stored == measured
        else:  # NaN is never within any tolerance
            same = abs(stored - measured) <= tolerance[name]
        if not same:
            found.append(Difference(step, name, stored, measured))
    return sorted(found, key=lambda difference: difference.step)


def pad(first: list[float], second: list[float]) -> list[tuple[float, float]]:
    """Pairs up to the longer list; the shorter side's missing steps are NaN."""
    length = max(len(first), len(second))
    return [
        (first[i] if i < len(first) else math.nan, second[i] if i < len(second) else math.nan)
        for i in range(length)
    ]


def table(found: Sequence[Difference]) -> list[str]:
    lines = [f"  {'step':>5}  {'value':<12}  {'baseline':>12}  {'now':>12}  {'difference':>11}"]
    for difference in found[:SHOWN]:
        gap = difference.now - difference.baseline
        lines.append(
            f"  {difference.step:>5}  {difference.name:<12}  {difference.baseline:>12.8f}  "
            f"{difference.now:>12.8f}  {gap:>+11.2e}"
        )
    if len(found) > SHOWN:
        lines.append(f"  ... and {len(found) - SHOWN} more")
    return lines


def plot(baseline: dict[str, Any], now: dict[str, Any], path: Path) -> bool:
    """The two loss curves and their difference; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    figure, (curves, gap) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, values in (("baseline", baseline["losses"]), ("now", now["losses"])):
        curves.plot(range(1, len(values) + 1), values, label=label, linewidth=1)
    curves.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    curves.legend()
    paired = pad(baseline["losses"], now["losses"])
    gap.plot(range(1, len(paired) + 1), [n - b for b, n in paired], color="tab:red", linewidth=1)
    gap.set(xlabel="optimizer step", ylabel="now - baseline", title="Difference")
    figure.tight_layout()
    save_figure(figure, path)
    plt.close("all")
    return True


def check(config_file: Path, overrides: Sequence[str]) -> None:
    config = load_training_config(config_file, overrides)
    stored = read_baseline(config_file, config)
    files, now = train_and_read(config)
    environment = describe_environment(config)
    other = {
        key: value for key, value in stored["environment"].items() if environment.get(key) != value
    }
    path = baseline_path(config_file)
    expected, how = "identical", "same environment"
    if other:
        where = ", ".join(f"{key} {value}" for key, value in other.items())
        expected, how = "within tolerance", f"the baseline's environment differs: {where}"
    found = differences(stored, now, TOLERANCE if other else None)
    counted = f"{len(now['losses'])} steps and {len(now['evaluations'])} evaluations"
    if not found:
        print(f"baseline check passed: {counted} {expected} to {path} ({how})")
        return
    print(f"baseline check: training differs from {path}; the first differences:")
    print("\n".join(table(found)))
    drawn = plot(stored, now, files.baseline_plot)
    picture = f"plot: {files.baseline_plot}" if drawn else "no plot: matplotlib is not installed"
    raise BaselineMismatchError(
        f"{len(found)} {'number is' if len(found) == 1 else 'numbers are'} not {expected} to "
        f"{path} ({how}), from step "
        f"{found[0].step} on ({picture}). If training changed on purpose: "
        f"`{make_command('update', config_file)}` and commit {path}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Store a config's training losses (update), or train again and compare (check)."
    )
    parser.add_argument("action", choices=["update", "check"])
    parser.add_argument("--config", type=Path, required=True, help="e.g. configs/smoke.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    arguments = parser.parse_intermixed_args(argv)  # overrides after --config, too
    action = update if arguments.action == "update" else check
    return run_command("baseline", lambda: action(arguments.config, arguments.overrides))


if __name__ == "__main__":
    sys.exit(main())
