"""The Dask path: a LocalCluster of 2 worker processes gives the local-process results, value for value."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from minehedge.sweep import DaskExecutor, LocalExecutor, expand_grid, run_sweep
from tests.test_sweep_engine import (
    BASE,
    FINGERPRINT,
    SHARED,
    check_closed_form,
    check_no_cycle_outlived_the_next_run,
    cycle_run,
    failing_run,
    grid,
    where_run,
)

pytest.importorskip("distributed")  # CI installs the dask extra, so this runs there
dask = pytest.importorskip("dask")

TRIM = "MALLOC_TRIM_THRESHOLD_"
QUIETED = ("distributed.worker.profile.enabled", "distributed.admin.tick.interval")


def rows_without_seconds(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.pop("seconds")
    return sorted(rows, key=lambda r: r["config_hash"])


def _worker_settings(dask_worker) -> tuple:
    """Run on each worker by Client.run: is its profiler on, its tick interval (s), its malloc trim variable."""
    return "profile" in dask_worker.periodic_callbacks, dask_worker._tick_interval, os.environ.get(TRIM)


def test_dask_local_cluster_matches_local_processes_and_sends_data_once(tmp_path):
    points = expand_grid(BASE, grid())
    defaults = [dask.config.get(key) for key in QUIETED]
    inherited_trim = os.environ.get(TRIM)  # before any nanny can leak Dask's 65536 into this process
    with LocalExecutor(2) as executor:
        run_sweep(points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "procs", executor=executor)
    with DaskExecutor(local_workers=2) as executor:
        assert executor.cluster is not None and len(executor.cluster.workers) == 2
        report = run_sweep(
            points, failing_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "dask", executor=executor
        )
        placed = run_sweep(
            points, where_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "where", executor=executor
        )
        run_sweep(points, cycle_run, SHARED, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "cycles",
                  executor=executor)
        # LOCAL_CLUSTER_CONFIG reached the workers started here: no profiler, a 1 s tick, no forced malloc trim
        settings = executor.client.run(_worker_settings)
        assert sorted(settings.values()) == [(False, 1.0, inherited_trim)] * 2
        assert executor.cluster.scheduler._tick_interval == 1.0
    assert executor.client is None and executor.cluster is None  # closed on exit
    # ... and only them: the process-wide Dask configuration is as it was (defaults, or the user's own).
    assert [dask.config.get(key) for key in QUIETED] == defaults

    dask_rows = rows_without_seconds(tmp_path / "dask" / "results.csv")
    assert dask_rows == rows_without_seconds(tmp_path / "procs" / "results.csv")
    assert len(dask_rows) == 15 and sorted(r["config_hash"] for r in dask_rows) == sorted(report.hashes)
    assert [r["a"] for r in dask_rows if r["status"] == "failed"] == ["0.5"] * 3
    check_closed_form([r for r in dask_rows if r["status"] == "ok"])
    assert sorted(os.listdir(tmp_path / "dask")) == ["results.csv"]

    # The payload is scattered once: each worker process holds one shared object for all its tasks.
    where = rows_without_seconds(tmp_path / "where" / "results.csv")
    assert placed.ran == 15
    pids = {r["pid"] for r in where}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    for pid in pids:
        assert len({r["shared_id"] for r in where if r["pid"] == pid}) == 1

    # Workers started here free each run's reference cycles before their next run (release_run_garbage).
    check_no_cycle_outlived_the_next_run(rows_without_seconds(tmp_path / "cycles" / "results.csv"), at_least=13)


def test_a_dead_dask_worker_fails_only_the_configuration_that_kills_its_worker_alone(tmp_path):
    # Before, the scattered payload died with the workers the killer was tried on (it kills each one), and
    # every task still to run was cancelled: one bad configuration failed most of the sweep.
    from tests.test_sweep_workers import BASE as WORKERS_BASE
    from tests.test_sweep_workers import killing_run

    points = expand_grid(WORKERS_BASE, {"a": [x / 8 for x in range(9)], "b": [1, 2, 3]})
    shared = {"log": str(tmp_path / "attempts.log")}
    with DaskExecutor(local_workers=2) as executor:
        report = run_sweep(points, killing_run, shared, data_fingerprint=FINGERPRINT, out_dir=tmp_path / "out",
                           executor=executor)
        # the payload (a worker plugin, handed to restarted workers too) left the cluster with the sweep
        assert not [name for name in executor.cluster.scheduler.worker_plugins if name.startswith("minehedge")]
    with (tmp_path / "out" / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert report.ran == 27 and [f["swept"] for f in report.failed] == [{"a": 0.5, "b": 2}]
    assert [r["error"] for r in rows if r["status"] == "failed"] == [
        "WorkerDied: its Dask worker died when it ran alone (1 worker in a row: the scheduler's allowed-failures + "
        "1), retried because a worker died while it ran; likely cause: the run needs more memory than the machine "
        "had free (the kernel's out-of-memory killer ends a process with SIGKILL), else a crash in compiled code"]
    assert all(float(r["product"]) == float(r["a"]) * int(r["b"]) for r in rows if r["status"] == "ok")
