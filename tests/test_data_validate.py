"""data.frames and data.validate: timeframes, UTC indexes, resampling and validation (synthetic + real)."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.frames import parse_timeframe, resample_ohlcv, to_utc_index
from data.manifest import read_manifest
from data.ohlcv_csv import read_ohlcv_csv
from data.validate import BadTickRule, _side_medians, find_bad_ticks, validate_ohlcv
from minehedge.errors import ConfigError, DataError


def bars(n: int, freq: str = "1h", start: str = "2021-01-01", close=None) -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    close = np.linspace(100.0, 100.0 + n - 1, n) if close is None else np.asarray(close, dtype=float)
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 0.5,
                         "low": np.minimum(open_, close) - 0.5, "close": close, "volume": 1.0}, index=idx)


# --- timeframes and UTC --------------------------------------------------------------------------------

def test_parse_timeframe_known_and_equivalent_spellings():
    assert parse_timeframe("1h") == pd.Timedelta(hours=1)
    assert parse_timeframe("4H") == pd.Timedelta(hours=4)
    assert parse_timeframe("24h") == pd.Timedelta(days=1)


@pytest.mark.parametrize("bad", ["5m", "1w", "daily", "", 3])
def test_parse_timeframe_rejects_with_allowed_values(bad):
    with pytest.raises(ConfigError, match=r"1h, 4h, 1d"):
        parse_timeframe(bad)


def test_to_utc_index_localises_naive_and_converts_aware():
    naive = pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex(["2021-01-01 05:00"]))
    assert to_utc_index(naive).index[0] == pd.Timestamp("2021-01-01 05:00", tz="UTC")
    ny = pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex(["2021-01-01 00:00"]).tz_localize("America/New_York"))
    assert to_utc_index(ny).index[0] == pd.Timestamp("2021-01-01 05:00", tz="UTC")
    with pytest.raises(DataError, match="DatetimeIndex"):
        to_utc_index(pd.DataFrame({"x": [1.0]}, index=[0]))


# --- resampling ------------------------------------------------------------------------------------------

def test_resample_closed_form_4h_and_partial_edges():
    # 10 hourly bars from 02:00: bins 00-04 (2 bars, partial edge), 04-08 (4), 08-12 (4 bars 08..11).
    frame = bars(10, start="2021-01-01 02:00")
    out = resample_ohlcv(frame, "4h")
    assert list(out.index) == [pd.Timestamp("2021-01-01 04:00", tz="UTC"), pd.Timestamp("2021-01-01 08:00", tz="UTC")]
    first = frame.loc["2021-01-01 04:00":"2021-01-01 07:00"]
    assert out.iloc[0].to_dict() == {"open": first.open.iloc[0], "high": first.high.max(), "low": first.low.min(),
                                     "close": first.close.iloc[-1], "volume": 4.0}
    flagged = resample_ohlcv(frame, "4h", partial="flag")
    assert flagged["source_bars"].tolist() == [2.0, 4.0, 4.0]


def test_resample_keeps_interior_gap_bins_and_never_fills_empty_bins():
    frame = bars(48)
    gone = pd.date_range("2021-01-01 04:00", "2021-01-01 08:00", freq="1h", tz="UTC")  # bin 04-08 and 08:00
    frame = frame.drop(gone)
    out = resample_ohlcv(frame, "4h", partial="flag")
    assert pd.Timestamp("2021-01-01 04:00", tz="UTC") not in out.index
    assert out.loc["2021-01-01 08:00", "source_bars"] == 3.0  # 08:00 dropped, rest kept
    assert len(out) == 11


def test_resample_rejects_finer_target():
    with pytest.raises(DataError, match="finer"):
        resample_ohlcv(bars(10, freq="4h"), "1h")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1.0, 1e5), min_size=30, max_size=80))
def test_resample_invariants(closes):
    frame = bars(len(closes), close=closes)
    out = resample_ohlcv(frame, "4h", partial="flag")
    assert (out["high"] >= out[["open", "close"]].max(axis=1)).all()
    assert (out["low"] <= out[["open", "close"]].min(axis=1)).all()
    assert out["volume"].sum() == frame["volume"].sum()
    assert out["high"].max() == frame["high"].max() and out["low"].min() == frame["low"].min()


# --- validation errors name row and value -----------------------------------------------------------------

def test_ohlc_violation_names_row_and_values():
    frame = bars(20)
    frame.iloc[7, frame.columns.get_loc("high")] = frame.iloc[7]["close"] - 1
    with pytest.raises(DataError, match=r"high < max\(open, close\), 1 row\(s\): 2021-01-01 07:00:00\+00:00 "
                       r"open=106 high=106 close=107"):
        validate_ohlcv(frame, "1h", source="t.csv")


@pytest.mark.parametrize("column,value,pattern", [
    ("low", -1.0, r"non-positive low.*2021-01-01 03:00:00\+00:00 low=-1"),
    ("close", np.nan, r"NaN close.*2021-01-01 03:00:00\+00:00"),
    ("volume", -5.0, r"negative volume.*volume=-5"),
])
def test_bad_values_are_errors(column, value, pattern):
    frame = bars(20)
    frame.iloc[3, frame.columns.get_loc(column)] = value
    with pytest.raises(DataError, match=pattern):
        validate_ohlcv(frame, "1h")


def test_duplicate_and_unsorted_timestamps():
    frame = bars(10)
    dup = pd.concat([frame.iloc[:5], frame.iloc[4:]])
    with pytest.raises(DataError, match="duplicate timestamps.*2021-01-01 04:00"):
        validate_ohlcv(dup, "1h")
    with pytest.raises(DataError, match="not increasing"):
        validate_ohlcv(frame.iloc[::-1], "1h")


def test_gaps_and_zero_volume_reported():
    frame = bars(30).drop(pd.date_range("2021-01-01 10:00", periods=3, freq="1h", tz="UTC"))
    frame.iloc[2, frame.columns.get_loc("volume")] = 0.0
    _, report = validate_ohlcv(frame, "1h")
    assert (report.gap_count, report.missing_bars, report.longest_gap) == (1, 3, pd.Timedelta(hours=4))
    assert report.zero_volume == [pd.Timestamp("2021-01-01 02:00", tz="UTC")]
    assert "gaps: 1 (3 missing bars" in str(report)


# --- bad ticks: rule and policies --------------------------------------------------------------------------

def spike_frame():
    frame = bars(40)
    frame.iloc[20, frame.columns.get_loc("low")] = 1.0  # a 0.06-style wick, ~120 -> 1
    return frame


def test_bad_tick_policies():
    frame = spike_frame()
    stamp = frame.index[20]
    masked, report = validate_ohlcv(frame, "1h", bad_ticks="mask")
    assert [(t.timestamp, t.field, t.value) for t in report.bad_ticks] == [(stamp, "low", 1.0)]
    assert masked.loc[stamp, "low"] == min(frame.loc[stamp, "open"], frame.loc[stamp, "close"])
    assert report.bad_ticks[0].replacement == masked.loc[stamp, "low"]
    assert "masked 1 price(s)" in str(report)
    dropped, report = validate_ohlcv(frame, "1h", bad_ticks="drop")
    assert stamp not in dropped.index and report.dropped == [stamp] and report.gap_count == 0
    kept, report = validate_ohlcv(frame, "1h", bad_ticks="keep")
    assert kept.loc[stamp, "low"] == 1.0 and len(report.bad_ticks) == 1
    with pytest.raises(DataError, match=r"bad tick.*2021-01-01 20:00:00\+00:00 low=1"):
        validate_ohlcv(frame, "1h", bad_ticks="fail")
    with pytest.raises(ConfigError, match="mask, drop, fail, keep"):
        validate_ohlcv(frame, "1h", bad_ticks="clip")


def test_bad_open_masked_from_previous_close():
    frame = bars(40)
    frame.iloc[10, frame.columns.get_loc("open")] = 500.0
    frame.iloc[10, frame.columns.get_loc("high")] = 500.0
    masked, report = validate_ohlcv(frame, "1h")
    row = masked.iloc[10]
    assert {t.field for t in report.bad_ticks} == {"open", "high"}
    assert row["open"] == frame.iloc[9]["close"] and row["high"] == max(row["open"], row["close"])


def test_bars_too_short_of_neighbours_are_listed_unchecked_not_clean():
    frame = bars(3, "1D", close=[100.0, 100.0, 100.0])
    frame.loc[frame.index[1], "low"] = 0.01  # a bad tick no rule can judge with two neighbours
    out, report = validate_ohlcv(frame, "1d")
    assert report.bad_ticks == [] and report.unchecked == list(frame.index)
    assert "not checked for bad ticks: 3 bar(s) with fewer than 3 neighbours on both sides" in str(report)
    # the same three bars with the rest of their file as context are judged, and the tick is masked
    whole = bars(13, "1D", start="2020-12-27", close=np.full(13, 100.0))
    whole.loc[frame.index, "low"] = frame["low"]
    out, report = validate_ohlcv(whole.loc[frame.index], "1d", context=whole)
    assert report.unchecked == [] and [(t.field, t.value, t.replacement) for t in report.bad_ticks] == [
        ("low", 0.01, 100.0)]
    assert out["low"].tolist() == [99.5, 100.0, 99.5]


def test_a_bad_close_next_to_the_range_is_not_the_ranges_first_open():
    # the bar before the range has a bad close (masked to the next open by the whole file's rule); the
    # range's first bar has a bad open too: it takes the repaired close, as validating the whole file does
    close = np.full(20, 100.0)
    whole = bars(20, "1D", close=close)
    whole.iloc[9, whole.columns.get_loc("close")] = 5000.0
    whole.iloc[9, whole.columns.get_loc("high")] = 5000.5
    whole.iloc[10, whole.columns.get_loc("open")] = 5000.0
    whole.iloc[10, whole.columns.get_loc("high")] = 5000.5
    full, _ = validate_ohlcv(whole, "1d")
    part, report = validate_ohlcv(whole.iloc[10:13], "1d", context=whole)
    pd.testing.assert_frame_equal(part, full.iloc[10:13])
    assert [(t.field, t.value) for t in report.bad_ticks] == [("open", 5000.0), ("high", 5000.5)]


def test_level_shift_is_not_a_bad_tick():
    # The price halves and stays there: near the "after" neighbours, so not a tick.
    frame = bars(40, close=[100.0] * 20 + [50.0] * 20)
    assert find_bad_ticks(frame, BadTickRule()) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-50, 50, allow_nan=False), st.just(float("nan"))), min_size=1, max_size=40),
       st.integers(1, 8))
def test_side_medians_equal_the_median_of_the_present_neighbours(values, window):
    # Oracle: statistics.median of the non-NaN neighbours on each side ((a + b) / 2 for an even count,
    # as the module computes it), NaN when fewer than 3 are present. Bit-for-bit, not approximately.
    values = np.asarray(values, dtype="float64")
    got = _side_medians(values, window)
    for i in range(len(values)):
        before = [v for v in values[max(0, i - window):i] if v == v]
        after = [v for v in values[i + 1:i + 1 + window] if v == v]
        for side, expected in zip(got, (before, after, before + after), strict=True):
            want = statistics.median(expected) if len(expected) >= 3 else float("nan")
            assert side[i] == want or (want != want and side[i] != side[i]), (i, expected, side[i])

# --- real data: the data README's anomalies -------------------------------------------------------------


def load(data_dir, name):
    return read_ohlcv_csv(data_dir / name)


def ticks_of(report):
    return {(t.timestamp.strftime("%Y-%m-%d %H:%M"), t.field) for t in report.bad_ticks}


def test_every_ohlcv_file_validates(data_dir):
    manifest = read_manifest(data_dir)
    ohlcv = manifest[manifest["kind"] == "ohlcv"]
    assert len(ohlcv) == 11
    for row in ohlcv.itertuples():
        frame = read_ohlcv_csv(row.path)
        out, report = validate_ohlcv(frame, row.timeframe, source=row.file)
        assert report.ok and report.rows == int(row.rows), row.file
        assert out.index[0] == row.first and out.index[-1] == row.last
        assert all(out[c].dtype == "float64" for c in out.columns)


def test_coinbase_bad_tick_found_and_masked(data_dir):
    frame = load(data_dir, "btc/btc_usd_daily_bitstamp-coinbase_2011-08-18_2025-09-23.csv")
    out, report = validate_ohlcv(frame, "1d")
    # 2017-04-15 low 0.06 (README) and one thin 2011 Bitstamp day (documented in data.validate).
    assert ticks_of(report) == {("2017-04-15 00:00", "low"), ("2011-09-01 00:00", "low")}
    assert out.loc["2017-04-15", "low"].item() == 1173.13  # min(open 1173.13, close 1178.85)
    assert len(report.zero_volume) == 33
    # The README's "presumably real" early wicks are left alone.
    assert out.loc["2011-11-25", "high"].item() == 15.0


@pytest.mark.parametrize("name,bad", [
    ("btc/btc_usdt_1h_binance_2017-08-17_2021-06-09.csv", 16199.91),
    ("eth/eth_usdt_1h_binance_2017-08-17_2021-06-09.csv", 652.74),
])
def test_binance_first_hourly_bar_found(data_dir, name, bad):
    frame = load(data_dir, name)
    out, report = validate_ohlcv(frame, "1h")
    assert ticks_of(report) == {("2017-08-17 04:00", "open"), ("2017-08-17 04:00", "high")}
    assert [t.value for t in report.bad_ticks] == [bad, bad]
    first = out.iloc[0]
    # No previous bar: the open takes the bar's close, the high is clipped to the body.
    assert first["open"] == first["close"] == frame.iloc[0]["close"] and first["high"] == first["close"]
    # README: 8 gaps (16 missing hours), largest 5 h (2017-09-22); 117 (BTC) / 119 (ETH) filler bars.
    assert (report.gap_count, report.missing_bars, report.longest_gap) == (8, 16, pd.Timedelta(hours=5))
    assert len(report.zero_volume) == (117 if name.startswith("btc") else 119)


@pytest.mark.parametrize("name,stamp,field,value", [
    ("btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv", "2020-03-13", "low", 3782.13),
    ("btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv", "2020-03-12", "close", 4800.0),
    ("eth/eth_usdt_daily_binance_2017-08-17_2026-01-05.csv", "2021-05-19", "low", 1888.0),
    ("btc/btc_usd_1h_bitstamp_2018-05-15_2022-08-19.csv", "2019-05-17 03:00", "low", 6178.0),
    ("eth/eth_usdt_1h_binance_2017-08-17_2021-06-09.csv", "2017-08-22 04:00", "low", 144.21),
    ("eth/eth_usdt_4h_binance_2017-08-17_2026-01-06.csv", "2017-08-22 04:00", "low", 144.21),
])
def test_real_crashes_are_not_bad_ticks(data_dir, name, stamp, field, value):
    frame = load(data_dir, name)
    out, report = validate_ohlcv(frame, name.split("_")[2].replace("daily", "1d"), bad_ticks="keep")
    assert out.loc[pd.Timestamp(stamp, tz="UTC"), field] == value
    # Only the known bad first hourly bar is flagged in these files.
    assert {t.timestamp for t in report.bad_ticks} <= {pd.Timestamp("2017-08-17 04:00", tz="UTC")}


@pytest.mark.parametrize("asset", ["btc", "eth"])
def test_binance_4h_gaps_and_zero_volume(data_dir, asset):
    _, report = validate_ohlcv(load(data_dir, f"{asset}/{asset}_usdt_4h_binance_2017-08-17_2026-01-06.csv"), "4h")
    # README: 8 gaps (16 missing bars), the longest 2018-02-08 -> 02-09 (32 h); one zero-volume bar 2017-09-06.
    assert (report.gap_count, report.missing_bars, report.longest_gap) == (8, 16, pd.Timedelta(hours=32))
    assert report.gaps[0].after == pd.Timestamp("2018-02-08", tz="UTC")
    assert [g.after.date().isoformat() for g in report.gaps][1:] == [
        "2018-06-26", "2018-07-04", "2018-11-14", "2019-03-12", "2019-05-15", "2019-08-15", "2020-02-19"]
    assert report.zero_volume == [pd.Timestamp("2017-09-06 16:00", tz="UTC")]


def test_bitstamp_zero_volume_hours(data_dir):
    _, report = validate_ohlcv(load(data_dir, "btc/btc_usd_1h_bitstamp_2018-05-15_2022-08-19.csv"), "1h")
    assert report.gap_count == 0 and len(report.zero_volume) == 6
    assert pd.Timestamp("2022-07-13 11:00", tz="UTC") in report.zero_volume


def test_cboe_ohlc_violation_found(data_dir):
    frame = load(data_dir, "futures/btc_cboe_xbt_futures_daily_investing-com_2017-12-12_2019-06-19.csv")
    with pytest.raises(DataError, match=r"high < max\(open, close\), 1 row\(s\): 2018-08-28 00:00:00\+00:00 "
                                        r"open=6716 high=7115 close=7118"):
        validate_ohlcv(frame, "1d", source="cboe")
    _, report = validate_ohlcv(frame, "1d", raise_on_error=False)
    assert len(report.errors) == 1 and len(report.missing_volume) == 90
