"""Download paths without network: yfinance and Coin Metrics monkeypatched with real-shaped responses,
the offline errors, and the disk cache (atomic write, corrupt file detected and re-fetched)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
import pytest
import requests
import yfinance

import data
from data import cache, yahoo
from minehedge.errors import ConfigError, DataError, DataUnavailableError

PRICES = ["Adj Close", "Close", "High", "Low", "Open", "Volume"]


def yf_frame(symbol: str, index: pd.DatetimeIndex, close: np.ndarray) -> pd.DataFrame:
    """What yfinance 1.x ``download(..., auto_adjust=False)`` returns: (Price, Ticker) MultiIndex columns."""
    columns = pd.MultiIndex.from_product([PRICES, [symbol]], names=["Price", "Ticker"])
    values = np.column_stack([close * 0.5, close, close + 2, close - 2, close - 1, np.full(len(close), 10.0)])
    frame = pd.DataFrame(values, index=index, columns=columns)
    frame.index.name = "Datetime" if index.tz is not None else "Date"
    return frame


@pytest.fixture
def no_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_yf(monkeypatch):
    calls = []

    def download(tickers, **kwargs):
        calls.append((tickers, kwargs))
        start, end = pd.Timestamp(kwargs["start"]), pd.Timestamp(kwargs["end"])
        if kwargs["interval"] == "1d":  # daily: naive dates (ignore_tz=True for day+ intervals)
            index = pd.date_range(start, end, freq="1D", inclusive="left")
        else:  # intraday: tz-aware in the exchange zone, UTC for crypto
            index = pd.date_range(start, end, freq="1h", inclusive="left", tz="UTC")
        # close = 100 + bars since 2024-01-01: a bar's prices do not depend on the range downloaded
        step = pd.Timedelta(days=1) if kwargs["interval"] == "1d" else pd.Timedelta(hours=1)
        position = (index.tz_localize(None) - pd.Timestamp("2024-01-01")) // step
        return yf_frame(tickers, index, 100.0 + np.asarray(position, dtype=float))

    monkeypatch.setattr(yfinance, "download", download)
    return calls


def test_yfinance_daily_multiindex_no_adjust_and_cache(no_data_dir, fake_yf):
    result = data.load_ohlcv("BTC", "1d", "2024-01-01", "2024-01-06")
    frame = result.frame
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC") and len(frame) == 5
    assert frame["close"].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]  # Close, not Adj Close (x0.5)
    tickers, kwargs = fake_yf[0]
    assert tickers == "BTC-USD" and kwargs["auto_adjust"] is False and kwargs["interval"] == "1d"
    assert result.info.source == "yfinance" and "cached at" in " ".join(result.info.notes)
    assert len(list(no_data_dir.glob("yfinance_BTC-USD_1d_*.csv"))) == 1
    again = data.load_ohlcv("BTC", "1d", "2024-01-01", "2024-01-06")
    assert len(fake_yf) == 1 and "cache hit" in again.info.notes[0]
    pd.testing.assert_frame_equal(again.frame, frame)


def test_yfinance_4h_resampled_from_1h_within_730_days(no_data_dir, fake_yf, monkeypatch):
    monkeypatch.setattr(yahoo, "_now", lambda: pd.Timestamp("2026-01-10 12:00", tz="UTC"))
    result = data.load_ohlcv("ETH", "4h", "2026-01-01", "2026-01-02")
    assert fake_yf[0][1]["interval"] == "1h" and fake_yf[0][0] == "ETH-USD"
    assert len(result.frame) == 6 and result.info.resampled_from == "1h"
    first = result.frame.iloc[0]
    # 17,544 hours from 2024-01-01 to 2026-01-01: closes 17,644 .. 17,647 in the first 4h bar
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == \
        (17643.0, 17649.0, 17642.0, 17647.0, 40.0)
    with pytest.raises(ConfigError, match="last 730 days only"):
        data.load_ohlcv("ETH", "1h", "2023-01-01", "2023-02-01")


def test_history_before_the_start_from_yfinance_clipped_to_its_window_and_none_offline(no_data_dir, fake_yf,
                                                                                      monkeypatch):
    monkeypatch.setattr(yahoo, "_now", lambda: pd.Timestamp("2026-01-10 12:00", tz="UTC"))
    start = pd.Timestamp("2025-01-01", tz="UTC")
    run = data.load_ohlcv("BTC", "1d", start, "2025-02-01")
    history = data.load_history(run, start, pd.Timedelta(days=10))
    assert list(history.frame.index) == list(pd.date_range("2024-12-22", periods=10, freq="1D", tz="UTC"))
    # downloaded with the bad-tick rule's 7 neighbours each side (window 5 + 2)
    assert fake_yf[-1][1]["start"] == "2024-12-15" and history.info.reason.startswith("10 bars")
    # hourly: Yahoo serves the 730 days to 2026-01-10, from 2024-01-12 (2024 is a leap year); not an error
    hourly = data.load_ohlcv("BTC", "1h", "2024-01-13", "2024-01-14")
    history = data.load_history(hourly, pd.Timestamp("2024-01-13", tz="UTC"), pd.Timedelta(days=366))
    assert (history.frame.index[0], len(history.frame)) == (pd.Timestamp("2024-01-12", tz="UTC"), 24)
    # 4h: Yahoo's 1h bars resampled by fetch_ohlcv, validated as the 4h bars they are (no 1h "gaps")
    four = data.load_ohlcv("BTC", "4h", "2026-01-05", "2026-01-06")
    history = data.load_history(four, pd.Timestamp("2026-01-05", tz="UTC"), pd.Timedelta(days=2))
    assert list(history.frame.index) == list(pd.date_range("2026-01-03", periods=12, freq="4h", tz="UTC"))
    assert history.info.report.gap_count == 0 and history.frame["volume"].iloc[0] == 40.0
    # offline, with the run's range cached: no history, said why, no error
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: pd.DataFrame())
    cached = data.load_ohlcv("BTC", "1d", start, "2025-02-01")
    none = data.load_history(cached, start, pd.Timedelta(days=20))
    assert none.frame.empty and none.info.reason.startswith("none: yfinance returned no data for BTC-USD")


def test_yfinance_short_range_judged_with_downloaded_neighbours(no_data_dir, monkeypatch):
    def download(tickers, **kwargs):
        index = pd.date_range(kwargs["start"], kwargs["end"], freq="1D", inclusive="left")
        frame = yf_frame(tickers, index, np.full(len(index), 100.0))
        frame.loc[pd.Timestamp("2024-01-10"), ("Low", tickers)] = 0.5  # a bad tick
        return frame

    monkeypatch.setattr(yfinance, "download", download)
    monkeypatch.setattr(yahoo, "_now", lambda: pd.Timestamp("2024-03-01 12:00", tz="UTC"))
    result = data.load_ohlcv("BTC", "1d", "2024-01-10", "2024-01-12")  # two bars: too few alone
    assert result.frame["low"].tolist() == [99.0, 98.0]  # the bad one masked to the body (open 99, close 100)
    assert [(t.field, t.value) for t in result.report.bad_ticks] == [("low", 0.5)]
    assert result.report.unchecked == []


@pytest.mark.parametrize("empty", [
    pd.DataFrame(),  # yfinance offline: logs "Failed download" and returns an empty frame
    pd.DataFrame(columns=pd.MultiIndex.from_product([PRICES, ["BTC-USD"]], names=["Price", "Ticker"])),
])
def test_offline_empty_frame_becomes_clear_error(no_data_dir, monkeypatch, empty):
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: empty)
    with pytest.raises(DataUnavailableError, match=r"MINEHEDGE_DATA_DIR.*--data-dir.*network access"):
        data.load_ohlcv("BTC", "1d", "2024-01-01", "2024-02-01")
    assert not list(no_data_dir.glob("*.csv"))  # nothing cached


def test_corrupt_cache_detected_reported_and_refetched(no_data_dir, fake_yf, caplog):
    data.load_ohlcv("BTC", "1d", "2024-01-01", "2024-01-04")
    (path,) = no_data_dir.glob("*.csv")
    text = path.read_text()
    path.write_text(text.replace("101", "999", 1))  # a silent edit: same format, wrong numbers
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        result = data.load_ohlcv("BTC", "1d", "2024-01-01", "2024-01-04")
    assert len(fake_yf) == 2 and result.frame["close"].tolist() == [100.0, 101.0, 102.0]
    assert "checksum mismatch" in caplog.text and "re-fetched" in result.info.notes[0]
    path.write_text("date,open\n2024-01-01,1\n")  # no header at all
    read = cache.read_cached(path.name, no_data_dir)
    assert read.frame is None and "header missing" in read.note and not path.exists()


def test_yfinance_end_past_now_is_clamped_to_complete_bars(no_data_dir, fake_yf, monkeypatch):
    monkeypatch.setattr(yahoo, "_now", lambda: pd.Timestamp("2024-03-10 09:30", tz="UTC"))
    daily = data.load_ohlcv("BTC", "1d", "2024-03-01", "2024-03-12")  # "to get everything"
    assert daily.frame.index[-1] == pd.Timestamp("2024-03-09", tz="UTC") and len(daily.frame) == 9
    assert daily.info.notes[0] == ("end 2024-03-12 00:00:00+00:00 clamped to 2024-03-10 00:00:00+00:00: the 1d "
                                   "bar opening then is still forming")
    assert fake_yf[-1][1]["end"] == "2024-03-10"  # the forming 03-10 bar is never downloaded, so cached safely
    assert [p.name for p in no_data_dir.glob("*.csv")] == ["yfinance_BTC-USD_1d_20240223T0000_20240310T0000.csv"]
    # hourly bars reaching today: Yahoo serves whole days, so today's partial hours come too; not cached
    hourly = data.load_ohlcv("BTC", "1h", "2024-03-09", "2024-03-11")
    assert hourly.frame.index[-1] == pd.Timestamp("2024-03-10 08:00", tz="UTC")
    assert hourly.info.notes[-1] == ("downloaded BTC-USD 1h from yfinance, not cached: the range reaches today "
                                     "(2024-03-10), whose 1h bars are still forming; it is downloaded again next time")
    again = data.load_ohlcv("BTC", "1h", "2024-03-09", "2024-03-11")
    assert len(fake_yf) == 3 and "cache hit" not in " ".join(again.info.notes)
    assert len(list(no_data_dir.glob("*.csv"))) == 1


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    frame = pd.DataFrame({"close": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, tz="UTC").as_unit("ns"))
    target = cache.write_cached(frame, "k.csv", tmp_path)
    before = target.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.write_cached(frame * 2, "k.csv", tmp_path)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["k.csv"]
    monkeypatch.undo()
    read = cache.read_cached("k.csv", tmp_path)
    pd.testing.assert_frame_equal(read.frame, frame, check_freq=False, check_names=False)


def test_stale_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    stale, live = tmp_path / ".k.csv.abc123.tmp", tmp_path / ".k.csv.def456.tmp"
    stale.write_text("half a file")
    live.write_text("a write in progress")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    frame = pd.DataFrame({"close": [1.0]}, index=pd.date_range("2024-01-01", periods=1, tz="UTC").as_unit("ns"))
    cache.write_cached(frame, "other.csv", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".k.csv.def456.tmp", "other.csv"]


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path))
    assert cache.cache_dir() == tmp_path and cache.cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("MINEHEDGE_CACHE_DIR")
    assert cache.cache_dir().parts[-2:] == ("data", "cache")
    key = cache.cache_key("yfinance", "BTC-USD", "1d", "2024-01-01", None)
    assert key == "yfinance_BTC-USD_1d_20240101T0000_open.csv"


# --- Coin Metrics -----------------------------------------------------------------------------------------

class FakeResponse:
    def __init__(self, payload, status=200):
        self._payload, self.status_code, self.text = payload, status, str(payload)

    def json(self):
        return self._payload


def cm_row(day: str, price: str, hashrate: str, blocks: str, issuance: str, fees: str, supply: str) -> dict:
    # Values are strings in the real API; DiffMean is not served for BTC by the community tier.
    return {"asset": "btc", "time": f"{day}T00:00:00.000000000Z", "PriceUSD": price, "HashRate": hashrate,
            "BlkCnt": blocks, "IssTotNtv": issuance, "FeeTotNtv": fees, "SplyCur": supply}


PAGE_1 = {
    "data": [cm_row("2020-05-10", "8715.033293", "136097600.0", "170", "2125", "62.216524", "18373220.32"),
             cm_row("2020-05-11", "8591.652884", "125690200.0", "157", "1781.25", "92.138056", "18375001.57")],
    "next_page_token": "MjAyMC0wNS0xMg",
    "next_page_url": "https://community-api.coinmetrics.io/v4/timeseries/asset-metrics?assets=btc&next_page_token=MjAyMC0wNS0xMg",
}
PAGE_2 = {"data": [cm_row("2020-05-12", "8817.250681", "116883900.0", "146", "912.5", "107.941338", "18375914.07")]}


def test_coinmetrics_paging_and_network_contract(no_data_dir, monkeypatch):
    calls = []

    def get(url, params=None, timeout=None):
        calls.append((url, params))
        return FakeResponse(PAGE_1 if len(calls) == 1 else PAGE_2)

    monkeypatch.setattr(requests, "get", get)
    result = data.load_network("BTC", "2020-05-10", "2020-05-13")
    net = result.frame
    assert calls[0][0] == "https://community-api.coinmetrics.io/v4/timeseries/asset-metrics"
    # DiffMean is not asked for: the community tier may refuse the whole request for it (HTTP 403)
    assert calls[0][1]["metrics"] == "PriceUSD,HashRate,BlkCnt,IssTotNtv,FeeTotNtv,SplyCur"
    assert calls[0][1]["frequency"] == "1d" and calls[0][1]["assets"] == "btc"
    assert calls[1] == (PAGE_1["next_page_url"], None)  # next_page_url fetched unmodified
    assert list(net["subsidy_per_block"]) == [12.5, 1781.25 / 157, 6.25]
    assert net.loc["2020-05-10", "hashrate_hs"].item() == 136097600.0 * 1e12
    assert net.loc["2020-05-12", "difficulty"].item() == pytest.approx(116883900.0e12 * 86400 / (2**32 * 146), rel=1e-15)
    assert (net["source"] == "coinmetrics-api").all() and str(net.index.tz) == "UTC"
    again = data.load_network("BTC", "2020-05-10", "2020-05-13")
    assert len(calls) == 2 and "cache hit" in again.info.notes[0]


def test_coinmetrics_download_reaching_unpublished_days_is_clamped_and_not_cached(no_data_dir, monkeypatch):
    from data import coinmetrics

    calls = []

    def get(url, params=None, timeout=None):
        calls.append(params)
        return FakeResponse({"data": PAGE_1["data"] + PAGE_2["data"]})

    monkeypatch.setattr(requests, "get", get)
    monkeypatch.setattr(coinmetrics, "_now", lambda: pd.Timestamp("2020-05-13 09:00", tz="UTC"))
    recent = data.load_network("BTC", "2020-05-10", "2020-06-01")
    assert calls[-1]["end_time"] == "2020-05-13"  # clamped to today: 05-13 is still forming
    assert recent.info.notes == (
        "end 2020-06-01 00:00:00+00:00 clamped to 2020-05-13 00:00:00+00:00: today's network values are not complete",
        "downloaded BTC from Coin Metrics, not cached: the range reaches 2020-05-12, which Coin Metrics may not "
        "have published in full yet; it is downloaded again next time")
    assert not list(no_data_dir.glob("*.csv"))
    final = data.load_network("BTC", "2020-05-10", None)  # default end: yesterday 00:00, final days only
    assert calls[-1]["end_time"] == "2020-05-12" and "cached at" in final.info.notes[-1]
    assert [p.name for p in no_data_dir.glob("*.csv")] == ["coinmetrics_BTC_1d_20200510T0000_20200512T0000.csv"]


def test_coinmetrics_offline_and_api_error(no_data_dir, monkeypatch):
    def offline(*a, **k):
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(DataUnavailableError) as error:
        data.load_network("BTC", "2020-05-10", "2020-05-13")
    # the remedy first, the connection error last and shortened
    assert str(error.value) == (
        "Coin Metrics could not be reached: set MINEHEDGE_DATA_DIR (or pass --data-dir / data_dir=) to a folder "
        "with a MANIFEST.csv, or get network access to community-api.coinmetrics.io. (ConnectionError: Name or "
        "service not known)")

    def unresolved(*a, **k):
        raise requests.ConnectionError("HTTPSConnectionPool(host='community-api.coinmetrics.io', port=443): " + "x" * 500)

    monkeypatch.setattr(requests, "get", unresolved)
    with pytest.raises(DataUnavailableError) as error:
        data.load_network("BTC", "2020-05-10", "2020-05-13")
    assert str(error.value).startswith("Coin Metrics could not be reached: set MINEHEDGE_DATA_DIR")
    assert str(error.value).endswith("x" * 43 + "...)") and len(str(error.value)) < 330
    error = {"error": {"type": "bad_parameter", "message": "Bad parameter 'metrics'."}}
    monkeypatch.setattr(requests, "get", lambda *a, **k: FakeResponse(error, 400))
    with pytest.raises(DataError, match="HTTP 400.*bad_parameter"):
        data.load_network("BTC", "2020-05-10", "2020-05-13")
