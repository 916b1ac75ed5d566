"""Parameter sweeps: grids -> configurations -> an executor -> results.csv, resumable and atomic.

The engine knows nothing about backtests. It runs a picklable, top-level ``run_fn(config, shared) -> dict``
(a flat record of numbers, e.g. the Summary of one run) for every configuration, on one of:

* :class:`LocalExecutor` - ``workers=1`` runs in this process; ``workers=N`` a ``ProcessPoolExecutor`` with
  the ``forkserver`` start method where the platform has it, else ``spawn`` (never ``fork``: it copies
  threads and locks of the parent), kept open for every sweep of the same run function and data within
  the executor's ``with`` block;
* :class:`DaskExecutor` - an existing ``distributed`` cluster (``--scheduler tcp://HOST:8786``) or a
  ``LocalCluster`` started here (``--dask-local N``).

``run_fn`` and ``shared`` (the data, loaded and validated once per sweep by the caller) travel **once per
worker**: a process-pool initializer receives them, and Dask workers get them in a worker plugin
(:mod:`minehedge.dask_payload`; the scheduler hands it to a restarted worker too). Each task then carries only
its configuration. Results do not depend on the executor: rows are written in
grid order and every value is formatted the same way (floats as ``repr``, which round-trips exactly).

results.csv
    One row per configuration: the swept parameters (named as in ``--grid``), every key ``run_fn`` returned,
    then ``status`` (``ok`` or ``failed``), ``error`` (``Type: message`` of a failure), ``seconds`` (wall
    time of the run in the worker) and ``config_hash``.

    *Atomic*: the whole file is written to a temporary file in the same folder, fsynced, and moved over
    results.csv with ``os.replace`` (atomic on POSIX and Windows). A reader, or a crash, sees the previous
    complete file or the new complete file, never half a row (the next sweep removes a temporary file that a
    killed rewrite left). That rewrite costs O(rows), so it is done when :data:`SNAPSHOT_MIN_SECONDS` have
    passed since the last one (and never more often than keeps rewriting under :data:`SNAPSHOT_COST_SHARE` of
    the sweep's time), and when the sweep ends, fails or is interrupted.

    *Nothing lost*: each finished configuration is also appended at once to ``results.csv.journal`` (one
    JSON object per line, flushed and fsynced: O(1) per configuration), and the journal is removed after
    each rewrite of results.csv has folded its rows in. After a crash (a killed process, a power cut) the
    next sweep into the folder reads results.csv, then the journal's rows over it (a half-written last line
    is the configuration that was being recorded, and runs again), so every configuration that finished is
    kept. Rewriting the whole file after every configuration instead cost 4 ms per configuration at 200
    rows and 30 ms at 2,000 (quadratic in the sweep's size; ``python -m benchmarks.bookkeeping``).

    *Resumable*: :func:`config_hash` keys each row by the full configuration and a fingerprint of the data.
    Re-running the same sweep skips every configuration whose hash is in results.csv with status ``ok``,
    and says how many. Rows with status ``failed`` are **retried** (the failure may have been transient, or
    fixed since) and replaced by the new outcome. Rows of configurations that are not in the current grid
    (an earlier, different sweep into the same folder) are kept untouched, after the current grid's rows.

Between two configurations a worker collects the finished run's reference cycles (see
:func:`release_run_garbage`), so a worker's peak memory stays that of one run.

A failure in one configuration (any ``Exception``, or a worker that died) is recorded and the others go on.
A dead worker takes down what ran beside it (a broken process pool fails every job in it; a Dask worker's
queued tasks share its death), so those configurations run again alone, one at a time, and only one that
kills its worker alone is recorded failed, as :class:`WorkerDied` (likely out of memory).
``KeyboardInterrupt`` stops the sweep: what finished is already on disk, and :class:`SweepInterrupted`
says so.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gc
import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.summary_keys import LOWER_IS_BETTER as SUMMARY_LOWER_IS_BETTER
from analyzers.summary_keys import SUMMARY_KEYS
from minehedge.errors import ConfigError, MinehedgeError, did_you_mean

RunFn = Callable[[dict, Any], Mapping[str, Any]]

STATUS_OK = "ok"
STATUS_FAILED = "failed"
#: The last four columns of results.csv, in this order.
RESERVED_COLUMNS = ("status", "error", "seconds", "config_hash")
RESULTS_FILE = "results.csv"
JOURNAL_SUFFIX = ".journal"
SNAPSHOT_MIN_SECONDS = 5.0  # results.csv is at most this many seconds behind the journal while a sweep runs
SNAPSHOT_COST_SHARE = 0.02  # ... or longer, so that rewriting it takes at most this share of the sweep's time
_clock = time.monotonic  # seconds; the tests drive it
TOP_FILE = "top.csv"
#: Grid keys that are run-level settings; every other grid key is a policy parameter (config["params"]).
TOP_LEVEL_GRID_KEYS = frozenset({"seed"})
#: Configuration keys that say where data live, not what they are: left out of the hash (the data
#: fingerprint stands for the data themselves), so moving the data folder does not void a sweep.
UNHASHED_KEYS = frozenset({"data_dir"})
#: Metrics where smaller is better; --rank-by sorts them ascending unless told ``:desc``: the Summary keys
#: declared so next to them (``analyzers.summary_keys``), and the run's wall time.
LOWER_IS_BETTER = SUMMARY_LOWER_IS_BETTER | {"seconds"}
#: Metrics drawn as heatmaps for two-parameter sweeps, beside the ranking metric.
HEATMAP_METRICS = ("max_drawdown_pct", "liquidations")

_UMASK = os.umask(0)
os.umask(_UMASK)


# ------------------------------------------------------------------------------------------ grid, hash


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of a sweep: the swept values (results.csv columns) and the full run config."""

    swept: dict[str, Any]
    config: dict[str, Any]


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[SweepPoint]:
    """The cartesian product of ``grid`` applied to ``base``, first grid key varying slowest.

    Keys in :data:`TOP_LEVEL_GRID_KEYS` set ``config[key]``; every other key sets ``config["params"][key]``.
    Each configuration is an independent plain dict (deep enough copies that no two share ``params``).
    """
    keys = list(grid)
    if not keys:
        return [SweepPoint({}, _copy_config(base))]
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        config = _copy_config(base)
        for key, value in zip(keys, values, strict=True):
            if key in TOP_LEVEL_GRID_KEYS:
                config[key] = value
            else:
                config["params"][key] = value
        points.append(SweepPoint(dict(zip(keys, values, strict=True)), config))
    return points


def _copy_config(base: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(base)
    config["params"] = dict(base.get("params", {}))
    return config


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if callable(getattr(value, "to_json", None)):  # a dated price schedule: its dates and prices
        return value.to_json()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"config value {value!r} of type {type(value).__name__} has no canonical JSON form")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, dates as ISO strings, floats as ``repr``: one text per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable, allow_nan=True)


def config_hash(config: Mapping[str, Any], data_fingerprint: str) -> str:
    """sha256 (hex) of the canonical JSON of the configuration (minus :data:`UNHASHED_KEYS`) and the data.

    ``1`` and ``1.0`` hash differently: parameter values are typed by their ParamSpec before hashing, so the
    same sweep always produces the same values.
    """
    payload = {"config": {k: v for k, v in config.items() if k not in UNHASHED_KEYS},
               "data": data_fingerprint}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------ one run


def execute_one(run_fn: RunFn, config: dict, shared: Any) -> dict[str, Any]:
    """Run one configuration; return ``{status, error, seconds, summary, traceback, user_error}``, never raise
    Exception. ``user_error``: the failure is a :class:`MinehedgeError` (a configuration or data the user must
    fix; every re-run fails the same way), not a crash.

    ``KeyboardInterrupt`` and ``SystemExit`` pass through: they mean "stop", not "this configuration failed".
    """
    started = time.perf_counter()
    try:
        summary = run_fn(config, shared)
        if not isinstance(summary, Mapping):
            raise TypeError(f"run function returned {type(summary).__name__}, expected a flat dict")
        summary = dict(summary)
        clash = sorted(set(summary) & set(RESERVED_COLUMNS))
        if clash:
            raise ValueError(f"run function returned reserved key(s) {clash}")
        status, error, trace, user_error = STATUS_OK, "", "", False
    except Exception as exc:  # a failed configuration is data, recorded in results.csv
        summary, status = {}, STATUS_FAILED
        error = " | ".join(f"{type(exc).__name__}: {exc}".splitlines())
        trace = traceback.format_exc()
        user_error = isinstance(exc, MinehedgeError)
    return {
        "status": status,
        "error": error,
        "seconds": round(time.perf_counter() - started, 3),
        "summary": summary,
        "traceback": trace,
        "user_error": user_error,
    }


def _failure(error: BaseException) -> dict[str, Any]:
    """Outcome for a configuration whose worker died or whose result never came back."""
    return {
        "status": STATUS_FAILED,
        "error": " | ".join(f"{type(error).__name__}: {error}".splitlines()),
        "seconds": 0.0,
        "summary": {},
        "traceback": "".join(traceback.format_exception(error)),
        "user_error": False,
    }


# ------------------------------------------------------------------------------------------ run garbage

# A finished backtest leaves ~19,000 objects in reference cycles (backtrader's lines, orders, strategy, broker
# and cerebro point at each other) that only a full collection frees, and CPython runs one only once the
# oldest generation has grown by a quarter. Measured on 20 back-to-back BTC 1d runs in one process: left to
# the collector, the peak RSS climbed from 157 to 239 MiB as runs allocated on top of earlier runs' cycles;
# with a collection after each run it stayed at 158 MiB, one run's. A full collection walks every tracked
# object, ~168,000 after the imports (65-80 ms here), so the survivors are first moved out of its way with
# gc.freeze(): a collection after each run then costs ~20 ms, less than the 40-50 ms per run the collector
# spent on its own.


def release_run_garbage() -> None:
    """In a worker process of ours, after each configuration: free the finished run's cycles.

    The first call also freezes what survived (modules, the shared data, caches: what every later run
    keeps), so later full collections walk only what runs allocate. Process-pool workers and the workers of
    a LocalCluster started here call it; a user's own Dask workers are left alone.
    """
    gc.collect()
    if not _WORKER.get("frozen"):
        gc.freeze()
        _WORKER["frozen"] = True


def _no_op() -> None:
    pass


@contextlib.contextmanager
def _runs_in_this_process(runs: int) -> Iterator[Callable[[], None]]:
    """For in-process runs: yields what to call between runs; leaves the collector as it was found.

    Between runs it collects the finished run's cycles. The caller's objects are frozen for the sweep, so
    each collection is cheap, and unfrozen at its end. If the caller has frozen objects already, they stay
    as they are (and collections walk everything); with the collector turned off, nothing is collected.
    """
    if runs <= 1 or not gc.isenabled():
        yield _no_op
        return
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.collect()
        gc.freeze()
    try:
        yield gc.collect
    finally:
        if freeze:
            gc.unfreeze()


# ------------------------------------------------------------------------------------------ executors

Job = tuple[int, dict]


def default_workers() -> int:
    """CPU cores this process may use (affinity-aware where the OS tells)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


_WORKER: dict[str, Any] = {}


def _exit_with_parent() -> None:
    """In a pool worker: end this process as soon as the process that started it is gone.

    A sweep killed with SIGKILL (or by the out-of-memory killer) cannot end its workers, and a worker waiting
    for its next task never notices: it holds its own end of the task queue. Every multiprocessing child
    holds a sentinel of its parent (``multiprocessing.parent_process().sentinel``: a pipe whose write end only
    the parent keeps, or the parent's process handle on Windows), readable once the parent is gone. A daemon
    thread waits on it, blocked in the OS (no polling, no cost per configuration), and exits the worker with
    ``os._exit``. Under ``forkserver`` a worker's parent is the sweep's process, as it is what asked for the
    worker; the forkserver (which Linux's PR_SET_PDEATHSIG would watch instead) exits by itself once the
    sweep and all its workers have.
    """
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:  # not a multiprocessing child (nothing to watch)
        return

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="minehedge-exit-with-parent", daemon=True).start()


def _init_process_worker(run_fn: RunFn, shared: Any, running: Any = None,
                         workers_started: Any = None) -> None:
    """Process-pool initializer: keep the run function and the shared data for every task of this worker.

    ``running`` (a shared array, one slot per worker) is where the worker writes the index of the job it runs,
    ``-1`` when idle, so that the parent knows which jobs were running if a worker dies; ``workers_started``
    (a shared counter) gives each worker its slot.
    """
    # Ctrl-C in a terminal reaches the whole process group: the parent stops the sweep and ends the workers,
    # which must not die on their own half-way (tracebacks, and a pool the parent then waits for)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _WORKER["run_fn"] = run_fn
    _WORKER["shared"] = shared
    if running is not None:
        with workers_started.get_lock():
            _WORKER["slot"] = workers_started.value % len(running)
            workers_started.value += 1
        _WORKER["running"] = running


def _process_task(index: int, config: dict) -> tuple[int, dict]:
    running = _WORKER.get("running")
    if running is not None:
        running[_WORKER["slot"]] = index
    outcome = execute_one(_WORKER["run_fn"], config, _WORKER["shared"])
    release_run_garbage()
    if running is not None:
        running[_WORKER["slot"]] = -1
    return index, outcome


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored inside the block (in the main thread; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalExecutor:
    """This machine: ``workers=1`` in-process (no pickling, easy to debug), else a process pool.

    The pool is started by the first :meth:`run` and kept until the ``with`` block ends, so several sweeps
    in one block (the benchmark's interleaved slices, a notebook's follow-up grids) pay the workers'
    start-up (spawn, imports, the shared data) once. A run with another ``run_fn`` or ``shared`` object, or an
    interrupted run, starts a fresh pool next time. A worker that dies (killed, out of memory) breaks the
    pool, which fails every configuration running in it, the killer's neighbours too: each of those runs again
    alone in a fresh pool, one at a time, so only a configuration that kills its worker alone is recorded
    failed (:class:`WorkerDied`, not retried again in this sweep); then a fresh pool runs the others. Objects
    are compared by identity: workers hold the copy they were sent, so pass a new ``shared`` object rather
    than changing one in place.
    """

    def __init__(self, workers: int | None = None) -> None:
        workers = default_workers() if workers is None else workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"workers={workers!r} is not allowed; allowed: an int >= 1.")
        self.workers = workers
        self.needs_pickle = workers > 1
        self._pool: ProcessPoolExecutor | None = None
        self._pool_holds: tuple[RunFn, Any] | None = None  # the (run_fn, shared) its workers were given
        self._running: Any = None  # the pool's shared array: the job index each worker runs (-1: none)

    @property
    def description(self) -> str:
        if self.workers == 1:
            return "1 worker (in-process)"
        return f"{self.workers} local worker processes ({_start_method()})"

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._close_pool(terminate=exc_type is not None)

    def _close_pool(self, *, terminate: bool = False) -> None:
        """Shut the pool down: wait for its workers to finish, or (``terminate``: interrupted, failing) end
        them at once, so that a second Ctrl-C finds nothing to wait for."""
        pool, self._pool, self._pool_holds, self._running = self._pool, None, None, None
        if pool is None:
            return
        if not terminate:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        with _sigint_ignored():  # a second Ctrl-C must not stop this half-way (workers left to wait for)
            workers = list((getattr(pool, "_processes", None) or {}).values())  # terminate_workers(): 3.14+
            pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.join(timeout=5)

    def _pool_for(self, run_fn: RunFn, shared: Any) -> ProcessPoolExecutor:
        """The open pool if its workers hold this ``run_fn`` and ``shared``, else a new one that does."""
        if self._pool is not None and (self._pool_holds[0] is not run_fn
                                       or self._pool_holds[1] is not shared):
            self._close_pool()
        if self._pool is None:
            # workers are spawned as tasks arrive, so a run of fewer jobs than workers starts fewer processes
            context = multiprocessing.get_context(_start_method())
            self._running = context.Array("q", [-1] * self.workers, lock=False)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_process_worker,
                initargs=(run_fn, shared, self._running, context.Value("i", 0)),
            )
            self._pool_holds = (run_fn, shared)
        return self._pool

    def run(self, run_fn: RunFn, shared: Any, jobs: Sequence[Job]) -> Iterator[tuple[int, dict]]:
        if self.workers == 1 or len(jobs) <= 1:
            with _runs_in_this_process(len(jobs)) as between_runs:
                for index, config in jobs:
                    outcome = execute_one(run_fn, config, shared)
                    between_runs()
                    yield index, outcome
            return
        pending = dict(jobs)  # index -> config: not yet run
        reusable = False
        try:
            while pending:
                pool = self._pool_for(run_fn, shared)
                futures: dict = {}
                broken: BrokenProcessPool | None = None
                try:
                    for index, config in pending.items():
                        futures[pool.submit(_process_task, index, config)] = index
                except BrokenProcessPool as exc:  # a worker died while the jobs were being queued
                    broken = exc
                for future in as_completed(futures):
                    try:
                        index, outcome = future.result()
                    except BrokenProcessPool as exc:  # a worker died: the pool fails every job it still holds
                        broken = exc
                        continue
                    except Exception as exc:
                        index, outcome = futures[future], _failure(exc)
                    del pending[index]
                    yield index, outcome
                if broken is None:
                    break
                # The pool broke with the jobs that were running in it, and which of them killed its worker is
                # not known: each is run again alone, in a fresh pool, so only one that kills its worker with
                # nothing beside it fails (WorkerDied), and it is not retried again. A fresh pool then runs
                # the rest together. If no job is known to be running (a worker died starting up, or between
                # jobs), every job left fails, as the sweep must end.
                running = sorted(index for index in self._running if index in pending)
                self._close_pool()
                if not running:
                    for index in list(pending):
                        del pending[index]
                        yield index, _failure(broken)
                for index in running:
                    outcome = self._run_alone(run_fn, shared, index, pending.pop(index))
                    yield index, outcome
            reusable = True
        finally:
            if not reusable:  # interrupted (tasks may still be queued or running): end them, start afresh
                self._close_pool(terminate=True)

    def _run_alone(self, run_fn: RunFn, shared: Any, index: int, config: dict) -> dict[str, Any]:
        """The outcome of one job run with no other job in the pool (a fresh one, or the one a job before it
        ran alone in): a worker that dies now was killed by this job, which fails with :class:`WorkerDied`."""
        pool = self._pool_for(run_fn, shared)
        try:
            return pool.submit(_process_task, index, config).result()[1]
        except BrokenProcessPool as exc:
            workers = list((getattr(pool, "_processes", None) or {}).values())
            self._close_pool()  # joins the workers: their exit codes are known after it
            return _failure(_worker_died(f"its worker process died ({_exit_text(workers)}) when it ran alone",
                                         exc))
        except Exception as exc:
            return _failure(exc)


class WorkerDied(Exception):
    """The worker process running a configuration alone died: the configuration killed it (or needs more
    memory than the machine has). Recorded as the configuration's failure; a re-run of the sweep retries
    it."""


def _worker_died(what: str, cause: BaseException) -> WorkerDied:
    """The failure of a configuration that killed its worker alone: ``what`` happened, and the likely
    cause."""
    died = WorkerDied(f"{what}, retried because a worker died while it ran; likely cause: the run needs more "
                      "memory than the machine had free (the kernel's out-of-memory killer ends a process "
                      "with SIGKILL), else a crash in compiled code")
    died.__cause__ = cause  # the executor's own error, in the traceback the CLI shows
    return died


def _exit_text(workers: Sequence[Any]) -> str:
    """How the dead worker among ``workers`` (multiprocessing processes) ended: a signal, or an exit code."""
    for worker in workers:
        worker.join(timeout=5)
    codes = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0, -signal.SIGTERM)]
    if not codes:
        return "exit status unknown"
    code = codes[0]
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Payload:
    """What every Dask worker holds once: the run function, the shared data, and whether the workers are
    ours."""

    run_fn: RunFn
    shared: Any
    release_garbage: bool = False  # a LocalCluster started here: see release_run_garbage


#: ``distributed`` settings for the LocalCluster started by ``--dask-local`` (never for a user's scheduler).
#: Each task is a ~1 s GIL-bound backtest on a single-thread worker, and the worker's event loop shares that
#: GIL and, on a small machine, the cores. Measured on 2 cores: with Dask's defaults each idle worker burns
#: ~3.5% of a core and the parent (scheduler, nannies, client) ~5%; during tasks the profiler adds ~6% CPU
#: beside the task and grows the worker by ~25 MiB over a 200-configuration sweep. With these: ~0.3%, ~0.8%.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    # The statistical profiler walks the task thread's deep backtrader stack every 10 ms holding the GIL,
    # and keeps a call tree per second (1000 s of history): CPU and memory nobody reads without a dashboard.
    "distributed.worker.profile.enabled": False,
    # The event-loop health tick wakes every loop (workers, nannies, scheduler, client) 50 times a second.
    "distributed.admin.tick.interval": "1s",
    # Nanny and worker poll the worker's RSS every 100 ms; tasks hold kilobytes, so 1 s still catches a leak.
    "distributed.worker.memory.monitor-interval": "1s",
    # CPU / memory / network samples feed only the dashboard, which is not started.
    "distributed.admin.system-monitor.interval": "5s",
    # Dask's aggressive malloc trimming tripled page faults per task (kernel time) and lowered no peak RSS;
    # without it workers allocate like the process-pool workers.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # A worker that dies fails the tasks it held at once (KilledWorker), instead of trying each on up to three
    # more workers, which a configuration that kills its worker kills too; the sweep then runs those tasks
    # again alone (DaskExecutor.run), as it does after a broken process pool.
    "distributed.scheduler.allowed-failures": 0,
}


def _dask_task(name: str, index: int, config: dict) -> tuple[int, dict]:
    from minehedge.dask_payload import worker_payload

    payload: _Payload = worker_payload(name)
    outcome = execute_one(payload.run_fn, config, payload.shared)
    if payload.release_garbage:
        release_run_garbage()
    return index, outcome


class DaskExecutor:
    """A ``distributed`` cluster: an existing scheduler, or a LocalCluster started (and closed) here.

    Workers of an existing cluster must be able to import minehedge (and ``run_fn``'s module) and read
    nothing else: the data travel to them with the payload. Use as a context manager.

    A worker that dies fails the tasks it held once the scheduler's ``allowed-failures`` is spent (0 on the
    LocalCluster started here, :data:`LOCAL_CLUSTER_CONFIG`; a cluster of your own keeps its setting, Dask's
    default 3: a task is tried on up to 4 workers that die). Those tasks run again alone, one at a time, so
    only one that kills its worker alone fails (:class:`WorkerDied`). Tasks on other workers are not touched:
    unlike a process pool, a Dask worker's death does not end the others.
    """

    needs_pickle = True

    def __init__(self, *, scheduler: str | None = None, local_workers: int | None = None) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ConfigError("DaskExecutor needs exactly one of scheduler=... or local_workers=N.")
        if local_workers is not None and (not isinstance(local_workers, int) or local_workers < 1):
            raise ConfigError(f"dask_local={local_workers!r} is not allowed; allowed: an int >= 1.")
        self.scheduler = scheduler
        self.local_workers = local_workers
        self.client = None
        self.cluster = None

    @property
    def description(self) -> str:
        if self.scheduler is not None:
            return f"Dask cluster at {self.scheduler}"
        return f"local Dask cluster of {self.local_workers} worker processes"

    def __enter__(self) -> DaskExecutor:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError(
                "Dask sweeps need the dask extra: python -m pip install -e '.[dask]' (dask[distributed])."
            ) from None
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout="30s")
            except OSError as exc:
                raise ConfigError(f"scheduler={self.scheduler!r}: cannot connect ({exc}).") from None
        else:
            import dask

            # Read when the scheduler, nannies, workers and client are built, so scoped to this cluster only.
            with dask.config.set(LOCAL_CLUSTER_CONFIG):
                self.cluster = LocalCluster(
                    n_workers=self.local_workers,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address=None,
                )
                self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def run(self, run_fn: RunFn, shared: Any, jobs: Sequence[Job]) -> Iterator[tuple[int, dict]]:
        """Every job at once; then each job whose worker died while it was on it (Dask's KilledWorker: the
        killer, or a task beside it on that worker) again alone, one at a time, so only one that kills its
        worker alone fails, with :class:`WorkerDied`, as in :meth:`LocalExecutor.run`."""
        from distributed import KilledWorker
        from distributed import as_completed as dask_as_completed

        from minehedge.dask_payload import PayloadPlugin

        if self.client is None:
            raise RuntimeError("DaskExecutor.run outside its `with` block")
        name = f"minehedge-sweep-{uuid.uuid4().hex}"  # one per run: a cluster may serve several clients
        self.client.register_plugin(PayloadPlugin(_Payload(run_fn, shared,
                                                           release_garbage=self.cluster is not None)),
                                    name=name)
        futures: dict = {}
        try:
            for index, config in jobs:
                futures[self.client.submit(_dask_task, name, index, config, pure=False, retries=0)] = index
            again = []
            for future in dask_as_completed(list(futures)):
                # released once read: a worker's death then recomputes nothing read
                index = futures.pop(future)
                try:
                    yield future.result()
                except KilledWorker:
                    again.append(index)
                except Exception as exc:
                    yield index, _failure(exc)
            configs = dict(jobs)
            for index in sorted(again):
                future = self.client.submit(_dask_task, name, index, configs[index], pure=False, retries=0)
                futures = {future: index}
                try:
                    yield future.result()
                except KilledWorker as exc:
                    yield index, _failure(_worker_died(f"its Dask worker died when it ran alone{_tries(exc)}",
                                                       exc))
                except Exception as exc:
                    yield index, _failure(exc)
        finally:
            self.client.cancel(list(futures))
            with contextlib.suppress(Exception):  # the cluster may be gone (the run failed because it is)
                self.client.unregister_worker_plugin(name)


def _tries(killed: BaseException) -> str:
    """How many workers a KilledWorker task was tried on, as a parenthesis (empty when not told)."""
    allowed = getattr(killed, "allowed_failures", None)
    if not isinstance(allowed, int):
        return ""
    return f" ({allowed + 1} worker{'s' if allowed else ''} in a row: the scheduler's allowed-failures + 1)"


def make_executor(workers: int | None = None, scheduler: str | None = None, dask_local: int | None = None):
    """The executor the flags ask for (at most one of them; none -> one local worker per core)."""
    if sum(x is not None for x in (workers, scheduler, dask_local)) > 1:
        raise ConfigError("choose one executor: --workers, --scheduler or --dask-local.")
    if scheduler is not None:
        return DaskExecutor(scheduler=scheduler)
    if dask_local is not None:
        return DaskExecutor(local_workers=dask_local)
    return LocalExecutor(workers)


# ------------------------------------------------------------------------------------------ results.csv


def format_cell(value: Any) -> str:
    """One CSV cell: floats by ``repr`` (exact round trip), bools True/False, dates ISO, None empty."""
    if value is None:
        return ""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar (repr(np.float64) is "np.float64(...)")
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(folder: str | Path, *, replace: bool = False) -> None:
    """Raise :class:`ConfigError` ``out='X': cannot write there (reason)`` unless a file can be created in
    ``folder`` (while it does not exist: in its nearest existing ancestor, where it would be created). With
    ``replace``, its parent is probed too (replacing a folder renames it there). Creates nothing that
    stays."""
    folder = Path(folder)
    for target in (folder, folder.parent) if replace else (folder,):
        while not target.exists() and target != target.parent:
            target = target.parent
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".minehedge-probe.", dir=target))
        except OSError as exc:
            raise ConfigError(f"out={str(folder)!r}: cannot write there ({exc.strerror or exc}).") from None


def atomic_write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
    """Write a CSV so that ``path`` is always either the old complete file or the new complete file."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="", extrasaction="raise")
            writer.writeheader()
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class ResultsTable:
    """results.csv in memory: rows keyed by config_hash. :meth:`commit` makes each new row durable in the
    journal at once and rewrites results.csv when due; :meth:`write` rewrites it now (see the module doc)."""

    def __init__(self, path: Path, param_columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(self.path.name + JOURNAL_SUFFIX)
        self.param_columns = list(param_columns)
        self.rows: dict[str, dict[str, str]] = {}
        self.columns: list[str] = []
        if self.path.exists():
            self._load()
        self.columns = self._merge_columns(self.columns, [])
        self.replayed = self._replay_journal() if self.journal_path.exists() else 0
        # a rewrite a killed sweep left half-done
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        self._journal = None  # the open journal, from the first commit to the next rewrite
        self._unsaved = 0  # rows recorded since results.csv was last written
        self._last_write = _clock()
        self._write_seconds = 0.0

    def _load(self) -> None:
        try:
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{self.path}: cannot read the existing results ({exc}); "
                              "move it away.") from None
        missing = [c for c in ("status", "config_hash") if c not in header]
        if missing:
            raise ConfigError(
                f"{self.path} exists but is not a minehedge results file (no column {', '.join(missing)}); "
                "choose another --out or move the file away."
            )
        for number, row in enumerate(rows, start=2):
            if None in row or not row.get("config_hash"):
                raise ConfigError(f"{self.path}, line {number}: malformed row; move the "
                                  "file away to start over.")
            self._keep(row)
        self.columns = [c for c in header if c not in RESERVED_COLUMNS]

    def _keep(self, row: dict[str, str]) -> None:
        key = row["config_hash"]
        if key in self.rows and self.rows[key]["status"] == STATUS_OK and row["status"] != STATUS_OK:
            return  # never let a stale failure shadow a success
        self.rows[key] = row  # a replaced row keeps its place

    def _replay_journal(self) -> int:
        """Fold in the rows a sweep committed after its last rewrite of results.csv (it did not finish); the
        number of rows that results.csv did not already hold."""
        try:
            data = self.journal_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{self.journal_path}: cannot read the journal of an unfinished sweep ({exc}); "
                              "move it away (its configurations will run again).") from None
        lines = data.split(b"\n")
        replayed = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
                valid = (isinstance(row, dict) and all(isinstance(v, str) for v in row.values())
                         and row.get("config_hash") and row.get("status") in (STATUS_OK, STATUS_FAILED))
            except ValueError:  # JSON or UTF-8 (a line is ASCII as written, so only a torn one fails)
                valid = False
            if not valid:
                if number == len(lines):  # no newline after it: the process stopped while writing this line
                    break
                raise ConfigError(f"{self.journal_path}, line {number}: malformed row; move the journal away "
                                  "(its configurations will run again).")
            replayed += self.rows.get(row["config_hash"]) != row
            self._keep(row)
            self.columns = self._merge_columns(self.columns, [c for c in row if c not in RESERVED_COLUMNS])
        return replayed

    def _merge_columns(self, existing: Sequence[str], summary_keys: Sequence[str]) -> list[str]:
        columns = [c for c in self.param_columns]
        columns += [c for c in existing if c not in columns and c not in RESERVED_COLUMNS]
        columns += [c for c in summary_keys if c not in columns]
        return columns + list(RESERVED_COLUMNS)

    def done_ok(self) -> set[str]:
        return {key for key, row in self.rows.items() if row.get("status") == STATUS_OK}

    def record(self, point: SweepPoint, key: str, outcome: Mapping[str, Any]) -> dict[str, str]:
        clash = sorted(set(outcome["summary"]) & set(self.param_columns))
        if clash:
            outcome = {**_failure(ValueError(f"run function returned swept parameter name(s) {clash}"))}
        cells = {name: format_cell(value) for name, value in point.swept.items()}
        cells.update({name: format_cell(value) for name, value in outcome["summary"].items()})
        cells.update(
            status=outcome["status"],
            error=outcome["error"],
            seconds=format_cell(float(outcome["seconds"])),
            config_hash=key,
        )
        self.columns = self._merge_columns(self.columns, list(outcome["summary"]))
        self.rows.pop(key, None)
        self.rows[key] = cells
        self._unsaved += 1
        return cells

    def commit(self, cells: Mapping[str, str], order: Sequence[str]) -> None:
        """Append a recorded row to the journal (flushed and fsynced), then rewrite results.csv if due."""
        if self._journal is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = self.journal_path.open("a", encoding="utf-8")
            _fsync_dir(self.path.parent)  # the journal's name survives a crash too
        # ASCII (json escapes the rest): tears fall between characters
        self._journal.write(json.dumps(cells) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        wait = max(SNAPSHOT_MIN_SECONDS, self._write_seconds / SNAPSHOT_COST_SHARE)
        if _clock() - self._last_write >= wait:
            self.write(order)

    def write(self, order: Sequence[str]) -> None:
        """Rewrite results.csv now, then drop the journal: rows of ``order`` (the current grid) first, in that
        order; then every other row as it was."""
        began = _clock()
        ordered = [self.rows[k] for k in order if k in self.rows]
        current = set(order)
        ordered += [row for k, row in self.rows.items() if k not in current]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(self.path, self.columns, ordered)
        self.close_journal()
        if self.journal_path.exists():
            self.journal_path.unlink()
            _fsync_dir(self.path.parent)
        self._unsaved = self.replayed = 0
        self._last_write = _clock()
        self._write_seconds = self._last_write - began

    @property
    def unsaved(self) -> bool:
        """Rows (recorded, or replayed from a journal) that results.csv does not hold yet."""
        return bool(self._unsaved or self.replayed)

    def close_journal(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()


# ------------------------------------------------------------------------------------------ the sweep


class SweepInterrupted(Exception):
    """The sweep was interrupted (Ctrl-C); finished configurations are in results.csv (or, when results.csv
    could not be rewritten, in its journal, which the next sweep reads)."""

    def __init__(self, done: int, total: int, path: Path, journal: Path | None = None) -> None:
        where = f"{path}" if journal is None else f"{journal} (results.csv could not be rewritten)"
        super().__init__(
            f"sweep interrupted: {done} of {total} configurations are in {where}; "
            "re-run the same command to resume."
        )
        self.done, self.total, self.path = done, total, path


@dataclass
class SweepReport:
    """What a sweep did. ``hashes`` are the current grid's config hashes in grid order, and ``failed`` lists
    the configurations that failed in that order too."""

    results_path: Path
    total: int
    skipped: int
    ran: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    other_rows: int = 0
    hashes: list[str] = field(default_factory=list)


def run_sweep(
    points: Sequence[SweepPoint],
    run_fn: RunFn,
    shared: Any,
    *,
    data_fingerprint: str | Callable[[Mapping[str, Any]], str],
    out_dir: str | Path,
    executor: LocalExecutor | DaskExecutor,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SweepReport:
    """Run every point not already done, recording each outcome in ``out_dir/results.csv`` as it lands.

    ``data_fingerprint``: the data's fingerprint, hashed with each configuration, or a function giving each
    configuration's own (several markets in one sweep). ``executor`` must already be entered (``with
    make_executor(...) as executor``). ``progress`` shows a tqdm bar with ETA on stderr (only when stderr is
    a terminal). ``log`` receives one-line notices.
    """
    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    if not points:
        raise ConfigError("the sweep has no configurations.")
    param_columns = list(points[0].swept)
    clash = sorted(set(param_columns) & set(RESERVED_COLUMNS))
    if clash:
        raise ConfigError(f"grid key(s) {clash} are reserved column names of results.csv; rename them.")
    fingerprint_of = data_fingerprint if callable(data_fingerprint) else (lambda config: data_fingerprint)
    hashes = [config_hash(p.config, fingerprint_of(p.config)) for p in points]
    if len(set(hashes)) != len(hashes):
        raise ConfigError("the grid yields the same configuration twice; remove duplicate values.")
    if executor.needs_pickle:
        _check_picklable(run_fn, shared)

    check_writable(out_dir)  # before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    table = ResultsTable(out_dir / RESULTS_FILE, param_columns)
    if table.journal_path.exists():  # left by a sweep that did not finish: fold it in before appending
        if table.replayed:
            log(f"recovered {table.replayed} results of an unfinished sweep from {table.journal_path}")
        table.write(hashes)
    done = table.done_ok()
    current = set(hashes)
    jobs = [(i, p.config) for i, (p, h) in enumerate(zip(points, hashes, strict=True)) if h not in done]
    skipped = len(points) - len(jobs)
    other_rows = len(set(table.rows) - current)
    retry = sum(1 for h in hashes if h in table.rows and h not in done)
    if skipped:
        log(f"skipped {skipped} of {len(points)} configurations already in {table.path} with status ok")
    if retry:
        log(f"retrying {retry} configurations that failed before")
    if other_rows:
        log(f"keeping {other_rows} rows of other configurations already in {table.path}")
        twins = _rows_with_these_swept_values(table, points, current)
        if twins:
            log(f"warning: {twins} of those rows have swept values of this sweep but other fixed settings "
                "(another --set, period, policy or data): tell them apart by config_hash, or give "
                "each sweep its own --out")
    report = SweepReport(table.path, len(points), skipped, 0, [], other_rows, hashes)
    if not jobs:
        table.write(hashes)
        return report
    log(f"running {len(jobs)} configurations on {executor.description}")

    bar = _progress_bar(len(jobs), enabled=progress)
    try:
        for index, outcome in executor.run(run_fn, shared, jobs):
            table.commit(table.record(points[index], hashes[index], outcome), hashes)
            report.ran += 1
            if outcome["status"] != STATUS_OK:
                report.failed.append({"swept": points[index].swept, "config_hash": hashes[index], **outcome})
            if bar is not None:
                bar.update(1)
                if report.failed:
                    bar.set_postfix(failed=len(report.failed), refresh=False)
        if table.unsaved:
            table.write(hashes)
        position = {key: i for i, key in enumerate(hashes)}  # failures in grid order, as on every executor
        report.failed.sort(key=lambda failure: position[failure["config_hash"]])
    except BaseException as exc:
        # results.csv gets what finished; if the disk is failing too, the journal still holds what it could.
        # After a Ctrl-C, a second one must not cut this short: it is quick, and then the sweep ends.
        with _sigint_ignored() if isinstance(exc, KeyboardInterrupt) else contextlib.nullcontext():
            with contextlib.suppress(OSError):
                table.close_journal()
            if table.unsaved:
                with contextlib.suppress(OSError):
                    table.write(hashes)
        if isinstance(exc, KeyboardInterrupt):
            journal = table.journal_path if table.unsaved else None
            raise SweepInterrupted(skipped + report.ran, len(points), table.path, journal) from None
        raise
    finally:
        try:
            table.close_journal()
        finally:
            if bar is not None:
                bar.close()
    return report


def _rows_with_these_swept_values(table: ResultsTable, points: Sequence[SweepPoint],
                                  current: set[str]) -> int:
    """How many rows of other configurations carry the same swept cells as one of ``points``: rows of the
    same grid values run with other fixed settings, which nothing else in results.csv tells apart."""
    columns = table.param_columns
    cells = {tuple(format_cell(point.swept[c]) for c in columns) for point in points}
    return sum(1 for key, row in table.rows.items()
               if key not in current and tuple(row.get(c, "") for c in columns) in cells)


def _check_picklable(run_fn: RunFn, shared: Any) -> None:
    try:
        pickle.dumps(run_fn)
    except Exception as exc:
        raise TypeError(
            f"run function {run_fn!r} cannot be sent to worker processes ({exc}); "
            "it must be a top-level function of an importable module."
        ) from None
    try:
        pickle.dumps(shared)
    except Exception as exc:
        raise TypeError(f"shared data of type {type(shared).__name__} cannot be pickled ({exc}).") from None


def _progress_bar(total: int, *, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="sweep", unit="config", file=sys.stderr, dynamic_ncols=True)


# ------------------------------------------------------------------------------------------ ranking


def read_results(path: str | Path, hashes: Sequence[str] | None = None):
    """results.csv as a pandas DataFrame (only ``hashes``' rows, in that order, when given)."""
    from data.csvfile import read_csv

    frame = read_csv(path, kind="sweep results", listed=False, keep_default_na=True)
    if hashes is not None:
        frame = frame.set_index("config_hash", drop=False).loc[
            [h for h in hashes if h in set(frame["config_hash"])]]
        frame = frame.reset_index(drop=True)
    return frame


def rank_results(frame, metric: str, *, top: int, descending: bool | None = None):
    """The ``top`` rows with status ok, best ``metric`` first (ties keep grid order; NaN last).

    ``descending=None`` picks the natural order: ascending for :data:`LOWER_IS_BETTER` metrics, else
    descending. Raises :class:`ConfigError` for a metric that is not a numeric column. With no row ok there
    is nothing to rank: no rows for a column or a Summary key (``analyzers.summary_keys.SUMMARY_KEYS``: the
    metrics are columns only once a configuration returned them, so a sweep whose configurations all failed
    has none), and the same ConfigError, with a did-you-mean hint, for a name that is neither (a misspelt
    metric is an error whether or not anything ran).
    """
    import pandas as pd

    ok = frame[frame["status"] == STATUS_OK]
    if metric not in frame.columns and not (ok.empty and metric in SUMMARY_KEYS):
        allowed = [c for c in frame.columns if c not in RESERVED_COLUMNS]
        if ok.empty:  # what a configuration that ran would have added
            allowed += [key for key in SUMMARY_KEYS if key not in allowed]
        raise ConfigError(
            f"rank_by={metric!r} is not a column of the results{' or a Summary key' if ok.empty else ''}; "
            f"allowed: {', '.join(allowed)}." + did_you_mean(metric, allowed)
        )
    if ok.empty:
        return ok
    values = ok[metric]
    if values.dtype == bool:
        values = values.astype(int)
    if not pd.api.types.is_numeric_dtype(values) and len(values.dropna()):
        raise ConfigError(f"rank_by={metric!r}: the column is not numeric; choose a numeric metric.")
    if descending is None:
        descending = metric not in LOWER_IS_BETTER
    order = values.astype(float).sort_values(ascending=not descending, na_position="last", kind="mergesort")
    return ok.loc[order.index[:top]]


def write_top(out_dir: str | Path, results_path: str | Path, ranked_hashes: Sequence[str]) -> Path:
    """top.csv: a ``rank`` column, then the ranked rows exactly as they are in results.csv."""
    with Path(results_path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        by_hash = {row["config_hash"]: row for row in reader}
    rows = [{"rank": str(i), **by_hash[h]} for i, h in enumerate(ranked_hashes, start=1)]
    path = Path(out_dir) / TOP_FILE
    atomic_write_csv(path, ["rank", *header], rows)
    return path


# ------------------------------------------------------------------------------------------ heatmaps


def write_heatmaps(
    out_dir: str | Path,
    frame,
    x: str,
    y: str,
    metrics: Sequence[str],
    *,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """``heatmap_<metric>.png`` per metric over the two swept parameters ``x`` (columns) and ``y`` (rows).

    Drawn by the analyzers package (one home for charts): ``analyzers.charts.sweep_heatmap(results, x, y,
    value, title="") -> Figure`` and written atomically by ``analyzers.charts.save_figure(fig, path)``. Values
    of rows with status ok only: a failed configuration's cell is n/a, its row and column still drawn; metrics
    absent from ``frame`` or all-NaN are skipped. If the chart functions are not
    importable, says so through ``log`` and writes nothing (the sweep's numbers are in results.csv anyway).
    Then the heatmaps of an earlier sweep into ``out_dir`` that this call did not write are removed
    (:func:`remove_stale_heatmaps`).
    """
    log = log or (lambda message: None)
    try:
        from analyzers.charts import save_figure, sweep_heatmap
    except ImportError as exc:
        log(f"heatmap skipped: analyzers.charts.sweep_heatmap is not available ({exc})")
        remove_stale_heatmaps(out_dir, [], log=log)
        return []

    ok = frame["status"] == STATUS_OK
    written = []
    for metric in dict.fromkeys(metrics):
        if metric not in frame.columns or frame.loc[ok, metric].isna().all():
            continue
        shown = frame[[*dict.fromkeys((x, y, metric))]]
        if metric not in (x, y):  # a configuration that failed keeps its row and column, its cell n/a
            shown = shown.assign(**{metric: shown[metric].where(ok)})
        figure = sweep_heatmap(shown, x, y, metric,
                               title=f"{metric} by {y} and {x} ({int(ok.sum())} configurations)")
        written.append(Path(save_figure(figure, Path(out_dir) / f"heatmap_{_safe_name(metric)}.png")))
    remove_stale_heatmaps(out_dir, written, log=log)
    return written


def remove_stale_heatmaps(out_dir: str | Path, kept: Sequence[str | Path], *,
                          log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the files of ``out_dir`` named as a sweep names its heatmaps (``heatmap_<metric>.png``, the
    metric as :func:`_safe_name` writes it) but not in ``kept`` (the heatmaps this sweep wrote; none for a
    grid of one or three parameters, or nothing to draw): an earlier sweep's, which would look current beside
    this sweep's results. Other files are left alone. Says in one line through ``log`` what went and why;
    returns the paths removed."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    kept_names = {Path(path).name for path in kept}
    stale = sorted(path for path in folder.glob("heatmap_*.png")
                   if path.name not in kept_names and path.is_file()
                   and path.stem.removeprefix("heatmap_") == _safe_name(path.stem.removeprefix("heatmap_")))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale and log is not None:
        log(f"removed {len(stale)} heatmap(s) of an earlier sweep in {folder} that this sweep did not draw, "
            f"so that none looks current: {', '.join(path.name for path in stale)}")
    return stale


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
