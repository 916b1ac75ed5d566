"""``benchmarks/instructions.py``: a count under callgrind repeats exactly for its layout (hash seed and classes
created first), which is what makes it the drift-free measure the README compares commits by. valgrind and gcc are on every machine of this
project's kind (CI included); the test says so when they are missing rather than passing without counting."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import instructions

WINDOW = ("2021-01-01", "2021-01-31")  # 31 daily bars: a count takes seconds, not the 730 bars' half minute


def test_a_count_repeats_exactly_with_its_layout(data_dir):
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    assert not missing, f"{missing} not found: the instruction counts need valgrind and a C compiler"
    seed, padding = instructions.layout(1)
    first = instructions.count(window=WINDOW, seed=seed, padding=padding)
    again = instructions.count(window=WINDOW, seed=seed, padding=padding)
    assert first == again
    # the padding reaches the counted process: the same run and seed without it lays out the type-attribute
    # cache differently, and no two layouts have counted the same to the instruction
    assert instructions.count(window=WINDOW, seed=seed, padding=0) != first
    # a whole run_policy was counted (137 M in session 10), not only the helper's start and stop
    assert 50_000_000 < first < 500_000_000


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_layouts_must_be_a_whole_number_of_at_least_one(text, capsys):
    with pytest.raises(SystemExit) as stop:
        instructions.main(["--layouts", text])
    assert stop.value.code == 2
    assert f"--layouts={text!r}: expected a whole number >= 1" in capsys.readouterr().err

