"""MarginBroker on tiny hand-made bars: liquidation bar and price, gaps, funding, CME calls, ledger, parity."""

from __future__ import annotations

import dataclasses
import gc
import math
from datetime import datetime

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers import formulas as f
from brokers.broker import CASH_TOLERANCE_USD, MarginBroker, usd_debit_legs
from brokers.commission import InverseFuturesCommInfo, LinearFuturesCommInfo
from brokers.ledger import Ledger, LedgerEntry
from brokers.venues import generic_venue, load_venue
from minehedge.errors import ConfigError

NAME = "PERP"


def frame(rows, freq="1D", start="2021-01-01", **extra):
    index = pd.date_range(start, periods=len(rows), freq=freq, tz="UTC")
    out = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(volume=1.0)
    for name, values in extra.items():
        out[name] = values
    return out


def flat(price, n):
    return [(price, price, price, price)] * n


class FundingFeed(bt.feeds.PandasData):
    lines = ("funding_rate",)
    params = (("funding_rate", -1),)


class Script(bt.Strategy):
    """Runs ``actions[bar_number](strategy)`` and records what the broker reports every bar."""

    params = (("actions", None),)

    def __init__(self):
        self.rows, self.orders, self.trades, self.calls, self.liquidations, self.all_events = [], [], [], [], [], []
        self.free = []
        self.refused = []  # (refusal kind, reason) the broker put in a refused order's info

    def next(self):
        action = (self.p.actions or {}).get(len(self))
        if action:
            action(self)
        b = self.broker
        self.rows.append({"dt": self.data.datetime.datetime(0), "value": b.getvalue(), "cash": b.getcash(),
                          "size": self.position.size, "residual": b.reconcile(), "ratio": b.get_margin_ratio()})

    def notify_order(self, order):
        if order.status == order.Margin:
            self.refused.append((order.info.get("refusal"), order.info.get("refused")))
        if order.status in (order.Completed, order.Margin):
            self.orders.append((order.getstatusname(), order.info.get("reason"), order.executed.size,
                                order.executed.price, order.executed.comm, self.data.datetime.datetime(0)))

    def notify_trade(self, trade):
        if trade.isclosed:
            self.trades.append((trade.pnl, trade.pnlcomm))

    def notify_margin_call(self, event):
        self.calls.append(event)

    def notify_liquidation(self, event):
        self.liquidations.append(event)

    def notify_margin_event(self, event):
        self.all_events.append(event)


def run(data_frame, comminfo, actions, broker=None, preload=True, runonce=True, feed=bt.feeds.PandasData,
        tf=bt.TimeFrame.Days, comp=1):
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce)
    cerebro.adddata(feed(dataname=data_frame, timeframe=tf, compression=comp), name=NAME)
    cerebro.broker = broker if broker is not None else MarginBroker(cash=10_000.0)
    cerebro.broker.addcommissioninfo(comminfo, name=NAME)
    cerebro.addstrategy(Script, actions=actions)
    strategy = cerebro.run()[0]
    return strategy, cerebro.broker


def buy(size):
    return lambda s: s.buy(size=size)


def sell(size):
    return lambda s: s.sell(size=size)


def usdm(**kw):
    kw.setdefault("commission", 0.0)
    kw.setdefault("funding", False)
    return LinearFuturesCommInfo(venue="binance_usdm", **kw)


# --- liquidation --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("preload", "runonce"), [(True, True), (True, False), (False, True), (False, False)])
def test_liquidated_on_first_bar_whose_low_crosses_and_at_that_price(preload, runonce):
    # 1 BTC at 20,000, 20x isolated: W = 1,000, LP = (20,000 - 1,000) / 0.996 = 19,076.31
    rows = flat(20_000, 2) + [(20_000, 20_050, 19_500, 19_800), (19_800, 19_900, 19_200, 19_300),
                              (19_300, 19_400, 19_080, 19_200), (19_200, 19_300, 19_070, 19_100)] + flat(19_100, 2)
    strat, broker = run(frame(rows), usdm(leverage=20), {1: buy(1)}, MarginBroker(cash=2_000.0),
                        preload=preload, runonce=runonce)
    liq = (20_000 - 1_000) / 0.996
    [event] = [e for e in broker.events if e.kind == "liquidation"]
    assert event.time == datetime(2021, 1, 6) and event.price == pytest.approx(liq, rel=1e-12)
    status, reason, size, price, comm, _ = strat.orders[-1]
    assert (status, reason, size) == ("Completed", "liquidation", -1.0) and price == pytest.approx(liq)
    # clearance fee 1.25 % of notional capped at the margin left (W + PnL = MM at the liquidation price)
    assert comm == pytest.approx(min(0.0125 * liq, liq * 0.004))
    assert strat.rows[-1]["value"] == pytest.approx(1_000.0)  # the isolated margin and no more is lost
    assert strat.liquidations == [event] and strat.rows[-1]["size"] == 0
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


@pytest.mark.parametrize("stop", [17_000.0, 18_500.0])
def test_a_stop_beyond_the_liquidation_price_is_never_reached(stop):
    # 1 BTC long 10x at 20,000, isolated: margin 2,000, liquidation at (2,000 - 20,000) / (0.004 - 1) =
    # 18,072.29. On a bar down to 16,500 the price meets a stop at 18,500 first (filled there: 1,500 lost),
    # but the liquidation price before a stop at 17,000: liquidated there, the stop cancelled, and the loss
    # is the margin (1,927.71 + the fee capped at the 72.29 left), not the 3,000 the stop would realise.
    def place(s):
        s.buy(size=1)
        s.sell(size=1, exectype=bt.Order.Stop, price=stop)

    rows = flat(20_000, 2) + [(20_000, 20_000, 16_500, 17_500)] + flat(17_500, 2)
    strat, broker = run(frame(rows), usdm(leverage=10), {1: place}, MarginBroker(cash=5_000.0))
    liq = (2_000 - 20_000) / (0.004 - 1)
    assert strat.rows[-1]["size"] == 0 and broker.reconcile() < 1e-9
    if stop < liq:
        [event] = [e for e in broker.events if e.kind == "liquidation"]
        assert event.price == pytest.approx(liq, rel=1e-12)
        assert strat.rows[-1]["value"] == pytest.approx(5_000.0 - 2_000.0, rel=1e-12)
        assert [o[1] for o in strat.orders] == [None, "liquidation"]  # the stop never filled
    else:
        assert not broker.events and strat.orders[-1][3] == stop
        assert strat.rows[-1]["value"] == pytest.approx(5_000.0 - 1_500.0, rel=1e-12)


def test_funding_that_drains_an_isolated_margin_brings_the_liquidation_price_closer():
    # 1 BTC long at 20,000, 20x isolated: W = 1,000. Funding 0.2 % per 8 h at a 20,000 mark takes 40 USD per
    # settlement from the margin, three a day: W = 880 after 2021-01-02 (LP 19,196.79), 760 after 2021-01-03
    # (LP 19,317.27). That day's low, 19,250, is clear of the first price but not of the second: liquidated
    # then, at the price re-solved with the smaller wallet (the broker must not reuse a price from more margin).
    rows = flat(20_000, 2) + [(20_000, 20_000, 19_250, 20_000)] + flat(20_000, 2)
    strat, broker = run(frame(rows), usdm(leverage=20, funding=True), {1: buy(1)},
                        MarginBroker(cash=2_000.0, funding_rate=0.002))
    [event] = [e for e in broker.events if e.kind == "liquidation"]
    liq = (20_000 - (1_000 - 6 * 40)) / 0.996
    assert event.time == datetime(2021, 1, 3) and event.price == pytest.approx(liq, rel=1e-12)
    assert 19_250 < liq and (20_000 - 880) / 0.996 < 19_250
    assert -broker.ledger.total_by_kind("funding") == pytest.approx(6 * 40.0)


def test_bar_opening_beyond_liquidation_price_fills_at_open():
    # LP 18,072.29, bankruptcy 18,000: a bar opening at 18,050 fills there
    rows = flat(20_000, 2) + [(18_050, 18_100, 17_900, 18_000)] + flat(18_000, 1)
    strat, broker = run(frame(rows), usdm(leverage=10), {1: buy(1)}, MarginBroker(cash=5_000.0))
    [event] = [e for e in broker.events if e.kind == "liquidation"]
    assert event.price == 18_050.0 and event.time == datetime(2021, 1, 3)
    assert event.loss_usd == pytest.approx(1_950.0) and event.fee_usd == pytest.approx(50.0)  # fee capped
    assert strat.rows[-1]["value"] == pytest.approx(3_000.0)


def test_isolated_gap_through_bankruptcy_caps_loss_and_records_insurance_fund():
    rows = flat(20_000, 2) + [(15_000, 15_100, 14_000, 15_000)] + flat(15_000, 1)
    strat, broker = run(frame(rows), usdm(leverage=10), {1: buy(1)}, MarginBroker(cash=5_000.0))
    kinds = [e.kind for e in broker.events]
    assert kinds == ["liquidation", "insurance_fund"]
    assert broker.events[0].price == 18_000.0  # the trader is closed at the bankruptcy price
    assert broker.events[1].loss_usd == pytest.approx(3_000.0)  # (18,000 - 15,000) x 1 BTC absorbed
    assert strat.rows[-1]["value"] == pytest.approx(3_000.0) and strat.rows[-1]["cash"] >= 0


def test_cross_gap_shortfall_refilled_and_recorded():
    # cross: the whole wallet (2,500) backs the position; the bar opens far below bankruptcy (17,500)
    rows = flat(20_000, 2) + [(12_000, 12_100, 11_000, 12_000)] + flat(12_000, 1)
    strat, broker = run(frame(rows), usdm(leverage=10, margin_mode="cross"), {1: buy(1)},
                        MarginBroker(cash=2_500.0))
    liq, fund = [e for e in broker.events if e.kind == "liquidation"], [e for e in broker.events
                                                                       if e.kind == "insurance_fund"]
    assert liq[0].price == 12_000.0
    assert fund[0].loss_usd == pytest.approx(8_000.0 - 2_500.0)
    assert broker.ledger.total_by_kind("insurance_fund") == pytest.approx(5_500.0)
    assert strat.rows[-1]["value"] == pytest.approx(0.0, abs=1e-9)
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


def test_short_liquidated_at_high():
    rows = flat(20_000, 2) + [(20_000, 20_500, 19_900, 20_400), (20_400, 21_500, 20_300, 21_000)]
    strat, broker = run(frame(rows), usdm(leverage=20), {1: sell(1)}, MarginBroker(cash=5_000.0))
    expected = (1_000 + 20_000) / 1.004
    [event] = [e for e in broker.events if e.kind == "liquidation"]
    assert event.time == datetime(2021, 1, 4) and event.price == pytest.approx(expected)
    assert event.side == "short"


def test_bitmex_takes_over_at_bankruptcy_price():
    # 10x inverse long, 10,000 contracts at 10,000: LP = 10,000 / (1.1 - 0.004), bankrupt 10,000 / 1.1
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_100, 9_200)] + flat(9_200, 1)
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=10, commission=0.0, funding=False)
    strat, broker = run(frame(rows, start="2020-06-01"), ci, {1: buy(10_000)}, MarginBroker(cash=0.0, coins={"BTC": 1.0}))
    [event] = [e for e in broker.events if e.kind == "liquidation"]
    assert event.price == pytest.approx(10_000 / 1.1)
    assert broker.get_coins("BTC") == pytest.approx(1.0 - 0.1)  # the whole margin (0.1 XBT) is lost
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-12


def test_1x_inverse_short_survives_a_tenfold_rally():
    rows = flat(10_000, 2) + [(10_000, 60_000, 9_000, 50_000), (50_000, 100_000, 40_000, 90_000)]
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=1, commission=0.0, funding=False)
    strat, broker = run(frame(rows), ci, {1: sell(100)}, MarginBroker(cash=0.0, coins={"BTC": 1.0}))
    assert broker.events == [] and strat.rows[-1]["size"] == -100
    assert [r["value"] for r in strat.rows] == pytest.approx([10_000.0] * 4)  # a synthetic USD position
    assert broker.get_equity_coin("BTC") == pytest.approx(10_000 / 90_000)


def test_margin_call_event_before_liquidation_and_hook_runs():
    # 1 BTC long 20x (W = 1,000). Margin ratio at close 19,200: MM 76.8 / (1,000 - 800) = 0.384;
    # at close 19,120: 76.48 / 120 = 0.637; at 19,100: 76.4 / 100 = 0.764; at 19,095: 76.38 / 95 = 0.804
    rows = flat(20_000, 2) + [(20_000, 20_000, 19_150, 19_200), (19_200, 19_200, 19_095, 19_095)] + flat(19_095, 1)
    added = []

    def add(s):
        if s.calls and not added:
            added.append(s.broker.add_margin(s.data, 500.0))

    strat, broker = run(frame(rows), usdm(leverage=20), {1: buy(1), 4: add, 5: add}, MarginBroker(cash=5_000.0))
    calls = [e for e in broker.events if e.kind == "margin_call"]
    assert len(calls) == 1 and calls[0].time == datetime(2021, 1, 4)
    assert calls[0].margin_ratio == pytest.approx(0.004 * 19_095 / (1_000 - 905))
    assert strat.calls == calls and added == [True]
    assert strat.rows[-1]["ratio"] == pytest.approx(0.004 * 19_095 / (1_500 - 905))
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


@pytest.mark.parametrize(("broker_level", "called"), [(None, True), (0.7, False)])
def test_the_venues_warning_level_raises_the_margin_call_unless_the_broker_sets_one(broker_level, called):
    # 1 BTC long 50x at 20,000 on a venue warning at 0.5: margin 400, MM 0.5 % of the price. At 19,750 the
    # ratio is 98.75 / 150 = 0.658: a call at the venue's 0.5; none at a broker-wide 0.7.
    venue = generic_venue(mmr=0.005, warning_level=0.5)
    ci = LinearFuturesCommInfo(venue=venue, leverage=50, commission=0.0, funding=False)
    rows = flat(20_000, 2) + [(20_000, 20_000, 19_750, 19_750)] + flat(19_750, 1)
    _, broker = run(frame(rows), ci, {1: buy(1)}, MarginBroker(cash=1_000.0, warning_level=broker_level))
    calls = [e for e in broker.events if e.kind == "margin_call"]
    assert broker.warning_level == (0.5 if broker_level is None else broker_level)
    assert [(c.time, c.margin_ratio) for c in calls] == ([(datetime(2021, 1, 3), pytest.approx(98.75 / 150))]
                                                         if called else [])


def test_partial_step_down_on_bitmex_keeps_money_consistent():
    # 3,500,000 contracts = 350 XBT at 10,000 (risk-limit step 300-400 XBT, MMR 1.4 %), 10x isolated
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_000, 9_100)] + flat(9_100, 1)
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=10, commission=0.0, funding=False)
    strat, broker = run(frame(rows, start="2020-06-01"), ci, {1: buy(3_500_000)},
                        MarginBroker(cash=0.0, coins={"BTC": 400.0}))
    kinds = [e.kind for e in broker.events]
    # 350 -> below 300 XBT (bracket 1) -> below 200 XBT (bracket 0) -> still under water at the low: closed
    assert kinds == ["partial_liquidation", "partial_liquidation", "liquidation"]
    assert [o[2] for o in strat.orders[1:]] == [-500_001, -1_000_000, -1_999_999]
    assert all(e.time == datetime(2020, 6, 3) for e in broker.events)
    assert 400.0 - broker.get_coins("BTC") == pytest.approx(35.0, rel=1e-12)  # exactly the isolated margin
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


def test_a_margin_ratio_exactly_at_the_warning_level_raises_the_margin_call():
    # The call is "ratio >= warning level". Dyadic inputs make the ratio exactly 0.5: 1 BTC long 10x at 10,000
    # (1,000 USD isolated margin) with MM 1/32 of the mark; at the 9,600 close MM = 9,600 / 32 = 300 and the
    # margin balance 1,000 - 400 = 600, so the ratio is 300 / 600 = 0.5, the venue's warning level. (The
    # liquidation price, balance = MM, is 9,000 x 32 / 31 = 9,290.32, below the bar.)
    venue = generic_venue(mmr=1 / 32, max_leverage=20.0, warning_level=0.5)
    ci = LinearFuturesCommInfo(venue=venue, leverage=10, commission=0.0, funding=False)
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_600, 9_600)] + flat(9_600, 1)
    _, broker = run(frame(rows), ci, {1: buy(1)}, MarginBroker(cash=5_000.0))
    (call,) = broker.events
    assert (call.kind, call.time) == ("margin_call", datetime(2021, 1, 3))
    assert (call.maintenance_margin_usd, call.equity_usd, call.margin_ratio) == (9_600 / 32, 1_000.0 - 400.0, 0.5)


def test_a_partial_liquidation_fee_is_paid_from_the_isolated_margin():
    # As test_partial_step_down_on_bitmex_keeps_money_consistent, on a BitMEX whose engine charges a fee of
    # 0.5 % of the notional cut (dataclasses.replace: the real BitMEX charges none). The fee of each step is
    # 0.5 % x contracts cut x 1 USD, and it comes out of the position's isolated margin: however the steps go,
    # the account loses the 350 XBT x 10 % = 35 XBT posted and no more (the free coins pay nothing).
    venue = dataclasses.replace(load_venue("bitmex"), liquidation_fee_rate=0.005)
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_000, 9_100)] + flat(9_100, 1)
    ci = InverseFuturesCommInfo(venue=venue, leverage=10, commission=0.0, funding=False)
    strat, broker = run(frame(rows, start="2020-06-01"), ci, {1: buy(3_500_000)},
                        MarginBroker(cash=0.0, coins={"BTC": 400.0}))
    steps = [e for e in broker.events if e.kind == "partial_liquidation"]
    cuts = [-o[2] for o in strat.orders[1:3]]
    # each step keeps the most whole contracts whose entry value is below the next bracket's floor (300, then
    # 200 XBT): 2,999,999 then 1,999,999 contracts at 1 USD / 10,000
    kept = [floor * 10_000 - 1 for floor in (300, 200)]
    assert len(steps) == 2 and cuts == [3_500_000 - kept[0], kept[0] - kept[1]]
    assert [e.fee_usd for e in steps] == pytest.approx([0.005 * cut * 1.0 for cut in cuts], rel=1e-12)
    assert broker.events[-1].kind == "liquidation" and strat.rows[-1]["size"] == 0
    assert 400.0 - broker.get_coins("BTC") == pytest.approx(3_500_000 / 10_000 / 10, rel=1e-12)
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


def test_a_cross_liquidation_filled_at_the_bankruptcy_price_pays_its_fee_on_the_market_notional():
    # A custom BitMEX (dataclasses.replace) with a 0.5 % liquidation fee, cross margin, 0.5 XBT: long A,
    # 10,000 contracts at 10,000 (1 XBT), beside long B, 20,000 contracts (2 XBT) that stays at 10,000. A's
    # wallet is the cross wallet less B's maintenance (0.4 % of its 2 XBT entry value): W = 0.5 - 0.008, so
    # A's bankruptcy price is N / (N/E + W) and its liquidation price N / (N/E + W - 0.004 N/E). A opens at
    # 6,710, between the two: the engine takes A over at the bankruptcy price, and the fee is 0.5 % of the
    # notional at the market price (the open), N / 6,710 XBT, paid in XBT at the fill.
    venue = dataclasses.replace(load_venue("bitmex"), liquidation_fee_rate=0.005)
    n, entry, coins = 10_000, 10_000.0, 0.5
    wallet = coins - 0.004 * 20_000 / entry
    bankrupt, liquidation = n / (n / entry + wallet), n / (n / entry + wallet - 0.004 * n / entry)
    market = 6_710.0
    assert bankrupt < market < liquidation
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame(flat(10_000, 2) + flat(market, 2), start="2021-06-01")),
                    name="A")
    cerebro.adddata(bt.feeds.PandasData(dataname=frame(flat(10_000, 4), start="2021-06-01")), name="B")
    cerebro.broker = broker = MarginBroker(cash=0.0, coins={"BTC": coins})
    for name in ("A", "B"):
        broker.addcommissioninfo(InverseFuturesCommInfo(venue=venue, leverage=10, commission=0.0, funding=False,
                                                        margin_mode="cross"), name=name)

    def both(s):
        s.buy(data=s.datas[0], size=n)
        s.buy(data=s.datas[1], size=20_000)

    cerebro.addstrategy(Script, actions={1: both})
    cerebro.run()
    first = broker.events[0]
    assert (first.kind, first.time) == ("liquidation", datetime(2021, 6, 3))
    assert first.price == pytest.approx(bankrupt, rel=1e-12)
    assert first.fee_usd == pytest.approx(0.005 * n / market * bankrupt, rel=1e-12)


def test_bitmex_margin_call_maintenance_margin_is_on_the_entry_value():
    # BitMEX: maintenance margin = MMR x the position's entry value in XBT (contracts x 1 USD / entry), MMR
    # 0.40 % from 2020-05-05 (brokers/venues/bitmex.toml, the riskLimits page). 10,000 contracts long 50x at
    # 10,000 (0.02 XBT posted): at the 9,850 close the balance is 0.02 + 1 - 10,000 / 9,850 XBT, MM 0.004 XBT
    # on the entry (ratio 0.838, a call; liquidation at 10,000 / 1.016 = 9,842.52, below the bar). In USD at
    # the close: MMR x (|size| x close / entry) x close, |size| the event's coins at the close.
    profile = load_venue("bitmex")
    assert profile.maintenance_basis == "entry" and profile.instrument().tier_tables[-1].tiers[0].mmr == 0.004
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=50, commission=0.0, funding=False)
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_850, 9_850)] + flat(9_850, 1)
    strat, broker = run(frame(rows, start="2021-01-01"), ci, {1: buy(10_000)},
                        MarginBroker(cash=0.0, coins={"BTC": 1.0}))
    (call,) = broker.events
    entry = strat.orders[0][3]
    assert call.kind == "margin_call" and entry == 10_000.0 and call.price == 9_850.0
    contracts_usd = abs(call.size) * call.price  # the event's coins at the close, back in USD of face
    assert call.maintenance_margin_usd == pytest.approx(0.004 * contracts_usd / entry * call.price, rel=1e-12)
    assert call.margin_ratio == pytest.approx(0.004 / (0.02 + 1 - 10_000 / 9_850), rel=1e-12)


# --- funding ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("freq", "n_per_day", "tf", "comp"), [("1h", 24, bt.TimeFrame.Minutes, 60),
                                                                ("4h", 6, bt.TimeFrame.Minutes, 240),
                                                                ("1D", 1, bt.TimeFrame.Days, 1)])
@pytest.mark.parametrize("source", ["callable", "line", "constant"])
def test_funding_same_total_on_1h_4h_1d_bars(freq, n_per_day, tf, comp, source):
    # entry fills at the open of 2021-01-02 00:00 on every timeframe; held through 2021-01-04 24:00
    start = pd.Timestamp("2021-01-02", tz="UTC") - pd.Timedelta(freq)
    rows = flat(30_000.0, 1 + 3 * n_per_day)

    def rate_at(t):
        return 1e-4 * (1 + t.hour / 8 + t.day)

    times = [datetime(2021, 1, d, h) for d in (2, 3, 4) for h in (0, 8, 16)]
    broker_kw = {"cash": 50_000.0}
    feed = bt.feeds.PandasData
    data_frame = frame(rows, freq=freq, start=str(start))
    if source == "callable":
        broker_kw["funding_rates"] = lambda data, when: rate_at(when)
        expected = sum(rate_at(t) for t in times) * 30_000 * 2
    elif source == "line":
        feed = FundingFeed
        data_frame["funding_rate"] = 2e-4
        expected = 9 * 2e-4 * 30_000 * 2
    else:
        broker_kw["funding_rate"] = 3e-4
        expected = 9 * 3e-4 * 30_000 * 2
    ci = usdm(leverage=5, funding=True)
    strat, broker = run(data_frame, ci, {1: buy(2)}, MarginBroker(**broker_kw), feed=feed, tf=tf, comp=comp)
    paid = -broker.ledger.total_by_kind("funding")
    assert paid == pytest.approx(expected, rel=1e-12)
    assert len([e for e in broker.ledger.entries if e.kind == "funding"]) == 9
    assert strat.rows[-1]["value"] == pytest.approx(50_000.0 - expected)
    assert (len(broker.assumptions) == 1) == (source == "constant")
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


def test_short_receives_funding_and_inverse_funding_is_coin():
    rows = flat(10_000.0, 4)
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=2, commission=0.0)
    strat, broker = run(frame(rows), ci, {1: sell(10_000)}, MarginBroker(cash=0.0, coins={"BTC": 1.0}, funding_rate=1e-4))
    # settlements at 04/12/20 UTC on days 2-4: 9 x 10,000 x 1 / 10,000 x 1e-4 coin received
    assert broker.ledger.total_by_kind("funding", "BTC") == pytest.approx(9 * 1e-4)
    assert broker.get_coins("BTC") == pytest.approx(1.0 + 9e-4)


# --- CME margin call with a deadline -----------------------------------------------------------------

def _cme(rows, meet):
    ci = LinearFuturesCommInfo(venue="cme", leverage=1 / 0.47, commission=0.0, fixed_per_contract=0.0,
                               margin_mode="cross")

    def respond(s):
        if meet and s.calls:
            s.broker.deposit("USD", 5_000.0, wallet="futures")

    return run(frame(rows, start="2021-03-01"), ci, {1: buy(1), 3: respond}, MarginBroker(cash=24_000.0))


def test_cme_margin_call_met_in_time():
    # 1 contract = 5 BTC at 10,000: IM 23,500, MM 21,500. At 9,000: equity 19,000 < MM 19,350 -> call.
    rows = flat(10_000, 2) + [(10_000, 10_000, 8_000, 9_000)] + flat(9_000, 3)
    strat, broker = _cme(rows, meet=True)
    kinds = [e.kind for e in broker.events]
    assert kinds == ["cme_margin_call", "cme_margin_call_met"]
    assert broker.events[0].equity_usd == pytest.approx(19_000.0)
    assert broker.events[0].maintenance_margin_usd == pytest.approx(5 * 9_000 * 0.43)
    assert strat.rows[-1]["size"] == 1 and strat.calls[0] is broker.events[0]


def test_cme_margin_call_missed_closes_at_deadline():
    rows = flat(10_000, 2) + [(10_000, 10_000, 8_000, 9_000), (9_000, 9_000, 5_000, 8_800)] + flat(8_800, 2)
    strat, broker = _cme(rows, meet=False)
    kinds = [e.kind for e in broker.events]
    assert kinds == ["cme_margin_call", "cme_margin_call_missed"]
    missed = broker.events[1]
    assert missed.time == datetime(2021, 3, 4) and missed.price == 8_800.0  # the deadline bar's close
    assert strat.orders[-1][1] == "liquidation" and strat.rows[-1]["size"] == 0
    assert strat.rows[-1]["value"] == pytest.approx(24_000.0 - 5 * 1_200)


def test_cme_margin_ratio_is_the_accounts_the_calls_act_on():
    # Isolated 1 contract (5 BTC) bought at 10,000 with 25,000 USD: 23,500 posted, 1,500 free. CME calls on the
    # account: equity 25,000 - 5 x (10,000 - close) against maintenance 5 x close x 0.43. The ratio reaches 1
    # first at the 8,700 close (18,705 / 18,500), the call's bar; the position's own margin (23,500 - loss)
    # would read 1.0459 at 9,000 already, with no call. Missed at the deadline: closed, ratio 0.
    # From Sunday 2021-02-28 (CME Globex is closed at the Sunday bar's open): bought at Monday's open, called on
    # Wednesday, missed at Thursday's close (24 h of the trading week after Wednesday's close).
    ci = LinearFuturesCommInfo(venue="cme", leverage=1 / 0.47, commission=0.0, fixed_per_contract=0.0)
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_000, 9_000), (9_000, 9_000, 8_700, 8_700)] + flat(8_700, 2)
    strat, broker = run(frame(rows, start="2021-02-28"), ci, {1: buy(1)}, MarginBroker(cash=25_000.0))
    assert [r["ratio"] for r in strat.rows] == pytest.approx(
        [0.0, 21_500.0 / 25_000.0, 19_350.0 / 20_000.0, 18_705.0 / 18_500.0, 0.0, 0.0], rel=1e-12)
    call, missed = broker.events
    assert (call.kind, call.time, missed.kind) == ("cme_margin_call", datetime(2021, 3, 3), "cme_margin_call_missed")
    assert call.margin_ratio == pytest.approx(strat.rows[3]["ratio"], rel=1e-12)


def test_a_call_pending_when_its_cme_position_closes_ends_with_it():
    # Called on day 3 (equity 19,000 < MM 19,350), closed on day 4 at 9,000. A new contract bought on day 6
    # with 2,500 USD more closes at 8,600: equity 19,500 is above MM 5 x 8,600 x 0.43 = 18,490 (no call)
    # though below IM 20,210. The stale deadline (day 4) closed it at once as a missed call. From Sunday
    # 2021-02-28, so every fill is at a Monday-Friday open (CME Globex is closed at the weekend bars' opens).
    ci = LinearFuturesCommInfo(venue="cme", leverage=1 / 0.47, commission=0.0, fixed_per_contract=0.0,
                               margin_mode="cross")

    def rebuy(s):
        s.broker.deposit("USD", 2_500.0, wallet="futures")
        s.buy(size=1)

    rows = (flat(10_000, 2) + [(10_000, 10_000, 8_000, 9_000)] + flat(9_000, 2) + [(9_000, 9_000, 8_600, 8_600)]
            + flat(8_600, 2))
    strat, broker = run(frame(rows, start="2021-02-28"), ci, {1: buy(1), 3: lambda s: s.close(), 5: rebuy},
                        MarginBroker(cash=24_000.0))
    assert [e.kind for e in broker.events] == ["cme_margin_call"]
    assert strat.rows[-1]["size"] == 1
    assert strat.rows[-1]["value"] == pytest.approx(24_000.0 - 5 * 1_000 + 2_500.0 - 5 * 400)


def test_a_deadline_call_needs_equity_below_maintenance_not_equal_to_it():
    # CME's rule: a call when equity < maintenance margin. A deadline venue with dyadic rates: MM 1/8 of the
    # notional, 1 contract of 1 BTC bought at 10,000 at 4x (2,500 USD initial margin) with 3,000 USD, cross.
    # At the 8,000 close equity is 3,000 - 2,000 = 1,000 = MM 8,000 / 8 exactly: no call. At 7,992, equity
    # 992 < MM 999: the call, restore to initial margin 7,992 / 4 = 1,998 USD.
    venue = generic_venue(mmr=1 / 8, max_leverage=4.0, margin_call="deadline")
    ci = LinearFuturesCommInfo(venue=venue, leverage=4, commission=0.0, funding=False, margin_mode="cross")
    rows = flat(10_000, 2) + [(10_000, 10_000, 8_000, 8_000), (8_000, 8_000, 7_992, 7_992)] + flat(7_992, 1)
    strat, broker = run(frame(rows), ci, {1: buy(1)}, MarginBroker(cash=3_000.0))
    assert strat.rows[2]["value"] == 1_000.0 == 8_000 / 8  # the equal close: equity and MM, exactly
    call = broker.events[0]
    assert (call.kind, call.time) == ("cme_margin_call", datetime(2021, 1, 4))
    assert (call.equity_usd, call.maintenance_margin_usd) == (3_000.0 - 2_008.0, 7_992 / 8)
    assert call.detail.startswith(f"restore equity to initial margin {7_992 / 4:,.2f} USD by")


def test_a_deadline_venue_without_a_margin_ratio_asks_for_the_leverages_initial_margin_on_the_contracts_coins():
    # A deadline venue whose initial margin is not a multiple of maintenance (initial_margin_to_maintenance 0):
    # it is the notional / leverage, and the notional counts the contract's coins. 1 contract of 5 BTC at
    # 10,000, 2x (25,000 USD), 26,000 USD: at the 6,000 close equity 26,000 - 5 x 4,000 = 6,000 is below MM
    # 5 x 6,000 x 0.25 = 7,500, and the call asks for 5 x 6,000 / 2 = 15,000 USD.
    venue = generic_venue(mmr=0.25, max_leverage=2.0, margin_call="deadline", contract_size=5.0)
    assert venue.initial_margin_to_maintenance == 0.0
    ci = LinearFuturesCommInfo(venue=venue, leverage=2, commission=0.0, funding=False, margin_mode="cross")
    rows = flat(10_000, 2) + [(10_000, 10_000, 6_000, 6_000)] + flat(6_000, 1)
    _, broker = run(frame(rows), ci, {1: buy(1)}, MarginBroker(cash=26_000.0))
    call = broker.events[0]
    assert (call.kind, call.equity_usd, call.maintenance_margin_usd) == ("cme_margin_call", 6_000.0, 7_500.0)
    assert call.detail.startswith(f"restore equity to initial margin {5 * 6_000 / 2:,.2f} USD by")


# --- CME Globex trading hours (brokers.sessions) -------------------------------------------------------

def _cme_ci(**kw):
    return LinearFuturesCommInfo(venue="cme", leverage=1 / 0.47, commission=0.0, fixed_per_contract=0.0, **kw)


def test_cme_order_submitted_on_friday_fills_at_mondays_open():
    # Daily bars from Monday 2021-03-01, opens 10,000 + 100 x day. Bought on Friday's bar: Saturday's and Sunday's
    # opens (Friday 18:00 and Saturday 18:00 CT) are outside CME Globex's sessions, Monday's (Sunday 18:00 CT)
    # is inside, so the order fills at Monday 2021-03-08's open, 10,700.
    rows = [(10_000 + 100 * k, 10_000 + 100 * k + 50, 10_000 + 100 * k - 50, 10_000 + 100 * k) for k in range(9)]
    strat, broker = run(frame(rows, start="2021-03-01"), _cme_ci(), {5: buy(1)}, MarginBroker(cash=30_000.0))
    (status, reason, size, price, _, _), = strat.orders
    assert (status, size, price) == ("Completed", 1, 10_700.0)
    assert [r["size"] for r in strat.rows] == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert broker.market_open(strat.data, "open") and broker.market_open(strat.data, "close")


def test_a_perpetual_venue_fills_on_saturday_as_before():
    rows = [(10_000 + 100 * k, 10_000 + 100 * k + 50, 10_000 + 100 * k - 50, 10_000 + 100 * k) for k in range(9)]
    strat, _ = run(frame(rows, start="2021-03-01"), usdm(leverage=2), {5: buy(1)}, MarginBroker(cash=30_000.0))
    assert strat.orders[0][3] == 10_500.0  # Saturday 2021-03-06's open


def test_cme_close_now_fills_at_fridays_close_and_on_saturday_waits_for_mondays_open():
    # Daily bars from Monday 2021-03-01, opens 10,000 + 100 x day, closes 10,000 + 100 x day. Friday's bar (CME
    # Globex trades until 22:00 UTC) closes at its close, 10,400; Saturday's bar, on which the market never
    # trades, waits for Monday's open, 10,700, and close_now returns None. A long of 3: 1 closed on Friday,
    # 1 on Saturday (at Monday's open), the strategy's sell of 1 placed on Saturday stays pending and fills after
    # it at the same open.
    rows = [(10_000 + 100 * k, 10_000 + 100 * k + 50, 10_000 + 100 * k - 50, 10_000 + 100 * k) for k in range(9)]
    answers = []

    def ask(s):
        answers.append((s.broker.market_open(s.data, "close"), s.broker.close_now(s.data, 1, "treasury")))

    def ask_and_sell(s):
        ask(s)
        s.sell(size=1)

    strat, _ = run(frame(rows, start="2021-03-01"), _cme_ci(), {1: buy(3), 5: ask, 6: ask_and_sell},
                   MarginBroker(cash=90_000.0))
    assert [a[0] for a in answers] == [True, False] and answers[1][1] is None
    assert [r["size"] for r in strat.rows] == [0, 3, 3, 3, 2, 2, 2, 0, 0]
    assert [(o[1], o[2], o[3]) for o in strat.orders] == [
        (None, 3, 10_100.0), ("treasury", -1, 10_400.0), ("treasury", -1, 10_700.0), (None, -1, 10_700.0)]


def test_cme_close_now_waiting_over_the_weekend_leaves_the_strategys_orders_pending():
    # Asked on Saturday, the close of 1 waits for Monday's open; the strategy's sell of 2, placed on Saturday
    # after it, is not cancelled: it fills at the same open after the waiting close, taking the long of 2 to
    # a short of 1.
    rows = [(10_000 + 100 * k, 10_000 + 100 * k + 50, 10_000 + 100 * k - 50, 10_000 + 100 * k) for k in range(9)]

    def ask(s):
        s.broker.close_now(s.data, 1, "treasury")
        s.sell(size=2)

    strat, _ = run(frame(rows, start="2021-03-01"), _cme_ci(), {1: buy(2), 6: ask}, MarginBroker(cash=90_000.0))
    assert [(o[0], o[1], o[2], o[3]) for o in strat.orders] == [
        ("Completed", None, 2, 10_100.0), ("Completed", "treasury", -1, 10_700.0), ("Completed", None, -2, 10_700.0)]
    assert [r["size"] for r in strat.rows] == [0, 2, 2, 2, 2, 2, 2, -1, -1]


def _missed_cme_call(rows, freq, start, venue):
    """Intraday ``rows`` (``freq`` "1h" or "4h") from ``start`` on ``venue`` (CME): 1 contract (5 BTC) bought
    with 24,000 USD, cross, at bar 1's open; returns the strategy and the account's call and missed-call events
    (the only events), after checking the miss closed the contract at its price."""
    ci = LinearFuturesCommInfo(venue=venue, leverage=1 / 0.47, commission=0.0, fixed_per_contract=0.0,
                               margin_mode="cross")
    strat, broker = run(frame(rows, freq=freq, start=start), ci, {1: buy(1)}, MarginBroker(cash=24_000.0),
                        tf=bt.TimeFrame.Minutes, comp=int(pd.Timedelta(freq).total_seconds() // 60))
    call, missed = broker.events
    assert (call.kind, missed.kind) == ("cme_margin_call", "cme_margin_call_missed")
    assert strat.orders[-1][:4] == ("Completed", "liquidation", -1, missed.price)
    return strat, call, missed


def test_cme_missed_call_is_closed_at_the_close_of_the_sessions_last_bar():
    # Hourly bars from Friday 2021-03-05 18:00 UTC (12:00 CST). 1 contract (5 BTC) bought at 19:00 at 10,000 with
    # 24,000 USD; the 20:00 bar closes at 9,000: equity 19,000 < MM 19,350, a call due one hour of the trading
    # week later (a 1 h deadline), at 22:00 UTC, the week's close. The 21:00 bar, the session's last hour, is
    # judged at 22:00 and misses it: the FCM closes the position at that bar's close, 9,000, which stands for
    # the session's last price: a loss of 5 x 1,000 = 5,000 USD. Sunday's reopening price (8,500) plays no part.
    n = 56  # to Monday 2021-03-08 01:00 UTC
    rows = flat(10_000, 2) + [(10_000, 10_000, 9_000, 9_000)] + flat(9_000, n - 3)
    rows[53] = (8_500, 8_500, 8_500, 8_500)  # 2021-03-05 18:00 + 53 h = 2021-03-07 23:00, the week's open
    strat, call, missed = _missed_cme_call(rows, "1h", "2021-03-05 18:00",
                                           load_venue("cme", overrides={"margin_call_deadline_hours": 1.0}))
    assert call.time == datetime(2021, 3, 5, 20)
    assert call.detail.endswith("by 2021-03-05 22:00 UTC (1 h of the trading week from 2021-03-05 21:00 UTC)")
    assert (missed.time, missed.price, missed.loss_usd) == (datetime(2021, 3, 5, 21), 9_000.0, 5_000.0)
    assert [r["size"] for r in strat.rows[2:5]] == [1, 0, 0]
    assert strat.rows[-1]["value"] == pytest.approx(24_000.0 - 5_000.0)


def _ramp(n, step):
    """Bars k = 0..n-1 opening at 10,000 + step x k and closing step/2 higher."""
    return [(10_000 + step * k, 10_000 + step * k + step, 10_000 + step * k - step, 10_000 + step * k + step / 2)
            for k in range(n)]


def test_cme_on_4h_bars_orders_wait_for_sunday_evening_and_closes_for_a_bar_that_trades():
    # 4h bars from Friday 2021-03-05 00:00 UTC (CST: CME Globex trades until Friday 22:00 UTC and from Sunday
    # 23:00), bar k opening at 10,000 + 10 k and closing at 10,005 + 10 k. Long 4 contracts (5 BTC each) from
    # bar 1's open, 10,010. On Friday's last bar in session (20:00-24:00, open at 20:00, trading until 22:00):
    # close_now fills at its close, 10,055, and a sell placed there waits: Saturday's and Sunday's opens to
    # 20:00 are outside a session, so it fills at Monday 00:00's open (Sunday 18:00 CT), bar 18, 10,180.
    # close_now on Saturday 04:00 waits for that same open (and fills first). Sunday's 20:00 bar opens outside
    # a session but the market trades from 23:00 within it: close_now fills at its close, 10,175.
    answers = []

    def ask(s):
        order = s.broker.close_now(s.data, 1, "treasury")
        answers.append((s.data.datetime.datetime(0), s.broker.market_open(s.data, "open"),
                        s.broker.market_open(s.data, "close"), order is not None))

    def ask_and_sell(s):
        ask(s)
        s.sell(size=1)

    strat, broker = run(frame(_ramp(21, 10), freq="4h", start="2021-03-05"), _cme_ci(),
                        {1: buy(4), 6: ask_and_sell, 8: ask, 18: ask}, MarginBroker(cash=100_000.0),
                        tf=bt.TimeFrame.Minutes, comp=240)
    assert answers == [(datetime(2021, 3, 5, 20), True, True, True), (datetime(2021, 3, 6, 4), False, False, False),
                       (datetime(2021, 3, 7, 20), False, True, True)]
    assert [(o[1], o[2], o[3]) for o in strat.orders] == [
        (None, 4, 10_010.0), ("treasury", -1, 10_055.0), ("treasury", -1, 10_175.0), ("treasury", -1, 10_180.0),
        (None, -1, 10_180.0)]
    assert [r["size"] for r in strat.rows] == [0] + [4] * 4 + [3] * 12 + [2] + [0] * 3
    assert strat.rows[-1]["value"] == pytest.approx(100_000.0 + 5 * (45 + 165 + 170 + 170), rel=1e-12)
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-9


def test_cme_on_4h_bars_a_fridays_call_is_due_monday_and_missed_at_the_close_of_the_bar_judged_after():
    # 1 contract (5 BTC) bought at 10,000 with 24,000 USD from Friday 2021-03-05's 04:00 bar; the 16:00 bar closes
    # at 9,000: equity 19,000 < maintenance 19,350, a call judged at 20:00, due 24 h of the trading week later:
    # 2 h to Friday's close at 22:00, 22 h from Sunday's open at 23:00, so Monday 21:00 UTC. Monday's 16:00 bar is
    # judged at 20:00 (not yet due); the 20:00 bar, judged at its close (Tuesday 00:00, the market open after the
    # 22:00-23:00 halt), misses it: the FCM closes the contract at that bar's close, 8,800 (a 6,000 USD loss).
    rows = flat(10_000, 4) + [(10_000, 10_000, 9_000, 9_000)] + flat(9_000, 18) + [(9_000, 9_000, 8_800, 8_800)]
    strat, call, missed = _missed_cme_call(rows, "4h", "2021-03-05", load_venue("cme"))
    assert call.time == datetime(2021, 3, 5, 16)
    assert call.detail.endswith("by 2021-03-08 21:00 UTC (24 h of the trading week from 2021-03-05 20:00 UTC)")
    assert (missed.time, missed.price, missed.loss_usd) == (datetime(2021, 3, 8, 20), 8_800.0, 6_000.0)
    assert [r["size"] for r in strat.rows] == [0] + [1] * 22 + [0]
    assert strat.rows[-1]["value"] == pytest.approx(24_000.0 - 6_000.0, rel=1e-12)


@pytest.mark.parametrize(("start", "order_bar", "fill_bar", "filled"), [
    # DST starts Sunday 2021-03-14: Friday closes 16:00 CST = 22:00 UTC, Sunday opens 17:00 CDT = 22:00 UTC
    ("2021-03-12 18:00", 3, 52, datetime(2021, 3, 14, 22)),
    # DST ends Sunday 2021-11-07: Friday closes 16:00 CDT = 21:00 UTC, Sunday opens 17:00 CST = 23:00 UTC
    ("2021-11-05 18:00", 2, 53, datetime(2021, 11, 7, 23))])
def test_cme_hourly_orders_over_a_dst_sunday_fill_at_sunday_17_00_chicago_time(start, order_bar, fill_bar, filled):
    # Hourly bars from Friday 18:00 UTC, bar k opening at 10,000 + k. A buy placed on Friday's last bar in
    # session waits over the weekend and fills at the open of the bar at Sunday 17:00 CT, whatever the UTC hour
    # daylight saving time gives it: 22:00 UTC in summer, 23:00 UTC in winter; the bar before it waits too.
    strat, broker = run(frame(_ramp(56, 1), freq="1h", start=start), _cme_ci(), {order_bar + 1: buy(1)},
                        MarginBroker(cash=30_000.0), tf=bt.TimeFrame.Minutes, comp=60)
    (status, _, size, price, _, _), = strat.orders
    assert (status, size, price) == ("Completed", 1, 10_000.0 + fill_bar)
    assert strat.rows[fill_bar]["dt"] == filled
    assert [r["size"] for r in strat.rows] == [0] * fill_bar + [1] * (56 - fill_bar)


def test_a_closed_positions_margin_call_does_not_silence_the_next_positions_call():
    # 1 BTC long 50x at 20,000 (margin 400): a close at 19,690 leaves 90 USD against MM 78.76, ratio 0.875
    # >= 0.8. The first position is called and closed; the second, bought at 20,000, closes its first bar
    # at 19,690 too, and is called again.
    rows = (flat(20_000, 2) + [(20_000, 20_000, 19_690, 19_690)] + flat(20_000, 2)
            + [(20_000, 20_000, 19_690, 19_690)] + flat(19_690, 2))
    strat, broker = run(frame(rows), usdm(leverage=50), {1: buy(1), 3: lambda s: s.close(), 5: buy(1)},
                        MarginBroker(cash=1_000.0))
    calls = [e for e in broker.events if e.kind == "margin_call"]
    assert [c.time for c in calls] == [datetime(2021, 1, 3), datetime(2021, 1, 6)]
    assert calls[1].margin_ratio == pytest.approx(0.004 * 19_690 / (400 - 310)) and len(strat.calls) == 2


# --- ledger, balances, API ---------------------------------------------------------------------------

def test_wallet_operations_are_ledgered():
    rows = flat(20_000, 4)

    def ops(s):
        b = s.broker
        b.credit_coins("BTC", 0.5, note="pool payout")
        assert b.sell_coins("BTC", 0.2, 20_000.0, fee_rate=0.001) == pytest.approx(3_996.0)
        assert b.sell_coins("BTC", 5.0, 20_000.0) == 0.0
        assert b.debit_usd(1_000.0, "power_cost") and not b.debit_usd(1e9, "power_cost")
        assert b.transfer("USD", 1_000.0, "spot", "futures") and not b.transfer("USD", 1e9, "spot", "futures")
        assert b.withdraw("USD", 500.0, "futures") and not b.withdraw("BTC", 1.0)

    strat, broker = run(frame(rows), usdm(leverage=5), {2: ops}, MarginBroker(cash=10_000.0))
    assert broker.get_coins("BTC") == pytest.approx(0.3)
    assert broker.get_cash() == pytest.approx(10_000 + 3_996 - 1_000 - 500)
    assert broker.getvalue() == pytest.approx(12_496 + 0.3 * 20_000)
    assert broker.get_equity_coin("BTC") == pytest.approx(broker.getvalue() / 20_000)
    assert broker.reconcile() < 1e-9
    with pytest.raises(ConfigError):
        broker.deposit("USD", -1.0)


def test_ledger_entries_and_their_rows_outside_the_cycle_collector():
    ledger = Ledger()
    t = datetime(2021, 1, 1)
    ledger.add(t, "mining_credit", "BTC", "spot", 0.5, "fleet", "FPPS", 0.5 * 30_000.0)
    ledger.add(t, "power_cost", "USD", "spot", -200, "fleet", amount_usd=123.0)  # USD rows: the amount
    assert ledger.entries == [LedgerEntry(t, "mining_credit", "BTC", "spot", 0.5, "fleet", "FPPS", 15_000.0),
                              LedgerEntry(t, "power_cost", "USD", "spot", -200.0, "fleet", "", -200.0)]
    assert all(type(e) is LedgerEntry for e in ledger.entries) and ledger.entries[1].amount_usd == -200.0
    assert ledger.to_records()[0] == {"datetime": t, "kind": "mining_credit", "currency": "BTC", "wallet": "spot",
                                      "amount": 0.5, "instrument": "fleet", "note": "FPPS", "amount_usd": 15_000.0}
    assert ledger.to_columns()["amount"] == [0.5, -200.0] and len(ledger) == 2
    assert ledger.total_by_kind("power_cost") == -200.0 and ledger.balance("BTC", "spot") == 0.5
    with pytest.raises(ValueError, match="unknown ledger kind 'mined'"):
        ledger.add(t, "mined", "BTC", "spot", 1.0)
    # why rows are plain tuples: after one collection the cycle collector stops tracking them (it never
    # stops tracking a tuple subclass such as LedgerEntry), so sweeps' full collections skip a run's ledger
    gc.collect()
    assert not any(gc.is_tracked(row) for row in ledger._rows)
    assert gc.is_tracked(ledger.entries[0])


def test_notes_booked_as_templates_read_as_text_and_stay_outside_the_cycle_collector():
    ledger = Ledger()
    t = datetime(2021, 3, 4, 16)
    ledger.add(t, "funding", "USD", "futures", -1.5, "BTCUSDT", ("settlement {:%Y-%m-%d %H:%M} rate {:.6g}", t, 1e-4))
    ledger.add(t, "fee", "USD", "spot", -0.25, note="plain")
    assert ledger.note_texts() == ["settlement 2021-03-04 16:00 rate 0.0001", "plain"]
    assert [e.note for e in ledger.entries] == ledger.note_texts() == ledger.to_columns()["note"]
    assert ledger.to_records()[0]["note"] == "settlement 2021-03-04 16:00 rate 0.0001"
    assert list(ledger.to_columns()) == ["datetime", "kind", "currency", "wallet", "amount", "instrument", "note",
                                         "amount_usd"]
    assert "note" not in ledger.to_columns(notes=False) and ledger.to_columns(notes=False)["amount"] == [-1.5, -0.25]
    gc.collect()  # a collection untracks the note's tuple; the row holding it goes on the next one at the latest
    gc.collect()
    assert not any(gc.is_tracked(row) for row in ledger._rows)


_NOTE_TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))
_NOTE_FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(when=_NOTE_TIMES, rate=_NOTE_FLOATS, qty=_NOTE_FLOATS, price=_NOTE_FLOATS)
def test_the_broker_note_templates_render_as_the_f_strings_they_replace(when, rate, qty, price):
    from brokers import broker as b
    from brokers.ledger import note_text

    assert note_text((b._SETTLEMENT_RATE_NOTE, when, rate)) == \
        f"settlement {when.isoformat(' ', 'minutes')} rate {rate:.6g}"
    assert note_text((b._SETTLEMENT_NOTE, when)) == f"settlement {when.isoformat(' ', 'minutes')}"
    assert note_text(("{:g} {} at {:.2f}", qty, "BTC", price)) == f"{qty:g} BTC at {price:.2f}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(st.floats(-0.08, 0.08), min_size=4, max_size=12),
       leverage=st.sampled_from([2, 5, 10, 25, 50]), side=st.sampled_from([1, -1]),
       mode=st.sampled_from(["isolated", "cross"]), fee=st.sampled_from([0.0, 0.0004]))
def test_properties_on_random_paths(moves, leverage, side, mode, fee):
    """Money is conserved by the ledger every bar; isolated loss <= margin + fees; no liquidation
    before the first bar whose extreme crosses the formula's liquidation price."""
    price, rows = 20_000.0, flat(20_000.0, 2)
    for move in moves:
        new = price * (1 + move)
        rows.append((price, max(price, new) * 1.01, min(price, new) * 0.99, new))
        price = new
    ci = usdm(leverage=leverage, commission=fee, margin_mode=mode)
    cash = 20_000.0 / leverage + 1_000.0  # enough for the initial margin and the fee
    strat, broker = run(frame(rows), ci, {1: (buy(1) if side > 0 else sell(1))}, MarginBroker(cash=cash))
    assert strat.orders[0][:3] == ("Completed", None, side)
    assert max(abs(r["residual"]) for r in strat.rows) < 1e-8
    ledger_total = sum(e.amount for e in broker.ledger.entries)
    assert ledger_total == pytest.approx(strat.rows[-1]["value"] - broker.get_unrealized_pnl_usd(), abs=1e-6)
    entry_fee = 20_000.0 * fee
    wallet = 20_000.0 / leverage if mode == "isolated" else cash - entry_fee
    liq = f.linear_liquidation_price(side, 20_000.0, wallet, load_venue("binance_usdm").instrument().tiers_at(
        datetime(2021, 1, 2)))
    crossing = next((i for i, r in enumerate(rows[1:], start=1)
                     if (r[2] <= liq if side > 0 else r[1] >= liq)), None)
    events = [e for e in broker.events if e.kind == "liquidation"]
    if crossing is None:
        assert events == []
    else:
        assert len(events) == 1 and events[0].time == datetime(2021, 1, 1 + crossing)
    if mode == "isolated":
        # the isolated margin plus the trading fees (the clearance fee is capped inside the margin)
        assert cash - strat.rows[-1]["value"] <= 20_000.0 / leverage + entry_fee + 25_000.0 * fee + 1e-6


def test_dated_contract_cash_settles_at_expiry():
    rows = flat(20_000, 2) + [(20_000, 21_000, 19_900, 20_500)] + flat(21_000, 2)
    ci = usdm(leverage=5, funding=True, expiry=datetime(2021, 1, 4))
    strat, broker = run(frame(rows), ci, {1: buy(1)}, MarginBroker(cash=10_000.0))
    assert strat.orders[-1][1] == "expiry" and strat.orders[-1][3] == 21_000.0
    assert strat.orders[-1][5] == datetime(2021, 1, 4) and strat.rows[-1]["size"] == 0
    assert broker.ledger.total_by_kind("settlement") == pytest.approx(1_000.0)
    assert broker.ledger.total_by_kind("funding") == 0.0  # dated contracts pay no funding
    assert f.dated_future_price(20_000.0, 0.08, 0.5) == pytest.approx(20_800.0)


def test_parity_requires_switches_to_be_explicit():
    with pytest.raises(ConfigError, match="warning_level"):
        MarginBroker(warning_level=-1)
    with pytest.raises(ConfigError, match="bar_time"):
        MarginBroker(bar_time="middle")


# --- parity with BackBroker ---------------------------------------------------------------------------

class Trader(bt.Strategy):
    def __init__(self):
        self.fast = bt.indicators.SMA(self.data, period=3)
        self.slow = bt.indicators.SMA(self.data, period=8)
        self.cross = bt.indicators.CrossOver(self.fast, self.slow)
        self.values, self.orders, self.trades = [], [], []

    def next(self):
        self.values.append(self.broker.getvalue())
        if self.cross > 0:
            self.order_target_size(target=2)
        elif self.cross < 0:
            self.order_target_size(target=-1)
            self.buy(size=1, exectype=bt.Order.Stop, price=self.data.close[0] * 1.03, valid=3)

    def notify_order(self, order):
        if order.status in (order.Completed, order.Margin, order.Expired, order.Canceled):
            self.orders.append((order.getstatusname(), order.size, order.executed.size, order.executed.price,
                                len(self)))

    def notify_trade(self, trade):
        if trade.isclosed:
            self.trades.append((trade.pnl, trade.pnlcomm, trade.barlen))


def _walk(n=240, seed=7):
    import numpy as np
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = np.r_[20_000, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
    return frame(list(zip(open_, high, low, close, strict=True)), start="2020-01-01")


def _parity_run(strategy: type, margin_broker: bool, *, preload: bool = True, runonce: bool = True,
                fundmode: bool = False) -> bt.Strategy:
    """``strategy`` on the random walk with a fixed 4,000 USD margin per unit, no fees, funding or
    liquidation: on BackBroker with a stock futures scheme, or on MarginBroker with the equivalent one."""
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce)
    cerebro.adddata(bt.feeds.PandasData(dataname=_walk()), name=NAME)
    if margin_broker:
        cerebro.broker = MarginBroker(cash=30_000.0, liquidation=False, funding=False)
        ci = LinearFuturesCommInfo(venue=generic_venue(), fixed_margin=4_000.0, commission=0.0,
                                   liquidation=False, funding=False)
    else:
        cerebro.broker = bt.brokers.BackBroker(cash=30_000.0)
        ci = bt.CommInfoBase(stocklike=False, margin=4_000.0, mult=1.0, commission=0.0)
    cerebro.broker.set_fundmode(fundmode)
    cerebro.broker.addcommissioninfo(ci, name=NAME)
    cerebro.addstrategy(strategy)
    return cerebro.run()[0]


@pytest.mark.parametrize("preload", [True, False])
@pytest.mark.parametrize("runonce", [True, False])
def test_parity_with_backbroker(preload, runonce):
    back, ours = (_parity_run(Trader, margin_broker, preload=preload, runonce=runonce)
                  for margin_broker in (False, True))
    assert len(back.orders) > 10 and len(back.trades) > 3
    assert ours.orders == back.orders
    assert len(ours.trades) == len(back.trades)
    for mine, theirs in zip(ours.trades, back.trades, strict=True):
        assert mine == pytest.approx(theirs, rel=0, abs=1e-9)
    assert ours.values == pytest.approx(back.values, rel=0, abs=1e-9)


class FundTrader(Trader):
    """Trader that adds and withdraws cash and records the fund figures (value per share, shares) every bar."""

    def next(self):
        if len(self) in (60, 150):
            self.broker.add_cash(5_000.0 if len(self) == 60 else -2_000.0)
        super().next()
        self.funds.append((self.broker.fundvalue, self.broker.fundshares))

    def start(self):
        self.funds = []


@pytest.mark.parametrize("fundmode", [False, True])
def test_added_cash_and_fund_figures_match_backbroker(fundmode):
    """The MarginBroker values the account when it is read, not at the end of every bar; cash added with
    add_cash and the fund figures still follow BackBroker's bar for bar, in fund mode and out of it."""
    back, ours = (_parity_run(FundTrader, margin_broker, fundmode=fundmode) for margin_broker in (False, True))
    assert len(back.funds) == len(back.values) > 200 and len(back.orders) > 10
    assert len({shares for _, shares in back.funds}) == 3  # the cash moves issued and redeemed shares
    assert ours.values == pytest.approx(back.values, rel=0, abs=1e-9)
    for mine, theirs in zip(ours.funds, back.funds, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-12, abs=1e-9)


def test_limit_fills_pay_maker_market_fills_pay_taker():
    rows = flat(20_000, 2) + [(20_000, 20_100, 19_000, 19_500)] + flat(19_500, 2)
    ci = LinearFuturesCommInfo(venue="binance_usdm", leverage=10, funding=False)

    def orders(s):
        s.buy(size=1)  # market: taker 0.04 % at the next open (20,000)
        s.buy(size=1, exectype=bt.Order.Limit, price=19_500)  # limit: maker 0.02 % at 19,500

    strat, broker = run(frame(rows), ci, {1: orders}, MarginBroker(cash=10_000.0))
    comms = sorted(o[4] for o in strat.orders)
    assert comms == pytest.approx(sorted([20_000 * 0.0004, 19_500 * 0.0002]), rel=1e-12)
    assert broker.ledger.total_by_kind("fee") == pytest.approx(-(8.0 + 3.9))


def test_inverse_margin_from_transferred_coins_and_external_events():
    rows = flat(10_000, 4)
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=False)

    def fund_then_short(s):
        assert s.broker.transfer("BTC", 0.5, "spot", "futures")
        s.sell(size=100)  # 10,000 USD = 1 BTC of notional: 0.2 BTC initial margin

    def external(s):
        from brokers.events import MarginEvent
        s.broker.add_event(MarginEvent(s.data.datetime.datetime(0), "loan_call", "loan:coin_loan", "lender", "", 5e4,
                                       10_000.0, 1e5, 0.0, 0.7, detail="LTV 70 %"))

    strat, broker = run(frame(rows), ci, {1: fund_then_short, 3: external},
                        MarginBroker(cash=0.0, spot_cash=0.0, coins={"BTC": 1.0}, coin_wallet="spot"))
    assert strat.rows[-1]["size"] == -100
    assert broker.get_coins("BTC") == 1.0 and broker.ledger.balance("BTC", "futures") == 0.5
    assert [e.kind for e in strat.all_events] == ["loan_call"] and strat.calls == []
    assert max(abs(r["residual"]) for r in strat.rows) == 0.0


def test_inverse_order_rejected_without_coin_margin():
    rows = flat(10_000, 4)
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=False)
    strat, broker = run(frame(rows), ci, {1: sell(100)}, MarginBroker(cash=1e6, coins={"BTC": 0.1}))
    assert strat.orders[0][0] == "Margin" and strat.rows[-1]["size"] == 0  # 0.2 BTC needed, 0.1 held


def test_inverse_order_with_a_fee_fills_without_usd_in_the_futures_wallet():
    # A coin-margined short with a 0.05 % taker fee and zero USD cash: margin and fee are coin.
    # 100 contracts x 100 USD at 10,000: fee = 10,000 x 0.0005 / 10,000 = 0.0005 BTC.
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=1, commission=0.0005, funding=False)
    strat, broker = run(frame(flat(10_000, 4)), ci, {1: sell(100)}, MarginBroker(cash=0.0, coins={"BTC": 1.01}))
    assert [o[0] for o in strat.orders] == ["Completed"] and strat.rows[-1]["size"] == -100
    assert broker.get_coins("BTC") == pytest.approx(1.01 - 0.0005, abs=1e-15)
    assert broker.get_cash() == 0.0 and broker.reconcile() < 1e-12
    ratio, maintenance, balance = broker.get_position_margin(strat.data)
    assert maintenance == pytest.approx(1.0 * 0.004, rel=1e-12)  # 1 BTC notional x 0.4 % (first bracket)
    assert balance == pytest.approx(1.0, rel=1e-12)  # isolated (the default): posted margin = 1 BTC / 1x
    assert ratio == pytest.approx(maintenance / balance, rel=1e-12)


def test_liabilities_reduce_equity_and_free_balances_are_per_wallet():
    ci = usdm(leverage=2)
    actions = {1: lambda s: (s.broker.deposit("USD", 1_000.0, wallet="spot"),
                             s.broker.set_liability("loan:x", 400.0))}
    strat, broker = run(frame(flat(100, 3)), ci, actions, MarginBroker(cash=250.0))
    assert broker.getvalue() == pytest.approx(250.0 + 1_000.0 - 400.0, abs=1e-12)
    assert broker.get_liabilities_usd() == 400.0
    assert broker.free_balance("USD", "spot") == 1_000.0 and broker.free_balance("USD", "futures") == 250.0
    with pytest.raises(ConfigError, match="wallet='bank'"):
        broker.free_balance("USD", "bank")
    with pytest.raises(ConfigError, match="liability"):
        broker.set_liability("loan:x", -1.0)


def test_usd_dust_never_blocks_a_coin_margined_order_and_debits_never_go_below_zero():
    # Spend the futures wallet's USD down to float dust; an inverse order must still be accepted.
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=1, commission=0.0005, funding=False)
    actions = {1: lambda s: s.broker.debit_usd(0.1 + 0.2, "power_cost"),  # 0.30000000000000004 USD
               2: sell(100)}
    strat, broker = run(frame(flat(10_000, 5)), ci, actions, MarginBroker(cash=0.3, coins={"BTC": 1.01}))
    assert broker.cash >= 0.0 and broker.get_cash() == pytest.approx(0.0, abs=1e-9)
    assert [o[0] for o in strat.orders] == ["Completed"] and strat.rows[-1]["size"] == -100
    assert broker.reconcile() < 1e-12


def test_a_bill_is_not_split_off_a_wallet_that_would_pay_only_rounding():
    # The default BTC run's 2017-05-31 bar: 2.40936 BTC sold at 2,303.29 less the 0.1 % fee, sized to pay the
    # 5,543.8992 USD power bill, left spot cash 2.2e-11 USD short of it in floating point.
    bill = 5_543.8992
    gross = 5_549.448648648627
    spot = gross - gross * 0.001
    assert 0 < bill - spot < CASH_TOLERANCE_USD
    assert usd_debit_legs(bill, spot, 250.0) == (spot, 0.0)  # spot pays alone; 2.2e-11 USD is the tolerance
    assert usd_debit_legs(bill, 5.8e-11, 6_000.0) == (0.0, bill)  # spot dust stays; the futures wallet pays
    # real splits, and a bill that is itself under the tolerance, are paid as before
    assert usd_debit_legs(bill, 5_000.0, 6_000.0) == (5_000.0, bill - 5_000.0)
    assert usd_debit_legs(bill, 1e-3, 6_000.0) == (1e-3, bill - 1e-3)
    assert usd_debit_legs(5e-10, 0.0, 1.0) == (0.0, 5e-10) and usd_debit_legs(5e-10, 1.0, 0.0) == (5e-10, 0.0)

    def pay(s):
        s.broker.deposit("USD", spot, "spot")
        s.paid = s.broker.debit_usd(bill, "power_cost")

    strat, broker = run(frame(flat(100, 3)), usdm(leverage=5), {1: pay}, MarginBroker(cash=250.0))
    rows = [(e.wallet, e.amount) for e in broker.ledger.entries if e.kind == "power_cost"]
    assert strat.paid and rows == [("spot", -spot)]
    assert broker.get_cash() == 250.0 and broker.reconcile() < 1e-9


@settings(max_examples=300, deadline=None)
@given(amount=st.floats(0.0, 1e7), spot=st.floats(-1e-9, 1e7), free=st.floats(-1.0, 1e7))
def test_usd_debit_legs_pay_the_bill_within_the_tolerance_from_what_each_wallet_holds(amount, spot, free):
    if spot + max(free, 0.0) + CASH_TOLERANCE_USD < amount:
        return  # debit_usd refuses it before splitting
    from_spot, from_futures = usd_debit_legs(amount, spot, free)
    assert 0.0 <= from_spot <= max(spot, 0.0) and 0.0 <= from_futures <= max(free, 0.0)
    paid = from_spot + from_futures
    assert amount - 2 * CASH_TOLERANCE_USD <= paid <= amount + 2 * math.ulp(amount)
    for leg, other in ((from_spot, from_futures), (from_futures, from_spot)):
        assert not (0.0 < leg < CASH_TOLERANCE_USD and other > 0.0)  # no rounding row beside a payment
    if spot >= amount:
        assert (from_spot, from_futures) == (amount, 0.0)


def test_a_losing_isolated_position_can_still_be_reduced_and_margin_added():
    # 10x long of 1 BTC at 100 with 10 USD margin and 1 USD spare: at 92 the variation margin (-8) has left
    # backtrader's cash at -7, but the wallet's free balance is still 1 and a reduce-only order must pass.
    rows = flat(100, 2) + [(100, 100, 92, 92), (92, 92, 92, 92), (92, 92, 92, 92)]
    actions = {1: buy(1.0), 3: lambda s: (s.free.append(s.broker.free_balance("USD", "futures")),
                                          s.sell(size=0.5))}
    ci = usdm(leverage=10)
    strat, broker = run(frame(rows), ci, actions, MarginBroker(cash=11.0))
    assert strat.free == [pytest.approx(1.0, abs=1e-12)]
    assert [o[:3] for o in strat.orders] == [("Completed", None, 1.0), ("Completed", None, -0.5)]
    assert strat.rows[-1]["size"] == 0.5 and broker.reconcile() < 1e-9


def test_coin_entries_carry_their_usd_value_and_totals_include_them():
    from analyzers import ledger_stats

    # the same 100-contract short as above: a 0.0005 BTC fee at 10,000 is 5 USD when paid
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=1, commission=0.0005, funding=False)
    strat, broker = run(frame(flat(10_000, 4)), ci, {1: sell(100)}, MarginBroker(cash=0.0, coins={"BTC": 1.01}))
    (fee,) = [e for e in broker.ledger.entries if e.kind == "fee"]
    assert (fee.currency, fee.amount, fee.amount_usd) == ("BTC", pytest.approx(-0.0005), pytest.approx(-5.0))
    table = ledger_stats.ledger_frame(broker.ledger)
    assert ledger_stats.fees_paid_usd(table) == pytest.approx(5.0, rel=1e-12)
    assert ledger_stats.futures_leg_totals(table)["fees_paid_usd"] == pytest.approx(5.0, rel=1e-12)
    opening = [e for e in broker.ledger.entries if e.kind == "deposit"][0]
    assert math.isnan(opening.amount_usd)  # booked before any bar priced the coin


def test_unrealised_gains_of_an_isolated_position_do_not_pay_bills():
    # 10x short of 1 BTC at 100 (10 USD margin) with 1 USD spare; at 90 the short's +10 variation margin
    # sits in backtrader's cash, but it is the position's, not the wallet's: only the 1 USD can be spent.
    rows = flat(100, 2) + [(100, 100, 90, 90), (90, 90, 90, 90)]
    paid = []
    actions = {1: sell(1.0), 3: lambda s: paid.append((s.broker.get_cash(), s.broker.debit_usd(5.0, "power_cost"),
                                                       s.broker.debit_usd(1.0, "power_cost")))}
    strat, broker = run(frame(rows), usdm(leverage=10), actions, MarginBroker(cash=11.0))
    assert paid == [(pytest.approx(1.0, abs=1e-12), False, True)]
    assert broker.get_cash() == pytest.approx(0.0, abs=1e-12) and broker.reconcile() < 1e-9


def test_funding_paid_from_an_isolated_inverse_margin_leaves_the_free_coins_unchanged():
    # binance_coinm 5x isolated long of 1,000 x 100 USD at 40,000: 0.5 BTC posted from 1 BTC. Funding of 0.1 %
    # per 8h (0.0025 BTC a settlement, 12 by bar 5, 15 in all) leaves the coins and the position's margin together, so
    # 0.5 BTC stays free and 0.49 BTC can move to spot (it was counted twice: 0.47 free, transfer refused).
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=True,
                                margin_mode="isolated")
    moved = []
    actions = {1: buy(1000), 5: lambda s: (s.free.append(s.broker.free_balance("BTC", "futures")),
                                           moved.append(s.broker.transfer("BTC", 0.49, "futures", "spot")))}
    strat, broker = run(frame(flat(40_000.0, 6)), ci, actions,
                        MarginBroker(cash=0.0, coins={"BTC": 1.0}, funding_rate=0.001))
    assert -broker.ledger.total_by_kind("funding", "BTC") == pytest.approx(15 * 0.0025, rel=1e-12)
    assert strat.free == [pytest.approx(0.5, rel=1e-12)]
    assert moved == [True] and broker.free_balance("BTC", "spot") == 0.49
    assert broker.reconcile() < 1e-12


def test_a_refused_order_says_why():
    # USD margin short: 1 BTC at 10,000 at 10x needs 1,000 USD
    strat, _ = run(frame(flat(10_000.0, 3)), usdm(leverage=10), {1: buy(1)}, MarginBroker(cash=500.0))
    assert strat.refused == [("margin", "free USD 500.00 is short of the initial margin + fee by 500.00")]
    # the bracket of a 100,000 USD notional does not allow 125x (binance_usdm's table on 2021-01-02)
    tiers = load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(datetime(2021, 1, 2))
    allowed = f.tier_for_notional(tiers, 100_000.0).max_leverage
    assert allowed < 125
    strat, _ = run(frame(flat(10_000.0, 3)), usdm(leverage=125), {1: buy(10)}, MarginBroker(cash=10_000.0))
    assert strat.refused == [("bracket", f"binance_usdm's bracket for a notional of 100,000.00 USD allows at most "
                                         f"{allowed:g}x; leverage is 125x")]
    # coin margin short: 1,000 x 100 USD at 40,000 at 5x needs 0.5 BTC
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=False)
    strat, _ = run(frame(flat(40_000.0, 3)), ci, {1: buy(1000)}, MarginBroker(cash=0.0, coins={"BTC": 0.1}))
    assert strat.refused == [("margin", "free BTC 0.10000000 is short of the initial margin + fee 0.50000000")]
    assert strat.rows[-1]["size"] == 0


@pytest.mark.parametrize("mode", ["isolated", "cross"])
@pytest.mark.parametrize("limit", [False, True])
def test_an_inverse_open_is_checked_again_at_a_gapped_fill(mode, limit):
    # engine26 s13: 400 x 100 USD long at 10x submitted at a 20,000 close needs 40,000 / 20,000 / 10 = 0.2 BTC
    # of the 0.25 held; the next bar opens at 10,000 (-50 %), where it needs 40,000 / 10,000 / 10 = 0.4 BTC.
    # Refused at the fill as at submission (BackBroker refuses a linear open whose cash goes short at the fill).
    rows = flat(20_000, 2) + [(10_000, 10_000, 10_000, 10_000), (10_000, 10_000, 8_000, 8_500)] + flat(8_500, 1)
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=10, commission=0.0, maker=0.0, funding=False,
                                margin_mode=mode)
    order = (lambda s: s.buy(size=400, exectype=bt.Order.Limit, price=20_000.0)) if limit else buy(400)
    coins = []
    actions = {2: order, 3: lambda s: coins.append(s.broker.get_coins("BTC")),
               4: lambda s: coins.append(s.broker.get_coins("BTC"))}
    strat, broker = run(frame(rows), ci, actions, MarginBroker(cash=0.0, coins={"BTC": 0.25}))
    need = 400 * 100 / 10_000 / 10
    assert [o[:3] for o in strat.orders] == [("Margin", None, 0.0)]
    assert strat.refused == [("margin", f"free BTC {0.25:.8f} is short of the initial margin + fee {need:.8f}")]
    assert coins == [0.25, 0.25] and broker.get_coins("BTC") == 0.25 and strat.rows[-1]["size"] == 0
    assert broker.events == [] and max(r["residual"] for r in strat.rows) == 0.0


def test_a_refused_reversal_at_the_fill_still_closes_and_the_linear_twin_is_refused_as_before():
    # Short 100 x 100 USD at 20,000 (10x: 0.05 BTC posted of 0.3). A buy of 500 submitted at the 20,000 close
    # opens 400 long, 0.2 BTC of the 0.25 free; it fills at a 15,000 open, where the 400 need
    # 40,000 / 15,000 / 10 = 0.2667 BTC: the closing 100 fill (+10,000 x (1/15,000 - 1/20,000) BTC), the
    # opened 400 are refused and the order ends with status Margin.
    rows = flat(20_000, 2) + flat(15_000, 3)
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=10, commission=0.0, funding=False)
    strat, broker = run(frame(rows), ci, {1: sell(100), 2: buy(500)},
                        MarginBroker(cash=0.0, coins={"BTC": 0.3}))
    assert [o[:4] for o in strat.orders] == [("Completed", None, -100, 20_000.0), ("Margin", None, 100, 15_000.0)]
    need, free = 40_000 / 15_000 / 10, 0.3 - 10_000 / 20_000 / 10
    assert strat.refused == [("margin", f"free BTC {free:.8f} is short of the initial margin + fee {need:.8f}")]
    assert strat.rows[-1]["size"] == 0
    assert broker.get_coins("BTC") == pytest.approx(0.3 + 10_000 * (1 / 15_000 - 1 / 20_000), rel=1e-14)
    assert broker.cash == 0.0 and max(r["residual"] for r in strat.rows) < 1e-12
    # the linear twin: 1 BTC at 10x submitted at 20,000 with 2,500 USD fills at 30,000, needing 3,000: refused
    rows = flat(20_000, 2) + flat(30_000, 2)
    strat, _ = run(frame(rows), usdm(leverage=10), {2: buy(1)}, MarginBroker(cash=2_500.0))
    assert [o[:3] for o in strat.orders] == [("Margin", None, 0.0)] and strat.rows[-1]["size"] == 0


def test_an_inverse_limit_open_refused_at_its_fill_stays_refused_with_a_maker_rebate():
    # BitMEX pays makers 0.025 % (a negative commission). 40,000 x 1 USD long at 10x, a limit at 20,000 needs
    # 40,000 / 20,000 / 10 = 0.2 BTC of the 0.25 held; it fills at a 10,000 open, where it needs 0.4: refused.
    # The rebate on the refused 40,000 USD (10 USD) must not lift the fill past BackBroker's cash check.
    rows = flat(20_000, 2) + [(10_000, 10_000, 10_000, 10_000)] + flat(10_000, 2)
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=10, commission=0.0, maker=-0.00025, funding=False)
    order = lambda s: s.buy(size=40_000, exectype=bt.Order.Limit, price=20_000.0)  # noqa: E731
    strat, broker = run(frame(rows), ci, {2: order}, MarginBroker(cash=0.0, coins={"BTC": 0.25}))
    need = 40_000 / 10_000 / 10 - 40_000 * 0.00025 / 10_000  # margin less the rebate, in coin
    assert [o[:3] for o in strat.orders] == [("Margin", None, 0.0)]
    assert strat.refused == [("margin", f"free BTC {0.25:.8f} is short of the initial margin + fee {need:.8f}")]
    assert broker.get_coins("BTC") == 0.25 and broker.cash == 0.0 and strat.rows[-1]["size"] == 0


def test_an_inverse_limit_order_with_a_maker_fee_fills_with_no_usd_in_the_account():
    # The coin fee of a limit fill is lent in USD for BackBroker's cash check, as a market fill's is (without
    # the loan an account holding coins only had its limit buy refused as Margin, with no reason). 10 x 100 USD
    # at 20,000 pays the maker rate: 10 x 100 x 0.0002 / 20,000 = 0.0001 BTC.
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=10, commission=0.0005, maker=0.0002, funding=False)
    order = lambda s: s.buy(size=10, exectype=bt.Order.Limit, price=20_000.0)  # noqa: E731
    strat, broker = run(frame(flat(20_000, 4)), ci, {1: order}, MarginBroker(cash=0.0, coins={"BTC": 1.0}))
    assert [o[:4] for o in strat.orders] == [("Completed", None, 10, 20_000.0)]
    assert broker.get_coins("BTC") == pytest.approx(1.0 - 10 * 100 * 0.0002 / 20_000, rel=1e-15)
    assert broker.cash == 0.0 and strat.rows[-1]["size"] == 10


@pytest.mark.parametrize("inverse", [False, True])
def test_reducing_an_isolated_position_releases_its_added_margin_in_proportion(inverse):
    # Short 2 BTC (linear, 5x at 10,000: 4,000 USD posted) or 2,000 x 100 USD (inverse, 5x at 40,000: 1 BTC
    # posted); add a quarter of that; buy back half; then flip to a long of half the size. Flat prices, no fee.
    price, start, added = (40_000.0, 2.0, 0.25) if inverse else (10_000.0, 10_000.0, 1_000.0)
    size = 2_000 if inverse else 2.0
    posted = 1.0 if inverse else 4_000.0
    currency = "BTC" if inverse else "USD"
    free, wallets = [], []

    def look(s):
        free.append(s.broker.free_balance(currency, "futures"))
        wallets.append(s.broker._isolated_wallet(s.data, s.position, s.broker.getcommissioninfo(s.data)))

    actions = {1: sell(size), 3: lambda s: (s.broker.add_margin(s.data, added), look(s), s.buy(size=size / 2)),
               5: lambda s: (look(s), s.buy(size=size)), 7: look}
    ci = (InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=False,
                                 margin_mode="isolated") if inverse else usdm(leverage=5, margin_mode="isolated"))
    broker = MarginBroker(cash=0.0, coins={"BTC": start}) if inverse else MarginBroker(cash=start)
    strat, broker = run(frame(flat(price, 8)), ci, actions, broker)
    # before: posted + added held, the rest free; after buying back half: half of each released
    assert free == [pytest.approx(start - posted - added, rel=1e-12), pytest.approx(start - (posted + added) / 2,
                                                                                     rel=1e-12),
                    pytest.approx(start - posted / 2, rel=1e-12)]  # flipped: the new long holds only its own
    assert wallets == [pytest.approx(posted + added, rel=1e-12), pytest.approx((posted + added) / 2, rel=1e-12),
                       pytest.approx(posted / 2, rel=1e-12)]
    assert strat.rows[-1]["size"] == size / 2 and broker.reconcile() < 1e-9


def test_funding_on_a_feed_without_a_fixed_bar_span_is_a_config_error():
    # backtrader's Months have no fixed duration, so no bar span to place settlements in (was a TypeError)
    message = (r"data 'PERP': timeframe Months is not supported for funding or trading hours, which need each "
               r"bar's span; allowed: Seconds, Minutes, Days, Weeks\.")
    with pytest.raises(ConfigError, match=message):
        run(frame(flat(10_000.0, 3)), usdm(leverage=5, funding=True), {1: buy(1)}, MarginBroker(cash=10_000.0),
            tf=bt.TimeFrame.Months)
    with pytest.raises(ConfigError, match=message):  # CME has no funding: its trading hours need the span
        run(frame(flat(10_000.0, 3)), _cme_ci(), {1: buy(1)}, MarginBroker(cash=30_000.0), tf=bt.TimeFrame.Months)


def test_a_cross_positions_profit_cannot_leave_the_wallet_but_its_loss_counts():
    # 1 BTC long at 5x, cross, from 10,000 USD: 2,000 posted, 8,000 free. At 11,000 the wallet holds the
    # 1,000 USD profit but may not pay it out (Binance's available for withdrawal); at 9,000 the loss counts.
    seen = []

    def look(s):
        free = s.broker.free_balance("USD", "futures")
        seen.append((free, s.broker.get_cash(), s.broker.debit_usd(free + 0.01, "power_cost")))

    rows = flat(10_000, 2) + [(10_000, 11_000, 10_000, 11_000)] + [(11_000, 11_000, 9_000, 9_000)] + flat(9_000, 1)
    strat, broker = run(frame(rows), usdm(leverage=5, margin_mode="cross"), {1: buy(1), 3: look, 4: look},
                        MarginBroker(cash=10_000.0))
    assert seen == [(8_000.0, 8_000.0, False), (7_000.0, 7_000.0, False)]
    assert strat.rows[2]["value"] == 11_000.0 and broker.reconcile() < 1e-9


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_closing_release_is_what_closing_frees_and_close_now_fills_at_the_close(inverse, mode):
    # Short at 5x: 2 BTC at 10,000 (4,000 USD posted) or 2,000 x 100 USD at 40,000 (1 BTC posted); isolated adds a
    # quarter of that; the price falls 10 %. Closing frees the margin posted and added, plus the PnL the free
    # balance does not hold yet: a linear short's 2,000 USD (a cross one's is in the wallet, but a profit may
    # not leave it while the position is open) and an inverse one's 200,000 x (1/36,000 - 1/40,000) BTC.
    price, start, posted, added = (40_000.0, 2.0, 1.0, 0.25) if inverse else (10_000.0, 10_000.0, 4_000.0, 1_000.0)
    size = 2_000 if inverse else 2.0
    upnl = 200_000 * (1 / 36_000 - 1 / 40_000) if inverse else 2_000.0
    isolated = mode == "isolated"
    expected = posted + (added if isolated else 0.0) + upnl
    currency = "BTC" if inverse else "USD"
    seen, coin_pnl = [], []

    def draw(s):
        before = s.broker.free_balance(currency, "futures")
        coin_pnl.append(s.broker.get_unrealized_pnl_coin(s.data))
        release = s.broker.closing_release(s.data)
        order = s.broker.close_now(s.data, -size / 2, reason="treasury")
        seen.append((release, s.broker.free_balance(currency, "futures") - before, order.executed.price,
                     order.info["reason"], s.position.size))

    ci = (InverseFuturesCommInfo(venue="binance_coinm", leverage=5, commission=0.0, funding=False, margin_mode=mode)
          if inverse else usdm(leverage=5, margin_mode=mode))
    broker = MarginBroker(cash=0.0, coins={"BTC": start}) if inverse else MarginBroker(cash=start)
    low = price * 0.9
    rows = flat(price, 3) + [(price, price, low, low)] + flat(low, 2)
    actions = {1: sell(size), 3: lambda s: s.broker.add_margin(s.data, added), 4: draw}
    strat, broker = run(frame(rows), ci, actions, broker)
    [(release, freed, fill, reason, held)] = seen
    assert release == pytest.approx(expected, rel=1e-12)
    assert coin_pnl == [pytest.approx(upnl, rel=1e-12) if inverse else 0.0]  # linear PnL is not coin
    assert freed == pytest.approx(release / 2, rel=1e-12)  # half closed, half released
    assert (fill, reason, held) == (low, "treasury", -size / 2)
    assert broker.reconcile() < 1e-9
    with pytest.raises(ConfigError, match="must close part of the position held"):
        broker.close_now(strat.data, size, reason="treasury")  # a buy of a long that is not there
