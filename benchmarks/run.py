"""minehedge benchmarks (issue 8): ``python benchmarks/run.py [--quick] [--out benchmarks/results.json]``.

Prints ratios first (absolute figures are noisy on shared machines), then absolute figures, and writes
them with the machine description to ``benchmarks/results.json``. Needs the shared data:
``export MINEHEDGE_DATA_DIR=/work/shared/data`` (or ``--data-dir``).

1. Engine overhead: static_hedge on MarginBroker with every analyzer against stock backtrader replaying the
   same fills on BackBroker (see :mod:`benchmarks.engine`), BTC 1d over the whole shared range, same
   MinerFeed frame; alternating runs, ratio of the medians. Between the two, the same replay on MarginBroker
   (the margin engine without the miner) and the miner without analyzers.
2. Single runs, each in a fresh process (:mod:`benchmarks.single`): BTC 1d over the whole shared daily
   range and BTC 1h over the longest shared hourly range; seconds and bars/s per phase; peak RSS.
3. Sweeps, each executor in a fresh process of its own (:mod:`benchmarks.sweep`): a 200-configuration
   static_hedge grid on BTC 1d with 1 and 2 local workers and a Dask LocalCluster of 2 workers, interleaved
   in four slices of the grid, each executor starting its workers once (see :func:`sweeps`).
4. Memory: peak RSS of the hourly run and per sweep worker.
5. Where the time goes: microseconds per bar of each phase of the daily run (:mod:`benchmarks.breakdown`).
6. The numpy margin screen (:mod:`brokers.screening`): nanoseconds per configuration-bar
   (:func:`margin_screen`).
7. A sweep's own bookkeeping in the parent (hashing, recording, results.csv on disk) per configuration, at
   200, 2,000 and 10,000 configurations (:mod:`benchmarks.bookkeeping`): it must not grow with the sweep.

``--quick``: 3 alternating pairs instead of 7, one repeat per single run, an 8-configuration grid in two
slices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = {"engine_ratio": 1.2, "daily_end_to_end_s": 1.0, "hourly_end_to_end_s": 10.0,
           "parallel_efficiency": 0.9, "sweep_rss_vs_single": 1.5}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import backtrader
    import numpy
    import pandas

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                                     "--", ".",
                                     ":!benchmarks/results.json"],  # its own previous output is not code
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {"cpu": cpu, "logical_cores": os.cpu_count(),
            "usable_cores": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                             else os.cpu_count()),
            "memory_gb": memory_gb, "platform": platform.platform(), "python": platform.python_version(),
            "backtrader": backtrader.__version__, "pandas": pandas.__version__, "numpy": numpy.__version__,
            "git_commit": commit + ("+uncommitted changes" if dirty else ""),
            "measured_at_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def machine_speed_s(loops: int = 2_000_000, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of a fixed pure-Python loop (seconds): measured at the start and at the end
    of the benchmark, so a reader can see how much this (shared, virtual) machine's speed moved meanwhile."""
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i
        best = min(best, time.perf_counter() - began)
    return best


def engine_overhead(pairs: int) -> dict[str, Any]:
    """Alternating miner / baseline runs on BTC 1d (whole range); medians and their ratio."""
    from analyzers.event_stats import event_records
    from benchmarks.engine import (
        ABLATIONS,
        ablated_run,
        baseline_commission,
        baseline_run,
        margin_replay_run,
        miner_margin_moves,
        replay_orders,
        timed_run,
    )
    from minehedge import api

    market = api.load_market({"asset": "BTC", "timeframe": "1d"})
    warm = timed_run(market)  # warm-up: imports, venue tables, caches
    orders = replay_orders(market, warm.fills)
    commission = baseline_commission("static_hedge", None, market.asset)
    cash = 1e12  # enough that BackBroker never rejects a replayed order for margin
    _, base_fills = baseline_run(market, orders, commission, cash)
    unforced = replay_orders(market, warm.fills, forced=False)  # the margin broker liquidates by itself
    margins = miner_margin_moves(market)
    _, replayed = margin_replay_run(market, unforced, margins, cash)
    margin_fills = replayed.fills
    margin_liquidations = sum(event.kind == "liquidation" for event in replayed.broker.events)
    # the miner's position path, walked again
    same_events = event_records(replayed.broker.events) == warm.events
    miner, miner_total, baseline, margin = [], [], [], []
    ablated: dict[str, list[float]] = {name: [] for name in ABLATIONS}
    # Every timed run starts after a full collection, so it pays for the collections its own allocations
    # trigger and not for the cycles an earlier run left behind (the miner leaves far more than the replays).
    for _ in range(pairs):
        gc.collect()
        run = timed_run(market)
        miner.append(run.cerebro_s)
        miner_total.append(run.total_s)
        gc.collect()
        baseline.append(baseline_run(market, orders, commission, cash)[0])
        gc.collect()
        margin.append(margin_replay_run(market, unforced, margins, cash)[0])
        for name, parts in ABLATIONS.items():
            gc.collect()
            ablated[name].append(ablated_run(market, **parts))
    med_miner, med_total, med_base = (statistics.median(x) for x in (miner, miner_total, baseline))
    return {
        "bars": len(market.frame), "pairs": pairs, "miner_fills": len(warm.fills),
        "baseline_fills": base_fills,
        "margin_replay": {"s": statistics.median(margin), "ratio": statistics.median(margin) / med_base,
                          "fills": margin_fills, "liquidations": margin_liquidations, "runs_s": margin,
                          "margin_top_ups": sum(len(v) for v in margins.values()),
                          "same_margin_events_as_miner": same_events,
                          "includes": ("the baseline's replay on MarginBroker with the policy's futures "
                                       "contract (funding with ledger entries, liquidation and margin "
                                       "checks, valuation), plus the margin the miner added to its position "
                                       "on the same bars; the broker makes its own liquidations, so forced "
                                       "closes are not replayed; no miner, no analyzers")},
        "miner_cerebro_s": med_miner, "miner_with_result_s": med_total, "baseline_s": med_base,
        "ratio": med_miner / med_base, "ratio_with_result": med_total / med_base,
        "ablations": {name: {"s": statistics.median(times), "ratio": statistics.median(times) / med_base,
                             "runs_s": times} for name, times in ablated.items()},
        "miner_runs_s": miner, "baseline_runs_s": baseline,
        "baseline_includes": ("stock backtrader: Cerebro(stdstats=False), the same MinerFeed frame (preload, "
                              "runonce), BackBroker with bt.CommissionInfo(taker fee, margin = price x mult "
                              "/ leverage), no analyzers, a strategy submitting each of the miner's fills as "
                              "a market order on the previous bar"),
        "miner_includes": ("api.run_policy's cerebro: MinerFeed, MarginBroker (funding, liquidation and "
                           "margin checks, ledger), the static_hedge miner (mining credits, costs, treasury, "
                           "hedge), every analyzer including their end-of-run statistics"),
    }


def margin_screen(configs: int = 200, repeats: int = 5) -> dict[str, Any]:
    """The numpy margin path (:mod:`brokers.screening`) of ``configs`` held BTCUSDT positions (size x
    leverage grid, long and short) on BTC 1d from the start of Binance's perpetual funding (2019-09-10): the
    schedule built once, then each path; nanoseconds per configuration-bar (best of ``repeats``). It answers a
    narrower question than a run (one held position's funding, margin and liquidation, no mining), and is
    checked bar by bar against MarginBroker in tests/test_brokers_screening.py."""
    from datetime import timedelta

    from pandas import Timestamp as pd_timestamp

    from brokers.screening import BarSchedule, held_linear_path, held_linear_paths
    from brokers.venues import load_venue
    from minehedge import api

    market = api.load_market({"asset": "BTC", "timeframe": "1d"})
    venue = load_venue("binance_usdm")
    began = time.perf_counter()
    schedule = BarSchedule.from_frame(market.frame, timedelta(days=1), venue.funding_hours_utc,
                                      venue.instrument("BTCUSDT").tiers_at,
                                      fallback_rate=venue.default_funding_rate)
    schedule_s = time.perf_counter() - began
    # Binance perpetual funding begins
    start = int(market.frame.index.searchsorted(pd_timestamp("2019-09-10", tz="UTC")))
    entry = float(market.frame["open"].iloc[start])
    sizes = [s * q for s in (1.0, -1.0) for q in (0.25, 0.5, 1.0, 2.0, 4.0)]
    leverages = [1.0 + 0.5 * k for k in range(max(configs // len(sizes), 1))]
    grid = [(qty, lev) for qty in sizes for lev in leverages]
    best = one_by_one = math.inf
    for _ in range(repeats):  # each position once, with all its leverages as rows (held_linear_paths)
        began = time.perf_counter()
        liquidated = sum(int((held_linear_paths(schedule, qty, entry,
                                                [abs(qty) * entry / lev for lev in leverages],
                                                start).liquidated_at >= 0).sum()) for qty in sizes)
        best = min(best, time.perf_counter() - began)
    for _ in range(repeats):  # the same grid, one path per configuration (held_linear_path)
        began = time.perf_counter()
        for qty, lev in grid:
            held_linear_path(schedule, qty, entry, abs(qty) * entry / lev, start)
        one_by_one = min(one_by_one, time.perf_counter() - began)
    bars = len(market.frame) - start
    return {"configs": len(grid), "bars": bars, "from": market.frame.index[start].isoformat(),
            "schedule_s": schedule_s, "paths_s": best, "ns_per_config_bar": best / (len(grid) * bars) * 1e9,
            "one_by_one_s": one_by_one, "one_by_one_ns_per_config_bar": one_by_one / (len(grid) * bars) * 1e9,
            "liquidated": liquidated}


def _benchmark_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _subprocess_json(module: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=_benchmark_env(),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def single_runs(repeats: int) -> dict[str, Any]:
    out = {}
    for timeframe in ("1d", "1h"):
        record = _subprocess_json("benchmarks.single", "--timeframe", timeframe, "--repeats", str(repeats))
        bars = record["bars"]
        for phase in ("load", "setup", "run", "report", "end_to_end"):
            seconds = record[f"{phase}_s"]
            record[f"{phase}_bars_per_s"] = bars / seconds if seconds > 0 else float("inf")
        out[timeframe] = record
    return out


EXECUTORS: tuple[tuple[str, int], ...] = (("local1", 1), ("local2", 2), ("dask2", 2))  # (name, workers)


class _SweepServer:
    """One executor's ``python -m benchmarks.sweep --serve`` process: it loads the market and opens the
    executor once, then runs the slices it is sent, one at a time."""

    def __init__(self, name: str, configs: int) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sweep", "--executor", name, "--configs", str(configs),
             "--serve"],
            cwd=ROOT, env=_benchmark_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True)
        self.ready = self._reply()

    def _reply(self) -> dict[str, Any]:
        for line in self._proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self._proc.wait()
        self._stderr.seek(0)
        raise RuntimeError(f"benchmarks.sweep --executor {self.name} failed:\n{self._stderr.read()[-3000:]}")

    def part(self, k: int, n: int) -> dict[str, Any]:
        self._proc.stdin.write(f"{k}/{n}\n")
        self._proc.stdin.flush()
        return self._reply()

    def close(self) -> dict[str, Any]:
        """End of input: the executor shuts down; its closing record (start-up and shut-down seconds)."""
        self._proc.stdin.close()
        final = self._reply()
        self._proc.wait()
        self._stderr.close()
        return final


def tail_cap(durations: list[float], workers: int) -> float:
    """The best parallel efficiency ``workers`` can reach on tasks of these ``durations`` (seconds) handed out
    in order, each to the first worker that is free (as a process pool and Dask's queue do): total work /
    (workers x the time the last worker finishes). Below 1 only because of the tail, where some workers have
    nothing left to take; 1.0 for no tasks."""
    if not durations:
        return 1.0
    free_at = [0.0] * workers
    for duration in durations:
        first = min(range(workers), key=free_at.__getitem__)
        free_at[first] += duration
    return sum(durations) / (workers * max(free_at))


def in_grid_order(slices: list[list[float]]) -> list[float]:
    """The grid's values from its ``--part K/N`` slices (slice K holds grid points K-1, K-1+N, K-1+2N,
    ...)."""
    values = [0.0] * sum(len(part) for part in slices)
    for k, part in enumerate(slices):
        values[k::len(slices)] = part
    return values


def sweeps(configs: int, parts: int = 4) -> dict[str, Any]:
    """The grid with each executor, interleaved: the grid is cut into ``parts`` slices of the same mix
    (``--part K/N``), and each slice is run by every executor in turn, the order reversed on alternate
    slices (1, 2, Dask, then Dask, 2, 1, and so on). This machine's speed drifts by up to 2x within minutes;
    run one executor after another and the drift lands on whichever ran in a slow spell, while interleaved it
    is shared. Every slice also ends with a tail (one worker idle while the other finishes) that one sweep of
    the grid pays once: four slices of 50 cost about 0.6 points of efficiency (8 slices of 25 cost 2.7 on
    session 16's per-configuration times; see ``tail_cap_by_part``), so four trade some of the interleaving
    for a measurement closer to one sweep. Each executor runs in one process that keeps its workers for all
    its slices (see ``benchmarks.sweep --serve``), so start-up is paid once, as in one sweep of the grid;
    while it waits for its next slice its workers idle. An executor's wall time is its start-up (Dask's
    LocalCluster; a process pool starts inside its first slice), its slices and its shut-down; its other
    figures are sums (configurations) or maxima (RSS) over its slices. ``efficiency_by_part`` is each slice's
    alone."""
    servers = [_SweepServer(name, configs) for name, _ in EXECUTORS]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in EXECUTORS}
    for k in range(1, parts + 1):
        for server in (servers if k % 2 else servers[::-1]):
            runs[server.name].append(server.part(k, parts))
    out: dict[str, Any] = {}
    for server, (name, _) in zip(servers, EXECUTORS, strict=True):
        parts_of = runs[name]
        record = server.close()
        for key in ("configs", "ok", "failed"):
            record[key] = sum(p[key] for p in parts_of)
        record["slices_s"] = sum(p["wall_s"] for p in parts_of)
        record["wall_s"] = record["startup_s"] + record["slices_s"] + record["shutdown_s"]
        record["configs_per_s"] = record["configs"] / record["wall_s"]
        record["mean_config_s"] = sum(p["mean_config_s"] * p["ok"] for p in parts_of) / max(record["ok"], 1)
        record["final_equity_sum_usd"] = sum(p["final_equity_sum_usd"] for p in parts_of)
        for key in ("worker_peak_rss_mb", "parent_peak_rss_mb"):
            record[key] = max(p[key] for p in parts_of)
        record["workers_seen"] = len({pid for p in parts_of for pid in p["worker_pids"]})
        record["parts"] = parts_of
        out[name] = record
    for name, workers in EXECUTORS:
        out[name]["parallel_efficiency"] = out["local1"]["wall_s"] / (workers * out[name]["wall_s"])
        out[name]["efficiency_by_part"] = [serial["wall_s"] / (workers * own["wall_s"])
                                           for serial, own in zip(runs["local1"], runs[name], strict=True)]
        # What the slicing itself costs: each slice ends with a tail (a worker idle while the other finishes)
        # that one sweep of the whole grid has only once. From the 1-worker run's per-configuration times
        # (each configuration alone, in grid order), the best efficiency of each slice and of the whole grid.
        alone = [part["config_seconds"] for part in runs["local1"]]
        out[name]["tail_cap_by_part"] = [tail_cap(seconds, workers) for seconds in alone]
        out[name]["tail_cap_whole_grid"] = tail_cap(in_grid_order(alone), workers)
        # loaded once per sweep: the load cost spread over the grid
        out[name]["data_load_per_config_s"] = out[name]["load_shared_s"] / out[name]["configs"]
    return out


def time_breakdown() -> dict[str, Any]:
    """Microseconds per bar of each phase of the BTC 1d static_hedge run, in a fresh process."""
    return _subprocess_json("benchmarks.breakdown")


def _steal_share(parts: list[dict[str, Any]]) -> float | None:
    """Steal ticks over all ticks (every CPU) during an executor's slices; None without /proc/stat figures."""
    ticks = [part.get("cpu_ticks") for part in parts]
    if not ticks or any(t is None for t in ticks):
        return None
    total = sum(sum(t.values()) for t in ticks)
    return sum(t["steal"] for t in ticks) / total if total else 0.0


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


_SAME_EVENTS = {True: "equal to", False: "DIFFERENT from", None: "not compared with"}  # None: older JSON


def table(results: dict[str, Any]) -> str:
    engine, single, sweep = results["engine_overhead"], results["single_runs"], results["sweeps"]
    daily, hourly = single["1d"], single["1h"]
    single_rss = daily["peak_rss_mb"]
    rows = [
        "RATIOS (target)",
        f"  engine overhead, miner / plain backtrader (<= 1.2x) : {engine['ratio']:.2f}x "
        f"(with RunResult {engine['ratio_with_result']:.2f}x; medians of {engine['pairs']} alternating "
        f"pairs, {engine['bars']} daily bars)",
    ]
    for name in ("local2", "dask2"):
        by_part = ", ".join(f"{e:.0%}" for e in sweep[name]["efficiency_by_part"])
        rows.append(f"  parallel efficiency {sweep[name]['description']:<38} (>= 90%): "
                    f"{sweep[name]['parallel_efficiency']:.0%} (interleaved slices: {by_part})")
    caps = sweep["local2"].get("tail_cap_by_part")  # absent in JSON written before session 10
    if caps:
        rows.append(f"  (slicing alone caps a 2-worker slice at {statistics.mean(caps):.1%} on average, "
                    f"{min(caps):.1%}-{max(caps):.1%}, and one sweep of the whole grid at "
                    f"{sweep['local2']['tail_cap_whole_grid']:.1%}: each slice ends with one worker idle; "
                    "greedy schedule of the 1-worker run's per-configuration times)")
    worst = max(sweep[n]["worker_peak_rss_mb"] for n in sweep)
    rows.append(f"  sweep peak RSS per worker / single daily run (<= 1.5x): {worst / single_rss:.2f}x "
                f"({_fmt(worst, 0)} / {_fmt(single_rss, 0)} MiB)")
    rows += ["", "ENGINE OVERHEAD (BTC 1d, whole shared range)",
             f"  miner  {_fmt(engine['miner_cerebro_s'], 3)} s   {engine['miner_includes']}",
             f"  plain  {_fmt(engine['baseline_s'], 3)} s   {engine['baseline_includes']}",
             f"  fills: miner {engine['miner_fills']}, baseline {engine['baseline_fills']}",
             "  between the two (median; ratio to plain):",
             f"    {'the same replay on MarginBroker (the margin engine alone)':<52}"
             f"{_fmt(engine['margin_replay']['s'], 3):>7} s  {engine['margin_replay']['ratio']:.2f}x  "
             f"({engine['margin_replay']['fills']} fills, {engine['margin_replay']['margin_top_ups']} margin "
             f"top-ups, {engine['margin_replay']['liquidations']} liquidations by the broker; margin events "
             f"{_SAME_EVENTS[engine['margin_replay'].get('same_margin_events_as_miner')]} the miner's)",
             *(f"    {'the miner, ' + name:<52}{_fmt(rec['s'], 3):>7} s  {rec['ratio']:.2f}x"
               for name, rec in engine["ablations"].items()),
             "", "SINGLE RUNS (static_hedge, defaults)          seconds     bars/s"]
    for label, record, target in (("BTC 1d", daily, 1.0), ("BTC 1h", hourly, 10.0)):
        rows.append(f"  {label} {record['first_bar'][:10]} -> {record['last_bar'][:10]}, {record['bars']:,} "
                    f"bars (end to end target < {target:g} s)")
        for phase, name in (("load", "data loading"), ("setup", "engine set-up"), ("run", "run (bar loop)"),
                            ("report", "report"), ("end_to_end", "end to end")):
            rows.append(f"    {name:<38}{_fmt(record[f'{phase}_s'], 3):>10} "
                        f"{_fmt(record[f'{phase}_bars_per_s'], 0):>10}")
        rows.append(f"    (MinerFeed start+preload alone: {_fmt(record['feed_preload_s'] * 1000, 1)} ms; "
                    f"report = analyzer statistics {_fmt(record['analysis_s'], 3)} s + RunResult "
                    f"{_fmt(record['result_s'], 3)} s)")
    rows += ["", f"SWEEPS ({sweep['local1']['configs']} static_hedge configurations, BTC 1d, in "
             f"{len(sweep['local1']['parts'])} interleaved slices; each executor starts its workers once)",
             "  executor" + " " * 36
             + "wall s  configs/s efficiency  start/stop s  data load/config  worker peak RSS"]
    for name in ("local1", "local2", "dask2"):
        rec = sweep[name]
        rows.append(f"  {rec['description']:<44}{_fmt(rec['wall_s'], 1):>8}"
                    f"{_fmt(rec['configs_per_s'], 2):>10}"
                    f"{rec['parallel_efficiency']:>11.0%}{_fmt(rec['startup_s'], 1):>8}"
                    f"/{_fmt(rec['shutdown_s'], 1)}"
                    f"{_fmt(rec['data_load_per_config_s'] * 1000, 2):>14} ms"
                    f"{_fmt(rec['worker_peak_rss_mb'], 0):>12} MiB  ({rec['ok']} ok, {rec['failed']} failed)")
    steal = {name: _steal_share(sweep[name]["parts"]) for name in ("local1", "local2", "dask2")}
    if all(share is not None for share in steal.values()):  # absent in JSON written before session 12
        rows.append("  CPU time the hypervisor took from this VM during each executor's slices "
                    "(/proc/stat steal): "
                    + ", ".join(f"{sweep[n]['description'].split(' (')[0]} {share:.1%}"
                                for n, share in steal.items()))
    local = sweep["local1"]
    rows.append(f"  data: loaded once per sweep ({_fmt(local['load_shared_s'], 3)} s), sent once per worker "
                f"({_fmt(local['market_pickle_mb'], 2)} MiB pickled); per run only the MinerFeed preload "
                f"({_fmt(daily['feed_preload_s'] * 1000, 1)} ms)")
    rows += ["", "MEMORY (peak RSS, fresh process)",
             f"  BTC 1h single run {_fmt(hourly['peak_rss_mb'], 0)} MiB (after imports "
             f"{_fmt(hourly['rss_after_imports_mb'], 0)} MiB); BTC 1d single run {_fmt(single_rss, 0)} MiB",
             "  sweep worker peak: "
             + ", ".join(f"{n} {_fmt(sweep[n]['worker_peak_rss_mb'], 0)} MiB" for n in sweep)]
    parts = results["breakdown"]
    rows += ["", f"WHERE THE TIME GOES (BTC 1d static_hedge, {parts['bars']:,} bars; "
                 "instrumented run, us per bar)",
             f"  run_policy uninstrumented: {_fmt(parts['run_policy_us_per_bar'], 0)} us/bar; plain "
             f"backtrader replay: {_fmt(engine['baseline_s'] / engine['bars'] * 1e6, 0)} us/bar"]
    for label, micros in parts["us_per_bar"].items():
        indent = "      " if ":" in label else "  "
        rows.append(f"{indent}{label:<52}{_fmt(micros, 1):>8}")
    screen = results["margin_screen"]
    miner_ns = engine["miner_cerebro_s"] / engine["bars"] * 1e9
    rows += ["", "NUMPY MARGIN SCREEN (brokers.screening: one held BTCUSDT position per configuration, "
             "funding, margin ratio, liquidation)",
             f"  {screen['configs']} configurations x {screen['bars']:,} bars: schedule (once) "
             f"{_fmt(screen['schedule_s'] * 1000, 1)} ms, paths {_fmt(screen['paths_s'] * 1000, 1)} ms = "
             f"{_fmt(screen['ns_per_config_bar'], 0)} ns per configuration-bar ({screen['liquidated']} "
             f"liquidated; one path per configuration: {_fmt(screen['one_by_one_ns_per_config_bar'], 0)} ns)",
             f"  the full miner run: {_fmt(miner_ns / 1000, 0)} us per bar "
             f"({miner_ns / screen['ns_per_config_bar']:,.0f}x the screen's cost per configuration-bar)"]
    books = results.get("sweep_bookkeeping")  # absent in JSON written before session 12
    if books:
        sizes = books["sizes"]
        rows += ["", "SWEEP BOOKKEEPING (the parent's own work per configuration: hashing, recording, "
                 "results.csv on disk; a run function that does nothing)",
                 "  " + " / ".join(f"{s['configs']:,}" for s in sizes) + " configurations: "
                 + " / ".join(_fmt(s["ms_per_config"], 2) for s in sizes) + " ms per configuration ("
                 + " / ".join(f"{s['share_of_a_daily_config']:.2%}" for s in sizes)
                 + f" of a {_fmt(books['config_s'], 2)} s daily configuration); largest / smallest sweep: "
                 f"{sizes[-1]['ms_per_config'] / sizes[0]['ms_per_config']:.2f}x"]
    m, speed = results["machine"], results["machine_speed"]
    rows += ["", f"machine speed check (a fixed Python loop, best of 3): {_fmt(speed['start_s'], 3)} s at "
             f"the start, {_fmt(speed['end_s'], 3)} s at the end",
             f"machine: {m['cpu']}, {m['usable_cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
             f"backtrader {m['backtrader']}, pandas {m['pandas']}; {m['git_commit']} at "
             f"{m['measured_at_utc']}",
             f"command: {results['command']}  ({_fmt(results['benchmark_seconds'], 0)} s)"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer repeats, an 8-configuration grid")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--data-dir", help="shared data folder (default: $MINEHEDGE_DATA_DIR)")
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ["MINEHEDGE_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if not os.environ.get("MINEHEDGE_DATA_DIR"):
        parser.error("set MINEHEDGE_DATA_DIR or pass --data-dir (the benchmarks read the shared data)")
    began = time.perf_counter()
    results: dict[str, Any] = {"command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
                               "quick": args.quick, "targets": TARGETS, "machine": machine()}
    speed_before = machine_speed_s()
    results["engine_overhead"] = engine_overhead(3 if args.quick else 7)
    results["single_runs"] = single_runs(1 if args.quick else 3)
    results["sweeps"] = sweeps(8, parts=2) if args.quick else sweeps(200)  # quick: 4 configurations a slice
    results["breakdown"] = time_breakdown()
    results["margin_screen"] = margin_screen(configs=40 if args.quick else 200)
    results["sweep_bookkeeping"] = _subprocess_json(
        "benchmarks.bookkeeping", "--configs", "200,2000" if args.quick else "200,2000,10000",
        "--config-s", repr(results["sweeps"]["local1"]["mean_config_s"]))
    results["machine_speed"] = {"loop": "for i in range(2_000_000): total += i (best of 3)",
                                "start_s": speed_before, "end_s": machine_speed_s()}
    results["benchmark_seconds"] = time.perf_counter() - began
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
