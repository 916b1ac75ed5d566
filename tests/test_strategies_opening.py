"""The miner opens its account before the first bar, so backtrader's own return analyzers (which read the
opening value when they start, before the strategy does) work on a miner run: TimeReturn and SharpeRatio
divided by a zero opening value when the deposits were made on the first bar."""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import pytest

from analyzers.backtrader_analyzers import add_analyzers
from brokers.broker import MarginBroker
from data.feeds import MinerFeed
from minehedge import api
from strategies.registry import policy_class


class _FundLog(bt.Analyzer):
    """Every value backtrader notifies (what TimeReturn divides), and the broker's value at start."""

    def create_analysis(self) -> None:
        self.rets = bt.AutoOrderedDict()

    def start(self) -> None:
        self.opening = self.strategy.broker.getvalue()
        self.values: list[float] = []

    def notify_fund(self, cash: float, value: float, fundvalue: float, shares: float) -> None:
        self.values.append(value)


def _run(market, policy: str = "static_hedge", **params) -> bt.Strategy:
    values = api._policy_params(policy, {"asset": "BTC", **params}, None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name="BTC"))
    cerebro.broker = MarginBroker(cash=0.0)
    cerebro.addstrategy(policy_class(policy), **values)
    add_analyzers(cerebro, "BTC")
    cerebro.addanalyzer(_FundLog, _name="fund")
    cerebro.addanalyzer(bt.analyzers.TimeReturn, _name="daily", timeframe=bt.TimeFrame.Days)
    cerebro.addanalyzer(bt.analyzers.Returns, _name="returns")
    cerebro.addanalyzer(bt.analyzers.SharpeRatio, _name="sharpe", timeframe=bt.TimeFrame.Days)
    return cerebro.run()[0]


@pytest.fixture(scope="module")
def market(btc_daily_2021):
    return btc_daily_2021


def test_stock_return_analyzers_see_the_opening_value(market):
    strategy = _run(market, start_usd=2_000_000.0)
    fund = strategy.analyzers.fund
    assert fund.opening == 2_000_000.0
    returns = list(strategy.analyzers.daily.get_analysis().values())
    assert len(returns) == len(market.frame) == 365
    # TimeReturn's own arithmetic on the values it was notified, from the opening value on
    previous = [fund.opening, *fund.values[:-1]]
    assert returns == [value / before - 1.0 for value, before in zip(fund.values, previous, strict=True)]
    # Returns: log of the value at the end (after the last bar's strategy step) over the opening value
    assert strategy.analyzers.returns.get_analysis()["rtot"] == math.log(strategy.broker.getvalue() / fund.opening)
    assert math.isfinite(strategy.analyzers.sharpe.get_analysis()["sharperatio"])


def test_opening_coins_are_valued_at_the_first_open_until_the_first_close(market):
    strategy = _run(market, policy="unhedged", start_usd=0.0, start_coins=10.0)
    first_open = float(market.frame["open"].iloc[0])
    first_close = float(market.frame["close"].iloc[0])
    assert strategy.analyzers.fund.opening == 10.0 * first_open
    first_return = next(iter(strategy.analyzers.daily.get_analysis().values()))
    assert first_return == strategy.analyzers.fund.values[0] / (10.0 * first_open) - 1.0
    assert strategy.analyzers.fund.values[0] == 10.0 * first_close  # nothing mined or paid yet at bar 0's notice


def test_opening_deposits_are_dated_at_the_first_bar(market):
    strategy = _run(market, start_usd=1_500_000.0, start_coins=2.0)
    entries = strategy.broker.ledger.entries
    first_bar = strategy.data.num2date(strategy.data.datetime.array[0])
    assert [(e.time, e.kind, e.currency, e.wallet, e.amount) for e in entries[:2]] == [
        (first_bar, "deposit", "USD", "spot", 1_500_000.0), (first_bar, "deposit", "BTC", "spot", 2.0),
    ]
    assert entries[2].time == first_bar  # the first bar's own entries (mining) follow at the same time
    assert entries[1].amount_usd == 2.0 * float(market.frame["open"].iloc[0])


def test_open_at_is_refused_once_the_run_has_started(market):
    strategy = _run(market)
    with pytest.raises(RuntimeError, match="the run has started"):
        strategy.broker.open_at(strategy.broker.bar_time(strategy.data))
