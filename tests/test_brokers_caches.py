"""The broker's speed caches never change a figure: on every bar of real runs, each cached value equals the
same value computed afresh (linear isolated and cross, inverse, a dated roll that installs a new scheme), and
the recorder's one-call ``account_state`` equals the six getters it replaces. The margin figures at the close
are compared before and after the strategy's bar, which moves margin into the position at its rolls."""

from __future__ import annotations

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import pytest

from analyzers.backtrader_analyzers import add_analyzers
from brokers.broker import MarginBroker
from brokers.dated import dated_price_frame
from data.feeds import FastPandasData, MinerFeed
from minehedge import api
from strategies.registry import policy_class


def _fresh(broker: MarginBroker, asset: str) -> tuple:
    """Settled margin, open futures positions, coin price, liquidation prices and margin figures at the close,
    with every cache emptied."""
    saved = (broker._between_bars, broker._settled_cache, broker._open_cache, dict(broker._bar_prices),
             dict(broker._liq_cache), dict(broker._close_margins))
    broker._between_bars, broker._settled_cache, broker._open_cache = False, None, None
    broker._bar_prices.clear()
    broker._liq_cache.clear()
    broker._close_margins.clear()
    try:
        return (broker._isolated_settled(), broker._futures_positions(), broker.price_of(asset),
                [broker.get_liquidation_price(d) for d, _, _ in broker._futures_positions()],
                [broker._ratio(d, p, c, d.close[0]) for d, p, c in broker._futures_positions()])
    finally:
        (broker._between_bars, broker._settled_cache, broker._open_cache, prices, liq, margins) = saved
        broker._bar_prices.update(prices)
        broker._liq_cache.update(liq)
        broker._close_margins.update(margins)


def _checked(policy: str) -> type:
    """``policy`` whose every bar compares the broker's cached figures with fresh ones (before and after
    the miner's own bar, so both the cache it finds and the cache it leaves are checked)."""
    base = policy_class(policy)

    def next(self) -> None:
        for _ in range(2):
            broker = self.broker
            fresh = _fresh(broker, self.asset)
            cached = (broker._isolated_settled(), broker._futures_positions(), broker.price_of(self.asset),
                      [broker.get_liquidation_price(d) for d, _, _ in broker._futures_positions()],
                      [broker.get_position_margin(d) for d, _, _ in broker._futures_positions()])
            assert cached == fresh, (self.data.datetime.datetime(0), cached, fresh)
            # the recorder's one-call read equals the six getters (NaN-free here: data0 prices the coin)
            state = broker.account_state(self.asset)
            getters = (broker.getvalue(), broker.get_equity_coin(self.asset), broker.get_cash(),
                       broker.get_coins(self.asset), broker.get_unrealized_pnl_usd(), broker.get_margin_ratio())
            assert state == getters, (self.data.datetime.datetime(0), state, getters)
            self.bars_checked += 1
            self.bars_with_position += bool(cached[1])
            if _ == 0:
                added = dict(broker._extra)
                base.next(self)
                # the strategy moved margin into a position whose close figures the broker had remembered
                self.margin_moved_after_check += any(broker._extra.get(d, 0.0) != added.get(d, 0.0)
                                                     for d in broker._close_margins)

    def start(self) -> None:
        self.bars_checked = self.bars_with_position = self.margin_moved_after_check = 0
        base.start(self)

    return type(f"Checked{base.__name__}", (base,), {"next": next, "start": start})


@pytest.mark.parametrize("params", [
    {"margin_mode": "isolated", "leverage": 3.0},
    {"margin_mode": "cross", "leverage": 5.0},
    {"venue": "binance_coinm", "leverage": 3.0},
    {"contract": "dated", "expiry_cycle": "monthly"},
])
def test_cached_figures_equal_fresh_ones_on_every_bar(data_dir, params):
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2020-01-01", "end": "2020-06-30",
                              "data_dir": str(data_dir), "data_venue": "binance"})
    values = api._policy_params("static_hedge", {"asset": "BTC", "roll_days": 7.0, **params}, None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name="BTC"))
    if values.get("contract") == "dated":
        dated = dated_price_frame(market.frame, values["annual_basis"], values["expiry_cycle"])
        cerebro.adddata(FastPandasData(dataname=dated, name="BTC-DATED"))
    cerebro.broker = MarginBroker(cash=0.0)
    cerebro.addstrategy(_checked("static_hedge"), **values)
    add_analyzers(cerebro, "BTC")
    strategy = cerebro.run()[0]
    assert strategy.bars_checked == 2 * len(market.frame)
    assert strategy.bars_with_position > len(market.frame)  # the caches held real positions most of the run
    if params.get("margin_mode", "isolated") == "isolated":
        assert strategy.margin_moved_after_check > 0  # the remembered margin figures had to be recomputed
