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
from minehedge.sweep import LocalExecutor, SweepInterrupted, expand_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = "data-sha256-test"
BASE = {"asset": "BTC", "timeframe": "1d", "policy": "closed_form", "seed": 7, "params": {}}


KILLER, NEIGHBOUR = (0.5, 2), (0.5, 1)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30  # never hang the suite: the assertions tell what went wrong
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def killing_run(config: dict, shared: dict) -> dict:
    """a * b, except that (a, b) = (0.5, 2) kills its worker process every time (as an out-of-memory kill);
    in the test's own process (a run of one job is not sent to the pool) it raises instead. With
    ``shared["interrupt_alone"]`` the neighbour's first run after the break raises KeyboardInterrupt (Ctrl-C).

    Every attempt appends ``start|end a b`` lines to the file ``shared["log"]``. The killer waits until its
    neighbour in the grid, (0.5, 1), has started, and the neighbour runs until 1 s after the killer started, so
    the pool breaks while the neighbour is running in the other worker."""
    a, b = config["params"]["a"], config["params"]["b"]
    log, folder = Path(shared["log"]), Path(shared["log"]).parent
    with log.open("a") as handle:
        handle.write(f"start {a} {b}\n")
    if (a, b) == KILLER:
        if multiprocessing.parent_process() is None:
            raise MemoryError("killed")
        _wait_for(folder / "neighbour-started")
        (folder / "killer-started").touch()
        os._exit(3)
    if (a, b) == NEIGHBOUR:
        if shared.get("interrupt_alone") and (folder / "killer-started").exists() and \
                not (folder / "interrupted").exists():  # its run alone, after the break: Ctrl-C
            (folder / "interrupted").touch()
            raise KeyboardInterrupt
        (folder / "neighbour-started").touch()
        _wait_for(folder / "killer-started")
        time.sleep(1.0)
    with log.open("a") as handle:
        handle.write(f"end {a} {b}\n")
    return {"product": a * b, "pid": os.getpid()}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_dead_worker_fails_only_the_configuration_that_kills_its_worker_alone(tmp_path):
    grid = {"a": parse_grid_values("0:1:0.125", key="a"), "b": [1, 2, 3]}  # 27 configurations
    points = expand_grid(BASE, grid)
    shared = {"log": str(tmp_path / "attempts.log")}
    out = tmp_path / "out"
    with LocalExecutor(2) as executor:
        report = run_sweep(points, killing_run, shared, data_fingerprint=FINGERPRINT, out_dir=out, executor=executor)
        rows = read_rows(out / "results.csv")
        assert len(rows) == 27 and report.ran == 27
        # the neighbour, running in the other worker when the killer broke the pool, ran again alone and is ok
        assert [(float(r["a"]), int(r["b"])) for r in rows if r["status"] == "failed"] == [KILLER]
        assert [f["swept"] for f in report.failed] == [{"a": 0.5, "b": 2}]
        error = next(r["error"] for r in rows if r["status"] == "failed")
        assert error == (
            "WorkerDied: its worker process died (exit code 3) when it ran alone, retried because a worker died "
            "while it ran; likely cause: the run needs more memory than the machine had free (the kernel's "
            "out-of-memory killer ends a process with SIGKILL), else a crash in compiled code")
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 26 and all(float(r["product"]) == float(r["a"]) * int(r["b"]) for r in ok)
        # attempts: the killer and its neighbour twice (beside each other, then each alone), the others once
        lines = [line.split() for line in Path(shared["log"]).read_text().splitlines()]
        starts = [(float(a), int(b)) for kind, a, b in lines if kind == "start"]
        assert sorted(starts) == sorted([(float(p.swept["a"]), p.swept["b"]) for p in points] + [KILLER, NEIGHBOUR])
        again = [i for i, (kind, a, b) in enumerate(lines) if kind == "start" and (float(a), int(b)) in
                 (KILLER, NEIGHBOUR)][2:]  # the second attempts: the neighbour's (grid order), then the killer's
        assert [lines[i] for i in again] == [["start", "0.5", "1"], ["start", "0.5", "2"]]
        assert again[1] == again[0] + 2 and lines[again[0] + 1] == ["end", "0.5", "1"]  # alone: nothing between
        # a re-run retries only the killer (one job: in this process, where it raises instead)
        retry = run_sweep(points, killing_run, shared, data_fingerprint=FINGERPRINT, out_dir=out, executor=executor)
    assert retry.skipped == 26 and retry.ran == 1
    assert [(f["swept"], f["error"]) for f in retry.failed] == [({"a": 0.5, "b": 2}, "MemoryError: killed")]


def test_ctrl_c_while_a_neighbour_runs_alone_ends_the_sweep_and_a_rerun_resumes(tmp_path):
    grid = {"a": parse_grid_values("0:1:0.125", key="a"), "b": [1, 2, 3]}
    points = expand_grid(BASE, grid)
    shared = {"log": str(tmp_path / "attempts.log"), "interrupt_alone": True}
    out = tmp_path / "out"
    with LocalExecutor(2) as executor:
        with pytest.raises(SweepInterrupted) as stopped:
            run_sweep(points, killing_run, shared, data_fingerprint=FINGERPRINT, out_dir=out, executor=executor)
        assert executor._pool is None  # ended at once, not waited for
        # the 12 configurations before the pair finished and are kept; the pair and the rest are not recorded
        assert stopped.value.done == 12 and not (out / "results.csv.journal").exists()
        assert [r["status"] for r in read_rows(out / "results.csv")] == ["ok"] * 12
        resumed = run_sweep(points, killing_run, shared, data_fingerprint=FINGERPRINT, out_dir=out, executor=executor)
    assert resumed.skipped == 12 and resumed.ran == 15
    assert [f["swept"] for f in resumed.failed] == [{"a": 0.5, "b": 2}]
    rows = read_rows(out / "results.csv")
    assert len(rows) == 27 and [r["status"] for r in rows].count("ok") == 26


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


def _descendants(pid: int) -> set[int]:
    """The living descendants of ``pid``, from /proc (Linux): the forkserver, the resource tracker and the
    pool's workers of a sweep."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie has exited (a container's PID 1 may not reap it)
                parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the processes through /proc (Linux)")
def test_a_sweep_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    """SIGKILL (or the out-of-memory killer) gives the sweep no chance to end its workers: they notice that
    it is gone and exit, and the forkserver and the resource tracker, which wait for the sweep and every
    worker, with them. They used to wait for their next task forever (~170 MB each)."""
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(out)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    left: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not (out / "results.csv.journal").exists():  # the workers are running configurations
            assert child.poll() is None and time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.05)
        started = _descendants(child.pid)
        child.kill()
        child.wait()
        deadline = time.monotonic() + 10
        left = {pid for pid in started if _alive(pid)}
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = {pid for pid in left if _alive(pid)}
    finally:  # if the test has failed: end what it left behind (all in the sweep's process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert len(started) >= 3, started  # the forkserver, 2 workers (and multiprocessing's resource tracker)
    assert not left, f"still running 10 s after the sweep was killed: {sorted(left)}"
