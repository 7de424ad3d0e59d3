"""The statistics of the benchmark, kept apart from torch so that pytest can check them.

A step's time is read from the times at which consecutive batches were fetched: the median, over
every window of WINDOW consecutive steps, of the window's mean. Each window holds exactly one of
the trainer's host syncs (every `train.log_every` = 10 steps), so their cost counts in full, while
a pause of the machine spoils only the windows around it, which the median leaves out.
"""

from __future__ import annotations

import statistics

WINDOW = 10  # steps; a multiple of the trainer's default train.log_every


def per_step_seconds(stamps: list[float]) -> float:
    """Median time per step over all windows of WINDOW steps, after a warm-up of 10%."""
    start = max(WINDOW, len(stamps) // 10)
    windows = [
        (stamps[i + WINDOW] - stamps[i]) / WINDOW for i in range(start, len(stamps) - WINDOW)
    ]
    if not windows:
        raise ValueError(f"{len(stamps)} steps are too few to measure; use more")
    return statistics.median(windows)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def paired(ratios: list[float]) -> dict[str, float]:
    """Median and quartiles of per-round ratios (the loops of one round ran back to back)."""
    low, median, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"median": median, "q1": low, "q3": high}
