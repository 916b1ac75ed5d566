"""The Analyzer and Observer classes inside real cerebro runs.

1. backtrader's own BackBroker (only ``getvalue``/``get_cash``): closed-form equity paths, including a futures
   position whose equity goes through zero.
2. ``ScriptedContractBroker``: a BackBroker that carries the MarginBroker contract's *records* (``events``,
   ``ledger``, ``warning_level``, ``get_margin_ratio``, ``reconcile``) filled by the strategy at known bars. It
   has no margin engine; it checks that the analyzers read the contract one to one (every event, every
   ledger kind) against hand-computed totals. The liquidation scenarios on the real MarginBroker belong to
   the margin engine's tests once brokers/broker.py exists.
"""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from analyzers import event_stats
from analyzers.backtrader_analyzers import (
    SUMMARY_KEYS,
    Drawdown,
    EquityRecorder,
    HedgeEffectiveness,
    MarginEvents,
    MiningPnL,
    Summary,
    add_analyzers,
    build_run_result,
)
from analyzers.observers import EquityUSD, MarginEventMarkers, MarginRatio
from analyzers.report import write_report
from brokers.events import MarginEvent
from brokers.ledger import Ledger
from minehedge.errors import ConfigError


def feed(prices: list[float]) -> bt.feeds.PandasData:
    index = pd.date_range("2021-01-01", periods=len(prices), freq="D", tz="UTC")
    frame = pd.DataFrame({"open": prices, "high": prices, "low": prices, "close": prices, "volume": 1.0},
                         index=index, dtype=float)
    return bt.feeds.PandasData(dataname=frame)


class BuyOnFirstBar(bt.Strategy):
    params = (("size", 10.0),)

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=self.p.size)  # market order: fills at the next bar's open (= close here)


def day(n: int) -> pd.Timestamp:
    return pd.Timestamp("2021-01-01", tz="UTC") + pd.Timedelta(days=n)


# ------------------------------------------------------------------------------------ plain BackBroker

def buy_and_hold(prices):
    """1,000 USD on BackBroker, all of it in coins at the first bar's close; every analyzer and Drawdown."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed(prices), name="BTC")
    cerebro.broker.setcash(1_000.0)
    cerebro.addstrategy(BuyOnFirstBar)
    add_analyzers(cerebro)
    cerebro.addanalyzer(Drawdown, _name="drawdown")
    return cerebro.run()[0]



def test_drawdown_summary_and_report_on_backbroker_closed_form(tmp_path):
    prices = [100, 100, 120, 90, 60, 130, 104]
    strategy = buy_and_hold(prices)

    # 10 coins bought with all the cash at 100: equity = 10 x price from the first bar on.
    recorded = strategy.analyzers.summary.recorder.frame()
    assert recorded["equity_usd"].tolist() == [10.0 * p for p in prices]
    assert recorded["equity_coin"].tolist() == [10.0] * len(prices)  # USD equity / price
    usd = strategy.analyzers.drawdown.get_analysis().usd
    assert (usd.max_drawdown_pct, usd.max_drawdown) == (50.0, 600.0)
    assert (usd.peak, usd.trough, usd.recovery) == (day(2), day(4), day(5))
    assert usd.longest_underwater_days == 3.0 and usd.ruined is False
    assert strategy.analyzers.drawdown.get_analysis().coin.max_drawdown_pct == 0.0

    summary = strategy.analyzers.summary.get_analysis()
    assert summary.final_equity_usd == 1_040.0
    assert summary.total_return_pct == pytest.approx(4.0, abs=1e-12)
    assert summary.max_drawdown_pct == 50.0 and summary.max_drawdown_usd == 600.0
    assert (summary.margin_calls, summary.liquidations, summary.coins_mined) == (0, 0, 0.0)
    assert summary.insolvent is False and math.isnan(summary.ledger_residual_usd)
    with pytest.raises(KeyError):  # closed: a typo is an error, not a new empty entry
        summary["max_drawdown"]

    result = build_run_result(strategy, {"data files": ["synthetic closed-form path"]}, "backbroker")
    assert result.trades == [{"datetime": day(1), "instrument": "BTC", "side": "buy", "size": 10.0,
                              "contracts": 10.0, "price": 100.0, "commission": 0.0, "reason": ""}]
    write_report(result, tmp_path, with_charts=False)
    equity = pd.read_csv(tmp_path / "equity.csv")
    assert equity["equity_usd"].tolist() == [10.0 * p for p in prices]
    assert equity["drawdown_pct"].tolist() == [0.0, 0.0, 0.0, 25.0, 50.0, 0.0, 20.0]


def test_futures_equity_through_zero_is_ruin_not_more_than_100_pct():
    # 10 contracts, margin 10 USD each, on 100 USD: equity = 100 + 10 x (price - 100) = 100,100,50,-100,0.
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed([100, 100, 95, 80, 90]), name="BTC")
    cerebro.broker.setcash(100.0)
    cerebro.broker.setcommission(commission=0.0, margin=10.0, mult=1.0)
    cerebro.addstrategy(BuyOnFirstBar)
    cerebro.addanalyzer(Summary, _name="summary")
    strategy = cerebro.run()[0]
    frame = strategy.analyzers.summary.recorder.frame()
    assert frame["equity_usd"].tolist() == [100.0, 100.0, 50.0, -100.0, 0.0]
    assert frame["drawdown_pct"].tolist() == [0.0, 0.0, 50.0, 100.0, 100.0]
    draw = strategy.analyzers.summary.drawdown.get_analysis().usd
    assert draw.max_drawdown_pct == 100.0 and draw.max_drawdown == 100.0 and draw.min_equity == -100.0
    assert draw.ruined and draw.ruin_time == day(3)
    summary = strategy.analyzers.summary.get_analysis()
    assert summary.insolvent is True and summary.ruined is True
    assert summary.total_return_pct == -100.0 and summary.cagr_pct == -100.0


def test_a_nan_bar_gives_nan_drawdowns_there_and_the_run_finishes():
    # A NaN close (backtrader's own PandasData passes it through) makes that bar's equity NaN. 10 coins bought
    # with all 1,000 USD at 100: equity 1000, 1000, NaN, 900, 1200; the drawdown is undefined on the NaN bar
    # and the others count from the peak of the defined values (1,000): 0, 0, NaN, 10 %, 0.
    strategy = buy_and_hold([100, 100, math.nan, 90, 120])
    frame = strategy.analyzers.summary.recorder.frame()
    np.testing.assert_array_equal(frame["equity_usd"], [1000.0, 1000.0, math.nan, 900.0, 1200.0])
    np.testing.assert_array_equal(frame["drawdown_pct"], [0.0, 0.0, math.nan, 10.0, 0.0])
    underwater = strategy.analyzers.drawdown.get_analysis().underwater
    np.testing.assert_array_equal(underwater["drawdown_usd_pct"], [0.0, 0.0, math.nan, 10.0, 0.0])
    np.testing.assert_array_equal(underwater["drawdown_usd"], [0.0, 0.0, math.nan, 100.0, 0.0])
    np.testing.assert_array_equal(underwater["drawdown_coin_pct"], [0.0, 0.0, math.nan, 0.0, 0.0])  # 10 coins
    summary = strategy.analyzers.summary.get_analysis()
    assert (summary.max_drawdown_pct, summary.max_drawdown_usd) == (10.0, 100.0)
    assert summary.final_equity_usd == 1200.0 and summary.total_return_pct == pytest.approx(20.0, rel=1e-12)


class NoCoinValueBroker(bt.brokers.BackBroker):
    """A broker that cannot value the account in coin: coin equity NaN on every bar."""

    def get_equity_coin(self, asset: str) -> float:
        return math.nan


def test_a_coin_equity_nan_on_every_bar_gives_nan_coin_drawdowns_only():
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = NoCoinValueBroker()
    cerebro.adddata(feed([100, 100, 120, 90]), name="BTC")
    cerebro.broker.setcash(1_000.0)
    cerebro.addstrategy(BuyOnFirstBar)
    add_analyzers(cerebro)
    strategy = cerebro.run()[0]
    summary = strategy.analyzers.summary
    assert summary.recorder.frame()["equity_coin"].isna().all()
    underwater = summary.drawdown.get_analysis().underwater
    assert underwater["drawdown_coin_pct"].isna().all() and underwater["drawdown_coin"].isna().all()
    # equity 1000, 1000, 1200, 900: the USD drawdowns are whole, 25 % (300 USD) below the 1,200 peak
    assert underwater["drawdown_usd_pct"].tolist() == [0.0, 0.0, 0.0, 25.0]
    record = summary.get_analysis()
    assert (record.max_drawdown_pct, record.max_drawdown_usd) == (25.0, 300.0)
    assert math.isnan(record.max_drawdown_coin_pct) and math.isnan(record.final_equity_coin)


def test_nan_drawdowns_stay_on_their_rows_when_a_price_time_repeats():
    # The price feed (daily) is coarser than the other data (12h): its bar time repeats on two rows, so the
    # drawdowns are put back by position, not by time. Expected values from the recorded equity itself.
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed([100, math.nan, 90, 120]), name="BTC")
    index = pd.date_range("2021-01-01", periods=8, freq="12h", tz="UTC")
    frame12 = pd.DataFrame({c: 1.0 for c in ("open", "high", "low", "close", "volume")}, index=index)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame12, timeframe=bt.TimeFrame.Minutes, compression=720),
                    name="OTHER")
    cerebro.broker.setcash(1_000.0)
    cerebro.addstrategy(BuyOnFirstBar)
    add_analyzers(cerebro)
    strategy = cerebro.run()[0]
    frame = strategy.analyzers.summary.recorder.frame()
    assert not frame.index.is_unique and frame["equity_usd"].isna().any()
    equity = frame["equity_usd"].to_numpy()
    peak = np.fmax.accumulate(np.concatenate([[1_000.0], equity]))[1:]  # the opening value first
    np.testing.assert_array_equal(frame["drawdown_pct"], np.where(np.isnan(equity), math.nan,
                                                                  (peak - equity) / peak * 100.0))


def test_unknown_asset_or_price_feed_is_a_config_error():
    for kwargs, message in (({"asset": "DOGE"}, "asset='DOGE'"), ({"price_data": "ETH"}, "price_data='ETH'")):
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(feed([1.0, 2.0]), name="BTC")
        cerebro.addstrategy(bt.Strategy)
        cerebro.addanalyzer(Summary, **kwargs)
        with pytest.raises(ConfigError, match=message):
            cerebro.run()


# ------------------------------------------------------------------------- the contract's records, scripted


class ScriptedContractBroker(bt.brokers.BackBroker):
    """BackBroker + the MarginBroker contract's records, filled by the strategy (no margin engine)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[MarginEvent] = []
        self.ledger = Ledger()
        self.warning_level = 0.8
        self.margin_ratio = 0.0

    def add_event(self, event: MarginEvent) -> None:
        self.events.append(event)

    def get_margin_ratio(self) -> float:
        return self.margin_ratio

    def get_unrealized_pnl_usd(self) -> float:
        return 0.0

    def get_coins(self, asset: str) -> float:
        return self.ledger.balance(asset)  # the coins the scripted ledger credited

    def reconcile(self) -> dict[str, float]:
        return {"residual_usd": 0.0}


PRICES = [100.0, 110.0, 90.0, 120.0, 120.0, 120.0]
RATIOS = [0.0, 0.85, 0.9, 1.0, 0.5, 0.0]
CURTAILED = [0.0, 0.0, 0.5, 1.0, 1.0, 0.0]


class MiningState:
    def __init__(self) -> None:
        self.curtailed_fraction = 0.0


class ScriptedMiner(bt.Strategy):
    """Writes, bar by bar, the ledger entries and events a hedged miner's run would produce."""

    def __init__(self) -> None:
        self.mining_state = MiningState()

    def event(self, kind: str, **money: float) -> None:
        self.broker.add_event(MarginEvent(self.data.datetime.datetime(0), kind, "BTCUSDT-PERP", "binance",
                                          "short", -1.0, self.data.close[0], 500.0, 100.0,
                                          self.broker.margin_ratio, **money))

    def next(self) -> None:
        i = len(self) - 1
        now = self.data.datetime.datetime(0)
        ledger = self.broker.ledger
        self.broker.margin_ratio = RATIOS[i]
        self.mining_state.curtailed_fraction = CURTAILED[i]
        if i == 0:
            ledger.add(now, "mining_credit", "BTC", "spot", 1.0, "fleet")
            ledger.add(now, "power_cost", "USD", "spot", -20.0, "fleet")
        elif i == 1:  # hedge leg -5: funding paid 3, fee 2
            ledger.add(now, "funding", "USD", "futures", -3.0, "BTCUSDT-PERP")
            ledger.add(now, "fee", "USD", "futures", -2.0, "BTCUSDT-PERP")
            self.event("margin_call")
        elif i == 2:  # hedge leg +10
            ledger.add(now, "realized_pnl", "USD", "futures", 9.0, "BTCUSDT-PERP")
            ledger.add(now, "funding", "USD", "futures", 1.0, "BTCUSDT-PERP")
        elif i == 3:  # hedge leg -15: liquidated
            ledger.add(now, "liquidation", "USD", "futures", -10.0, "BTCUSDT-PERP")
            ledger.add(now, "liquidation_fee", "USD", "futures", -5.0, "BTCUSDT-PERP")
            self.event("liquidation", loss_usd=10.0, fee_usd=5.0)
        elif i == 4:
            ledger.add(now, "hosting_cost", "USD", "spot", -5.0, "fleet")
            self.event("loan_call")
        elif i == 5:
            self.event("insolvency")


def run_scripted(with_observers: bool = False):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = ScriptedContractBroker()
    cerebro.adddata(feed(PRICES), name="BTC")
    cerebro.addstrategy(ScriptedMiner)
    add_analyzers(cerebro)
    for name, analyzer in (("events", MarginEvents), ("mining", MiningPnL), ("hedge", HedgeEffectiveness),
                           ("equity", EquityRecorder)):
        cerebro.addanalyzer(analyzer, _name=name)
    if with_observers:
        for observer in (EquityUSD, MarginRatio, MarginEventMarkers):
            cerebro.addobserver(observer)
    return cerebro, cerebro.run()[0]


def test_margin_events_match_the_broker_log_one_to_one():
    _, strategy = run_scripted()
    analysis = strategy.analyzers.events.get_analysis()
    log = strategy.broker.events
    assert [r["kind"] for r in analysis.records] == ["margin_call", "liquidation", "loan_call", "insolvency"]
    assert len(analysis.records) == len(log)
    for record, event in zip(analysis.records, log, strict=True):
        expected = event.as_dict()
        expected["datetime"] = pd.Timestamp(expected.pop("time"), tz="UTC")  # broker times are naive UTC
        assert record == expected
    assert analysis.counts.margin_call == 1 and analysis.counts.liquidation == 1 and analysis.counts.ruin == 0
    assert (analysis.liquidation_loss_usd, analysis.liquidation_fee_usd) == (10.0, 5.0)
    assert (analysis.loan_calls, analysis.insolvency) == (1, True)
    # margin ratio >= 0.8 on bars 1, 2, 3 of 6 daily bars
    assert (analysis.warning_level, analysis.time_above_warning_days, analysis.time_above_warning_pct) == (
        0.8, 3.0, 50.0)


def test_mining_and_hedge_analyzers_read_the_ledger():
    _, strategy = run_scripted()
    mining = strategy.analyzers.mining.get_analysis()
    assert (mining.coins_mined, mining.mining_revenue_usd) == (1.0, 100.0)  # 1 coin at 100 USD when mined
    assert (mining.power_cost_usd, mining.hosting_cost_usd, mining.pool_fee_usd) == (20.0, 5.0, 0.0)
    assert mining.net_operating_cash_flow_usd == 75.0
    assert (mining.break_even_price_usd, mining.break_even_price_last_usd) == (25.0, 20.0)
    assert mining.curtailed_days == 2.5 and mining.curtailed_pct == pytest.approx(2.5 / 6 * 100, rel=1e-12)

    hedge = strategy.analyzers.hedge.get_analysis()
    assert (hedge.funding_paid_usd, hedge.funding_received_usd, hedge.fees_paid_usd) == (3.0, 1.0, 7.0)
    assert hedge.realized_total_usd == -10.0 and hedge.futures_pnl_usd == -10.0
    # the opening (no coins, nothing to price them) on the day before the first bar, then 1 coin held
    assert hedge.daily.index[0] == day(-1) and hedge.daily["coins_held"].tolist() == [0.0] + [1.0] * 6
    assert hedge.daily["price_usd"].tolist()[1:] == PRICES
    assert hedge.daily["hedge_pnl_usd"].tolist() == [0.0, 0.0, -5.0, 5.0, -10.0, -10.0, -10.0]
    assert (hedge.coins_held, hedge.exposure_usd) == (1.0, 120.0)
    # unhedged changes 0, +10, -20, +30, 0, 0; hedged changes exactly half of them: variance x 1/4
    assert hedge.variance_reduction_pct == pytest.approx(75.0, abs=1e-12)


def test_summary_counts_match_the_events_file(tmp_path):
    _, strategy = run_scripted()
    summary = strategy.analyzers.summary.get_analysis()
    required = ["final_equity_usd", "final_equity_coin", "total_return_pct", "cagr_pct", "max_drawdown_pct",
                "max_drawdown_usd", "max_drawdown_coin_pct", "longest_underwater_days", "sharpe", "sortino",
                "margin_calls", "liquidations", "liquidation_loss_usd", "loan_calls", "coins_mined",
                "mining_revenue_usd", "power_cost_usd", "funding_paid_usd", "fees_paid_usd",
                "hedge_variance_reduction_pct", "insolvent", "ledger_residual_usd"]
    assert set(required) <= set(summary)
    assert tuple(summary) == SUMMARY_KEYS
    assert summary.insolvent is True and summary.ledger_residual_usd == 0.0
    # the scripted insolvency on the last of six daily bars, never cured: one event, that bar's day
    assert (summary.insolvencies, summary.insolvent_days) == (1, 1.0)
    assert (summary.funding_paid_usd, summary.fees_paid_usd) == (3.0, 7.0)
    assert summary.hedge_variance_reduction_pct == pytest.approx(75.0, abs=1e-12)

    write_report(build_run_result(strategy), tmp_path, with_charts=False)
    events = pd.read_csv(tmp_path / "events.csv")
    assert summary.margin_calls == events["kind"].isin(event_stats.MARGIN_CALL_KINDS).sum() == 1
    assert summary.liquidations == events["kind"].isin(event_stats.LIQUIDATION_KINDS).sum() == 1
    assert summary.loan_calls == (events["kind"] == "loan_call").sum() == 1
    assert summary.liquidation_loss_usd == events.loc[events["kind"] == "liquidation", "loss_usd"].sum()
    ledger = pd.read_csv(tmp_path / "ledger.csv")
    assert len(ledger) == len(strategy.broker.ledger)
    equity = pd.read_csv(tmp_path / "equity.csv")
    assert equity["margin_ratio"].tolist() == RATIOS


def test_observers_record_and_cerebro_plot_renders(tmp_path):
    cerebro, strategy = run_scripted(with_observers=True)
    equity, ratio, markers = strategy.observers

    def values(line) -> np.ndarray:  # the line's buffer may be longer than the run
        return np.asarray(line.array[: len(PRICES)], dtype=float)

    assert values(equity.lines.equity_usd).tolist() == [10_000.0] * len(PRICES)
    assert values(ratio.lines.margin_ratio).tolist() == RATIOS
    assert values(ratio.lines.warning).tolist() == [0.8] * len(PRICES)
    margin_calls = values(markers.lines.margin_call)
    liquidations = values(markers.lines.liquidation)
    assert np.flatnonzero(~np.isnan(margin_calls)).tolist() == [1] and margin_calls[1] == 110.0
    assert np.flatnonzero(~np.isnan(liquidations)).tolist() == [3] and liquidations[3] == 120.0

    figure = cerebro.plot(iplot=False, style="line")[0][0]
    figure.savefig(tmp_path / "cerebro.png", dpi=50)
    image = mpimg.imread(tmp_path / "cerebro.png")
    assert float(image[..., :3].std()) > 0.05


# --- per-bar dispatch: a bar reaches only the analyzers that work per bar -----------------------------------
class _PerBarCount(Drawdown):
    """A Drawdown that also counts the bars it is called on (its own per-bar work)."""

    def start(self) -> None:
        super().start()
        self.bars = 0

    def next(self) -> None:
        self.bars += 1


class _Parent(HedgeEffectiveness):
    """A stop-only analyzer whose children work per bar: one of ours, and backtrader's own TimeReturn."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = _PerBarCount()
        self.returns = bt.analyzers.TimeReturn(timeframe=bt.TimeFrame.Days)


def test_bars_reach_only_the_analyzers_that_work_per_bar():
    prices = [100.0, 110.0, 99.0, 121.0, 120.0]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed(prices))
    cerebro.broker.setcash(1000.0)
    cerebro.addstrategy(BuyOnFirstBar, size=1.0)
    cerebro.addanalyzer(_Parent, _name="parent")
    cerebro.addanalyzer(MarginEvents, _name="events")
    strategy = cerebro.run()[0]
    parent, events = strategy.analyzers.parent, strategy.analyzers.events
    # the per-bar children were called on every bar, through a parent that does nothing per bar
    assert parent.counter.bars == len(prices)
    # 1 unit bought on bar 0 fills at bar 1's open (110); value = 1000 + (close - 110) from bar 1 on
    assert list(parent.returns.get_analysis().values()) == pytest.approx(
        [0.0, 0.0, -11.0 / 1000.0, 22.0 / 989.0, -1.0 / 1011.0], rel=1e-12)
    assert parent._bar_children == [parent.recorder, parent.counter, parent.returns]
    # stop-only analyzers without per-bar children are skipped (and still produce their analysis)
    assert events._next is events._prenext is events._nextstart
    assert events._next() is None and events._bar_children == []  # it shares the parent's recorder
    assert events.recorder is parent.recorder
    assert math.isnan(parent.get_analysis()["coins_held"])  # a plain BackBroker has no coin balance
