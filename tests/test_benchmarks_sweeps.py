"""The sweep benchmark's reading of its own slicing: the efficiency a greedy task queue can reach (closed forms),
the grid order rebuilt from interleaved slices, the steal share of the machine's CPU ticks; and the bookkeeping
benchmark's arithmetic."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.run import in_grid_order, tail_cap
from benchmarks.sweep import grid_part


def test_tail_cap_of_equal_tasks_is_the_odd_one_out():
    assert tail_cap([1.0] * 25, 2) == 25 / 26  # 13 tasks on one worker, 12 on the other
    assert tail_cap([1.0] * 24, 2) == 1.0
    assert tail_cap([0.5] * 7, 3) == 3.5 / (3 * 1.5)


def test_tail_cap_hands_tasks_out_in_order_to_the_first_free_worker():
    assert tail_cap([3.0, 1.0, 1.0, 1.0], 2) == 1.0  # the short ones fill the second worker
    assert tail_cap([1.0, 1.0, 3.0], 2) == 5.0 / 8.0  # the long one comes last: 4 s against 1 s
    assert tail_cap([], 2) == 1.0


@given(st.lists(st.floats(0.01, 10.0), min_size=1, max_size=60), st.integers(1, 4))
def test_tail_cap_lies_between_the_bounds_of_any_schedule(durations, workers):
    cap = tail_cap(durations, workers)
    makespan = sum(durations) / (workers * cap)
    assert max(durations) <= makespan * (1 + 1e-12)  # no schedule ends before its longest task
    assert sum(durations) / workers <= makespan * (1 + 1e-12)  # nor before the work is shared out evenly
    assert makespan <= sum(durations) / workers + max(durations) + 1e-9  # greedy's guarantee (Graham)
    if workers == 1:
        assert cap == 1.0


@given(st.integers(1, 60), st.integers(1, 9))
def test_grid_order_is_rebuilt_from_the_slices_the_benchmark_runs(points, parts):
    grid = [float(i) for i in range(points)]
    slices = [grid[k - 1::parts] for k in (grid_part(f"{k}/{parts}")[0] for k in range(1, parts + 1))]
    assert in_grid_order(slices) == grid


def test_bookkeeping_benchmark_runs_its_sweeps_and_reports_per_configuration(capsys):
    from benchmarks import bookkeeping

    assert bookkeeping.main(["--configs", "8,12", "--config-s", "0.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["config_s"] == 0.5 and [size["configs"] for size in printed["sizes"]] == [8, 12]
    for size in printed["sizes"]:
        assert size["ms_per_config"] == size["seconds"] / size["configs"] * 1e3
        assert size["share_of_a_daily_config"] == size["seconds"] / size["configs"] / 0.5


def test_steal_share_is_the_steal_ticks_over_all_ticks_of_an_executors_slices():
    from benchmarks.run import _steal_share

    parts = [{"cpu_ticks": {"user": 90, "idle": 5, "steal": 5}}, {"cpu_ticks": {"user": 190, "idle": 0, "steal": 10}}]
    assert _steal_share(parts) == 15 / 300
    assert _steal_share([*parts, {"cpu_ticks": None}]) is None  # a slice without /proc/stat figures
    assert _steal_share([{}]) is None  # JSON written before the counter existed


def test_cpu_ticks_are_the_proc_stat_counters_and_only_grow():
    from benchmarks.sweep import cpu_jiffies

    first = cpu_jiffies()
    if first is None:
        pytest.skip("no /proc/stat on this system")
    second = cpu_jiffies()
    assert len(first) >= 8 and len(second) == len(first)  # user ... steal at least
    assert all(b >= a for a, b in zip(first, second, strict=True))
