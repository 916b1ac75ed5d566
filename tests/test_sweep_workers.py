"""Process-pool workers that die or are interrupted: what a sweep records, and how it ends."""

from __future__ import annotations

import csv
import multiprocessing
import os
from pathlib import Path

from minehedge.config import parse_grid_values
from minehedge.sweep import LocalExecutor, expand_grid, run_sweep

FINGERPRINT = "data-sha256-test"
BASE = {"asset": "BTC", "timeframe": "1d", "policy": "closed_form", "seed": 7, "params": {}}


def killing_run(config: dict, shared: dict) -> dict:
    """a * b, except that (a, b) = (0.5, 2) kills its worker process every time (as an out-of-memory kill);
    in the test's own process (a run of one job is not sent to the pool) it raises instead."""
    a, b = config["params"]["a"], config["params"]["b"]
    if (a, b) == (0.5, 2):
        if multiprocessing.parent_process() is None:
            raise MemoryError("killed")
        os._exit(3)
    return {"product": a * b, "pid": os.getpid()}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_dead_worker_fails_only_the_configurations_that_were_running_and_a_fresh_pool_runs_the_rest(tmp_path):
    grid = {"a": parse_grid_values("0:1:0.125", key="a"), "b": [1, 2, 3]}  # 27 configurations
    points = expand_grid(BASE, grid)
    with LocalExecutor(2) as executor:
        report = run_sweep(points, killing_run, {}, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                           executor=executor)
        rows = read_rows(tmp_path / "results.csv")
        assert len(rows) == 27 and report.ran == 27
        failed = [(float(r["a"]), int(r["b"])) for r in rows if r["status"] == "failed"]
        # the killer, and at most the one configuration the other worker was running when the pool broke
        assert (0.5, 2) in failed and len(failed) <= 2 and len(report.failed) == len(failed)
        assert all(r["error"].startswith("BrokenProcessPool: A process in the process pool was terminated")
                   for r in rows if r["status"] == "failed")
        ok = [r for r in rows if r["status"] == "ok"]
        assert all(float(r["product"]) == float(r["a"]) * int(r["b"]) for r in ok)
        assert len(ok) >= 25 and rows[-1]["status"] == "ok"  # run after the break: by a fresh pool
        # the executor stays usable: the retry runs the failures again in a new pool (the killer dies again)
        retry = run_sweep(points, killing_run, {}, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                          executor=executor)
    assert retry.skipped == 27 - len(failed) and [f["swept"] for f in retry.failed] == [{"a": 0.5, "b": 2}]
