"""The miner opens its account before the first bar, so backtrader's own return analyzers (which read the
opening value when they start, before the strategy does) work on a miner run: TimeReturn and SharpeRatio
divided by a zero opening value when the deposits were made on the first bar."""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import numpy as np
import pandas as pd
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


def _run(market, policy: str = "static_hedge", stock: bool = True, **params) -> bt.Strategy:
    values = api._policy_params(policy, {"asset": "BTC", **params}, None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name="BTC"))
    cerebro.broker = MarginBroker(cash=0.0)
    cerebro.addstrategy(policy_class(policy), **values)
    add_analyzers(cerebro, "BTC")
    if not stock:  # backtrader's return analyzers divide by the opening value
        return cerebro.run()[0]
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


@pytest.fixture(scope="module")
def falling_first_day(data_dir):
    """BTC daily from 2021-01-11, whose bar fell from 38,150 to 35,404 USD: the opening is the run's peak."""
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-01-11", "end": "2021-03-31",
                            "data_dir": str(data_dir)})


def test_the_summary_counts_from_the_opening_value(falling_first_day):
    frame = falling_first_day.frame
    assert frame["close"].iloc[0] < frame["open"].iloc[0]  # the move the summary used to leave out
    strategy = _run(falling_first_day, policy="unhedged", start_usd=1_000_000.0, start_coins=100.0)
    summary = strategy.analyzers.summary.get_analysis()
    equity = strategy.analyzers.summary.recorder.frame()
    opening = 1_000_000.0 + 100.0 * float(frame["open"].iloc[0])
    curve = np.array([opening, *equity["equity_usd"]])
    assert summary["initial_equity_usd"] == opening
    assert summary["total_return_pct"] == (curve[-1] / opening - 1.0) * 100.0
    days = len(frame)  # from the first bar's open to the last bar's close
    assert summary["cagr_pct"] == pytest.approx(((curve[-1] / opening) ** (365.25 / days) - 1.0) * 100.0,
                                                rel=1e-12)
    under = 100.0 * (1.0 - curve / np.maximum.accumulate(curve))
    assert summary["max_drawdown_pct"] == pytest.approx(under.max(), rel=1e-12)
    assert equity["drawdown_pct"].to_numpy() == pytest.approx(under[1:], rel=1e-12, abs=1e-12)
    assert equity["drawdown_pct"].iloc[0] > 0.0  # the first bar's fall is a drawdown from the opening
    daily = np.diff(curve) / curve[:-1]  # one bar a day: the first return is the first bar's
    expected_sharpe = daily.mean() / daily.std(ddof=1) * math.sqrt(365.0)
    assert summary["sharpe"] == pytest.approx(expected_sharpe, rel=1e-12)


def test_the_opening_is_labelled_one_bar_before_the_first(falling_first_day):
    strategy = _run(falling_first_day, policy="unhedged", start_usd=1_000_000.0)
    recorder = strategy.analyzers.summary.recorder
    curve = recorder.valuation("equity_usd")
    assert curve.index[0] == recorder.frame().index[0] - pd.Timedelta(days=1)
    assert curve.iloc[0] == 1_000_000.0 and (curve.iloc[1:] == recorder.frame()["equity_usd"]).all()
    # an account opened with nothing has no return to count from: the curve is the bars alone
    empty = _run(falling_first_day, policy="unhedged", stock=False, start_usd=0.0).analyzers.summary
    assert len(empty.recorder.valuation("equity_usd")) == len(falling_first_day.frame)
