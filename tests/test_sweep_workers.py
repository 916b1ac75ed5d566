"""Process-pool workers that die or are interrupted: what a sweep records, and how it ends."""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minehedge.config import parse_grid_values
from minehedge.sweep import LocalExecutor, expand_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
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
        # the executor stays usable: the retry runs the failures again in a new pool; the killer dies again
        # (and fails what runs beside it, if anything: with two failures, both run at once)
        retry = run_sweep(points, killing_run, {}, data_fingerprint=FINGERPRINT, out_dir=tmp_path,
                          executor=executor)
    assert retry.skipped == 27 - len(failed) and retry.ran == len(failed)
    assert {(f["swept"]["a"], f["swept"]["b"]) for f in retry.failed} in ({(0.5, 2)}, set(failed))


def slow_summary(config: dict, shared) -> dict:
    """The CLI contract's closed-form summary, taking 1.5 s that a Ctrl-C does not cut short (as a long step
    of compiled code would not notice it)."""
    from tests.test_cli_commands import closed_form_summary

    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(0.05)
    return closed_form_summary(config, shared)


SWEEP_SCRIPT = """
import sys
import minehedge.cli as cli
import tests.test_cli_commands as contract
import tests.test_sweep_workers as here
contract.CONTRACT.run_summary = here.slow_summary
cli._api = lambda: contract.CONTRACT
sys.argv = ["run_backtest.py", "sweep", "--start", "2020-01-01", "--grid", "hedge_ratio=0:1:0.05", "--grid",
            "leverage=1,2", "--workers", "2", "--out", sys.argv[1]]
raise SystemExit(cli.main())
"""


@pytest.mark.parametrize("gap", [0.01, 0.2])
def test_two_ctrl_c_end_a_process_pool_sweep_at_once_in_one_line(tmp_path, gap):
    """Ctrl-C in a terminal signals the whole process group (the CLI and its workers), twice here."""
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(out)], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "results.csv.journal").exists():  # the workers are running configurations
            assert child.poll() is None and time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        time.sleep(gap)
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # a hung sweep: end it and its workers (the test has failed)
        child.wait()
    assert child.returncode == 130 and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("run_backtest.py: ") and "interrupted" in last and "error" not in last, err
    assert [line for line in err.splitlines() if line.startswith("run_backtest.py")] == [last]
    assert (out / "results.csv").exists() or (out / "results.csv.journal").exists()  # what finished is kept


def sleepy_run(config: dict, shared: dict) -> dict:
    """a == 0: whether this worker ignores Ctrl-C; otherwise a 20 s configuration."""
    if config["params"]["a"] == 0:
        return {"sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN}
    time.sleep(20)
    return {}


def test_workers_ignore_ctrl_c_and_an_interrupted_executor_ends_them_without_waiting():
    points = expand_grid(BASE, {"a": [0.0, 1.0, 2.0], "b": [1]})
    with pytest.raises(KeyboardInterrupt):
        with LocalExecutor(2) as executor:
            results = executor.run(sleepy_run, {}, [(i, p.config) for i, p in enumerate(points)])
            index, outcome = next(results)  # a = 0; both workers then start a 20 s configuration
            assert (index, outcome["summary"]) == (0, {"sigint_ignored": True})
            workers = list(executor._pool._processes.values())
            started = time.monotonic()
            raise KeyboardInterrupt  # the user's Ctrl-C, in the parent
    assert time.monotonic() - started < 5  # the running configurations were not waited for
    assert workers and not any(worker.is_alive() for worker in workers)
    results.close()
