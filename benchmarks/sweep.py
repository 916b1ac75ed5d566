"""One benchmarked sweep in a fresh process; prints one JSON object.

``python -m benchmarks.sweep --executor local1|local2|dask2 --configs 200 [--part K/N]``: a static_hedge grid
on BTC 1d (the whole shared daily range) through :func:`minehedge.sweep.run_sweep`, exactly as
``run_backtest.py sweep`` runs it: the market is loaded once (``api.load_shared``) and shipped once per
worker. Each configuration also reports its worker's pid and peak RSS, so the per-worker peak memory is
measured for every executor (in-process, process pool or Dask). ``--part K/N`` runs every N-th point of the
grid starting at the K-th (a slice with the same mix of configurations as the whole grid). ``--serve`` keeps
the executor (and its workers) open and runs the slices named on stdin, one ``K/N`` per line, printing one
JSON object per slice, then the executor's start-up and shut-down seconds at the end of input: so that
``benchmarks/run.py`` can interleave the executors slice by slice while each starts its workers once, as one
sweep of the whole grid does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.single import peak_rss_mb

#: The full grid: 5 x 5 x 4 x 2 = 200 configurations (hedge ratio, leverage, roll period, margin mode).
FULL_GRID: dict[str, list[Any]] = {
    "hedge_ratio": [0.25, 0.5, 0.75, 1.0, 1.25],
    "leverage": [1.0, 2.0, 3.0, 5.0, 10.0],
    "roll_days": [7.0, 14.0, 30.0, 60.0],
    "margin_mode": ["isolated", "cross"],
}


def grid(configs: int) -> dict[str, list[Any]]:
    """The first ``configs`` points of :data:`FULL_GRID` (a smaller sub-grid for --quick)."""
    if configs >= 200:
        return FULL_GRID
    keys = list(FULL_GRID)
    points = list(itertools.islice(itertools.product(*FULL_GRID.values()), configs))
    return {key: sorted({p[i] for p in points}, key=FULL_GRID[key].index) for i, key in enumerate(keys)}


def run_summary_with_rss(config: dict, shared: Any) -> dict[str, Any]:
    """:func:`minehedge.api.run_summary` plus the worker's pid and peak RSS (MiB) after the run."""
    from minehedge import api

    summary = dict(api.run_summary(config, shared))
    summary["worker_pid"] = os.getpid()
    summary["worker_peak_rss_mb"] = peak_rss_mb()
    return summary


def grid_part(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as (K, N); argparse type of ``--part``."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part={text!r}: expected K/N with integers, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--part={text!r}: K must be between 1 and N")
    return k, n


def cpu_jiffies() -> list[int] | None:
    """The machine's CPU time counters (``/proc/stat``'s ``cpu`` line: user, nice, system, idle, iowait, irq,
    softirq, steal, ...), in clock ticks; None where there is no /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            return [int(field) for field in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def run_part(executor: Any, shared: Any, points: list, k: int, n: int, run_fn: Any) -> dict[str, Any]:
    """Run every ``n``-th point from the ``k``-th on the open ``executor``; the slice's figures."""
    from minehedge.sweep import read_results, run_sweep

    part = points[k - 1::n]
    with tempfile.TemporaryDirectory() as folder:
        jiffies = cpu_jiffies()
        began = time.perf_counter()
        report = run_sweep(part, run_fn, shared, data_fingerprint=shared.fingerprint, out_dir=folder,
                           executor=executor)
        wall_s = time.perf_counter() - began
        after = cpu_jiffies()
        results = read_results(report.results_path, hashes=report.hashes)  # grid (submission) order
    ok = results[results["status"] == "ok"]
    per_worker = ok.groupby("worker_pid")["worker_peak_rss_mb"].max()
    return {
        "part": f"{k}/{n}", "configs": len(part), "ok": int(len(ok)), "failed": len(report.failed),
        "wall_s": wall_s, "configs_per_s": len(part) / wall_s, "mean_config_s": float(ok["seconds"].mean()),
        "workers_seen": int(len(per_worker)), "worker_pids": sorted(int(pid) for pid in per_worker.index),
        "worker_peak_rss_mb": float(per_worker.max()), "parent_peak_rss_mb": peak_rss_mb(),
        "final_equity_sum_usd": float(ok["final_equity_usd"].sum()),
        # each configuration's run, in submission order
        "config_seconds": [float(x) for x in results["seconds"]],
        # the machine's CPU ticks during the slice, by /proc/stat column: "steal" is time the hypervisor gave
        # this VM's virtual CPUs to someone else, a drift no interleaving can share out
        "cpu_ticks": None if jiffies is None or after is None else dict(zip(
            ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"),
            (b - a for a, b in zip(jiffies, after, strict=False)), strict=False)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executor", choices=("local1", "local2", "dask2"), required=True)
    parser.add_argument("--configs", type=int, default=200)
    parser.add_argument("--part", type=grid_part, default=(1, 1),
                        help="K/N: every N-th grid point from the K-th")
    parser.add_argument("--serve", action="store_true",
                        help="keep the executor open and run the slices named on stdin, one K/N per line")
    args = parser.parse_args(argv)

    from benchmarks.sweep import run_summary_with_rss as run_fn  # by module name: picklable under -m
    from minehedge import api
    from minehedge.sweep import expand_grid, make_executor

    base = {"asset": "BTC", "timeframe": "1d", "policy": "static_hedge", "params": {}}
    began = time.perf_counter()
    shared = api.load_shared(base)
    load_s = time.perf_counter() - began
    blob = pickle.dumps(shared)
    began = time.perf_counter()
    pickle.loads(blob)
    unpickle_s = time.perf_counter() - began
    points = expand_grid(base, grid(args.configs))
    executor = {"local1": lambda: make_executor(workers=1), "local2": lambda: make_executor(workers=2),
                "dask2": lambda: make_executor(dask_local=2)}[args.executor]()
    record = {"executor": args.executor, "description": executor.description, "load_shared_s": load_s,
              "market_pickle_mb": len(blob) / 2**20, "market_unpickle_s": unpickle_s,
              "parent_rss_before_sweep_mb": peak_rss_mb()}
    began = time.perf_counter()
    executor.__enter__()
    # a LocalCluster starts here; a process pool at its first run
    record["startup_s"] = time.perf_counter() - began
    try:
        if not args.serve:
            record.update(run_part(executor, shared, points, *args.part, run_fn))
        else:
            print(json.dumps({"ready": True, **record}), flush=True)
            for line in sys.stdin:
                if line.strip():
                    print(json.dumps(run_part(executor, shared, points, *grid_part(line.strip()), run_fn)),
                          flush=True)
    finally:
        began = time.perf_counter()
        executor.__exit__(None, None, None)
        record["shutdown_s"] = time.perf_counter() - began
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
