"""The benchmark's time per step: the cost of periodic host syncs counts, a pause does not."""

from __future__ import annotations

import itertools

import pytest

from tests.benchmark_stats import WINDOW, paired, per_step_seconds


def fetch_times(step_seconds: list[float]) -> list[float]:
    return [0.0, *itertools.accumulate(step_seconds)]


def test_a_sync_every_window_is_counted_in_full() -> None:
    # Nine 1 ms steps, then one 11 ms step with a host sync: 2 ms per step on average.
    steps = ([0.001] * (WINDOW - 1) + [0.011]) * 30
    assert per_step_seconds(fetch_times(steps)) == pytest.approx(0.002)


def test_a_pause_of_the_machine_is_left_out() -> None:
    steps = [0.001] * 300
    steps[150] = 0.5  # the machine stalls once for half a second
    assert per_step_seconds(fetch_times(steps)) == pytest.approx(0.001)


def test_warm_up_steps_are_left_out() -> None:
    steps = [0.2] * 10 + [0.001] * 200  # the first steps are slow (allocations, compiling)
    assert per_step_seconds(fetch_times(steps)) == pytest.approx(0.001)


def test_too_few_steps_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="too few"):
        per_step_seconds(fetch_times([0.001] * WINDOW))


def test_paired_ratios_report_median_and_quartiles() -> None:
    assert paired([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx(
        {"median": 0.03, "q1": 0.015, "q3": 0.045}
    )
