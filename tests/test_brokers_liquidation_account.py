"""Liquidation and the insurance fund beyond one position: a cross account holding two positions (judged as an
account, whatever the order of the data), BitMEX step-downs on a gapped open, an inverse shortfall's value.

The cases and their hand values are those of the session-26 engine audit (notes/s26/engine26, s01/s01b/s10b,
s12, s03); every expected number is derived below from the inputs or the run's own ledger.
"""

from __future__ import annotations

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import pandas as pd
import pytest

from brokers import formulas as f
from brokers.broker import MarginBroker
from brokers.commission import InverseFuturesCommInfo, LinearFuturesCommInfo
from brokers.venues import generic_venue

NO_FEES = {"commission": 0.0, "funding": False}


def frame(rows, start="2021-01-01"):
    index = pd.date_range(start, periods=len(rows), freq="1D", tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(volume=1.0)


def flat(price, n):
    return [(price, price, price, price)] * n


class Script(bt.Strategy):
    params = (("actions", None),)

    def __init__(self):
        self.rows, self.events, self.fills = [], [], []

    def next(self):
        action = (self.p.actions or {}).get(len(self))
        if action:
            action(self)
        self.rows.append({"value": self.broker.getvalue(), "sizes": [self.getposition(d).size for d in self.datas],
                          "residual": self.broker.reconcile()})

    def notify_margin_event(self, event):
        self.events.append(event)

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append((order.info.get("reason"), order.executed.price))


def run(datas, actions, broker):
    """datas: [(name, frame, comminfo)]; actions: {bar number: f(strategy)}."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = broker
    for name, df, ci in datas:
        cerebro.adddata(bt.feeds.PandasData(dataname=df, timeframe=bt.TimeFrame.Days), name=name)
        cerebro.broker.addcommissioninfo(ci, name=name)
    cerebro.addstrategy(Script, actions=actions)
    return cerebro.run()[0], cerebro.broker


def ledger(broker, kind):
    return sum(e.amount for e in broker.ledger.entries if e.kind == kind)


def by_name(strategy, name):
    return [d._name for d in strategy.datas].index(name)


def run_pair(btc, ci_b, eth, ci_e, eth_first, actions, cash):
    """BTC and ETH in one account, ETH added first if ``eth_first``."""
    datas = [("BTC", frame(btc), ci_b), ("ETH", frame(eth), ci_e)]
    if eth_first:
        datas.reverse()
    return run(datas, actions, MarginBroker(cash=cash))


# --- F1: a cross account with two positions -------------------------------------------------------------

def _s10b(eth_first):
    """cash 15,000; BTC (binance_usdm, cross 5x) long 2 at 20,000; ETH (generic, mmr 0.5 %, cross 5x) long 10 at
    1,000. ETH closes day 5 at 1,031.25 (+312.50); BTC opens day 6 at 11,250, beyond the account's bankruptcy."""
    btc = flat(20_000, 4) + [(15_000, 15_150, 14_850, 15_000), (11_250, 11_362.5, 11_137.5, 11_250)]
    eth = flat(1_000, 4) + [(1_000, 1_041.5625, 990, 1_031.25), (1_031.25, 1_041.5625, 1_020.9375, 1_031.25)]
    ci_b = LinearFuturesCommInfo(venue="binance_usdm", leverage=5, margin_mode="cross", funding=False)
    ci_e = LinearFuturesCommInfo(venue=generic_venue(asset="ETH", mmr=0.005, taker=0.0005, liquidation_fee_rate=0.01),
                                 leverage=5, margin_mode="cross", funding=False)
    def first(s):
        s.buy(data=s.getdatabyname("BTC"), size=1)
        s.buy(data=s.getdatabyname("ETH"), size=10)

    return run_pair(btc, ci_b, eth, ci_e, eth_first,
                    {1: first, 2: lambda s: s.buy(data=s.getdatabyname("BTC"), size=1)}, 15_000.0)


@pytest.mark.parametrize("eth_first", [False, True])
def test_a_bankrupt_cross_account_is_closed_whole_and_the_fund_pays_only_its_shortfall(eth_first):
    strategy, broker = _s10b(eth_first)
    wallet = 15_000.0 + ledger(broker, "fee")  # after the entry fees (ledger fees are negative)
    # the account at BTC's fill: wallet + BTC's loss at the 11,250 open + ETH's open profit at its 1,031.25 close
    balance = f.cross_account_balance(wallet, [f.linear_pnl(2, 20_000, 11_250), f.linear_pnl(10, 1_000, 1_031.25)])
    assert balance < 0.0
    assert ledger(broker, "insurance_fund") == pytest.approx(-balance, rel=1e-12)  # 2,208.50, not 2,521
    assert ledger(broker, "liquidation_fee") == 0.0  # nothing left to pay a clearance fee from
    assert strategy.rows[-1]["value"] == pytest.approx(0.0, abs=1e-9)
    assert strategy.rows[-1]["sizes"] == [0, 0]
    assert strategy.rows[-1]["residual"] == pytest.approx(0.0, abs=1e-9)
    closed = [(e.instrument, e.price) for e in strategy.events if e.kind == "liquidation"]
    assert closed == [("BTCUSDT", 11_250.0), ("ETH-GENERIC", 1_031.25)]  # the largest loss first, ETH at its close


def test_the_outcome_of_a_bankrupt_cross_account_does_not_depend_on_the_order_of_the_data():
    runs = [_s10b(eth_first) for eth_first in (False, True)]
    assert runs[0][1].ledger.entries and runs[1][1].ledger.entries
    assert ([(e.kind, e.amount) for e in runs[0][1].ledger.entries]
            == [(e.kind, e.amount) for e in runs[1][1].ledger.entries])
    assert runs[0][0].rows[-1]["value"] == runs[1][0].rows[-1]["value"]


def _s01b(eth_open, eth_first):
    """cash 15,000; BTC short 1 at 20,000 (binance_usdm, cross 10x), +5,000 at 15,000; ETH long 100 at 1,000
    (generic, mmr 0.5 %, cross 10x), no fees; ETH opens day 4 at ``eth_open``, through its liquidation price."""
    btc = flat(20_000, 2) + flat(15_000, 4)
    eth = flat(1_000, 3) + [(eth_open, eth_open, eth_open - 50, eth_open)] + flat(eth_open, 2)
    ci_b = LinearFuturesCommInfo(venue="binance_usdm", leverage=10, margin_mode="cross", **NO_FEES)
    ci_e = LinearFuturesCommInfo(venue=generic_venue(asset="ETH", mmr=0.005), leverage=10, margin_mode="cross",
                                 **NO_FEES)
    def first(s):
        s.sell(data=s.getdatabyname("BTC"), size=1)
        s.buy(data=s.getdatabyname("ETH"), size=100)

    return run_pair(btc, ci_b, eth, ci_e, eth_first, {1: first}, 15_000.0)


@pytest.mark.parametrize("eth_first", [False, True])
def test_a_cross_wallet_backed_by_another_positions_profit_stays_negative_and_that_position_open(eth_first):
    strategy, broker = _s01b(802.0, eth_first)
    btc_profit = f.linear_pnl(-1, 20_000, 15_000)
    wallet = 15_000.0 + f.linear_pnl(100, 1_000, 802.0)  # after ETH's fill at the open: -4,800
    balance = f.cross_account_balance(wallet, [btc_profit])  # +200
    btc_maint = f.maintenance_margin(15_000.0, broker.getcommissioninfo(strategy.getdatabyname("BTC")).tiers_at(
        broker.bar_time(strategy.datas[0])))
    assert wallet < 0.0 < btc_maint < balance  # compliant: BTC stays open on ETH's loss
    assert ledger(broker, "insurance_fund") == 0.0  # was 4,800 with ETH as the first data
    assert ledger(broker, "liquidation_fee") == 0.0
    assert strategy.rows[-1]["value"] == pytest.approx(balance, rel=1e-12)
    sizes = strategy.rows[-1]["sizes"]
    assert sizes[by_name(strategy, "BTC")] == -1 and sizes[by_name(strategy, "ETH")] == 0
    assert [e.instrument for e in strategy.events if e.kind == "liquidation"] == ["ETH-GENERIC"]


@pytest.mark.parametrize("eth_first", [False, True])
def test_a_clearance_fee_is_not_charged_to_a_bankrupt_account_for_the_fund_to_pay_back(eth_first):
    strategy, broker = _s01b(780.0, eth_first)
    balance = f.cross_account_balance(15_000.0 + f.linear_pnl(100, 1_000, 780.0), [f.linear_pnl(-1, 20_000, 15_000)])
    assert balance < 0.0  # -2,000: both positions closed
    assert ledger(broker, "liquidation_fee") == 0.0  # was 187.50, then refilled by the fund
    assert ledger(broker, "insurance_fund") == pytest.approx(-balance, rel=1e-12)  # 2,000, not 2,187.50 or 7,000
    assert strategy.rows[-1]["value"] == pytest.approx(0.0, abs=1e-9)
    assert strategy.rows[-1]["sizes"] == [0, 0]


def test_cross_account_formulas():
    assert f.cross_account_balance(-4_800.0, [5_000.0, -100.0]) == 100.0
    assert f.cross_account_compliant(100.0, 60.0) and not f.cross_account_compliant(60.0, 60.0)
    assert f.insurance_refill(-2_208.5) == 2_208.5 and f.insurance_refill(12.5) == 0.0
    assert f.clearance_fee(187.5, -7_000.0, 5_000.0, 0.0) == 0.0
    assert f.clearance_fee(187.5, 15_000.0, -19_800.0, 5_000.0) == 187.5
    assert f.clearance_fee(187.5, 15_000.0, -19_800.0, 4_900.0) == 100.0


# --- F2: a BitMEX step-down on an open beyond the bankruptcy price -----------------------------------------

@pytest.mark.parametrize("open_price", [9_000.0, 5_000.0, 3_500.0, 3_000.0])
def test_a_bitmex_position_above_its_base_risk_limit_loses_its_margin_and_no_more_on_a_gapped_open(open_price):
    contracts, entry, leverage = 3_500_000, 10_000.0, 10.0  # 350 XBT in the 300-400 XBT risk step
    rows = flat(entry, 2) + [(open_price, open_price, open_price * 0.98, open_price)] + flat(open_price, 1)
    ci = InverseFuturesCommInfo(venue="bitmex", leverage=leverage, **NO_FEES)
    strategy, broker = run([("XBT", frame(rows, start="2020-06-01"), ci)], {1: lambda s: s.buy(size=contracts)},
                           MarginBroker(cash=0.0, coins={"BTC": 400.0}))
    margin = contracts / entry / leverage  # 35 XBT
    bankrupt = f.inverse_bankruptcy_price(contracts, 1.0, entry, margin)  # 9,090.91
    assert open_price < bankrupt  # the bar opens beyond the whole position's bankruptcy price
    assert 400.0 - broker.get_coins("BTC") == pytest.approx(margin, rel=1e-12)  # was 650 XBT at 3,500
    forced = [price for reason, price in strategy.fills if reason == "liquidation"]
    assert forced == [pytest.approx(bankrupt, rel=1e-12)]  # no step-down at the open, no fill beyond it
    fund = [e for e in strategy.events if e.kind == "insurance_fund"]
    # the venue's shortfall: the fill's loss at the open beyond the margin, valued at the open (the event's price)
    shortfall_coin = -f.inverse_pnl(contracts, 1.0, bankrupt, open_price)
    assert len(fund) == 1 and fund[0].price == open_price
    assert fund[0].loss_usd == pytest.approx(shortfall_coin * open_price, rel=1e-9)  # 1,575,000 at 5,000
    assert strategy.rows[-1]["residual"] == pytest.approx(0.0, abs=1e-9)


# --- L1: an isolated inverse shortfall is valued at the market ----------------------------------------------

def test_an_isolated_inverse_shortfall_is_valued_at_the_market_like_the_events_price():
    contracts, entry, leverage, gap = 100, 20_000.0, 10.0, 15_000.0  # COIN-M long 100 x 100 USD at 10x
    rows = flat(entry, 2) + [(gap, 15_100, 14_000, gap)] + flat(gap, 1)
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=leverage, **NO_FEES)
    strategy, broker = run([("BTC", frame(rows), ci)], {1: lambda s: s.buy(size=contracts)},
                           MarginBroker(cash=0.0, coins={"BTC": 1.0}))
    size_usd = contracts * ci.p.face
    bankrupt = f.inverse_bankruptcy_price(contracts, ci.p.face, entry, size_usd / entry / leverage)  # 18,181.82
    fund = [e for e in strategy.events if e.kind == "insurance_fund"]
    shortfall_coin = size_usd * (1 / gap - 1 / bankrupt)  # 0.116667 BTC
    assert len(fund) == 1 and fund[0].price == gap
    assert fund[0].loss_usd == pytest.approx(shortfall_coin * gap, rel=1e-12)  # 1,750.00, was 2,121.21


class FundingFeed(bt.feeds.PandasData):
    lines = ("funding_rate",)
    params = (("funding_rate", -1),)


def test_an_inverse_long_whose_margin_funding_drained_below_minus_s_over_ep_is_bankrupt_at_any_price():
    # COIN-M 10x isolated long 100 x 100 USD at 20,000 (margin 0.05 BTC of a 0.5 BTC position); on day 3 three
    # settlements at 40 % take 0.6 BTC from the margin: W = -0.55 <= -S/EP, no price brings it back to zero.
    contracts, entry, leverage = 100, 20_000.0, 10.0
    ci = InverseFuturesCommInfo(venue="binance_coinm", leverage=leverage, commission=0.0, funding=True)
    df = frame(flat(entry, 5)).assign(funding_rate=[0.0, 0.0, 0.4, 0.0, 0.0])
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = MarginBroker(cash=0.0, coins={"BTC": 1.0})
    cerebro.adddata(FundingFeed(dataname=df, timeframe=bt.TimeFrame.Days), name="BTC")
    cerebro.broker.addcommissioninfo(ci, name="BTC")
    cerebro.addstrategy(Script, actions={1: lambda s: s.buy(size=contracts)})
    strategy, broker = cerebro.run()[0], cerebro.broker
    margin = contracts * ci.p.face / entry / leverage
    wallet = margin + broker.ledger.total_by_kind("funding", "BTC")
    assert f.inverse_bankruptcy_price(contracts, ci.p.face, entry, wallet) == float("inf")
    assert 1.0 - broker.get_coins("BTC") == pytest.approx(margin, rel=1e-12)  # was 0.6 BTC: margin + funding
    # the fill at the flat 20,000 realises nothing: the fund pays back what funding took beyond the margin
    assert broker.ledger.total_by_kind("insurance_fund", "BTC") == pytest.approx(-wallet, rel=1e-12)
    fund = [e for e in strategy.events if e.kind == "insurance_fund"]
    assert len(fund) == 1 and fund[0].loss_usd == pytest.approx(-wallet * entry, rel=1e-12)
    assert strategy.rows[-1]["sizes"] == [0] and broker.reconcile() < 1e-12


def test_the_account_stops_closing_positions_once_it_is_compliant():
    # Three cross positions on 32,000 USD: ETH long 100 at 1,000 (MM 0.5 %), BTC long 1 at 20,000 (MM 10 %,
    # 5x) and ETH2 long 1 at 1,000. ETH gaps to 700 (its liquidation: the wallet falls by 30,000); the account
    # is then the wallet with BTC's -1,000 at its 19,000 close and ETH2's 0, against BTC's and ETH2's
    # maintenance margin: not compliant, so BTC (the larger loss) closes at its close. Judged again, the
    # account holds ETH2 alone: its balance is above ETH2's maintenance margin, so ETH2 stays open
    # (Binance stops liquidating once the account is compliant).
    def cross(asset, mmr, lev):
        return LinearFuturesCommInfo(venue=generic_venue(asset=asset, mmr=mmr, max_leverage=10), leverage=lev,
                                     margin_mode="cross", **NO_FEES)

    datas = [("ETH", frame(flat(1_000, 3) + flat(700, 3)), cross("ETH", 0.005, 10)),
             ("BTC", frame(flat(20_000, 2) + flat(19_000, 4)), cross("BTC", 0.10, 5)),
             ("ETH2", frame(flat(1_000, 6)), cross("ETH", 0.005, 10))]

    def first(s):
        for name, size in (("ETH", 100), ("BTC", 1), ("ETH2", 1)):
            s.buy(data=s.getdatabyname(name), size=size)

    strategy, _ = run(datas, {1: first}, MarginBroker(cash=32_000.0))
    wallet = 32_000.0 + f.linear_pnl(100, 1_000, 700)
    balance = f.cross_account_balance(wallet, [f.linear_pnl(1, 20_000, 19_000), 0.0])
    assert not f.cross_account_compliant(balance, 0.10 * 19_000 + 0.005 * 1_000)
    assert f.cross_account_compliant(balance, 0.005 * 1_000)
    liquidated = [e.instrument for e in strategy.events if e.kind == "liquidation"]
    assert liquidated == ["ETH-GENERIC", "BTC-GENERIC"]
    assert strategy.rows[-1]["sizes"] == [0, 0, 1]
    assert strategy.rows[-1]["value"] == pytest.approx(balance, abs=1e-9)


@pytest.mark.parametrize("order", [("ETH", "BTC"), ("BTC", "ETH")])
def test_after_a_cross_liquidation_the_others_are_judged_at_their_closes_not_the_bars_extremes(order):
    # 10,000 USD; ETH long 60 at 1,000 and BTC short 1 at 20,000, cross 10x, maintenance 0.5 %. Day 4: ETH
    # opens 1,000, dips to 700, closes 900; BTC opens at its high 20,000 and closes at 18,000 (+2,000).
    # ETH's liquidation price against BTC at its close: 10,000 - 0.005 x 18,000 + 2,000 + 60 (P - 1,000)
    # = 0.005 x 60 x P. After ETH's liquidation the account is the wallet plus BTC's +2,000, above BTC's
    # maintenance margin: BTC stays open. (It was judged again on its high and filled at the open, 20,000,
    # prices from before ETH's liquidation, and the insurance fund paid the account back to 0.)
    def cross(asset):
        return LinearFuturesCommInfo(venue=generic_venue(mmr=0.005, asset=asset), leverage=10, margin_mode="cross",
                                     **NO_FEES)

    feeds = {"ETH": ("ETH", frame(flat(1_000, 3) + [(1_000, 1_000, 700, 900)] + flat(900, 1)), cross("ETH")),
             "BTC": ("BTC", frame(flat(20_000, 3) + [(20_000, 20_000, 18_000, 18_000)] + flat(18_000, 1)),
                     cross("BTC"))}

    def first(s):
        s.buy(data=s.getdatabyname("ETH"), size=60)
        s.sell(data=s.getdatabyname("BTC"), size=1)

    strategy, broker = run([feeds[name] for name in order], {1: first}, MarginBroker(cash=10_000.0))
    liq = (60 * 1_000 - (10_000 - 0.005 * 18_000 + 2_000)) / (60 - 0.005 * 60)
    wallet = 10_000 + f.linear_pnl(60, 1_000, liq)
    account = f.cross_account_balance(wallet, [f.linear_pnl(-1, 20_000, 18_000)])
    assert f.cross_account_compliant(account, 0.005 * 18_000)
    events = [(e.kind, e.instrument) for e in strategy.events if e.kind in ("liquidation", "insurance_fund")]
    assert events == [("liquidation", "ETH-GENERIC")]
    assert [e.price for e in strategy.events if e.kind == "liquidation"] == [pytest.approx(liq, rel=1e-12)]
    assert dict(zip(order, strategy.rows[-1]["sizes"], strict=True)) == {"ETH": 0, "BTC": -1}
    assert strategy.rows[-1]["value"] == pytest.approx(account, rel=1e-12)
    assert not [e for e in broker.ledger.entries if e.kind == "insurance_fund"]
