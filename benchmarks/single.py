"""One benchmarked single run in a fresh process (so its peak RSS is its own); prints one JSON object.

``python -m benchmarks.single --timeframe 1h --repeats 3``: the longest shared range of BTC at that
timeframe (no --start/--end), static_hedge with default parameters. Phases: data loading
(:func:`minehedge.api.load_market`: CSV read, validation, alignment, fingerprint), engine set-up, run,
report (see :mod:`benchmarks.engine`); each the median of ``repeats`` (data loading: of fresh loads).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory so far, MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status`` (kB). Not ``getrusage``'s ``ru_maxrss``: Linux
    carries it over ``execve`` from the address space the process replaced, so a process started by
    ``subprocess`` (or by a worker pool that forks and execs) reports at least its parent's peak at that
    moment. A benchmark parent holding 250 MiB would make every child it starts look 250 MiB big.
    Elsewhere ``ru_maxrss`` (macOS counts bytes, the BSDs KiB).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def feed_load_seconds(market, repeats: int) -> float:
    """Median seconds for MinerFeed start + preload of the market's frame alone (the per-run data cost)."""
    import minehedge.compat  # noqa: F401

    import backtrader as bt

    from data.feeds import MinerFeed

    times = []
    for _ in range(repeats):
        cerebro = bt.Cerebro()
        feed = MinerFeed(dataname=market.frame, name=market.asset)
        cerebro.adddata(feed)
        began = time.perf_counter()
        feed._start()
        feed.preload()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeframe", default="1d")
    parser.add_argument("--asset", default="BTC")
    parser.add_argument("--policy", default="static_hedge")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from benchmarks.engine import timed_run
    from minehedge import api

    config = {"asset": args.asset, "timeframe": args.timeframe}
    rss_start = peak_rss_mb()
    loads, market = [], None
    for _ in range(args.repeats):
        market = None
        # each repeat starts clean, so the peak is one load's and one run's, as in a sweep worker
        gc.collect()
        began = time.perf_counter()
        market = api.load_market(config)
        loads.append(time.perf_counter() - began)
    rss_loaded = peak_rss_mb()
    runs = []
    for _ in range(args.repeats):
        gc.collect()  # the previous run's reference cycles (see minehedge.sweep.release_run_garbage)
        runs.append(timed_run(market, args.policy))

    def median(name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs)

    record = {
        "asset": args.asset, "timeframe": args.timeframe, "policy": args.policy, "repeats": args.repeats,
        "bars": len(market.frame), "first_bar": market.frame.index[0].isoformat(),
        "last_bar": market.frame.index[-1].isoformat(),
        "load_s": statistics.median(loads), "feed_preload_s": feed_load_seconds(market, args.repeats),
        "setup_s": median("setup_s"), "run_s": median("run_s"), "analysis_s": median("analysis_s"),
        "result_s": median("result_s"), "report_s": median("report_s"),
        "end_to_end_s": statistics.median(loads) + median("total_s"),
        "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_start, "rss_after_load_mb": rss_loaded,
        "final_equity_usd": runs[0].summary["final_equity_usd"], "fills": len(runs[0].fills),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
