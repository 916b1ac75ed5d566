"""The miner's per-bar notification step: backtrader's cash/value notification is skipped only when nothing
listens to it, the broker then values the account once per bar instead of twice, and a listener still gets
the current cash and value on every bar with results unchanged."""

from __future__ import annotations

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import pytest

from analyzers.backtrader_analyzers import Summary, add_analyzers
from brokers.broker import MarginBroker
from data.feeds import MinerFeed
from minehedge import api
from strategies.base import listens_to_cashvalue
from strategies.registry import policy_class


class _CountingBroker(MarginBroker):
    """A MarginBroker that counts its account valuations."""

    def _get_value(self, datas=None, lever=False):
        if datas is None:
            self.valuations += 1
        return super()._get_value(datas=datas, lever=lever)

    def start(self) -> None:
        self.valuations = 0
        super().start()


class _Notified(policy_class("static_hedge")):
    """static_hedge that listens: records what each notification carried and what the broker said then."""

    def start(self) -> None:
        self.heard: list[tuple] = []
        super().start()

    def notify_cashvalue(self, cash: float, value: float) -> None:
        self.heard.append((cash, value, self.broker.get_cash(), self.broker.getvalue()))


class _ValueLog(bt.Analyzer):
    """A stock-style analyzer that listens: the value of every cash/value notification."""

    def create_analysis(self) -> None:
        self.rets = bt.AutoOrderedDict()
        self.values: list[float] = []

    def notify_cashvalue(self, cash: float, value: float) -> None:
        self.values.append(value)


def _run(market, strategy: type, *, extra_analyzer: type | None = None) -> bt.Strategy:
    values = api._policy_params("static_hedge", {"asset": "BTC"}, None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name="BTC"))
    cerebro.broker = _CountingBroker(cash=0.0)
    cerebro.addstrategy(strategy, **values)
    add_analyzers(cerebro, "BTC")
    if extra_analyzer is not None:
        cerebro.addanalyzer(extra_analyzer, _name="extra")
    return cerebro.run()[0]


@pytest.fixture(scope="module")
def market(btc_daily_2021):
    return btc_daily_2021


def test_the_miner_values_the_account_once_per_bar(market):
    strategy = _run(market, policy_class("static_hedge"))
    bars = len(market.frame)
    assert bars == 365
    # one valuation per bar (the recorder's), plus the broker's start and the recorder's opening value;
    # backtrader's cash/value notification and a valuation at the end of the broker's bar would make it 2 per bar
    assert strategy.broker.valuations == bars + 2
    assert strategy._cashvalue_listened is False


def test_a_listening_strategy_hears_the_current_cash_and_value_and_results_do_not_change(market):
    quiet = _run(market, policy_class("static_hedge"))
    listening = _run(market, _Notified)
    assert listening._cashvalue_listened is True
    assert len(listening.heard) == len(market.frame)
    for cash, value, broker_cash, broker_value in listening.heard:
        assert (cash, value) == (broker_cash, broker_value)
    assert listening.heard[-1][1] != listening.heard[0][1]  # the value moved over the year
    summaries = [next(a for a in s.analyzers if isinstance(a, Summary)).get_analysis() for s in (quiet, listening)]
    assert dict(summaries[0]) == dict(summaries[1])


def test_an_analyzer_that_listens_gets_the_value_the_strategy_heard(market):
    listening = _run(market, _Notified)
    strategy = _run(market, policy_class("static_hedge"), extra_analyzer=_ValueLog)
    assert strategy._cashvalue_listened is True
    assert strategy.analyzers.extra.values == [value for _, value, _, _ in listening.heard]


def test_which_analyzers_listen(market):
    strategy = _run(market, policy_class("static_hedge"), extra_analyzer=_ValueLog)
    summary = next(a for a in strategy.analyzers if isinstance(a, Summary))
    assert not listens_to_cashvalue(summary)  # it and its five children read the broker themselves
    assert listens_to_cashvalue(strategy.analyzers.extra)  # it overrides notify_cashvalue
    summary._children.append(strategy.analyzers.extra)  # a listening child makes its parent a listener
    try:
        assert listens_to_cashvalue(summary)
    finally:
        summary._children.pop()
