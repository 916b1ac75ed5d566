"""The analyzers on the real MarginBroker (brokers/broker.py): a closed-form liquidation on a synthetic crash,
mining credits through the broker's API, and the real-data crashes of 2020-03-12/13 at several leverages.

The margin engine's own tests check its prices; here the point is that MarginEvents reports the broker's
event log one to one, and that Summary, equity.csv and events.csv agree with it and with the closed forms.
"""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import pandas as pd
import pytest

from analyzers import event_stats
from analyzers.backtrader_analyzers import add_analyzers, build_run_result
from analyzers.report import write_report
from brokers import formulas
from brokers.broker import MarginBroker
from brokers.commission import LinearFuturesCommInfo
from data.ohlcv_csv import read_ohlcv_csv


def ohlc_feed(frame: pd.DataFrame) -> bt.feeds.PandasData:
    frame = frame.loc[:, ["open", "high", "low", "close"]].astype(float).assign(volume=1.0)
    return bt.feeds.PandasData(dataname=frame)


class LongOnce(bt.Strategy):
    """Buys ``size`` coins of the perpetual with a market order on the first bar (fills at the next open)."""

    params = (("size", 1.0),)

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=self.p.size)


def run_perp_long(frame: pd.DataFrame, cash: float, size: float, leverage: float, venue: str):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(ohlc_feed(frame), name="BTC-PERP")
    cerebro.broker = MarginBroker(cash=cash)
    cerebro.broker.addcommissioninfo(LinearFuturesCommInfo(venue=venue, leverage=leverage), name="BTC-PERP")
    cerebro.addstrategy(LongOnce, size=size)
    add_analyzers(cerebro)
    return cerebro.run()[0]


def assert_one_to_one(strategy, tmp_path) -> pd.DataFrame:
    """MarginEvents == broker.events record by record; Summary counts == events.csv counts."""
    analysis = strategy.analyzers.summary.margin_events.get_analysis()
    log = strategy.broker.events
    assert len(analysis.records) == len(log)
    for record, event in zip(analysis.records, log, strict=True):
        expected = event.as_dict()
        expected["datetime"] = pd.Timestamp(expected.pop("time"), tz="UTC")  # broker times are naive UTC
        assert record == expected
    write_report(build_run_result(strategy), tmp_path, with_charts=False)
    events = pd.read_csv(tmp_path / "events.csv")
    summary = strategy.analyzers.summary.get_analysis()
    assert summary.margin_calls == events["kind"].isin(event_stats.MARGIN_CALL_KINDS).sum()
    assert summary.liquidations == events["kind"].isin(event_stats.LIQUIDATION_KINDS).sum()
    assert summary.loan_calls == (events["kind"] == "loan_call").sum()
    liquidated = events["kind"].isin(event_stats.LIQUIDATION_KINDS)
    assert summary.liquidation_loss_usd == pytest.approx(events.loc[liquidated, "loss_usd"].sum(), abs=1e-9)
    assert summary.ledger_residual_usd == pytest.approx(0.0, abs=1e-6)
    return events


def test_linear_long_10x_through_a_crash_closed_form(tmp_path):
    # generic venue: flat 0.5 % maintenance, no fees, no funding, fill at the liquidation price.
    # 100 coins long at 100 with 10x, isolated: margin 1,000 USD of a 10,000 USD wallet.
    # Liquidation price (isolated long, no maintenance amount): (q E - W) / (q (1 - mmr)) = 90 / 0.995.
    # Margin ratio 0.005 q P / (W + q (P - E)) is 0.905 at the 90.5 close: a margin call, low above liquidation.
    bars = [(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 95, 96), (96, 96, 90.5, 90.5),
            (90.5, 91, 85, 88), (88, 88, 88, 88)]
    index = pd.date_range("2021-01-01", periods=len(bars), freq="D", tz="UTC")
    frame = pd.DataFrame(bars, columns=["open", "high", "low", "close"], index=index, dtype=float)
    strategy = run_perp_long(frame, cash=10_000.0, size=100.0, leverage=10.0, venue="generic")

    liquidation_price = 90.0 / 0.995
    loss = 100.0 * (100.0 - liquidation_price)
    events = assert_one_to_one(strategy, tmp_path)
    assert events["kind"].tolist() == ["margin_call", "liquidation"]
    assert pd.to_datetime(events["datetime"], utc=True).tolist() == [index[3], index[4]]
    assert events["margin_ratio"].iloc[0] == pytest.approx(0.905, abs=1e-12)
    assert events["price"].iloc[1] == pytest.approx(liquidation_price, rel=1e-12)

    summary = strategy.analyzers.summary.get_analysis()
    assert (summary.margin_calls, summary.liquidations) == (1, 1)
    assert summary.liquidation_loss_usd == pytest.approx(loss, rel=1e-12)
    assert summary.final_equity_usd == pytest.approx(10_000.0 - loss, rel=1e-12)
    assert summary.max_drawdown_pct == pytest.approx(loss / 100.0, rel=1e-12)  # loss / 10,000 x 100
    assert summary.max_drawdown_usd == pytest.approx(loss, rel=1e-12)
    assert summary.futures_pnl_usd == pytest.approx(-loss, rel=1e-12)
    assert summary.time_above_warning_days == 1.0  # only the 90.5 close is above 0.8
    assert summary.final_equity_coin == pytest.approx((10_000.0 - loss) / 88.0, rel=1e-12)
    assert summary.insolvent is False

    fills = build_run_result(strategy).trades
    assert [(f["side"], f["reason"]) for f in fills] == [("buy", ""), ("sell", "liquidation")]
    assert fills[1]["price"] == pytest.approx(liquidation_price, rel=1e-12)
    equity = pd.read_csv(tmp_path / "equity.csv")
    assert equity["equity_usd"].tolist()[:4] == [10_000.0, 10_000.0, 9_600.0, 9_050.0]
    assert equity["margin_ratio"].iloc[3] == pytest.approx(0.905, abs=1e-12)


class MineEveryBar(bt.Strategy):
    """Credits 0.5 coin and pays 10 USD of power per bar through the broker's API."""

    def next(self) -> None:
        self.broker.credit_coins("BTC", 0.5, note="fleet")
        assert self.broker.debit_usd(10.0, "power_cost", note="fleet")


def test_mining_pnl_through_the_margin_broker():
    closes = [100.0, 110.0, 90.0, 120.0]
    index = pd.date_range("2021-01-01", periods=4, freq="D", tz="UTC")
    frame = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes}, index=index)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(ohlc_feed(frame), name="BTC")
    cerebro.broker = MarginBroker(cash=0.0, spot_cash=1_000.0)
    cerebro.addstrategy(MineEveryBar)
    add_analyzers(cerebro)
    strategy = cerebro.run()[0]
    mining = strategy.analyzers.summary.mining.get_analysis()
    assert (mining.coins_mined, mining.power_cost_usd) == (2.0, 40.0)
    assert mining.mining_revenue_usd == 0.5 * sum(closes)  # each credit at the price of its bar
    assert mining.break_even_price_usd == 20.0  # 10 USD / 0.5 coin
    recorded = strategy.analyzers.summary.recorder.frame()
    # equity = spot USD + coins x price: 1,000 - 10 n + 0.5 n x close
    assert recorded["equity_usd"].tolist() == [1_040.0, 1_090.0, 1_105.0, 1_200.0]
    assert recorded["coins"].tolist() == [0.5, 1.0, 1.5, 2.0]
    summary = strategy.analyzers.summary.get_analysis()
    assert (summary.coins_mined, summary.mining_revenue_usd, summary.power_cost_usd) == (2.0, 210.0, 40.0)


class ShortOnce(bt.Strategy):
    """Sells ``size`` units of the perpetual with a market order on the first bar (fills at the next open)."""

    params = (("size", 1.0),)

    def next(self) -> None:
        if len(self) == 1 and self.p.size:
            self.sell(size=self.p.size)


@pytest.mark.parametrize(("short", "expected_pct"), [(2.0, 100.0), (1.0, 75.0), (0.0, 0.0)])
def test_hedge_effectiveness_of_a_short_against_the_coins_held_closed_form(short, expected_pct):
    # 2 opening coins in the futures wallet; a 1x linear short of `short` coins, no fees and no funding, fills at
    # the second bar's open (100). Per day the coins gain 2 x move and the short -short x move: the hedged change
    # is (2 - short) x move, so the variance falls by 1 - (1 - short / 2) ** 2.
    closes = [100.0, 100.0, 120.0, 90.0, 110.0, 100.0]
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", tz="UTC")
    frame = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes}, index=index)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(ohlc_feed(frame), name="BTC-PERP")
    cerebro.broker = MarginBroker(cash=1_000.0, coins={"BTC": 2.0}, funding=False)
    cerebro.broker.addcommissioninfo(LinearFuturesCommInfo(venue="generic", leverage=1.0, commission=0.0),
                                     name="BTC-PERP")
    cerebro.addstrategy(ShortOnce, size=short)
    add_analyzers(cerebro)
    strategy = cerebro.run()[0]
    hedge = strategy.analyzers.summary.hedge.get_analysis()
    assert hedge.daily["coins_held"].tolist() == [2.0] * len(closes)  # the opening coins count
    assert hedge.daily["hedge_pnl_usd"].tolist() == [-short * (close - 100.0) for close in closes]
    assert hedge.variance_reduction_pct == pytest.approx(expected_pct, abs=1e-9)
    summary = strategy.analyzers.summary.get_analysis()
    assert summary.hedge_variance_reduction_pct == hedge.variance_reduction_pct


class BookWithoutCredit(bt.Strategy):
    """On the last bar, books 0.5 BTC in the ledger without crediting the balance (the audit's forced mismatch)."""

    def next(self) -> None:
        if len(self) == self.data.buflen():
            self.broker.ledger.add(self.data.datetime.datetime(0), "mining_credit", "BTC", "spot", 0.5)


def test_ledger_residual_of_a_coin_wallet_is_reported_in_usd_at_the_last_price():
    closes = [100.0, 110.0, 29_000.0]
    index = pd.date_range("2021-01-01", periods=len(closes), freq="D", tz="UTC")
    frame = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes}, index=index)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(ohlc_feed(frame), name="BTC")
    cerebro.broker = MarginBroker(cash=1_000.0, coins={"BTC": 1.0})
    cerebro.addstrategy(BookWithoutCredit)
    add_analyzers(cerebro)
    strategy = cerebro.run()[0]
    assert strategy.broker.reconcile() == 0.5  # coins, in the BTC wallet's own unit
    assert strategy.broker.reconcile_usd() == 0.5 * 29_000.0
    assert strategy.analyzers.summary.get_analysis().ledger_residual_usd == 14_500.0
    unpriced = MarginBroker(cash=0.0)  # nothing prices BTC: the USD value of the residual is unknown
    unpriced.ledger.add(index[0].to_pydatetime(), "mining_credit", "BTC", "spot", 0.5)
    assert unpriced.reconcile() == 0.5 and math.isnan(unpriced.reconcile_usd())
    assert MarginBroker(cash=0.0).reconcile_usd() == 0.0  # consistent: 0, whatever prices the coins


@pytest.mark.parametrize(("leverage", "liquidated_on"), [(10.0, "2020-03-12"), (5.0, "2020-03-12"),
                                                         (2.0, "2020-03-13"), (1.0, None)])
def test_march_2020_real_data_events_match_the_broker_log(data_dir, tmp_path, leverage, liquidated_on):
    btc = read_ohlcv_csv(data_dir / "btc" / "btc_usdt_daily_binance_2017-08-17_2026-01-05.csv")
    frame = btc.loc["2020-03-11":"2020-03-20"]
    # 5,000 USD of margin on a 10,000 USD wallet, opened at the 2020-03-12 open (market order on 03-11).
    entry_open = float(frame.loc[pd.Timestamp("2020-03-12", tz="UTC"), "open"])
    size = round(5_000.0 * leverage / entry_open, 3)
    strategy = run_perp_long(frame, cash=10_000.0, size=size, leverage=leverage, venue="binance_usdm")
    events = assert_one_to_one(strategy, tmp_path)
    liquidations = events[events["kind"] == "liquidation"]
    summary = strategy.analyzers.summary.get_analysis()
    if liquidated_on is None:
        assert liquidations.empty and summary.liquidations == 0
        return
    assert len(liquidations) == 1 and summary.liquidations == 1
    assert pd.Timestamp(liquidations["datetime"].iloc[0]) == pd.Timestamp(liquidated_on, tz="UTC")
    # the price where the formulas say: the Binance liquidation price of this isolated position, whose
    # margin is notional / leverage less the funding paid from it up to the liquidation bar (ledger.csv)
    ci = strategy.broker.getcommissioninfo(strategy.data)
    tiers = ci.tiers_at(pd.Timestamp(liquidated_on).to_pydatetime())
    ledger = pd.read_csv(tmp_path / "ledger.csv")
    paid = ledger[(ledger["kind"] == "funding")
                  & (pd.to_datetime(ledger["datetime"], utc=True) <= pd.Timestamp(liquidated_on, tz="UTC"))]["amount"].sum()
    wallet = size * entry_open / leverage + paid
    expected = formulas.linear_liquidation_price(size, entry_open, wallet, tiers)
    assert liquidations["price"].iloc[0] == pytest.approx(expected, rel=1e-9)
    # margin calls come before the liquidation they warn about, and Summary counts them
    calls = events[events["kind"] == "margin_call"]
    assert (pd.to_datetime(calls["datetime"], utc=True) <= pd.Timestamp(liquidated_on, tz="UTC")).all()
