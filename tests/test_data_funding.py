"""data.funding: venue conversions with exact numbers from the files, and the flagged constant fallback."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import data
from data.funding import constant_funding, read_binance_daily_mean, read_bitmex, read_deribit, read_eth_8h
from minehedge.errors import ConfigError, DataError, DataUnavailableError

FUNDING = "funding"


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_bitmex_24h_rows_are_single_24h_settlements(data_dir):
    frame = read_bitmex(data_dir / FUNDING / "btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv")
    first = frame.loc[t("2016-05-14 12:00")]
    assert first["funding_rate"] == 0.0006900000000000001  # paid once for 24 h
    assert first["interval_hours"] == 24.0 and first["rate_8h"] == 0.0006900000000000001 * 8 / 24
    assert (frame["interval_hours"] == 24.0).sum() == 22  # README: first 22 rows, to 2016-06-04
    assert frame.index[frame["interval_hours"] == 24.0][-1] == t("2016-06-04 12:00")
    switch = frame.loc[t("2016-06-04 20:00")]
    assert (switch["funding_rate"], switch["interval_hours"], switch["rate_8h"]) == (
        0.0002496666666666667, 8.0, 0.0002496666666666667)
    assert len(frame) == 4866 and not frame["assumed"].any()


def test_binance_daily_mean_expands_to_three_settlements(data_dir):
    frame = read_binance_daily_mean(data_dir / FUNDING / "btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv")
    day = frame.loc[t("2021-01-03"):t("2021-01-03 23:59")]
    assert list(day.index.hour) == [0, 8, 16]
    assert (day["funding_rate"] == 0.0013126933333333334).all()
    assert math.fsum(day["funding_rate"]) == pytest.approx(3 * 0.0013126933333333334, rel=1e-15)  # README: x3
    assert len(frame) == 3 * 2387


def test_binance_daily_mean_info_says_intraday_amounts_use_the_days_mean(data_dir):
    binance = data.load_funding("BTC", "binance", "2021-05-19", "2021-05-21", data_dir=data_dir)
    assert str(binance.info) == (
        "funding BTC: binance (funding/btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv); "
        "named by venue; the file holds each day's mean of the three 8h rates; each 00/08/16 settlement pays that "
        "mean: the day's total is exact, an intraday settlement's amount approximate (the mean is known only at "
        "the day's end)")
    bitmex = data.load_funding("BTC", "bitmex", "2019-05-19", "2019-05-21", data_dir=data_dir)
    assert "mean" not in bitmex.info.reason


def test_deribit_hourly_accruals_summed_into_8h_settlements(data_dir):
    path = data_dir / FUNDING / "btc_deribit_btc-perpetual_funding_1h_2019-04-30_2021-02-25.csv"
    frame = read_deribit(path)
    assert frame.index[0] == t("2019-04-30 16:00")  # hours 10:00..16:00 of the first window
    expected = sum([0.0, -2.355264834228129e-05, -7.014149142055269e-05, -5.162584776341739e-05,
                    -4.2318275054964763e-05, -8.869704498046915e-05, -7.729323131353501e-05])
    assert frame["funding_rate"].iloc[0] == pytest.approx(expected, rel=1e-13)
    # The 2020-08-27 gap (06:00, 07:00 missing): the 08:00 settlement sums the 6 hours present.
    gap = [2.9715683446452885e-07, 1.5227785882567936e-06, 9.62361747158867e-06, 2.2008115770237672e-05,
           3.633263234547926e-05, 1.891509107741882e-05]
    assert frame.loc[t("2020-08-27 08:00"), "funding_rate"] == pytest.approx(sum(gap), rel=1e-13)
    assert set(frame.index.hour) == {0, 8, 16} and (frame["interval_hours"] == 8.0).all()
    hourly = read_deribit(path, mode="1h")
    assert len(hourly) == 16008 and hourly.loc[t("2019-04-30 11:00"), "rate_8h"] == 8 * -2.355264834228129e-05
    # Summing every hour once: totals agree between both modes.
    assert hourly["funding_rate"].sum() == pytest.approx(frame["funding_rate"].sum(), rel=1e-12)


def test_eth_8h_file(data_dir):
    frame = read_eth_8h(data_dir / FUNDING / "eth_ethusdt-perp_funding_8h_binance-inferred_2023-01-01_2026-04-10.csv")
    assert frame.loc[t("2023-05-01 08:00"), "funding_rate"] == 2.338e-05
    assert len(frame) == 3586


def test_load_funding_chooses_and_fills_with_flagged_assumption(data_dir):
    result = data.load_funding("BTC", venue="bitmex", start="2020-11-01", end="2020-11-10", data_dir=data_dir)
    frame, info = result.frame, result.info
    assert info.venue == "bitmex" and info.assumption is not None
    assumed = frame[frame["assumed"]]
    # The file's last settlement is 2020-11-05 04:00; BitMEX's 04/12/20 schedule continues at 0.01 %/8h.
    assert assumed.index[0] == t("2020-11-05 12:00") and (assumed["funding_rate"] == 0.0001).all()
    assert set(assumed.index.hour) == {4, 12, 20}
    assert info.assumed_settlements == len(assumed) == 14
    assert "ASSUMPTION: constant funding 0.0001 per 8h assumed for 14 of" in str(info)
    covered = data.load_funding("BTC", venue="bitmex", start="2020-01-01", end="2020-02-01", data_dir=data_dir)
    assert covered.info.assumption is None and len(covered.frame) == 93


def test_load_funding_defaults_and_errors(data_dir):
    eth = data.load_funding("ETH", start="2023-01-01", end="2023-01-02", data_dir=data_dir)
    assert eth.info.venue == "binance-inferred" and eth.info.assumption is None
    with pytest.raises(DataError, match=r"no ETH funding file covers 2022-01-01.*2023-01-01 00:00:00\+00:00 -> 2026"):
        data.load_funding("ETH", start="2022-01-01", end="2022-02-01", data_dir=data_dir, fallback="error")
    with pytest.raises(ConfigError, match="available venues: (bitmex|binance)"):
        data.load_funding("BTC", venue="ftx", data_dir=data_dir)
    only = data.load_funding("ETH", start="2021-01-01", end="2021-01-02", data_dir=data_dir)
    assert only.info.venue == "constant" and only.frame["assumed"].all() and len(only.frame) == 3


def test_a_folder_without_the_profiles_funding_file_gets_the_flagged_constant(data_dir, tmp_path):
    from minehedge import api

    files = ["btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv",
             "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"]
    for name in files:
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    manifest = pd.read_csv(data_dir / "MANIFEST.csv")
    manifest[manifest["file"].isin(files)].to_csv(tmp_path / "MANIFEST.csv", index=False)
    # asked by name: still an error naming what exists
    with pytest.raises(ConfigError, match=r"venue='binance' has no BTC funding file; available venues: constant\."):
        data.load_funding("BTC", "binance", "2021-06-01", "2021-06-02", data_dir=tmp_path)
    # the venue of a run's exchange profile: the documented constant, flagged
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-06-01", "end": "2021-06-30",
                              "data_dir": str(tmp_path)})
    assert market.frame["funding_paid"].sum() == pytest.approx(0.0001 * 3 * 30, rel=1e-12)
    assert market.assumptions["funding"] == (
        "funding BTC: constant (no file); the data folder has no BTC funding file for venue 'binance'\n"
        "  ASSUMPTION: constant funding 0.0001 per 8h assumed for all 90 settlements 2021-06-01 00:00:00+00:00 "
        "-> 2021-07-01 00:00:00+00:00 (no venue data used)")


def test_constant_funding_without_data_dir(monkeypatch):
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    result = data.load_funding("BTC", start="2021-01-01 03:00", end="2021-01-02")
    assert list(result.frame.index) == [t("2021-01-01 08:00"), t("2021-01-01 16:00")]
    assert result.info.fallback_rate == 0.0001 and "assumed for all 2 settlements" in result.info.assumption
    with pytest.raises(DataUnavailableError, match="MINEHEDGE_DATA_DIR.*constant"):
        data.load_funding("BTC", start="2021-01-01", end="2021-01-02", fallback="error")
    custom = constant_funding(t("2021-01-01"), t("2021-01-01 16:00"), rate=-0.0002)
    assert custom["funding_rate"].tolist() == [-0.0002, -0.0002] and custom["assumed"].all()


# --- a funding file shorter than its MANIFEST.csv row ---------------------------------------------------------
BITMEX = "funding/btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv"
BINANCE = "funding/btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv"
DERIBIT = "funding/btc_deribit_btc-perpetual_funding_1h_2019-04-30_2021-02-25.csv"
ETH_8H = "funding/eth_ethusdt-perp_funding_8h_binance-inferred_2023-01-01_2026-04-10.csv"
FILES = [BITMEX, BINANCE, DERIBIT, ETH_8H]
RESTORE = " needs the missing part. Restore the file or correct its MANIFEST.csv row."


@pytest.mark.parametrize("asset,venue,file,kept,start,end,message", [
    ("BTC", "bitmex", BITMEX, (None, "2019-12-31"), "2019-06-01", "2020-06-01",
     "btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv: MANIFEST.csv says 2016-05-14 12:00:00+00:00 -> "
     "2020-11-05 04:00:00+00:00 (4866 rows), the file holds 2016-05-14 12:00:00+00:00 -> 2019-12-31 20:00:00+00:00 "
     "(3938 rows); the requested 2019-06-01 00:00:00+00:00 -> 2020-06-01 00:00:00+00:00" + RESTORE),
    ("BTC", "binance", BINANCE, ("2021-01-01", None), "2020-06-01", "2020-07-01",
     "btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv: MANIFEST.csv says 2019-09-10 "
     "00:00:00+00:00 -> 2026-03-23 00:00:00+00:00 (2387 rows), the file holds 2021-01-01 00:00:00+00:00 -> "
     "2026-03-23 00:00:00+00:00 (1908 rows); the requested 2020-06-01 00:00:00+00:00 -> 2020-07-01 00:00:00+00:00"
     + RESTORE),
    ("BTC", "deribit", DERIBIT, (None, "2020-06-30"), "2020-06-01", "2020-08-01",
     "btc_deribit_btc-perpetual_funding_1h_2019-04-30_2021-02-25.csv: MANIFEST.csv says 2019-04-30 10:00:00+00:00 "
     "-> 2021-02-25 11:00:00+00:00 (16008 rows), the file holds 2019-04-30 10:00:00+00:00 -> 2020-06-30 "
     "23:00:00+00:00 (10262 rows); the requested 2020-06-01 00:00:00+00:00 -> 2020-08-01 00:00:00+00:00" + RESTORE),
    ("ETH", "binance-inferred", ETH_8H, (None, "2024-12-31"), "2024-06-01", None,
     "eth_ethusdt-perp_funding_8h_binance-inferred_2023-01-01_2026-04-10.csv: MANIFEST.csv says 2023-01-01 "
     "00:00:00+00:00 -> 2026-04-10 00:00:00+00:00 (3586 rows), the file holds 2023-01-01 00:00:00+00:00 -> "
     "2024-12-31 16:00:00+00:00 (2193 rows); the requested 2024-06-01 00:00:00+00:00 -> end" + RESTORE),
], ids=["bitmex", "binance", "deribit", "eth"])
@pytest.mark.parametrize("fallback", ["constant", "error"])
def test_a_funding_file_shorter_than_its_manifest_row_is_an_error_not_the_constant(cut_copy, asset, venue, file,
                                                                                   kept, start, end, message,
                                                                                   fallback):
    # Before, the missing settlements were the constant fallback (flagged as an assumption, but the file was
    # meant to hold them), or with fallback='error' a message advising the constant.
    folder = cut_copy(FILES, {file: kept})
    with pytest.raises(DataError) as error:
        data.load_funding(asset, venue, start, end, data_dir=folder, fallback=fallback)
    assert str(error.value) == message


def test_a_short_funding_file_is_an_error_only_where_a_settlement_needs_its_missing_rows(cut_copy):
    folder = cut_copy(FILES, {DERIBIT: (None, "2020-06-30 03"), BINANCE: (None, "2021-12-31"),
                              BITMEX: ("2017-01-01", None)})
    # Deribit (to 2020-06-30 03:00): the 08:00 settlement sums the hours 01:00 .. 08:00, the 00:00 one is whole
    served = data.load_funding("BTC", "deribit", "2020-06-29", "2020-06-30 08:00", data_dir=folder)
    assert served.frame.index[-1] == t("2020-06-30 00:00") and served.info.assumption is None
    with pytest.raises(DataError, match=r"holds 2019-04-30 10:00:00\+00:00 -> 2020-06-30 03:00:00\+00:00 .*the "
                                        r"requested 2020-06-29 00:00:00\+00:00 -> 2020-06-30 08:00:01\+00:00 needs"):
        data.load_funding("BTC", "deribit", "2020-06-29", "2020-06-30 08:00:01", data_dir=folder)
    # ... kept hourly, each hour is its own settlement
    hourly = data.load_funding("BTC", "deribit", "2020-06-30", "2020-06-30 04:00", data_dir=folder, deribit="1h")
    assert hourly.frame.index[-1] == t("2020-06-30 03:00") and len(hourly.frame) == 4
    with pytest.raises(DataError, match="needs the missing part"):
        data.load_funding("BTC", "deribit", "2020-06-30", "2020-06-30 04:00:01", data_dir=folder, deribit="1h")
    # Binance daily means (to 2021-12-31): a day's mean pays at its 00/08/16 settlements
    served = data.load_funding("BTC", "binance", "2021-12-31 16:00", "2022-01-01", data_dir=folder)
    assert list(served.frame.index) == [t("2021-12-31 16:00")] and served.info.assumption is None
    with pytest.raises(DataError, match="needs the missing part"):
        data.load_funding("BTC", "binance", "2021-12-31 16:00", "2022-01-01 00:00:01", data_dir=folder)
    # BitMEX (from 2017): a 2016 start needs the missing rows; past the row's own end the flagged constant, as before
    with pytest.raises(DataError, match=r"holds 2017-01-01 04:00:00\+00:00 -> 2020-11-05 04:00:00\+00:00"):
        data.load_funding("BTC", "bitmex", "2016-12-31", "2017-02-01", data_dir=folder)
    after = data.load_funding("BTC", "bitmex", "2020-11-01", "2020-11-10", data_dir=folder)
    assert after.info.assumed_settlements == 14 and after.frame.index[0] == t("2020-11-01 04:00")


@pytest.mark.parametrize(("venue", "proxy"), [("binance_coinm", True), ("binance_usdm", False), ("bitmex", False)])
def test_the_coin_margined_perpetual_says_its_funding_is_the_usdt_margined_ones(data_dir, venue, proxy):
    from minehedge import api

    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2020-01-01", "end": "2020-01-31",
                         "venue": venue, "data_dir": str(data_dir)})
    assert ("PROXY: binance_coinm's own (COIN-M) funding rates are not in the data" in m.assumptions["funding"]) \
        is proxy
