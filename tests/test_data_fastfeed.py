"""MinerFeed's fast read path (numpy columns, bulk preload, resolved tick names) gives exactly what
backtrader's PandasData gives for the same frame, in all four engine modes (preload x runonce)."""

from __future__ import annotations

import datetime as dt
import json

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from backtrader.utils.dateintern import date2num

import data
from analyzers.backtrader_analyzers import add_analyzers, build_run_result
from brokers.broker import MarginBroker
from data.feeds import EXTRA_LINES, MinerFeed, bar_date_numbers, build_feed_frame
from strategies.registry import policy_class

MODES = [(True, True), (True, False), (False, True), (False, False)]


class PandasMinerFeed(bt.feeds.PandasData):
    """The reference: stock PandasData reading the same lines (MinerFeed's definition without its fast path)."""

    lines = EXTRA_LINES
    params = tuple((name, -1) for name in EXTRA_LINES)


class RecordEverything(bt.Strategy):
    """Records the strategy's clock, every line and tick value per bar, and trades, so fills (which read the
    ticks) are compared too."""

    def next(self):
        feed = self.data
        row = [self.datetime[0], feed.datetime[0], feed.tick_open, feed.tick_high, feed.tick_low, feed.tick_close, feed.tick_last]
        row += [getattr(feed.lines, name)[0] for name in feed.getlinealiases()]
        row += [getattr(feed, name)[0] for name in feed.getlinealiases()]  # MinerFeed: instance attributes
        self.rows.append(row)
        if len(self) % 7 == 0:
            self.buy(size=0.1) if not self.position else self.close()

    def start(self):
        self.rows = []


def run_lines(feed_cls, frame, preload, runonce, exactbars=False, second=None, oldsync=False, **feed_kwargs):
    """``second``: a frame for a second feed of the same class (then data0's rows are recorded as the
    strategy's clock moves over both); ``oldsync``: backtrader's older loop, which moves data1 on with data0
    as its master."""
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce, exactbars=exactbars, oldsync=oldsync)
    cerebro.adddata(feed_cls(dataname=frame, **feed_kwargs))
    if second is not None:
        cerebro.adddata(feed_cls(dataname=second))
    cerebro.addstrategy(RecordEverything)
    cerebro.broker.setcash(1_000_000.0)
    strategy = cerebro.run()[0]
    return np.asarray(strategy.rows, dtype=float), cerebro.broker.getvalue()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Element-wise identical floats (NaN equals NaN)."""
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.fixture(scope="module")
def frame_1h(data_dir):
    ohlcv = data.load_ohlcv("BTC", "1h", "2020-05-01", "2020-05-20", venue="binance", data_dir=data_dir).frame
    network = data.load_network("BTC", "2020-03-01", "2020-06-01", data_dir=data_dir).frame
    funding = data.load_funding("BTC", venue="bitmex", start="2020-05-01", end="2020-05-21", data_dir=data_dir).frame
    return build_feed_frame(ohlcv, network, funding, "BTC")


@pytest.mark.parametrize(("preload", "runonce"), MODES)
def test_lines_ticks_and_fills_match_pandasdata(frame_1h, preload, runonce):
    frame = frame_1h.copy()
    frame.iloc[5, frame.columns.get_loc("hashprice")] = np.nan  # NaN cells pass through unchanged
    fast, fast_value = run_lines(MinerFeed, frame, preload, runonce)
    slow, slow_value = run_lines(PandasMinerFeed, frame, preload, runonce)
    assert len(fast) == len(frame) and same(fast, slow)
    assert np.isnan(fast[5, 7 + MinerFeed.lines.getlinealiases().index("hashprice")])
    assert fast_value == slow_value != 1_000_000.0  # it traded, at the same prices


@pytest.mark.parametrize("exactbars", [-1, 1])
def test_memory_saving_buffers_match_pandasdata(frame_1h, exactbars):
    """Memory-saving modes: -1 keeps the data full length (the fast advance, bar by bar without runonce);
    1 bounds every buffer and turns preload off (backtrader's own paths)."""
    fast, fast_value = run_lines(MinerFeed, frame_1h, True, True, exactbars=exactbars)
    slow, slow_value = run_lines(PandasMinerFeed, frame_1h, True, True, exactbars=exactbars)
    assert len(fast) == len(frame_1h) and same(fast, slow) and fast_value == slow_value


@pytest.mark.parametrize(("preload", "runonce", "oldsync"), [*((p, r, False) for p, r in MODES), (True, True, True)])
def test_two_feeds_with_gaps_match_pandasdata(frame_1h, preload, runonce, oldsync):
    """A second feed missing every third bar, which backtrader synchronises with the first: the fast advance
    moves each feed when its bar is due; with ``oldsync`` data1 is advanced against data0 as its master,
    which the fast advance leaves to backtrader."""
    sparse = frame_1h.iloc[[i for i in range(len(frame_1h)) if i % 3]]
    half = frame_1h.iloc[: len(frame_1h) // 2]
    fast, fast_value = run_lines(MinerFeed, half, preload, runonce, second=sparse, oldsync=oldsync)
    slow, slow_value = run_lines(PandasMinerFeed, half, preload, runonce, second=sparse, oldsync=oldsync)
    assert len(fast) >= len(half) - 1 and same(fast, slow) and fast_value == slow_value  # oldsync: data0 sets the length


@pytest.mark.parametrize(("preload", "runonce"), MODES)
def test_date_bounds_and_sub_hour_stamps_match_pandasdata(frame_1h, preload, runonce):
    # fromdate/todate make preload take backtrader's bar-by-bar path; 15-minute offsets the date2num path
    frame = frame_1h.iloc[:200].copy()
    frame.index = frame.index + pd.Timedelta(minutes=15)
    bounds = {"fromdate": dt.datetime(2020, 5, 2, 6), "todate": dt.datetime(2020, 5, 7, 12)}
    fast, fast_value = run_lines(MinerFeed, frame, preload, runonce, **bounds)
    slow, slow_value = run_lines(PandasMinerFeed, frame, preload, runonce, **bounds)
    assert 0 < len(fast) < len(frame) and same(fast, slow) and fast_value == slow_value
    assert bt.num2date(fast[0, 0]) == bt.num2date(fast[0, 1]) == dt.datetime(2020, 5, 2, 6, 15)


def test_lines_are_attributes_of_the_feed_unless_the_class_has_the_name(frame_1h):
    class WithVolumeMethod(MinerFeed):
        def volume(self) -> str:  # a class attribute named like a line keeps its meaning
            return "method"

    feed = MinerFeed(dataname=frame_1h)
    assert "close" in vars(feed) and "funding_rate" in vars(feed) and "datetime" in vars(feed)
    assert all(getattr(feed, name) is getattr(feed.lines, name) for name in feed.getlinealiases())
    other = WithVolumeMethod(dataname=frame_1h)
    assert other.volume() == "method" and "volume" not in vars(other) and other.close is other.lines.close


def test_bar_date_numbers_equal_date2num():
    stamps = pd.DatetimeIndex(["1969-12-31 23:00", "1970-01-01 00:00", "2011-08-18", "2020-02-29 13:00",
                               "2020-05-12 13:00:00.000001", "2021-06-09 23:59:59", "2024-12-31 07:30"], tz="UTC")
    expected = [date2num(stamp.to_pydatetime()) for stamp in stamps]
    assert bar_date_numbers(stamps).tolist() == expected
    naive = stamps.tz_localize(None)
    assert bar_date_numbers(naive).tolist() == expected
    hourly = pd.date_range("2017-08-17 04:00", periods=40_000, freq="h", tz="UTC")
    assert bar_date_numbers(hourly).tolist() == [date2num(s.to_pydatetime()) for s in hourly]


def text(value) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


def run_miner(feed_cls, frame, preload, runonce):
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce)
    cerebro.adddata(feed_cls(dataname=frame, name="BTC"))
    cerebro.broker = MarginBroker(cash=0.0)
    cerebro.addstrategy(policy_class("static_hedge"), hedge_ratio=1.0, leverage=5.0, roll_days=7.0)
    add_analyzers(cerebro, "BTC")
    return build_run_result(cerebro.run()[0])


@pytest.mark.parametrize(("preload", "runonce"), MODES)
def test_hedged_miner_identical_on_both_feeds(data_dir, preload, runonce):
    ohlcv = data.load_ohlcv("BTC", "1d", "2020-01-01", "2021-07-01", venue="binance", data_dir=data_dir).frame
    network = data.load_network("BTC", "2019-11-01", "2021-07-02", data_dir=data_dir).frame
    funding = data.load_funding("BTC", venue="binance", start="2020-01-01", end="2021-07-02", data_dir=data_dir).frame
    frame = build_feed_frame(ohlcv, network, funding, "BTC")
    fast = run_miner(MinerFeed, frame, preload, runonce)
    slow = run_miner(PandasMinerFeed, frame, preload, runonce)
    for part in ("summary", "trades", "ledger", "events"):  # repr-exact floats; NaN equals NaN
        assert text(getattr(fast, part)) == text(getattr(slow, part)), part
    assert fast.equity.equals(slow.equity) and len(fast.trades) > 5 and fast.summary["funding_paid_usd"] > 0
