"""Compare runs: `python -m <package>.report RUN_OR_SWEEP_DIR ... [--out DIR]`.

Finds every run (a folder with run.json) below the given folders and writes DIR/report.md: a
table of runs (the config keys that differ between them, seed, commit, status, final and best
metrics) and a table per configuration with mean ± std over its seeds; and, with matplotlib
installed (the dev group: scripts/setup_dev.sh), loss.png (training loss per step),
validation.png (validation loss and accuracy per evaluation) and telemetry.png (samples per
second and peak memory at each host sync, telemetry.py): one line per run, the runs of one
configuration in one colour with a band from the lowest to the highest seed. A run whose files
cannot be read is named in the report and skipped. `--out` defaults to the first folder's
`report/`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic_files import write_atomically, write_text
from .errors import ConfigError, RunUnreadableError, run_command
from .run_files import CONFIG, MANIFEST, METRICS, REPORT, RunFiles, runs_below
from .search_report import study_sections
from .storage import fetch_tree, is_remote, sync
from .tracking import flatten

# Keys that differ between any two runs without making them different experiments.
NOT_CONFIGURATION = {"seed", "output_dir", "resume"}
NO_PLOTS = (
    "Plots need matplotlib: `uv pip install matplotlib` (it is in the dev group that "
    "`bash scripts/setup_dev.sh` installs), then run the report again."
)


@dataclass
class Run:
    folder: Path
    config: dict[str, Any]  # flattened: {"optim.lr": 0.001, ...}
    manifest: dict[str, Any]
    steps: list[tuple[int, float]]  # (step, training loss)
    evaluations: list[dict[str, float]]  # step, val_loss, val_accuracy, ...
    telemetry: list[dict[str, float]]  # the host syncs' records: step, samples_per_second, ...

    @property
    def best_val_loss(self) -> float:
        return min((record["val_loss"] for record in self.evaluations), default=math.nan)

    @property
    def best_val_accuracy(self) -> float:
        return max((record["val_accuracy"] for record in self.evaluations), default=math.nan)

    @property
    def final(self) -> dict[str, float]:
        """The last evaluation (with its epoch's training loss so far)."""
        return self.evaluations[-1] if self.evaluations else {}


def is_record(relative: str) -> bool:
    return relative.rsplit("/", 1)[-1] in (MANIFEST, CONFIG, METRICS)


def find_runs(paths: Sequence[Path]) -> list[RunFiles]:
    for path in paths:
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder; pass run or sweep folders")
    runs = runs_below(paths)
    if not runs:
        raise ConfigError(f"no runs (folders with {MANIFEST}) below {', '.join(map(str, paths))}")
    return runs


def read_run(files: RunFiles) -> Run:
    manifest, config = files.read_manifest(), files.read_config()
    steps, evaluations, telemetry = [], [], []
    for record in files.read_metrics():
        if "loss" in record:
            steps.append((int(record["step"]), float(record["loss"])))
        if "val_loss" in record:
            evaluations.append(record)
        if "samples_per_second" in record:
            telemetry.append(record)
    return Run(files.root, flatten(config), manifest, steps, evaluations, telemetry)


def differing_keys(runs: Sequence[Run]) -> list[str]:
    keys = sorted({key for run in runs for key in run.config} - NOT_CONFIGURATION)
    return [key for key in keys if len({repr(run.config.get(key)) for run in runs}) > 1]


def configuration(run: Run, keys: Sequence[str]) -> str:
    return ", ".join(f"{key}={run.config.get(key)}" for key in keys) or "(one configuration)"


def number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def mean_and_spread(values: Sequence[float]) -> str:
    present = [value for value in values if not math.isnan(value)]
    if not present:
        return "—"
    if len(present) == 1:
        return f"{present[0]:.4f}"
    return f"{statistics.mean(present):.4f} ± {statistics.stdev(present):.4f}"


def runs_table(runs: Sequence[Run], keys: Sequence[str], base: Path) -> list[str]:
    header = ["run", *keys, "seed", "commit", "status", "final train_loss", "final val_loss",
              "best val_loss", "best val_accuracy"]  # fmt: skip
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        commit = str(run.manifest.get("git_sha") or "—")[:8]
        final = [run.final.get(name, math.nan) for name in ("train_loss", "val_loss")]
        cells = [
            relative(run.folder, base), *(str(run.config.get(key)) for key in keys),
            str(run.config.get("seed")), commit, str(run.manifest.get("status")),
            *map(number, final), number(run.best_val_loss), number(run.best_val_accuracy),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def groups_table(groups: dict[str, list[Run]]) -> list[str]:
    rows = [
        "| configuration | runs | seeds | final val_loss | best val_loss | best val_accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, members in groups.items():
        seeds = ", ".join(str(run.config.get("seed")) for run in members)
        final = [run.final.get("val_loss", math.nan) for run in members]
        cells = [name, str(len(members)), seeds, mean_and_spread(final),
                 mean_and_spread([run.best_val_loss for run in members]),
                 mean_and_spread([run.best_val_accuracy for run in members])]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def relative(folder: Path, base: Path) -> str:
    try:
        return str(folder.relative_to(base)) or "."
    except ValueError:
        return str(folder)


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files, or None where matplotlib is not installed."""
    try:
        # Optional (the dev group), so the type checker may not find it.
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return plt


def plot(groups: dict[str, list[Run]], out: Path) -> list[str]:
    """loss.png, validation.png and telemetry.png; returns their names (none without
    matplotlib)."""
    plt = pyplot()
    if plt is None:
        return []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for index, (name, members) in enumerate(groups.items()):
        colour = colours[index % len(colours)]
        curves = [dict(run.steps) for run in members]
        for run in members:
            axis.plot(*zip(*run.steps, strict=True), color=colour, linewidth=0.8, alpha=0.6)
        band(axis, curves, colour, name)
    axis.set(xlabel="optimizer step", ylabel="training loss", title="Training loss per step")
    axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, out / "loss.png")
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, (name, members) in enumerate(groups.items()):
        colour = colours[index % len(colours)]
        for metric, axis in (("val_loss", loss_axis), ("val_accuracy", accuracy_axis)):
            curves = [{int(r["step"]): r[metric] for r in run.evaluations} for run in members]
            for curve in curves:
                axis.plot(list(curve), list(curve.values()), color=colour, marker="o",
                          markersize=3, linewidth=0.8, alpha=0.6)  # fmt: skip
            band(axis, curves, colour, name)
    loss_axis.set(xlabel="optimizer step", ylabel="validation loss", title="Validation loss")
    accuracy_axis.set(
        xlabel="optimizer step", ylabel="validation accuracy", title="Validation accuracy"
    )
    loss_axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, out / "validation.png")
    plot_telemetry(plt, groups, out)
    plt.close("all")
    return ["loss.png", "validation.png", "telemetry.png"]


def plot_telemetry(plt: Any, groups: dict[str, list[Run]], out: Path) -> None:
    """telemetry.png: samples per second and peak memory at each host sync, one line a run."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, (speed_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, (name, members) in enumerate(groups.items()):
        colour = colours[index % len(colours)]
        for number, run in enumerate(members):
            label = name if number == 0 else None
            steps = [record["step"] for record in run.telemetry]
            speed = [record["samples_per_second"] for record in run.telemetry]
            speed_axis.plot(steps, speed, color=colour, linewidth=0.8, alpha=0.7, label=label)
            # On CUDA the allocator's peak, which is what a bigger batch runs out of.
            memory = [
                record.get("cuda_peak_allocated_mib", record.get("peak_rss_mib", math.nan))
                for record in run.telemetry
            ]
            memory_axis.plot(steps, memory, color=colour, linewidth=0.8, alpha=0.7)
    speed_axis.set(xlabel="optimizer step", ylabel="samples per second", title="Throughput")
    memory_axis.set(
        xlabel="optimizer step", ylabel="MiB",
        title="Peak memory (CUDA allocator; on a CPU the process)",
    )  # fmt: skip
    speed_axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, out / "telemetry.png")


def save_figure(figure: Any, path: Path) -> None:
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120))


def band(axis: Any, curves: Sequence[dict[int, float]], colour: str, label: str) -> None:
    """The range across seeds at every step all of them reached, labelled with the config."""
    shared = sorted(set.intersection(*(set(curve) for curve in curves))) if curves else []
    if not shared:
        return
    low = [min(curve[step] for curve in curves) for step in shared]
    high = [max(curve[step] for curve in curves) for step in shared]
    axis.fill_between(shared, low, high, color=colour, alpha=0.2, linewidth=0, label=label)


def write_report(paths: Sequence[Path], out: Path) -> Path:
    runs, skipped = [], []
    for files in find_runs(paths):
        try:
            runs.append(read_run(files))
        except RunUnreadableError as error:
            skipped.append(str(error))
            print(f"report: skipped {error}", file=sys.stderr)
    if not runs:
        raise ConfigError(f"no readable runs: {'; '.join(skipped)}")
    keys = differing_keys(runs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(configuration(run, keys), []).append(run)
    images = plot(groups, out)
    base = paths[0] if len(paths) == 1 else Path.cwd()
    lines = [f"# Report: {len(runs)} runs in {', '.join(map(str, paths))}", ""]
    # The trials of a search, if any, ranked and plotted.
    lines += study_sections(runs, out, lambda folder: relative(folder, base), number)
    lines += ["## Runs", "", *runs_table(runs, keys, base), ""]
    lines += ["## By configuration (mean ± standard deviation over seeds)", "",
              *groups_table(groups), ""]  # fmt: skip
    if images:
        lines += ["## Curves", "", *(f"![{image}]({image})" for image in images), ""]
    else:
        lines += [NO_PLOTS, ""]
    if skipped:
        lines += ["## Skipped", "", *(f"- {reason}" for reason in skipped), ""]
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tables and plots comparing training runs.")
    parser.add_argument("folders", nargs="+", help="run or sweep folders (paths or URLs)")
    parser.add_argument("--out", type=Path, help="default: the first folder's report/")
    arguments = parser.parse_args(argv)

    def report() -> None:
        # A remote folder is read from a local copy of its runs' records (never checkpoints).
        copies = [fetch_tree(folder, is_record) for folder in arguments.folders]
        out = arguments.out or copies[0] / REPORT
        print(f"wrote {write_report(copies, out)}")
        first = arguments.folders[0]
        if arguments.out is None and is_remote(first):
            destination = f"{first.rstrip('/')}/{REPORT}"
            sync(str(out), destination)
            print(f"uploaded the report to {destination}")

    return run_command("report", report)


if __name__ == "__main__":
    sys.exit(main())
