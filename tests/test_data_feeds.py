"""data.feeds: the no-lookahead alignment, funding per bar, and MinerFeed through cerebro in every engine mode."""

from __future__ import annotations

import datetime as dt

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import data
from data.feeds import EXTRA_LINES, FastPandasData, MinerFeed, build_feed_frame
from minehedge.errors import DataError
from mining.revenue import network_hashprice


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def btc_2020(data_dir):
    ohlcv_1h = data.load_ohlcv("BTC", "1h", "2020-05-01", "2020-06-01", venue="binance", data_dir=data_dir).frame
    network = data.load_network("BTC", "2020-01-01", "2021-01-01", data_dir=data_dir).frame
    funding = data.load_funding("BTC", venue="bitmex", start="2020-01-01", end="2021-01-01", data_dir=data_dir).frame
    return ohlcv_1h, network, funding


def test_network_value_visible_from_next_day_only(btc_2020):
    ohlcv, network, funding = btc_2020
    frame = build_feed_frame(ohlcv, network, funding, "BTC")
    # Every bar sees the values of the UTC day before the day it opens in: never its own day.
    described = frame.index.normalize() - pd.Timedelta(days=1)
    np.testing.assert_array_equal(frame["difficulty"].to_numpy(), network["difficulty"].reindex(described).to_numpy())
    np.testing.assert_array_equal(frame["subsidy"].to_numpy(), network["subsidy_per_block"].reindex(described).to_numpy())
    # Around the 2020-05-11 halving: 12.5 from the 05-10 value all day on 05-11; 6.25 (05-12's) only on 05-13.
    assert frame.loc[t("2020-05-11 23:00"), "subsidy"] == 12.5
    assert frame.loc[t("2020-05-12 00:00"), "subsidy"] == 1781.25 / 157
    assert frame.loc[t("2020-05-13 00:00"), "subsidy"] == 6.25
    hashprice = network_hashprice(network, "BTC")
    assert frame.loc[t("2020-05-12 13:00"), "hashprice"] == hashprice.loc[t("2020-05-11"), "hashprice_usd_per_unit_day"]
    assert frame.loc[t("2020-05-12 13:00"), "hashrate"] == network.loc[t("2020-05-11"), "hashrate_hs"]


def test_missing_network_day_gives_nan_not_stale_values(btc_2020):
    ohlcv, network, _ = btc_2020
    holed = network.drop(t("2020-05-20"))
    frame = build_feed_frame(ohlcv, holed, None, "BTC", missing_network="nan")
    assert frame.loc[t("2020-05-21"):t("2020-05-21 23:00"), "difficulty"].isna().all()
    assert frame.loc[t("2020-05-20 23:00"), "difficulty"] == network.loc[t("2020-05-19"), "difficulty"]
    assert frame.loc[t("2020-05-22 00:00"), "difficulty"] == network.loc[t("2020-05-21"), "difficulty"]
    assert frame["funding_paid"].isna().all() and frame["funding_rate"].isna().all()  # no series: unknown
    lag0 = build_feed_frame(ohlcv, network, None, "BTC", publication_lag="0h")
    assert lag0.loc[t("2020-05-12 13:00"), "difficulty"] == network.loc[t("2020-05-12"), "difficulty"]
    with pytest.raises(DataError, match="looks ahead"):
        build_feed_frame(ohlcv, network, None, "BTC", publication_lag="-1h")


def test_missing_network_values_stop_the_feed_naming_days_and_columns(btc_2020):
    ohlcv, network, _ = btc_2020
    with pytest.raises(DataError) as missing_day:
        build_feed_frame(ohlcv, network.drop(t("2020-05-20")), None, "BTC")
    assert str(missing_day.value).startswith(
        "BTC network data missing for 24 bar(s), 2020-05-21 00:00:00+00:00 -> 2020-05-21 23:00:00+00:00: their "
        "mining revenue is unknown (a bar sees the network values of the UTC day before, publication lag 24 h). "
        "Network days: 2020-05-20 (1 day(s)): no network row (from coinmetrics:")
    blanked = network.copy()
    blanked.loc[t("2020-05-10"):t("2020-05-12"), "price_usd"] = np.nan
    blanked.loc[t("2020-05-12"), "fees_per_block"] = np.nan
    with pytest.raises(DataError, match=r"missing for 72 bar\(s\), 2020-05-11 00:00:00\+00:00 -> 2020-05-13 "
                       r"23:00:00\+00:00.*Network days: 2020-05-10 -> 2020-05-11 \(2 day\(s\)\): NaN price_usd "
                       r"\(PriceUSD\); 2020-05-12 \(1 day\(s\)\): NaN price_usd \(PriceUSD\), fees_per_block "
                       r"\(FeeTotNtv / BlkCnt\) \(from"):
        build_feed_frame(ohlcv, blanked, None, "BTC")


def test_a_run_on_nan_network_lines_stops_instead_of_mining_nothing(btc_2020):
    from minehedge import api

    ohlcv, network, _ = btc_2020
    frame = build_feed_frame(ohlcv, network.drop(t("2020-05-20")), None, "BTC", missing_network="nan")
    market = api.Market("BTC", "1h", frame, None)
    with pytest.raises(DataError, match=r"no hashprice or price on 2020-05-21 \(1 fleet days\)"):
        api.run_policy(market, "unhedged", {"fleet": "S19Pro:10@2020-01-01"})


def test_funding_settlements_land_in_their_bars(btc_2020, data_dir):
    ohlcv, network, funding = btc_2020
    frame = build_feed_frame(ohlcv, network, funding, "BTC")
    paid = frame.loc[frame["funding_paid"] != 0]
    assert set(paid.index.hour) <= {4, 12, 20}  # BitMEX settles at 04/12/20 UTC
    assert frame.loc[t("2020-05-10 12:00"), "funding_paid"] == funding.loc[t("2020-05-10 12:00"), "funding_rate"]
    assert frame["funding_paid"].sum() == pytest.approx(
        funding.loc[t("2020-05-01"):t("2020-05-31 23:59"), "funding_rate"].sum(), rel=1e-12)
    daily = data.load_ohlcv("BTC", "1d", "2021-01-01", "2021-01-08", venue="binance", data_dir=data_dir).frame
    binance = data.load_funding("BTC", venue="binance", start="2021-01-01", end="2021-01-08", data_dir=data_dir)
    net = data.load_network("BTC", "2020-12-01", "2021-01-08", data_dir=data_dir).frame
    day_frame = build_feed_frame(daily, net, binance.frame, "BTC")
    assert day_frame.loc[t("2021-01-03"), "funding_rate"] == 0.0013126933333333334  # daily mean per 8h
    assert day_frame.loc[t("2021-01-03"), "funding_paid"] == pytest.approx(3 * 0.0013126933333333334, rel=1e-15)
    assert all(day_frame[c].dtype == "float64" for c in day_frame.columns)


def test_build_feed_frame_names_a_missing_network_or_a_loaders_result(btc_2020):
    ohlcv, network, _ = btc_2020
    with pytest.raises(DataError, match=r"^build_feed_frame: network= must be a DataFrame \(data.load_network"
                                        r"\(\.\.\.\)\.frame\), got None; it is required: the mining lines come"):
        build_feed_frame(ohlcv, None, None, "BTC")
    result = data.load_network("BTC", "2020-01-01", "2020-02-01", data_dir=data.resolve_data_dir(None))
    with pytest.raises(DataError, match=r"network= must be a DataFrame .*, got a LoadResult; pass its \.frame\.$"):
        build_feed_frame(ohlcv, result, None, "BTC")


def test_daily_bars_off_midnight_utc_are_refused_naming_the_first(btc_2020):
    # A daily frame indexed at Europe/Berlin midnight is 23:00 UTC: MarginBroker would book each bar's
    # funding on the UTC day of its date, a day off. The CSV loader's rule (data.validate.grid_errors).
    berlin = user_bars([100.0, 101.0, 102.0], start="2020-05-02", tz="Europe/Berlin")
    with pytest.raises(DataError, match=r"^data 'BTC': bars not on the 1d UTC grid \(a 1d bar opens at 00:00 UTC; "
                                        r"were the times written in another zone\?\), 3 row\(s\): 2020-05-02 "
                                        r"00:00:00\+02:00; "):
        MinerFeed(dataname=berlin, name="BTC")
    _, network, _ = btc_2020
    with pytest.raises(DataError, match=r"^build_feed_frame: ohlcv: bars not on the 1d UTC grid .*, 3 row\(s\): "
                                        r"2020-05-01 22:00:00\+00:00; "):
        build_feed_frame(berlin, network, None, "BTC")
    # the same days at UTC midnight load; bars under a day keep their own times (their span starts there)
    assert bars_loaded(MinerFeed(dataname=user_bars([100.0, 101.0, 102.0], start="2020-05-02"))) == [100.0, 101.0,
                                                                                                     102.0]
    quarter_past = user_bars([100.0, 101.0, 102.0], start="2020-05-02 00:15", freq="1h")
    assert bars_loaded(MinerFeed(dataname=quarter_past)) == [100.0, 101.0, 102.0]


class LongFromTheFirstBar(bt.Strategy):
    def next(self):
        if len(self) == 1:
            self.buy(size=1)  # fills at the second bar's open


def funding_of_a_long(feed) -> tuple[pd.DataFrame, list[str]]:
    """The funding ledger rows and the broker's assumptions of 1 BTC held long on binance_usdm."""
    from brokers.broker import MarginBroker
    from brokers.commission import LinearFuturesCommInfo

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed, name="BTC")
    cerebro.broker = MarginBroker(cash=100_000.0)
    cerebro.broker.addcommissioninfo(LinearFuturesCommInfo(venue="binance_usdm", leverage=2))
    cerebro.addstrategy(LongFromTheFirstBar)
    cerebro.run()
    ledger = pd.DataFrame(cerebro.broker.ledger.to_records())
    return ledger[ledger["kind"] == "funding"], list(cerebro.broker.assumptions)


def test_a_feed_built_without_funding_pays_the_venues_constant_not_zero(data_dir):
    from brokers.venues import load_venue

    ohlcv = data.load_ohlcv("BTC", "1d", "2021-01-01", "2021-03-01", venue="binance", data_dir=data_dir).frame
    network = data.load_network("BTC", "2020-12-01", "2021-03-01", data_dir=data_dir).frame
    frame = build_feed_frame(ohlcv, network, None, "BTC")
    assert frame["funding_rate"].isna().all() and frame["funding_paid"].isna().all()
    rows, assumptions = funding_of_a_long(MinerFeed(dataname=frame))
    # held from the second bar on: its three 8h settlements a day, each on 1 BTC at the day's close
    rate = load_venue("binance_usdm").default_funding_rate
    assert rate > 0 and len(rows) == 3 * (len(frame) - 1)
    assert rows["amount"].sum() == pytest.approx(-3 * rate * frame["close"].iloc[1:].sum(), rel=1e-12)
    assert len(assumptions) == 1 and assumptions[0].startswith(
        f"funding: constant rate {rate:.6%} per 8h for BTC wherever no funding data (first at 2021-01-02 00:00")
    # a series that ends early: the bars after its last settlement's are unknown too, not 0
    funding = data.load_funding("BTC", venue="binance", start="2021-01-01", end="2021-01-31",
                                data_dir=data_dir).frame
    last = funding.index.max()
    partial = build_feed_frame(ohlcv, network, funding, "BTC")
    beyond = partial.index > last
    assert beyond.sum() == (frame.index > last).sum() > 0
    assert partial.loc[beyond, "funding_rate"].isna().all() and partial.loc[~beyond, "funding_rate"].notna().all()
    rows, assumptions = funding_of_a_long(MinerFeed(dataname=partial))
    after = rows[pd.to_datetime(rows["datetime"], utc=True) > last]
    assert len(after) == 3 * beyond.sum()
    assert after["amount"].sum() == pytest.approx(-3 * rate * partial.loc[beyond, "close"].sum(), rel=1e-12)
    assert assumptions[0].endswith(f"(first at {(last + pd.Timedelta(days=1)).floor('D'):%Y-%m-%d %H:%M} UTC)")


def _bar_of(feed) -> tuple[int, int]:
    return feed._timeframe, feed._compression


def test_minerfeed_reads_its_bar_size_from_the_frame(btc_2020, data_dir):
    ohlcv, network, funding = btc_2020
    hourly = build_feed_frame(ohlcv, network, funding, "BTC")
    four = data.load_ohlcv("BTC", "4h", "2020-05-01", "2020-05-08", venue="binance", data_dir=data_dir).frame
    daily = data.load_ohlcv("BTC", "1d", "2020-05-01", "2020-05-08", venue="binance", data_dir=data_dir).frame
    assert _bar_of(MinerFeed(dataname=hourly)) == (bt.TimeFrame.Minutes, 60)
    assert _bar_of(MinerFeed(dataname=build_feed_frame(four, network, funding, "BTC"))) == (bt.TimeFrame.Minutes, 240)
    assert _bar_of(MinerFeed(dataname=build_feed_frame(daily, network, funding, "BTC"))) == (bt.TimeFrame.Days, 1)
    # a gap does not change the bar size: the smallest spacing is the bar
    assert _bar_of(MinerFeed(dataname=hourly.drop(hourly.index[3:10]))) == (bt.TimeFrame.Minutes, 60)
    # one bar: build_feed_frame's timeframe travels in attrs
    one = build_feed_frame(four.iloc[:1], network, funding, "BTC", timeframe="4h")
    assert _bar_of(MinerFeed(dataname=one)) == (bt.TimeFrame.Minutes, 240)
    one.attrs.clear()
    with pytest.raises(DataError, match="one-bar frame .* pass timeframe= and compression="):
        MinerFeed(dataname=one)
    # an explicit bar size must agree with the bars
    assert _bar_of(MinerFeed(dataname=hourly, timeframe=bt.TimeFrame.Minutes, compression=60)) == (4, 60)
    with pytest.raises(DataError, match=r"timeframe=Days x compression=1 \(1 days 00:00:00\) does not match the "
                                        r"frame's bars \(0 days 01:00:00 apart\); pass timeframe=bt.TimeFrame."
                                        r"Minutes, compression=60"):
        MinerFeed(dataname=hourly, timeframe=bt.TimeFrame.Days)


# ---------------------------------------------------------------------------------- a user's own frame


def user_bars(closes: list[float], start: str = "2021-01-01", freq: str = "1D", tz: str | None = "UTC"):
    """A user's OHLCV frame: open = high = low = close, volume 1."""
    index = pd.date_range(start, periods=len(closes), freq=freq, tz=tz)
    return pd.DataFrame({c: closes for c in ("open", "high", "low", "close")}, index=index,
                        dtype=float).assign(volume=1.0)


def bars_loaded(feed) -> list[float]:
    """The closes the feed delivered in a cerebro run."""
    seen: list[float] = []

    class Record(bt.Strategy):
        def next(self):
            seen.append(self.data.close[0])

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed, name="BTC")
    cerebro.addstrategy(Record)
    cerebro.run()
    return seen


@pytest.mark.parametrize("feed_cls", [FastPandasData, MinerFeed])
def test_a_nan_or_non_positive_price_in_a_users_frame_stops_the_feed(feed_cls):
    # One NaN close used to turn MarginBroker's cash NaN for the rest of the run, without a word.
    frame = user_bars([100.0, 101.0, 102.0, 103.0, 104.0])
    frame.loc[t("2021-01-03"), "close"] = np.nan
    with pytest.raises(DataError, match=r"^data 'BTC': NaN close, 1 row\(s\): 2021-01-03 00:00:00\+00:00\. A broker "
                                        r"cannot fill or value a position at such a price; .*validate_ohlcv"):
        bars_loaded(feed_cls(dataname=frame))
    frame = user_bars([100.0, 101.0, 102.0, 103.0, 104.0])
    frame.loc[t("2021-01-04"):, "low"] = [-5.0, 0.0]
    with pytest.raises(DataError, match=r"^data 'BTC': non-positive low, 2 row\(s\): 2021-01-04 00:00:00\+00:00 "
                                        r"low=-5; 2021-01-05 00:00:00\+00:00 low=0\. "):
        bars_loaded(feed_cls(dataname=frame))
    # rows outside fromdate/todate are never loaded, so they are not checked
    assert bars_loaded(feed_cls(dataname=frame, todate=dt.datetime(2021, 1, 3))) == [100.0, 101.0, 102.0]
    # only prices: volume and a MinerFeed's extra lines (network, funding) may be NaN
    frame = user_bars([100.0, 101.0, 102.0]).assign(volume=np.nan, hashprice=[0.1, np.nan, 0.3],
                                                    funding_rate=np.nan)
    assert bars_loaded(feed_cls(dataname=frame)) == [100.0, 101.0, 102.0]


def test_the_price_check_names_the_users_column():
    frame = user_bars([100.0, 101.0, 102.0]).rename(columns={"close": "Close"})
    frame.loc[t("2021-01-02"), "Close"] = -1.5
    with pytest.raises(DataError, match=r"non-positive Close, 1 row\(s\): 2021-01-02 00:00:00\+00:00 Close=-1.5"):
        bars_loaded(FastPandasData(dataname=frame, close="Close"))


class HashpriceTrend(bt.Strategy):
    """Holds 0.5 BTC while the (lagged) hashprice is above its 10-day mean; records what it saw."""

    def __init__(self):
        self.sma = bt.indicators.SimpleMovingAverage(self.data.hashprice, period=10)
        self.seen = []

    def next(self):
        feed = self.data
        self.seen.append((bt.num2date(feed.datetime[0]).isoformat(), feed.close[0], feed.hashprice[0],
                          feed.coins_per_unit_day[0], feed.difficulty[0], feed.funding_paid[0], self.sma[0]))
        if not self.position and feed.hashprice[0] > self.sma[0]:
            self.buy(size=0.5)
        elif self.position and feed.hashprice[0] < self.sma[0]:
            self.close()


def run(frame: pd.DataFrame, preload: bool, runonce: bool, plot_to=None):
    cerebro = bt.Cerebro(preload=preload, runonce=runonce)
    cerebro.adddata(MinerFeed(dataname=frame))
    cerebro.addstrategy(HashpriceTrend)
    cerebro.broker.setcash(100_000.0)
    strategy = cerebro.run()[0]
    if plot_to is not None:
        figure = cerebro.plot(iplot=False, volume=False)[0][0]
        figure.savefig(plot_to, dpi=60)
    return cerebro.broker.getvalue(), strategy.seen


def test_daily_backtest_identical_in_all_engine_modes_and_plots(data_dir, tmp_path):
    ohlcv = data.load_ohlcv("BTC", "1d", "2020-01-01", "2021-01-01", venue="binance", data_dir=data_dir).frame
    network = data.load_network("BTC", "2019-12-01", "2021-01-01", data_dir=data_dir).frame
    funding = data.load_funding("BTC", venue="binance", start="2020-01-01", end="2021-01-01", data_dir=data_dir)
    frame = build_feed_frame(ohlcv, network, funding.frame, "BTC")
    assert set(EXTRA_LINES) <= set(frame.columns) and not frame.isna().any().any()
    png = tmp_path / "feed.png"
    results = {(p, r): run(frame, p, r, png if (p, r) == (True, True) else None)
               for p in (True, False) for r in (True, False)}
    value, seen = results[(True, True)]
    assert len(seen) == len(frame) - 9  # the SMA needs 10 bars
    assert seen[0][0] == "2020-01-10T00:00:00" and seen[0][2] == frame["hashprice"].iloc[9]
    assert value != 100_000.0  # it traded
    for mode, (other_value, other_seen) in results.items():
        assert other_value == value and other_seen == seen, mode
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(image[..., :3].std()) > 0.01  # not blank
