"""backtrader's sizing and trade figures on MarginBroker: order_target_value / order_target_percent, getsize in
sizers, getvalue(datas=[data]), and inverse trades' Position.price, executed.pnl and Trade pnl.

A futures position's value is its initial margin in USD, signed (backtrader's futures convention, signed so a
negative target reaches a short): linear |size| x price x mult / leverage, inverse contracts x face / leverage.
Every expected size below is derived from that definition and the inputs, and every inverse P&L from
contracts x face x (1/entry - 1/exit) coins on the harmonic entry, valued at the exit price.
"""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import pandas as pd
import pytest

from brokers.broker import MarginBroker
from brokers.commission import InverseFuturesCommInfo, LinearFuturesCommInfo
from brokers.venues import generic_venue

PRICE = 10_000.0


def _frame(closes, start="2021-01-01"):
    index = pd.date_range(start, periods=len(closes), freq="1D", tz="UTC")
    return pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1.0},
                        index=index)


class Script(bt.Strategy):
    """Runs ``actions[bar](self)``; records the position, its value and the account's value after each bar's
    fills, and every completed order and closed trade."""

    params = (("actions", None),)

    def __init__(self):
        self.rows, self.orders, self.trades = [], [], []

    def next(self):
        self.rows.append({"size": self.position.size, "price": self.position.price,
                          "data_value": self.broker.getvalue(datas=[self.data]), "value": self.broker.getvalue()})
        action = (self.p.actions or {}).get(len(self))
        if action:
            action(self)

    def notify_order(self, order):
        if order.status in (order.Completed, order.Margin):
            self.orders.append({"status": order.getstatusname(), "size": order.executed.size,
                                "pnl": order.executed.pnl})

    def notify_trade(self, trade):
        if trade.isclosed:
            self.trades.append({"pnl": trade.pnl, "pnlcomm": trade.pnlcomm})


def _run(comminfo, actions, closes=None, sizer=None, **broker):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=_frame(closes or [PRICE] * (max(actions) + 2))), name="BTC")
    cerebro.broker = MarginBroker(**broker)
    cerebro.broker.addcommissioninfo(comminfo)
    cerebro.addstrategy(Script, actions=actions)
    if sizer is not None:
        cerebro.addsizer(*sizer)
    return cerebro.run()[0], cerebro.broker


def _target_value(target):
    return lambda s: s.order_target_value(target=target)


def _linear(leverage, asset="BTC"):
    return LinearFuturesCommInfo(venue=generic_venue(asset=asset), leverage=leverage, funding=False)


def _inverse(leverage, face=100.0):
    return InverseFuturesCommInfo(venue=generic_venue(contract_type="inverse", face_usd=face), leverage=leverage,
                                  funding=False)


def test_order_target_percent_buys_the_size_whose_margin_is_that_share_of_the_account():
    """The README's example: 10x, 100,000 USD, order_target_percent(0.05) at 10,000 USD/BTC -> margin 5,000 USD
    -> 5 BTC (notional 50,000 USD), not 50 BTC (the leverage applied twice) nor 0.5 BTC (notional 5,000)."""
    leverage, cash, share = 10.0, 100_000.0, 0.05
    strategy, _ = _run(_linear(leverage), {1: lambda s: s.order_target_percent(target=share)}, cash=cash)
    size = share * cash / (PRICE / leverage)
    assert strategy.rows[1]["size"] == pytest.approx(size) and size == pytest.approx(5.0)
    assert strategy.rows[1]["data_value"] == pytest.approx(share * cash)  # the target reached: 5,000 USD


@pytest.mark.parametrize("leverage", [1.0, 10.0, 25.0])
def test_linear_value_targets_long_short_and_back_to_flat(leverage):
    """order_target_value to +1,234, then -3,000 (through zero), then -500 (a buy while short), then 0. Linear
    coin-sized contracts trade in fractions: size = target / (price / leverage) exactly."""
    targets = (1_234.0, -3_000.0, -500.0, 0.0)
    actions = {k + 1: _target_value(t) for k, t in enumerate(targets)}
    strategy, broker = _run(_linear(leverage), actions, cash=100_000.0)
    for k, target in enumerate(targets):
        row = strategy.rows[k + 1]
        assert row["size"] == pytest.approx(target * leverage / PRICE)
        assert row["data_value"] == pytest.approx(target)
    assert strategy.rows[-1]["size"] == 0 and broker.getvalue() == pytest.approx(100_000.0)


def test_a_short_target_from_a_short_goes_further_short_by_the_difference():
    """The audit's case: short 1 BTC at 10x (value -1,000), order_target_value(-5,000) sells 4 more, not 60."""
    strategy, _ = _run(_linear(10.0), {1: lambda s: s.sell(size=1),
                                       2: lambda s: s.order_target_value(target=-5_000.0)}, cash=10_000.0)
    assert strategy.rows[1]["data_value"] == pytest.approx(-1.0 * PRICE / 10.0)
    assert strategy.rows[2]["size"] == pytest.approx(-5_000.0 / (PRICE / 10.0))


def test_inverse_targets_trade_whole_contracts_of_face_over_leverage():
    """1 BTC in the futures wallet at 10,000 USD/BTC (account 10,000 USD), face 100 USD, 5x: a contract's value is
    face / leverage = 20 USD. order_target_percent(-0.4) -> -4,000 USD -> 200 contracts short; then +0.25 ->
    +2,500 USD -> 125 long; order_target_value(-1,234) -> -61.7 -> 61 contracts short (whole contracts, the
    remainder left out); then 0 -> flat."""
    face, leverage = 100.0, 5.0
    unit = face / leverage
    actions = {1: lambda s: s.order_target_percent(target=-0.4), 2: lambda s: s.order_target_percent(target=0.25),
               3: lambda s: s.order_target_value(target=-1_234.0), 4: lambda s: s.order_target_percent(target=0.0)}
    strategy, broker = _run(_inverse(leverage, face), actions, cash=0.0, coins={"BTC": 1.0})
    account = 1.0 * PRICE
    expected = [-0.4 * account / unit, 0.25 * account / unit, -math.floor(1_234.0 / unit), 0.0]
    assert expected[:3] == [-200.0, 125.0, -61.0]
    assert [row["size"] for row in strategy.rows[1:5]] == pytest.approx(expected)
    assert [row["data_value"] for row in strategy.rows[1:5]] == pytest.approx([c * unit for c in expected])
    assert broker.getvalue() == pytest.approx(account) and broker.get_coins("BTC") == pytest.approx(1.0)


class MarginPercentSizer(bt.Sizer):
    """A sizer written against backtrader's Sizer API: ``percents`` of the free cash as margin, through the
    scheme's ``getsize``."""

    params = (("percents", 50),)

    def _getsizing(self, comminfo, cash, data, isbuy):
        return comminfo.getsize(data.close[0], cash * self.p.percents / 100)


def test_a_sizer_through_getsize_spends_its_share_of_cash_as_margin_and_backtraders_own_size_by_notional():
    """10x, 10,000 USD free: MarginPercentSizer(50) buys 5 BTC (5,000 USD of margin), then sell() of the same
    sizer reverses to 5 short with the 5,000 USD free again. backtrader's AllInSizer, which never asks the
    scheme (PercentSizer: cash / close x percents), buys 1 BTC: its notional is the free cash."""
    leverage, cash, share = 10.0, 10_000.0, 0.5
    strategy, _ = _run(_linear(leverage), {1: lambda s: s.buy(), 2: lambda s: s.close(), 3: lambda s: s.sell()},
                       sizer=(MarginPercentSizer, ), cash=cash)
    size = share * cash / (PRICE / leverage)
    assert [row["size"] for row in strategy.rows[1:4]] == pytest.approx([size, 0.0, -size])
    whole, _ = _run(_linear(leverage), {1: lambda s: s.buy()}, sizer=(bt.sizers.AllInSizer, ), cash=cash)
    assert whole.rows[1]["size"] == pytest.approx(cash / PRICE)


def test_getsize_is_margin_per_unit_without_a_second_leverage_and_whole_for_multi_coin_contracts():
    """CME MBT (0.1 BTC) at 2x and 30,000 USD/BTC: 1,500 USD a contract -> 10,000 USD buys 6 contracts; Binance
    BTCUSDT at 20x: 1,500 USD a coin at 30,000 -> 10,000 USD buys 6.666... BTC; inverse BTCUSD (100 USD) at 10x:
    10 USD a contract -> 10,000 USD buys 1,000 contracts at any price."""
    mbt = LinearFuturesCommInfo(venue="cme", symbol="MBT", leverage=2.0)
    assert mbt.getsize(30_000.0, 10_000.0) == math.floor(10_000.0 / (0.1 * 30_000.0 / 2.0)) == 6
    usdm = LinearFuturesCommInfo(venue="binance_usdm", leverage=20.0)
    assert usdm.getsize(30_000.0, 10_000.0) == pytest.approx(10_000.0 / (30_000.0 / 20.0))
    coinm = InverseFuturesCommInfo(venue="binance_coinm", leverage=10.0)
    assert coinm.getsize(30_000.0, 10_000.0) == coinm.getsize(5_000.0, 10_000.0) == 10_000.0 / (100.0 / 10.0)


class TwoData(bt.Strategy):
    def __init__(self):
        self.seen = []

    def next(self):
        if len(self) == 1:
            self.buy(data=self.datas[0], size=2)
            self.sell(data=self.datas[1], size=3)
        elif len(self) == 2:
            before = self.broker.getvalue()
            both = self.broker.getvalue(datas=list(self.datas))
            self.seen.append((before, both, self.broker.getvalue()))


def test_getvalue_of_several_datas_is_the_sum_of_their_signed_values_and_leaves_the_account_value_alone():
    """Long 2 BTC at 10,000 (10x: +2,000 USD) and short 3 ETH at 1,000 (5x: -600 USD) -> 1,400 USD; the account's
    getvalue() before and after is the same (BackBroker's _get_value overwrites it for more than one data)."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=_frame([PRICE] * 4)), name="BTC")
    cerebro.adddata(bt.feeds.PandasData(dataname=_frame([1_000.0] * 4)), name="ETH")
    cerebro.broker = MarginBroker(cash=100_000.0)
    cerebro.broker.addcommissioninfo(_linear(10.0), name="BTC")
    cerebro.broker.addcommissioninfo(_linear(5.0, "ETH"), name="ETH")
    cerebro.addstrategy(TwoData)
    (before, both, after), = cerebro.run()[0].seen
    assert both == pytest.approx(2 * PRICE / 10.0 - 3 * 1_000.0 / 5.0)
    assert after == before == pytest.approx(100_000.0)


def test_inverse_trades_after_adding_report_the_pnl_the_broker_books_on_the_harmonic_entry():
    """Face 100 USD, no fees, 10 BTC in the futures wallet: short 100 at 10,000, short 100 at 8,000, buy 100 at
    10,000, buy 200 at 12,500 (closes the short, opens 100 long), close at 10,000. backtrader's arithmetic
    average (9,000) gave executed.pnl -1,111.11 and -3,888.89 and a closed trade of -5,000; the venue books
    contracts x face x (1/entry - 1/exit) coins on the harmonic entry."""
    face = 100.0
    closes = [10_000.0, 10_000.0, 8_000.0, 10_000.0, 12_500.0, 12_500.0, 10_000.0, 10_000.0]
    actions = {1: lambda s: s.sell(size=100), 2: lambda s: s.sell(size=100), 3: lambda s: s.buy(size=100),
               4: lambda s: s.buy(size=200), 6: lambda s: s.close()}
    strategy, broker = _run(_inverse(5.0, face), actions, closes=closes, cash=0.0, coins={"BTC": 10.0})

    def pnl_usd(contracts, entry, exit_price):  # coins, valued at the exit (fill) price
        return contracts * face * (1.0 / entry - 1.0 / exit_price) * exit_price

    harmonic = 200 / (100 / 10_000.0 + 100 / 8_000.0)
    assert strategy.rows[2]["price"] == pytest.approx(harmonic) and harmonic == pytest.approx(8_888.888889)
    assert strategy.rows[3]["price"] == pytest.approx(harmonic)  # a reduction keeps the entry
    assert strategy.rows[4]["price"] == 12_500.0  # the reversal's remainder opened at the fill
    booked = [pnl_usd(-100, harmonic, 10_000.0), pnl_usd(-100, harmonic, 12_500.0), pnl_usd(100, 12_500.0, 10_000.0)]
    assert booked == pytest.approx([-1_250.0, -4_062.5, -2_000.0])
    assert [o["pnl"] for o in strategy.orders] == pytest.approx([0.0, 0.0, *booked])
    assert strategy.trades == [pytest.approx({"pnl": booked[0] + booked[1], "pnlcomm": booked[0] + booked[1]}),
                               pytest.approx({"pnl": booked[2], "pnlcomm": booked[2]})]
    assert strategy.trades[0]["pnl"] == pytest.approx(-5_312.5)
    ledger = [e["amount_usd"] for e in broker.ledger.to_records() if e["kind"] == "realized_pnl"]
    assert ledger == pytest.approx(booked)


def test_inverse_trades_that_share_the_data_with_another_tradeid_keep_their_own_entry():
    """tradeid 1 short 100 at 10,000 and tradeid 2 short 100 at 8,000 share the position (harmonic entry
    8,888.89, which the ledger books); each trade keeps its own entry: tradeid 1 bought back at 10,000 made 0,
    tradeid 2 bought back at 12,500 made 100 x 100 x (1/8,000 - 1/12,500) coins short. A later trade alone
    on the flat data is on the broker's entry again: short 100 at 10,000 and 100 at 8,000, closed at 10,000."""
    face = 100.0
    closes = [10_000.0, 10_000.0, 8_000.0, 10_000.0, 12_500.0, 12_500.0, 10_000.0, 8_000.0, 10_000.0, 10_000.0]
    actions = {1: lambda s: s.sell(size=100, tradeid=1), 2: lambda s: s.sell(size=100, tradeid=2),
               3: lambda s: s.buy(size=100, tradeid=1), 4: lambda s: s.buy(size=100, tradeid=2),
               6: lambda s: s.sell(size=100), 7: lambda s: s.sell(size=100), 8: lambda s: s.buy(size=200)}
    strategy, broker = _run(_inverse(5.0, face), actions, closes=closes, cash=0.0, coins={"BTC": 10.0})

    def pnl_usd(contracts, entry, exit_price):  # coins, valued at the exit (fill) price
        return contracts * face * (1.0 / entry - 1.0 / exit_price) * exit_price

    harmonic = 200 / (100 / 10_000.0 + 100 / 8_000.0)
    own = [pnl_usd(-100, 10_000.0, 10_000.0), pnl_usd(-100, 8_000.0, 12_500.0), pnl_usd(-200, harmonic, 10_000.0)]
    assert own == pytest.approx([0.0, -5_625.0, -2_500.0])
    assert [trade["pnl"] for trade in strategy.trades] == pytest.approx(own)
    ledger = [e["amount_usd"] for e in broker.ledger.to_records() if e["kind"] == "realized_pnl"]
    assert ledger == pytest.approx([pnl_usd(-100, harmonic, 10_000.0), pnl_usd(-100, harmonic, 12_500.0), own[2]])
