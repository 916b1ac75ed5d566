"""Where a bar's time goes: microseconds per bar of each phase of the BTC 1d static_hedge run; prints JSON.

``python -m benchmarks.breakdown``: one instrumented run (after a warm-up) in which the phases below are
wrapped in ``time.perf_counter`` pairs, and one uninstrumented run for the total. Each wrapped call adds
about 0.2 us of its own, so nested phases (broker steps inside ``broker.next``) slightly inflate their
parent; the parts are for finding hot paths, the uninstrumented total is the figure to quote.

- ``feed``: ``MinerFeed.advance`` (``data.feeds.FastPandasData``: every line of the data one bar on);
- ``broker``: ``MarginBroker.next``, with its steps funding, liquidation check, margin-call check, expiry
  check and valuation (``_get_value``, also called when a strategy reads a changed account);
- ``strategy``: ``MinerStrategy.next``, with mining credits, treasury (sales and costs) and the hedge
  (``rebalance``, on the days it runs);
- ``recorder``: the per-bar analyzer work (``EquityRecorder.next`` and ``MiningPnL.next``);
- ``backtrader``: the rest of cerebro's loop (clock, notifications, analyzer dispatch).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _wrap(owner: type, name: str, label: str, seconds: dict[str, float], calls: dict[str, int]) -> tuple:
    original = owner.__dict__[name]

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - began
            calls[label] += 1

    setattr(owner, name, timed)
    return owner, name, original


def breakdown(policy: str = "static_hedge") -> dict[str, Any]:
    """Microseconds per bar of each phase (see the module docstring) and the uninstrumented total."""
    import minehedge.compat  # noqa: F401

    import backtrader as bt

    from analyzers.backtrader_analyzers import EquityRecorder, MiningPnL
    from brokers.broker import MarginBroker
    from data.feeds import FastPandasData
    from minehedge import api
    from strategies.base import MinerStrategy
    from strategies.registry import policy_class

    market = api.load_market({"asset": "BTC", "timeframe": "1d"})
    api.run_policy(market, policy)  # warm-up: imports, venue tables, caches
    gc.collect()  # each timed run starts without an earlier run's cycles (as benchmarks.run does)
    began = time.perf_counter()
    api.run_policy(market, policy)
    total_s = time.perf_counter() - began

    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    phases = [
        (FastPandasData, "advance", "feed"),  # MinerFeed's own fast advance
        (MarginBroker, "next", "broker"),
        (MarginBroker, "_settle_funding", "broker: funding"),
        (MarginBroker, "_check_liquidations", "broker: liquidation check"),
        (MarginBroker, "_check_margin_calls", "broker: margin-call check"),
        (MarginBroker, "_settle_expiries", "broker: expiry check"),
        (MarginBroker, "_get_value", "broker: valuation"),
        (MinerStrategy, "next", "strategy"),
        (MinerStrategy, "_credit_mining", "strategy: mining credits"),
        (MinerStrategy, "_treasury", "strategy: treasury"),
        (policy_class(policy), "rebalance", "strategy: hedge"),
        (EquityRecorder, "next", "recorder"),
        (EquityRecorder, "_next_from_state", "recorder"),  # its next on a MarginBroker
        (MiningPnL, "next", "recorder"),
        (bt.Cerebro, "_runonce", "loop"),
    ]
    wrapped = [_wrap(owner, name, label, seconds, calls) for owner, name, label in phases]
    try:
        gc.collect()
        began = time.perf_counter()
        api.run_policy(market, policy)
        instrumented_s = time.perf_counter() - began
    finally:
        for owner, name, original in reversed(wrapped):
            setattr(owner, name, original)
    bars = len(market.frame)
    labels = list(dict.fromkeys(label for _, _, label in phases))  # in the order above, parents first
    per_bar = {label: seconds[label] / bars * 1e6 for label in labels}
    loop = per_bar.pop("loop")
    per_bar["backtrader"] = loop - sum(per_bar[k] for k in ("feed", "broker", "strategy", "recorder"))
    per_bar["outside the loop (set-up, statistics, RunResult)"] = instrumented_s / bars * 1e6 - loop
    return {"policy": policy, "bars": bars, "run_policy_s": total_s,
            "run_policy_us_per_bar": total_s / bars * 1e6,
            "instrumented_s": instrumented_s, "us_per_bar": per_bar,
            "calls_per_bar": {label: calls[label] / bars for label in labels if label != "loop"}}


def main() -> int:
    print(json.dumps(breakdown()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
