"""The sweep engine with real, deterministic run functions whose results have a closed form.

The run functions below are top-level so worker processes can import them. They stand in for "one backtest"
only in the sense the engine cares about (config in, flat dict of numbers out); every expected value is
computed from the configuration by the formula written beside it.
"""

from __future__ import annotations

import csv
import errno
import gc
import json
import math
import os
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import pytest

from minehedge.config import parse_grid_values
from minehedge.errors import ConfigError
from minehedge.sweep import (
    LOWER_IS_BETTER,
    RESERVED_COLUMNS,
    LocalExecutor,
    SweepInterrupted,
    config_hash,
    expand_grid,
    rank_results,
    read_results,
    run_sweep,
    write_top,
)

FINGERPRINT = "data-sha256-test"
SHARED = {"scale": 3, "offset": 0.25}
BASE = {"asset": "BTC", "timeframe": "1d", "policy": "closed_form", "seed": 7, "params": {"c": 2}}


def closed_form_run(config: dict, shared: dict) -> dict:
    """product = a*b*scale; total = a + b + c + seed + offset; big = a*b > 1; steps = int(a*4)."""
    p = config["params"]
    return {
        "product": p["a"] * p["b"] * shared["scale"],
        "total": p["a"] + p["b"] + p["c"] + config["seed"] + shared["offset"],
        "big": p["a"] * p["b"] > 1,
        "steps": int(round(p["a"] * 4)),
    }


def failing_run(config: dict, shared: dict) -> dict:
    """closed_form_run, except that a == 0.5 raises (a bug in one corner of the grid)."""
    if config["params"]["a"] == 0.5:
        raise ZeroDivisionError("no hedge at a=0.5")
    return closed_form_run(config, shared)


def interrupting_run(config: dict, shared: dict) -> dict:
    """closed_form_run until a == 0.75, where the user presses Ctrl-C."""
    if config["params"]["a"] == 0.75:
        raise KeyboardInterrupt
    return closed_form_run(config, shared)


_DRIVEN_CLOCK = [0.0]  # the sweep engine's clock in the rewrite test (seconds)


def clocked_run(config: dict, shared: dict) -> dict:
    """closed_form_run, taking 1 s of the driven clock."""
    _DRIVEN_CLOCK[0] += 1.0
    return closed_form_run(config, shared)


def killed_run(config: dict, shared: dict) -> dict:
    """closed_form_run until a == 0.75, where the whole process is killed (no cleanup, as kill -9)."""
    if config["params"]["a"] == 0.75:
        os._exit(9)
    return closed_form_run(config, shared)


def where_run(config: dict, shared: dict) -> dict:
    """Which process ran the configuration, and which object the shared data were in it."""
    return {"pid": os.getpid(), "shared_id": id(shared)}


def dying_once_run(config: dict, shared: dict) -> dict:
    """closed_form_run, except that the first a == 0.5 kills its worker process (as an out-of-memory kill
    would) after leaving the file ``shared["marker"]``, so a retry succeeds."""
    marker = Path(shared["marker"])
    if config["params"]["a"] == 0.5 and not marker.exists():
        marker.touch()
        os._exit(3)
    return closed_form_run(config, shared)


_PREVIOUS_CYCLE: list = []  # in each process: a weak reference to the cycle the last cycle_run left behind


class _Node:
    pass


def cycle_run(config: dict, shared: dict) -> dict:
    """Leave garbage in a reference cycle in the oldest generation, as a finished backtest does, and say
    whether the previous run's cycle in this process is still in memory."""
    had_previous = bool(_PREVIOUS_CYCLE)
    previous_alive = had_previous and _PREVIOUS_CYCLE[-1]() is not None
    node = _Node()
    node.me = node
    gc.collect()  # ages the live cycle into the oldest generation: only a full collection will free it
    _PREVIOUS_CYCLE[:] = [weakref.ref(node)]
    return {"pid": os.getpid(), "had_previous": had_previous, "previous_alive": previous_alive,
            "frozen": gc.get_freeze_count() > 0}


def grid(a_spec: str = "0:1:0.25", b_spec: str = "1,2,3") -> dict:
    return {"a": parse_grid_values(a_spec, key="a"), "b": [int(v) for v in parse_grid_values(b_spec, key="b")]}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def check_closed_form(rows: list[dict[str, str]]) -> None:
    for row in rows:
        a, b = float(row["a"]), int(row["b"])
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row["product"]) == a * b * 3
        assert float(row["total"]) == a + b + 2 + 7 + 0.25
        assert row["big"] == str(a * b > 1)
        assert int(row["steps"]) == int(round(a * 4))


def test_expand_grid_is_the_cartesian_product_first_key_slowest():
    points = expand_grid(BASE, grid())
    assert [(p.swept["a"], p.swept["b"]) for p in points] == [
        (a, b) for a in (0.0, 0.25, 0.5, 0.75, 1.0) for b in (1, 2, 3)
    ]
    assert all(p.config["params"]["c"] == 2 and p.config["seed"] == 7 for p in points)
    assert len({id(p.config["params"]) for p in points}) == len(points)  # no shared dicts
    assert BASE["params"] == {"c": 2}  # base untouched
    seeded = expand_grid(BASE, {"seed": [1, 2]})
    assert [p.config["seed"] for p in seeded] == [1, 2] and "seed" not in seeded[0].config["params"]


def test_config_hash_is_stable_and_sensitive():
    config = {"policy": "p", "params": {"x": 0.1, "y": 2}, "start": None}
    same_other_order = {"start": None, "params": {"y": 2, "x": 0.1}, "policy": "p"}
    assert config_hash(config, "d1") == config_hash(same_other_order, "d1")
    assert len(config_hash(config, "d1")) == 64
    assert config_hash(config, "d1") != config_hash(config, "d2")  # other data, other result
    assert config_hash(config, "d1") != config_hash({**config, "params": {"x": 0.1, "y": 3}}, "d1")
    # where the data live does not change what they are
    assert config_hash({**config, "data_dir": "/a"}, "d1") == config_hash({**config, "data_dir": "/b"}, "d1")


def test_config_hash_definition_is_sha256_of_canonical_json():
    """Pinned: the hash keys results.csv across versions, so its definition must not drift silently."""
    import datetime as dt
    import hashlib

    expected = hashlib.sha256(b'{"config":{"a":1,"d":"2020-03-12"},"data":"x"}').hexdigest()
    assert config_hash({"a": 1, "d": dt.date(2020, 3, 12)}, "x") == expected


def test_sweep_in_process_every_configuration_exactly_once(tmp_path):
    points = expand_grid(BASE, grid())
    messages: list[str] = []
    with LocalExecutor(1) as executor:
        report = run_sweep(
            points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
            executor=executor, log=messages.append,
        )
    rows = read_rows(tmp_path / "results.csv")
    assert (report.total, report.skipped, report.ran, report.failed) == (15, 0, 15, [])
    assert [r["config_hash"] for r in rows] == [config_hash(p.config, FINGERPRINT) for p in points]
    assert list(rows[0]) == ["a", "b", "product", "total", "big", "steps", *RESERVED_COLUMNS]
    assert [(r["a"], r["b"]) for r in rows] == [(repr(p.swept["a"]), str(p.swept["b"])) for p in points]
    check_closed_form(rows)
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]  # no temp files left behind

    # Re-running the same sweep does nothing and says so.
    messages.clear()
    with LocalExecutor(1) as executor:
        again = run_sweep(
            points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
            executor=executor, log=messages.append,
        )
    assert (again.skipped, again.ran) == (15, 0)
    assert any("skipped 15 of 15" in m for m in messages)
    assert read_rows(tmp_path / "results.csv") == rows


def test_new_data_fingerprint_reruns_everything(tmp_path):
    points = expand_grid(BASE, grid(b_spec="1"))
    notices: list[str] = []
    with LocalExecutor(1) as executor:
        run_sweep(points, closed_form_run, SHARED, data_fingerprint="v1", out_dir=tmp_path, executor=executor)
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint="v2", out_dir=tmp_path, executor=executor,
                           log=notices.append)
    assert (report.skipped, report.ran, report.other_rows) == (0, 5, 5)
    # the v1 rows repeat the grid's values with other numbers: the sweep says so
    assert [n for n in notices if n.startswith("warning:")] == [
        "warning: 5 of those rows have swept values of this sweep but other fixed settings (another --set, period, "
        "policy or data): tell them apart by config_hash, or give each sweep its own --out"]
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 10  # the v1 rows are kept, after the current grid's rows
    assert [r["config_hash"] for r in rows[:5]] == report.hashes


def test_a_narrower_grid_keeps_the_other_rows_without_a_warning(tmp_path):
    notices: list[str] = []
    with LocalExecutor(1) as executor:
        run_sweep(expand_grid(BASE, grid(b_spec="1,2")), closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=executor)
        report = run_sweep(expand_grid(BASE, grid(b_spec="1")), closed_form_run, SHARED,
                           data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor, log=notices.append)
    assert (report.skipped, report.ran, report.other_rows) == (5, 0, 5)
    assert not [n for n in notices if n.startswith("warning:")]


def test_failing_configuration_is_recorded_and_the_rest_complete_then_retried(tmp_path):
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        report = run_sweep(points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    rows = read_rows(tmp_path / "results.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 15 and [r["b"] for r in failed] == ["1", "2", "3"]
    assert all(r["a"] == "0.5" and r["error"] == "ZeroDivisionError: no hedge at a=0.5" for r in failed)
    assert all(r["product"] == "" for r in failed)
    check_closed_form([r for r in rows if r["status"] == "ok"])
    assert len(report.failed) == 3 and "ZeroDivisionError" in report.failed[0]["traceback"]

    # The bug is fixed: resuming retries exactly the failed ones and replaces their rows.
    messages: list[str] = []
    with LocalExecutor(1) as executor:
        again = run_sweep(
            points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
            executor=executor, log=messages.append,
        )
    assert (again.skipped, again.ran, again.failed) == (12, 3, [])
    assert any("retrying 3" in m for m in messages)
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 15 and [r["config_hash"] for r in rows] == again.hashes
    check_closed_form(rows)


def test_interrupted_sweep_resumes_and_ends_with_one_row_per_configuration(tmp_path):
    points = expand_grid(BASE, grid())
    snapshots: list[list[dict[str, str]]] = []

    def log(message: str) -> None:
        if (tmp_path / "results.csv").exists():
            snapshots.append(read_rows(tmp_path / "results.csv"))

    with LocalExecutor(1) as executor, pytest.raises(SweepInterrupted) as stopped:
        run_sweep(points, interrupting_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    # Grid order in-process: a = 0, 0.25, 0.5 (x3 b values) finished before a = 0.75 was interrupted.
    assert stopped.value.done == 9 and stopped.value.total == 15
    assert gc.get_freeze_count() == 0  # Ctrl-C in an in-process sweep unfreezes the caller's objects too
    assert "re-run the same command to resume" in str(stopped.value)
    partial = read_rows(tmp_path / "results.csv")
    assert [float(r["a"]) for r in partial] == [0.0] * 3 + [0.25] * 3 + [0.5] * 3
    check_closed_form(partial)
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]

    messages: list[str] = []
    with LocalExecutor(2) as executor:
        report = run_sweep(
            points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
            executor=executor, log=lambda m: (messages.append(m), log(m)),
        )
    assert (report.skipped, report.ran) == (9, 6)
    assert "skipped 9 of 15 configurations" in messages[0]
    rows = read_rows(tmp_path / "results.csv")
    assert [r["config_hash"] for r in rows] == report.hashes  # exactly one row per configuration, grid order
    check_closed_form(rows)
    assert rows[:9] == partial  # finished rows untouched


def test_an_interrupted_sweep_whose_rewrite_fails_says_its_rows_are_in_the_journal(tmp_path, monkeypatch):
    import minehedge.sweep as sweep_module

    def full_disk(path, columns, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sweep_module, "atomic_write_csv", full_disk)
    with LocalExecutor(1) as executor, pytest.raises(SweepInterrupted) as stopped:
        run_sweep(expand_grid(BASE, grid()), interrupting_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=executor)
    assert f"9 of 15 configurations are in {tmp_path / 'results.csv.journal'} (results.csv could not" in str(
        stopped.value)
    assert len((tmp_path / "results.csv.journal").read_text().splitlines()) == 9
    monkeypatch.undo()
    with LocalExecutor(1) as executor:
        report = run_sweep(expand_grid(BASE, grid()), closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                           out_dir=tmp_path, executor=executor)
    assert (report.skipped, report.ran) == (9, 6)


def test_resume_from_a_prewritten_partial_file_with_a_stale_failure(tmp_path):
    points = expand_grid(BASE, grid(b_spec="2"))
    first_two = points[:2]
    with LocalExecutor(1) as executor:
        run_sweep(first_two, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    # Append a failed row for the third configuration, as an earlier crashed run would have left it.
    rows = read_rows(tmp_path / "results.csv")
    stale = dict.fromkeys(rows[0], "")
    stale.update(a="0.5", b="2", status="failed", error="MemoryError: ", seconds="1.0",
                 config_hash=config_hash(points[2].config, FINGERPRINT))
    with (tmp_path / "results.csv").open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerow(stale)
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    assert (report.skipped, report.ran) == (2, 3)
    rows = read_rows(tmp_path / "results.csv")
    assert [r["config_hash"] for r in rows] == report.hashes
    check_closed_form(rows)


def test_results_file_parses_after_every_completed_configuration(tmp_path, monkeypatch):
    """Every os.replace onto results.csv installs a complete file; no temp file survives."""
    import minehedge.sweep as sweep_module

    seen: list[int] = []
    real_replace = os.replace

    def checking_replace(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "results.csv":
            rows = read_rows(Path(dst))
            assert all(r["status"] == "ok" and r["config_hash"] for r in rows)
            seen.append(len(rows))

    monkeypatch.setattr(sweep_module.os, "replace", checking_replace)
    monkeypatch.setattr(sweep_module, "SNAPSHOT_MIN_SECONDS", 0.0)  # rewrite after every configuration,
    monkeypatch.setattr(sweep_module, "SNAPSHOT_COST_SHARE", math.inf)  # however long rewriting takes
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    assert seen == list(range(1, 16))
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_results_csv_is_rewritten_when_due_and_the_journal_holds_every_row_between(tmp_path, monkeypatch):
    """Each configuration takes 1 s of a driven clock. results.csv is rewritten once 5 s
    (SNAPSHOT_MIN_SECONDS) have passed, and once a rewrite has taken 0.2 s, no sooner than 0.2 / 0.02 = 10 s
    after it; between rewrites the journal holds exactly the rows results.csv lacks."""
    import minehedge.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "_clock", lambda: _DRIVEN_CLOCK[0])
    _DRIVEN_CLOCK[0] = 0.0
    real_write = sweep_module.atomic_write_csv
    rewrites: list[tuple[float, int, int]] = []  # (time, rows in results.csv, rows in the journal before)

    def slow_write(path, columns, rows):
        journal = Path(str(path) + ".journal")
        lines = journal.read_text().splitlines() if journal.exists() else []
        real_write(path, columns, rows)
        rewrites.append((_DRIVEN_CLOCK[0], len(read_rows(path)), len(lines)))
        _DRIVEN_CLOCK[0] += 0.2

    monkeypatch.setattr(sweep_module, "atomic_write_csv", slow_write)
    with LocalExecutor(1) as executor:
        run_sweep(expand_grid(BASE, grid()), clocked_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=executor)
    # t = 5: 5 rows (all 5 from the journal); then t >= 5.2 + 10 = 15.2, the 15th and last row, 10 of them new.
    assert rewrites == [(5.0, 5, 5), (15.2, 15, 10)]
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]
    check_closed_form(read_rows(tmp_path / "results.csv"))


def _killed_sweep(folder: Path) -> int:
    """Exit code of a sweep of grid() into ``folder``, in a process of its own that killed_run kills."""
    script = (
        "import sys\n"
        "from tests.test_sweep_engine import BASE, FINGERPRINT, SHARED, grid, killed_run\n"
        "from minehedge.sweep import LocalExecutor, expand_grid, run_sweep\n"
        "with LocalExecutor(1) as ex:\n"
        "    run_sweep(expand_grid(BASE, grid()), killed_run, SHARED, data_fingerprint=FINGERPRINT,\n"
        "              out_dir=sys.argv[1], executor=ex)\n"
    )
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", script, str(folder)], cwd=root, check=False).returncode


def test_a_killed_sweep_loses_no_finished_configuration(tmp_path):
    """The sweeping process is killed (os._exit) during the 10th configuration, before results.csv was ever
    due: the journal holds the 9 that finished, and the next sweep runs only the other 6."""
    assert _killed_sweep(tmp_path / "killed") == 9
    assert sorted(os.listdir(tmp_path / "killed")) == ["results.csv.journal"]
    assert len((tmp_path / "killed" / "results.csv.journal").read_text().splitlines()) == 9

    points = expand_grid(BASE, grid())
    messages: list[str] = []
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                           out_dir=tmp_path / "killed", executor=executor, log=messages.append)
        clean = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                          out_dir=tmp_path / "clean", executor=executor)
    assert (report.skipped, report.ran) == (9, 6)
    assert messages[0].startswith("recovered 9 results of an unfinished sweep")
    assert sorted(os.listdir(tmp_path / "killed")) == ["results.csv"]
    recovered, uninterrupted = read_rows(report.results_path), read_rows(clean.results_path)
    assert [r["config_hash"] for r in recovered] == report.hashes
    for row in (*recovered, *uninterrupted):
        row.pop("seconds")
    assert recovered == uninterrupted


def test_a_journal_holding_only_a_torn_line_is_dropped_before_the_next_sweep_appends(tmp_path):
    """A crash during the first append after a rewrite leaves a journal of half a line. The next sweep must not
    append after that fragment: killed in its turn, it leaves only whole lines, and the one after resumes."""
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        run_sweep(points[:3], closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                  executor=executor)
    journal = tmp_path / "results.csv.journal"
    journal.write_text('{"a": "0.25", "b": "1", "prod')
    assert _killed_sweep(tmp_path) == 9  # skips the first 3, then a = 0.25 and 0.5 finish, a = 0.75 kills
    lines = journal.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["status"] == "ok" for line in lines)
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                           executor=executor)
    assert (report.skipped, report.ran) == (9, 6)
    check_closed_form(read_rows(tmp_path / "results.csv"))


def test_journal_lines_are_ascii_and_a_line_torn_inside_a_character_runs_again(tmp_path, monkeypatch):
    import minehedge.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "SNAPSHOT_MIN_SECONDS", math.inf)
    points = expand_grid(BASE, grid(b_spec="1"))
    table = sweep_module.ResultsTable(tmp_path / "results.csv", ["a", "b"])
    message = "ValueError: marge \u2265 100 % \u00e0 l'\u00e9tat initial"
    failed = {"summary": {}, "status": "failed", "error": message, "seconds": 0.5}
    key = config_hash(points[0].config, FINGERPRINT)
    table.commit(table.record(points[0], key, failed), [key])
    table.close_journal()
    journal = tmp_path / "results.csv.journal"
    written = journal.read_bytes()
    assert written.isascii()
    torn = '{"a": "0.25", "b": "1", "error": "\u2265'.encode()[:-2]  # the process stopped inside the character
    journal.write_bytes(written + torn)
    again = sweep_module.ResultsTable(tmp_path / "results.csv", ["a", "b"])
    assert again.replayed == 1 and list(again.rows) == [key] and again.rows[key]["error"] == message


class _LosesTheCluster:
    """An executor whose connection drops after four results (as a Dask scheduler going away)."""

    needs_pickle = False
    description = "a cluster that goes away"

    def run(self, run_fn, shared, jobs):
        for n, (index, config) in enumerate(jobs):
            if n == 4:
                raise ConnectionResetError("scheduler connection lost")
            yield index, {"status": "ok", "error": "", "seconds": 0.0, "summary": run_fn(config, shared)}


def test_a_failing_executor_leaves_results_csv_with_what_finished(tmp_path):
    with pytest.raises(ConnectionResetError, match="scheduler connection lost"):
        run_sweep(expand_grid(BASE, grid()), closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=_LosesTheCluster())
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 4
    check_closed_form(rows)


class _FullDiskFile:
    """A journal file on a full disk: writes are buffered; flushing them fails, and so does closing, which
    flushes again (as a real buffered file does)."""

    def __init__(self) -> None:
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        return len(text)

    def flush(self) -> None:
        if self.pending:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        raise AssertionError("the failed flush comes first")

    def close(self) -> None:
        self.flush()


class _JournalOnAFullDisk:
    """Stands in for ResultsTable.journal_path: opening it gives a _FullDiskFile; nothing reaches the disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def unlink(self) -> None:
        self.path.unlink()

    def open(self, mode: str, encoding: str) -> _FullDiskFile:
        return _FullDiskFile()

    def __str__(self) -> str:
        return str(self.path)


def test_a_full_disk_under_the_journal_raises_its_own_error_and_closes_the_journal(tmp_path, monkeypatch):
    import minehedge.sweep as sweep_module

    tables = []
    real_init = sweep_module.ResultsTable.__init__

    def journal_on_a_full_disk(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.journal_path = _JournalOnAFullDisk(self.journal_path)
        tables.append(self)

    monkeypatch.setattr(sweep_module.ResultsTable, "__init__", journal_on_a_full_disk)
    with LocalExecutor(1) as executor, pytest.raises(OSError) as raised:
        run_sweep(expand_grid(BASE, grid()), closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=executor)
    assert raised.value.errno == errno.ENOSPC
    frames = [entry.name for entry in raised.traceback]
    assert "commit" in frames and "close_journal" not in frames  # the append's error, not the close's
    assert tables[0]._journal is None  # closed (or dropped) all the same
    assert read_rows(tmp_path / "results.csv")[0]["config_hash"] == tables[0].rows.popitem()[0]
    assert len(read_rows(tmp_path / "results.csv")) == 1  # the failure path wrote what had finished


def test_a_journal_already_in_results_csv_is_dropped_without_a_recovery_notice(tmp_path):
    """A crash between the rewrite and the journal's removal: the journal repeats rows results.csv holds."""
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                  executor=executor)
    before = (tmp_path / "results.csv").read_bytes()
    rows = read_rows(tmp_path / "results.csv")
    (tmp_path / "results.csv.journal").write_text("".join(json.dumps(row) + "\n" for row in rows))
    messages: list[str] = []
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                           executor=executor, log=messages.append)
    assert report.skipped == 15 and not any("recovered" in m for m in messages)
    assert sorted(os.listdir(tmp_path)) == ["results.csv"] and (tmp_path / "results.csv").read_bytes() == before


def test_a_rewrite_left_half_done_by_a_killed_sweep_is_removed(tmp_path):
    points = expand_grid(BASE, grid(b_spec="1"))
    tmp_path.joinpath(".results.csv.k1ll3d.tmp").write_text("a,b,prod")  # atomic_write_csv's temporary name
    with LocalExecutor(1) as executor:
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                  executor=executor)
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_a_recovered_retry_keeps_its_rows_place_for_a_sweep_of_another_grid(tmp_path):
    """results.csv of an earlier grid holds a failure in the middle; the journal of a killed retry holds its
    success. Rows of another grid stay as they were: the success takes the failure's place."""
    points = expand_grid(BASE, grid(b_spec="1"))
    with LocalExecutor(1) as executor:
        run_sweep(points[1:4], failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                  executor=executor)
    before = read_rows(tmp_path / "results.csv")
    assert [r["status"] for r in before] == ["ok", "failed", "ok"]  # a = 0.25, 0.5, 0.75
    fixed = {**before[1], "status": "ok", "error": "", "product": repr(0.5 * 1 * 3), "total": repr(0.5 + 1 + 2 + 7 + 0.25),
             "big": "False", "steps": "2"}
    (tmp_path / "results.csv.journal").write_text(json.dumps(fixed) + "\n")
    other = expand_grid(BASE, {"a": [1.0], "b": [1]})
    with LocalExecutor(1) as executor:
        run_sweep(other, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    rows = read_rows(tmp_path / "results.csv")
    assert [r["a"] for r in rows] == ["1.0", "0.25", "0.5", "0.75"]  # this grid's row, then the others in place
    check_closed_form(rows)


def test_a_torn_last_journal_line_runs_again_and_a_malformed_one_is_refused(tmp_path, monkeypatch):
    import minehedge.sweep as sweep_module

    points = expand_grid(BASE, grid(b_spec="2"))
    monkeypatch.setattr(sweep_module, "SNAPSHOT_MIN_SECONDS", math.inf)
    with LocalExecutor(1) as executor:
        run_sweep(points[:3], closed_form_run, SHARED, data_fingerprint=FINGERPRINT,
                  out_dir=tmp_path, executor=executor)
    journal = tmp_path / "results.csv.journal"
    assert not journal.exists()  # the sweep finished: its last rewrite folded the journal in
    # What a crash during the 3rd configuration's append leaves: two rows and half of the third.
    rows = read_rows(tmp_path / "results.csv")
    (tmp_path / "results.csv").unlink()
    lines = [json.dumps(row) for row in rows]
    journal.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                           executor=executor)
    assert (report.skipped, report.ran) == (2, 3)
    check_closed_form(read_rows(tmp_path / "results.csv"))

    journal.write_text(lines[0] + "\n" + lines[1][:-1] + "\n" + lines[2] + "\n")
    with LocalExecutor(1) as executor, pytest.raises(ConfigError, match=r"results.csv.journal, line 2: malformed"):
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                  executor=executor)


def test_a_write_that_fails_leaves_the_previous_file_and_no_temp(tmp_path, monkeypatch):
    import minehedge.sweep as sweep_module

    points = expand_grid(BASE, grid(b_spec="1"))
    with LocalExecutor(1) as executor:
        run_sweep(points[:2], closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    before = (tmp_path / "results.csv").read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sweep_module.os, "fsync", full_disk)
    with LocalExecutor(1) as executor, pytest.raises(OSError, match="No space"):
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    assert (tmp_path / "results.csv").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.csv.journal"]  # no temporary file
    assert gc.get_freeze_count() == 0  # the interrupted in-process sweep unfroze the caller's objects
    monkeypatch.undo()  # the disk has room again
    with LocalExecutor(1) as executor:
        report = run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                           executor=executor)
    assert report.skipped == 2 and sorted(os.listdir(tmp_path)) == ["results.csv"]
    check_closed_form(read_rows(tmp_path / "results.csv"))


def test_two_worker_processes_give_the_in_process_values(tmp_path):
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        run_sweep(points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "one", executor=executor)
    with LocalExecutor(2) as executor:
        run_sweep(points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "two", executor=executor)

    def without_seconds(path: Path) -> list[dict[str, str]]:
        rows = read_rows(path)
        for row in rows:
            row.pop("seconds")
        return sorted(rows, key=lambda r: r["config_hash"])

    assert without_seconds(tmp_path / "two" / "results.csv") == without_seconds(tmp_path / "one" / "results.csv")


def test_shared_data_reach_each_worker_process_once(tmp_path):
    points = expand_grid(BASE, grid())
    with LocalExecutor(2) as executor:
        run_sweep(points, where_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    rows = read_rows(tmp_path / "results.csv")
    pids = {r["pid"] for r in rows}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    for pid in pids:  # one shared object per worker process, reused by all its configurations
        assert len({r["shared_id"] for r in rows if r["pid"] == pid}) == 1


def test_workers_outlive_a_sweep_within_the_with_block(tmp_path):
    """A second sweep with the same run function and data reuses the pool (its workers keep the one shared
    object each was given); other data get a fresh pool; the with block shuts it down."""
    points = expand_grid(BASE, grid())
    with LocalExecutor(2) as executor:
        run_sweep(points, where_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "first",
                  executor=executor)
        pool = executor._pool
        run_sweep(points, where_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "second",
                  executor=executor)
        assert executor._pool is pool
        run_sweep(points, where_run, dict(SHARED), data_fingerprint=FINGERPRINT, out_dir=tmp_path / "other",
                  executor=executor)
        assert executor._pool is not pool
    first, second, other = (read_rows(tmp_path / name / "results.csv") for name in ("first", "second", "other"))
    held = {(r["pid"], r["shared_id"]) for r in first + second}
    assert len(held) == len({pid for pid, _ in held})  # one shared object per worker over both sweeps
    assert not {r["pid"] for r in other} & {pid for pid, _ in held}
    assert executor._pool is None


def test_a_worker_that_dies_once_fails_nothing_and_the_fresh_pool_serves_the_next_sweep(tmp_path):
    points = expand_grid(BASE, grid())
    shared = {**SHARED, "marker": str(tmp_path / "died")}
    with LocalExecutor(2) as executor:
        report = run_sweep(points, dying_once_run, shared, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "out",
                           executor=executor)
        assert (tmp_path / "died").exists()  # a worker died, and the pool with it
        # what was running in the broken pool ran again alone, and did not die again
        assert report.ran == 15 and not report.failed
        check_closed_form(read_rows(tmp_path / "out" / "results.csv"))
        pool = executor._pool
        assert pool is not None and not pool._broken
        again = run_sweep(points, dying_once_run, shared, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "again",
                          executor=executor)
        assert executor._pool is pool  # same run function and data: the fresh pool is kept
    assert again.ran == 15 and not again.failed
    check_closed_form(read_rows(tmp_path / "again" / "results.csv"))


def test_unpicklable_run_function_is_refused_before_anything_runs(tmp_path):
    points = expand_grid(BASE, grid(b_spec="1"))
    with LocalExecutor(2) as executor, pytest.raises(TypeError, match="top-level function"):
        run_sweep(points, lambda c, s: {}, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    assert not (tmp_path / "results.csv").exists()


def test_foreign_results_file_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("x,y\n1,2\n")
    points = expand_grid(BASE, grid(b_spec="1"))
    with LocalExecutor(1) as executor, pytest.raises(ConfigError, match="not a minehedge results file"):
        run_sweep(points, closed_form_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    assert (tmp_path / "results.csv").read_text() == "x,y\n1,2\n"


def test_rank_and_top_file(tmp_path):
    points = expand_grid(BASE, grid())
    with LocalExecutor(1) as executor:
        report = run_sweep(points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    frame = read_results(report.results_path, report.hashes)
    best = rank_results(frame, "product", top=4)
    # product = 3ab, descending; ties (none here except via grid) keep grid order; failed a=0.5 rows excluded
    expected = sorted(
        ((Fraction(a) * b * 3, a, b) for a in (0, 0.25, 0.75, 1) for b in (1, 2, 3)), key=lambda t: -t[0]
    )[:4]
    assert [(row.a, row.b) for row in best.itertuples()] == [(a, b) for _, a, b in expected]
    lowest = rank_results(frame, "product", top=2, descending=False)
    assert list(lowest["product"]) == [0.0, 0.0]
    path = write_top(tmp_path, report.results_path, list(best["config_hash"]))
    top_rows = read_rows(path)
    results = {r["config_hash"]: r for r in read_rows(report.results_path)}
    assert [r["rank"] for r in top_rows] == ["1", "2", "3", "4"]
    assert all({k: v for k, v in r.items() if k != "rank"} == results[r["config_hash"]] for r in top_rows)
    with pytest.raises(ConfigError, match="Did you mean 'product'"):
        rank_results(frame, "prodcut", top=3)


def test_a_misspelt_metric_is_refused_even_when_no_configuration_ran_ok():
    import pandas as pd

    from analyzers.summary_keys import SUMMARY_KEYS

    # every configuration failed: the results hold the swept parameters and the reserved columns only
    frame = pd.DataFrame({"leverage": [1.0, 2.0], "status": "failed", "error": "ConfigError: no", "seconds": 0.1,
                          "config_hash": ["h1", "h2"]})
    # Before: no rows, as for a correct name, so a typo went unnoticed.
    with pytest.raises(ConfigError) as caught:
        rank_results(frame, "sharp", top=3)
    assert str(caught.value) == (
        f"rank_by='sharp' is not a column of the results or a Summary key; allowed: leverage, "
        f"{', '.join(SUMMARY_KEYS)}. Did you mean 'sharpe'?")
    with pytest.raises(ConfigError, match="Did you mean 'leverage'"):
        rank_results(frame, "leverag", top=3)
    # a Summary key, a swept parameter and the run's wall time spelt right: nothing to rank, no error
    for metric in ("sharpe", "max_drawdown_pct", "leverage", "seconds"):
        assert rank_results(frame, metric, top=3).empty


# The audit's list of Summary keys that ranked worst-first, and the cash-insolvency keys added since; lower is
# better for every one.
AUDITED_LOWER = ("max_drawdown_coin", "liquidation_fee_usd", "hosting_cost_usd", "pool_fee_usd",
                 "insurance_shortfall_usd", "loan_liquidations", "cme_calls_missed", "time_above_warning_days",
                 "ruined", "insolvencies", "insolvent_days")


def test_every_summary_key_declares_which_side_is_better():
    from analyzers.summary_keys import DIRECTIONS, LOWER, SUMMARY_BETTER, SUMMARY_KEYS

    assert tuple(SUMMARY_BETTER) == SUMMARY_KEYS and len(SUMMARY_KEYS) == 42
    assert set(SUMMARY_BETTER.values()) <= set(DIRECTIONS)
    assert {key for key in AUDITED_LOWER if SUMMARY_BETTER[key] == LOWER} == set(AUDITED_LOWER)
    # the sweep's ascending set is exactly the declared one (plus the run's wall time)
    assert LOWER_IS_BETTER == {key for key, better in SUMMARY_BETTER.items() if better == LOWER} | {"seconds"}


@pytest.mark.parametrize("metric", [*AUDITED_LOWER, "max_drawdown_pct", "seconds", "sharpe"])
def test_rank_by_sorts_lower_is_better_metrics_ascending(metric):
    import pandas as pd

    frame = pd.DataFrame({"leverage": [10.0, 2.0, 5.0], metric: [416_101.75, 62_585.36, 225_399.26],
                          "status": "ok"})
    ranked = rank_results(frame, metric, top=3)["leverage"].tolist()
    assert ranked == ([2.0, 5.0, 10.0] if metric != "sharpe" else [10.0, 5.0, 2.0])


def test_progress_bar_with_eta_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    points = expand_grid(BASE, grid(b_spec="1"))
    with LocalExecutor(1) as executor:  # stderr is not a terminal under pytest: no bar
        run_sweep(points, closed_form_run, SHARED, data_fingerprint="a", out_dir=tmp_path, executor=executor,
                  progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    with LocalExecutor(1) as executor:
        run_sweep(points, closed_form_run, SHARED, data_fingerprint="b", out_dir=tmp_path, executor=executor,
                  progress=True)
    err = capsys.readouterr().err
    assert "sweep: 100%" in err and "5/5" in err and "<00:00" in err  # elapsed<remaining: the ETA


def check_no_cycle_outlived_the_next_run(rows: list[dict[str, str]], at_least: int) -> None:
    after_a_run = [r for r in rows if r["had_previous"] == "True"]
    assert len(after_a_run) >= at_least
    assert all(r["previous_alive"] == "False" for r in after_a_run)


def test_in_process_runs_free_each_runs_cycles_and_leave_the_collector_as_found(tmp_path):
    points = expand_grid(BASE, grid(b_spec="1"))
    _PREVIOUS_CYCLE.clear()
    with LocalExecutor(1) as executor:
        run_sweep(points, cycle_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "a", executor=executor)
    rows = read_rows(tmp_path / "a" / "results.csv")
    check_no_cycle_outlived_the_next_run(rows, at_least=4)
    assert {r["frozen"] for r in rows} == {"True"}  # the caller's objects, during the sweep only
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a caller who froze objects already finds them still frozen (a few may have died meanwhile)
    try:
        frozen = gc.get_freeze_count()
        with LocalExecutor(1) as executor:
            run_sweep(points, cycle_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "b",
                      executor=executor)
        assert frozen - 100 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
    check_no_cycle_outlived_the_next_run(read_rows(tmp_path / "b" / "results.csv"), at_least=4)


def test_worker_processes_free_each_runs_cycles_before_the_next(tmp_path):
    points = expand_grid(BASE, grid(b_spec="1,2"))
    with LocalExecutor(2) as executor:
        run_sweep(points, cycle_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path, executor=executor)
    rows = read_rows(tmp_path / "results.csv")
    check_no_cycle_outlived_the_next_run(rows, at_least=len(rows) - 2)
    # what survived a worker's first run is frozen, out of every later collection's way
    assert all(r["frozen"] == "True" for r in rows if r["had_previous"] == "True")


def test_heatmaps_keep_the_row_and_column_of_failed_configurations(tmp_path, monkeypatch):
    import pandas as pd

    from analyzers import charts
    from minehedge.sweep import write_heatmaps

    drawn = {}

    def keep(fig, path):
        drawn[Path(path).name] = fig
        return path

    monkeypatch.setattr(charts, "save_figure", keep)
    # every configuration at leverage 125 failed (the venue refused it): no sharpe there
    frame = pd.DataFrame([{"leverage": lev, "hedge_ratio": h, "status": "ok" if lev < 100 else "failed",
                           "sharpe": lev + h if lev < 100 else math.nan}
                          for lev in (1.0, 2.0, 125.0) for h in (0.0, 0.5)])
    write_heatmaps(tmp_path, frame, "leverage", "hedge_ratio", ["sharpe"])
    ax = drawn["heatmap_sharpe.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in sorted(set(frame["leverage"]))]
    cells = ax.images[0].get_array()
    ok = frame[frame["status"] == "ok"]
    assert cells.mask[:, 2].all() and not cells.mask[:, :2].any()  # leverage 125: n/a in both rows
    assert [cells[r, c] for r in range(2) for c in range(2)] == [
        ok.loc[(ok["hedge_ratio"] == h) & (ok["leverage"] == lev), "sharpe"].item()
        for h in (0.0, 0.5) for lev in (1.0, 2.0)]
