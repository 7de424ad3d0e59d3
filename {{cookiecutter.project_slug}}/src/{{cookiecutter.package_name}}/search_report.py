"""The report's part for the trials of a search (search.py), read from their run.json files: per
study, the trials sorted by the metric, the best values, and with matplotlib two plots,
`<study>-history.png` (the metric per trial and the best so far) and `<study>-parallel.png` (one
line per trial across the searched keys, coloured by the metric).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .atomic_files import write_atomically
from .config import parse_yaml


class Run(Protocol):
    """What this module reads of report.py's runs (report.py imports this module, so this one
    imports nothing of it: it is given report's ways to show a folder and a number too)."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def final(self) -> dict[str, float]: ...


FINISHED = ("completed", "stopped_early")  # run.json statuses of a complete trial


def study_sections(
    runs: Sequence[Run], out: Path, relative: Callable[[Path], str], number: Callable[[float], str]
) -> list[str]:
    """Markdown for each study among `runs` (none: no lines), its plots written into `out`;
    folders are shown as `relative` names them, metrics as `number` writes them."""
    studies: dict[str, list[Run]] = {}
    for run in runs:
        if "search" in run.manifest:
            studies.setdefault(run.manifest["search"]["study"], []).append(run)
    lines: list[str] = []
    for study, trials in studies.items():
        lines += study_section(study, trials, out, relative, number)
    return lines


def value(run: Run) -> float:
    """The trial's metric: its last evaluation, as the search told the study."""
    return float(run.final.get(run.manifest["search"]["metric"], math.nan))


def ranked(trials: Sequence[Run]) -> list[Run]:
    """Complete trials best first, then pruned ones (by where they stopped), then the rest."""
    sign = 1 if trials[0].manifest["search"]["direction"] == "minimize" else -1

    def order(run: Run) -> tuple[int, float]:
        status = run.manifest.get("status")
        group = 0 if status in FINISHED else 1 if status == "pruned" else 2
        measured = value(run)
        return group, sign * measured if not math.isnan(measured) else math.inf

    return sorted(trials, key=order)


def study_section(
    study: str, trials: Sequence[Run], out: Path,
    relative: Callable[[Path], str], number: Callable[[float], str],
) -> list[str]:  # fmt: skip
    search = trials[0].manifest["search"]
    metric, keys = search["metric"], list(search["space"])
    rows = ranked(trials)
    header = ["trial", "run", "status", metric, *keys]
    table = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in rows:
        params = run.manifest["search"]["params"]
        cells = [str(run.manifest["search"]["trial"]), relative(run.folder),
                 str(run.manifest.get("status")), number(value(run)),
                 *(shown(params.get(key)) for key in keys)]  # fmt: skip
        table.append("| " + " | ".join(cells) + " |")
    lines = [f"## Search: study {study} ({metric}, {search['direction']})", ""]
    best = rows[0] if rows[0].manifest.get("status") in FINISHED else None
    if best is not None:
        values = ", ".join(f"{key}={shown(value)}" for key, value in
                           best.manifest["search"]["params"].items())  # fmt: skip
        where = relative(best.folder)
        lines += [f"Best: trial {best.manifest['search']['trial']}, {metric} "
                  f"{number(value(best))}, {values} ({where})", ""]  # fmt: skip
    lines += [*table, ""]
    images = plot_study(study, rows, keys, out)
    lines += [*(f"![{image}]({image})" for image in images), ""] if images else []
    return lines


def shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_study(study: str, trials: Sequence[Run], keys: Sequence[str], out: Path) -> list[str]:
    """`<study>-history.png` and `<study>-parallel.png`; none without matplotlib."""
    try:
        # Optional (the dev group), so the type checker may not find it.
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
        from matplotlib.ticker import MaxNLocator  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return []
    search = trials[0].manifest["search"]
    metric, minimize = search["metric"], search["direction"] == "minimize"
    measured = [run for run in trials if not math.isnan(value(run))]
    if not measured:  # no trial has evaluated yet
        return []
    by_number = sorted(measured, key=lambda run: int(run.manifest["search"]["trial"]))
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for status, marker, colour in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:grey")):
        chosen = [run for run in by_number if (run.manifest.get("status") in FINISHED)
                  == (status == "complete")]  # fmt: skip
        if not chosen:  # no legend entry for what is not drawn
            continue
        axis.scatter([run.manifest["search"]["trial"] for run in chosen],
                     [value(run) for run in chosen], marker=marker, color=colour,
                     label=f"{status} trials")  # fmt: skip
    best_so_far, steps = math.inf if minimize else -math.inf, []
    for run in by_number:
        if run.manifest.get("status") in FINISHED:
            best_so_far = min(best_so_far, value(run)) if minimize else max(best_so_far, value(run))
        if math.isfinite(best_so_far):
            steps.append((run.manifest["search"]["trial"], best_so_far))
    if steps:
        axis.step(*zip(*steps, strict=True), where="post", color="tab:red", label="best so far")
    axis.set(xlabel="trial", ylabel=metric, title=f"Study {study}: {metric} per trial")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers are whole
    axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, out / f"{study}-history.png")
    draw_parallel(plt, study, measured, keys, out)
    plt.close("all")
    return [f"{study}-history.png", f"{study}-parallel.png"]


def draw_parallel(
    plt: Any, study: str, trials: Sequence[Run], keys: Sequence[str], out: Path
) -> None:
    """One vertical axis per searched key (log keys on a log scale) and one for the metric; one
    line per trial, coloured by its metric (pruned trials dashed)."""
    search = trials[0].manifest["search"]
    metric, space = search["metric"], search["space"]
    axes = [*keys, metric]
    columns = {key: [position(run.manifest["search"]["params"].get(key), space[key])
                     for run in trials] for key in keys}  # fmt: skip
    columns[metric] = [value(run) for run in trials]
    scaled = {axis: spread(columns[axis]) for axis in axes}
    figure, axis = plt.subplots(figsize=(max(6, 2.2 * len(axes)), 4.5))
    colour_map = plt.get_cmap("viridis_r" if search.get("direction") == "minimize" else "viridis")
    low, high = min(columns[metric]), max(columns[metric])
    for index, run in enumerate(trials):
        shade = (value(run) - low) / (high - low) if high > low else 0.5
        style = "-" if run.manifest.get("status") in FINISHED else "--"
        axis.plot(range(len(axes)), [scaled[name][index] for name in axes], style,
                  color=colour_map(shade), linewidth=1.5, alpha=0.8)  # fmt: skip
    axis.set_xticks(range(len(axes)), axes)
    axis.set_yticks([0, 1], ["low", "high"])
    for place, name in enumerate(axes):
        axis.axvline(place, color="black", linewidth=0.6)
        for height, text in axis_labels(columns[name], None if name == metric else space[name]):
            axis.annotate(text, (place, height), xytext=(4, 0), textcoords="offset points",
                          fontsize="small", va="center")  # fmt: skip
    axis.set(title=f"Study {study}: each trial across the searched keys (dashed: pruned)")
    colour_bar = figure.colorbar(
        plt.cm.ScalarMappable(norm=plt.Normalize(low, high), cmap=colour_map), ax=axis
    )
    colour_bar.set_label(metric)
    figure.tight_layout()
    save_figure(figure, out / f"{study}-parallel.png")


def save_figure(figure: Any, path: Path) -> None:
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120))


def axis_labels(column: Sequence[float], spec: str | None) -> list[tuple[float, str]]:
    """What to write where on one axis of the parallel plot (height 0..1, as `spread` places
    the lines): each choice drawn, by its value; else the lowest and the highest value drawn
    (a log key's in its own units). `spec` is None for the metric's axis."""
    drawn = sorted({raw for raw in column if not math.isnan(raw)})
    heights = dict(zip(drawn, spread(drawn), strict=True))
    if spec is not None and spec.startswith("choice:"):
        written = spec.removeprefix("choice:").split(",")  # as --space spelled them
        return [(heights[index], written[int(index)]) for index in drawn]
    unlog = spec is not None and spec.startswith("log:")
    ends = dict.fromkeys(drawn[:1] + drawn[-1:])  # one label when every trial drew one value
    return [(heights[raw], f"{10**raw:.3g}" if unlog else f"{raw:.3g}") for raw in ends]


def position(raw: Any, spec: str) -> float:
    """Where a value sits on its axis: log10 for log: keys, the index for choice: keys."""
    if spec.startswith("choice:"):
        choices = [parse_yaml(choice) for choice in spec.removeprefix("choice:").split(",")]
        return float(choices.index(raw)) if raw in choices else math.nan
    if raw is None:
        return math.nan
    return math.log10(float(raw)) if spec.startswith("log:") else float(raw)


def spread(column: Sequence[float]) -> list[float]:
    """Values scaled to 0..1 across the trials (all at 0.5 when they are equal)."""
    present = [value for value in column if not math.isnan(value)]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    return [(value - low) / (high - low) if high > low else 0.5 for value in column]
