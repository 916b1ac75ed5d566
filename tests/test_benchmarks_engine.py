"""The engine-overhead benchmark compares like with like: its stock-backtrader replay and its MarginBroker
replay trade exactly what the miner traded (``benchmarks/engine.py``; timings live in benchmarks/run.py)."""

from __future__ import annotations

import pytest

from analyzers.event_stats import event_records
from benchmarks import engine
from minehedge import api


@pytest.fixture(scope="module")
def miner_run(data_dir):
    # 2019-09 to 2022-12: the perpetual from its listing through 2022's crashes (liquidations at 2x).
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2019-09-10", "end": "2022-12-31",
                              "data_dir": str(data_dir)})
    return market, engine.timed_run(market)


def test_the_stock_replay_fills_every_miner_fill(miner_run):
    market, run = miner_run
    orders = engine.replay_orders(market, run.fills)
    _, fills = engine.baseline_run(market, orders, engine.baseline_commission("static_hedge", None, "BTC"), 1e12)
    assert fills == len(run.fills) > 0


def test_the_margin_replay_walks_the_miners_position_path(miner_run):
    """Same fills, and the broker's own margin events (liquidations, margin calls) at the same bars, prices
    and sizes as in the miner's run: the replay differs from the miner only by the miner's own work."""
    market, run = miner_run
    assert run.summary["liquidations"] > 0
    forced = [f for f in run.fills if f["reason"] == "liquidation"]
    assert len(forced) == run.summary["liquidations"]
    margins = engine.miner_margin_moves(market)
    assert margins  # the miner met margin calls: without these top-ups the replay is liquidated elsewhere
    _, strategy = engine.margin_replay_run(market, engine.replay_orders(market, run.fills, forced=False), margins, 1e12)
    assert strategy.fills == len(run.fills)
    assert event_records(strategy.broker.events) == run.events
    funding = [entry.amount for entry in strategy.broker.ledger.entries if entry.kind == "funding"]
    assert -sum(a for a in funding if a < 0) == pytest.approx(run.summary["funding_paid_usd"], rel=1e-12)
    assert sum(a for a in funding if a > 0) == pytest.approx(run.summary["funding_received_usd"], rel=1e-12)
