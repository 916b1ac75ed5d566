"""data.api on the real shared files: file choice, spot values, network frames, resampling vs daily files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import data
from data.frames import resample_ohlcv
from data.manifest import choice_of_row, read_manifest
from data.network import NETWORK_COLUMNS, derived_difficulty
from data.ohlcv_csv import read_ohlcv_csv
from minehedge.errors import ConfigError, DataError

UTC = "UTC"


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


# --- OHLCV: choice, spot values, errors ----------------------------------------------------------------

def test_spot_values_binance(data_dir):
    btc = data.load_ohlcv("BTC", "1d", "2020-03-01", "2020-04-01", venue="binance", data_dir=data_dir)
    assert btc.frame.loc[day("2020-03-12"), "close"] == 4800.0
    assert btc.frame.loc[day("2020-03-13"), "low"] == 3782.13  # README rounds to 3,782
    eth = data.load_ohlcv("ETH", "1d", "2021-11-01", "2021-12-01", venue="binance", data_dir=data_dir)
    assert eth.frame.loc[day("2021-11-10"), "high"] == 4868.0
    assert btc.info.file.endswith("btc_usdt_daily_binance_2017-08-17_2026-01-05.csv")
    assert btc.info.report.bad_ticks == [] and list(btc.frame.columns) == ["open", "high", "low", "close", "volume"]


def test_longest_covering_file_is_chosen_and_reported(data_dir):
    early = data.load_ohlcv("BTC", "1d", "2013-01-01", "2014-01-01", data_dir=data_dir)
    assert early.info.venue == "bitstamp+coinbase" and "longest" not in early.info.reason  # only one covers 2013
    recent = data.load_ohlcv("BTC", "1d", "2019-01-01", "2020-01-01", data_dir=data_dir)
    assert recent.info.venue == "bitstamp+coinbase"  # longest of the three daily files covering 2019
    # 3 daily files plus 3 finer ones (1h Binance, 1h Bitstamp, 4h Binance) cover 2019.
    assert "longest coverage among 6 covering file(s)" in recent.info.reason
    assert "btc_usd_daily_bitstamp-coinbase" in str(recent.info)


def test_finer_file_resampled_when_needed_and_said(data_dir):
    # No BTC 4h file from the perp venue: its 1h file is resampled, and the info says so.
    result = data.load_ohlcv("BTC", "4h", "2023-03-01", "2023-03-08", venue="binance-perp-inferred",
                             data_dir=data_dir)
    assert result.info.resampled_from == "1h" and "resampled 1h -> 4h" in result.info.reason
    assert len(result.frame) == 7 * 6
    hourly = data.load_ohlcv("BTC", "1h", "2023-03-01", "2023-03-01 04:00", venue="binance-perp-inferred",
                             data_dir=data_dir).frame
    first = result.frame.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        hourly["open"].iloc[0], hourly["high"].max(), hourly["low"].min(), hourly["close"].iloc[-1],
        hourly["volume"].sum())


# --- price history before a run's first bar -------------------------------------------------------------
YEAR = pd.Timedelta(days=366)


@pytest.mark.parametrize("asset,timeframe,start,venue", [
    ("BTC", "1d", "2020-03-12", None),  # the longest daily file, native
    ("ETH", "1h", "2020-06-01", None),
    ("BTC", "4h", "2024-06-01", "binance-perp-inferred"),  # resampled from 1h
])
def test_history_is_the_same_files_bars_before_the_start(data_dir, asset, timeframe, start, venue):
    # The oracle: loading [start - 366 days, start) from the same file directly (its venue names it).
    run = data.load_ohlcv(asset, timeframe, start, day(start) + pd.Timedelta(days=30), venue=venue,
                          data_dir=data_dir)
    history = data.load_history(run, day(start), YEAR)
    direct = data.load_ohlcv(asset, timeframe, day(start) - YEAR, start, venue=run.info.venue, data_dir=data_dir)
    assert direct.info.file == run.info.file
    pd.testing.assert_frame_equal(history.frame, direct.frame, check_exact=True)
    assert history.info.resampled_from == run.info.resampled_from
    assert history.info.reason.startswith(f"{len(direct.frame)} bars {direct.frame.index[0]} -> ")


def test_history_is_shorter_or_empty_where_the_file_starts_later(data_dir):
    # Bitstamp's 1h file starts 2018-05-15 06:00: 17 days of history for a 2018-06-01 start, none for a
    # start on its first bar; never an error.
    run = data.load_ohlcv("BTC", "1h", "2018-06-01", "2018-06-02", venue="bitstamp", data_dir=data_dir)
    history = data.load_history(run, day("2018-06-01"), YEAR).frame
    assert (history.index[0], history.index[-1]) == (day("2018-05-15 06:00"), day("2018-05-31 23:00"))
    assert len(history) == 18 + 16 * 24  # 06:00-23:00 on the 15th, then 16 whole days (no gaps)
    first = data.load_ohlcv("BTC", "1h", "2018-05-15 06:00", "2018-06-02", venue="bitstamp", data_dir=data_dir)
    none = data.load_history(first, first.frame.index[0], YEAR)
    assert none.frame.empty and none.info.reason.startswith("none: btc_usd_1h_bitstamp")


def test_history_bad_ticks_are_masked(data_dir):
    # Coinbase's 2017-04-15 low of 0.06 lies in the history of a 2017-05-01 start: masked there too (the run's
    # bars are not in the history).
    run = data.load_ohlcv("BTC", "1d", "2017-05-01", "2017-06-01", venue="bitstamp+coinbase", data_dir=data_dir)
    history = data.load_history(run, day("2017-05-01"), YEAR)
    assert history.frame.loc[day("2017-04-15"), "low"] == 1173.13
    assert "2017-04-15 00:00:00+00:00 low=0.06 -> 1173.13" in str(history.info)


@pytest.mark.parametrize("start,end", [("2017-04-01", "2017-05-01"), ("2017-04-13", "2017-04-18"),
                                       ("2017-04-14", "2017-04-17"), ("2017-04-15", "2017-04-16")])
def test_bad_tick_verdict_does_not_depend_on_the_range(data_dir, start, end):
    # Coinbase's 2017-04-15 low of 0.06: judged with the file's neighbours, so a 1-, 3- or 5-day range finds
    # and masks it as the month does (a range of 5 bars or fewer used to be reported clean)
    run = data.load_ohlcv("BTC", "1d", start, end, venue="bitstamp+coinbase", data_dir=data_dir)
    assert run.frame.loc[day("2017-04-15"), "low"] == 1173.13
    assert [(str(t.timestamp), t.field, t.value) for t in run.report.bad_ticks] == [
        ("2017-04-15 00:00:00+00:00", "low", 0.06)]
    assert run.report.unchecked == []


def test_data_validate_of_a_short_range_lists_the_bad_tick(data_dir):
    from minehedge import api

    findings = api.data_validate({"asset": "BTC", "start": "2017-04-14", "end": "2017-04-16",
                                  "data_dir": str(data_dir)}, None)
    assert [f["detail"] for f in findings if f["what"] == "bad tick"] == [
        "2017-04-15 00:00:00+00:00 low=0.06 (neighbours 1201.94, 464 ranges)"]


def test_first_hourly_bar_masked_in_a_three_bar_range(data_dir):
    run = data.load_ohlcv("BTC", "1h", "2017-08-17 04:00", "2017-08-17 07:00", venue="binance", data_dir=data_dir)
    assert len(run.frame) == 3 and run.frame.iloc[0][["open", "high"]].tolist() == [4308.83, 4308.83]
    assert {(t.field, t.value) for t in run.report.bad_ticks} == {("open", 16199.91), ("high", 16199.91)}


def test_history_ending_at_a_bad_tick_is_judged_with_the_files_neighbours(data_dir):
    # the two days before a 2017-04-16 start: alone they are too few to judge; the file's neighbours find the tick
    run = data.load_ohlcv("BTC", "1d", "2017-04-16", "2017-05-01", venue="bitstamp+coinbase", data_dir=data_dir)
    history = data.load_history(run, day("2017-04-16"), pd.Timedelta(days=2))
    assert list(history.frame.index) == [day("2017-04-14"), day("2017-04-15")]
    assert history.frame.loc[day("2017-04-15"), "low"] == 1173.13
    assert "2017-04-15 00:00:00+00:00 low=0.06 -> 1173.13" in str(history.info)


def test_parsed_ohlcv_files_are_remembered_by_content(tmp_path):
    # The same parse serves both reads of a run; an edit (same size, at once) is read afresh, and a caller's
    # change to its copy does not reach the next read.
    path = tmp_path / "bars.csv"
    path.write_text("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.5,10\n")
    first = data.ohlcv_csv.read_ohlcv_csv(path)
    first.loc[day("2020-01-01"), "close"] = 99.0
    assert data.ohlcv_csv.read_ohlcv_csv(path).loc[day("2020-01-01"), "close"] == 1.5
    path.write_text("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.7,10\n")
    assert data.ohlcv_csv.read_ohlcv_csv(path).loc[day("2020-01-01"), "close"] == 1.7
    for i in range(6):
        (tmp_path / f"{i}.csv").write_text(f"date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.{i},10\n")
        assert data.ohlcv_csv.read_ohlcv_csv(tmp_path / f"{i}.csv")["close"].iloc[0] == float(f"1.{i}")
    assert len(data.ohlcv_csv._PARSED) == data.ohlcv_csv._PARSED.kept == 4


def test_range_outside_coverage_names_covered_range(data_dir):
    with pytest.raises(DataError, match=r"covers 2015-01-01.*covered ranges:.*2017-08-17 00:00:00\+00:00 -> "
                                        r"2026-01-05"):
        data.load_ohlcv("BTC", "1d", "2015-01-01", "2016-01-01", venue="binance", data_dir=data_dir)
    with pytest.raises(DataError, match="2011-08-18"):
        data.load_ohlcv("BTC", "1d", "2010-01-01", "2011-01-01", data_dir=data_dir)


def _folder_with(data_dir, tmp_path, name: str, text: str):
    """A data folder holding ``name`` (with ``text`` as its content) and its unchanged MANIFEST.csv row."""
    (tmp_path / name).parent.mkdir(parents=True)
    (tmp_path / name).write_text(text)
    manifest = pd.read_csv(data_dir / "MANIFEST.csv")
    manifest[manifest["file"] == name].to_csv(tmp_path / "MANIFEST.csv", index=False)
    return tmp_path


def test_a_file_shorter_than_its_manifest_row_is_reported_when_the_range_needs_the_rest(data_dir, tmp_path):
    name = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
    lines = (data_dir / name).read_text().splitlines()
    folder = _folder_with(data_dir, tmp_path, name,
                          "\n".join([lines[0], *(x for x in lines[1:] if x[:10] <= "2021-12-31")]) + "\n")
    with pytest.raises(DataError) as error:
        data.load_ohlcv("BTC", "1d", "2021-06-01", "2023-01-01", data_dir=folder)
    assert str(error.value) == (
        "btc_usdt_daily_binance_2017-08-17_2026-01-05.csv: MANIFEST.csv says 2017-08-17 00:00:00+00:00 -> "
        "2026-01-05 00:00:00+00:00 (3064 rows), the file holds 2017-08-17 00:00:00+00:00 -> 2021-12-31 "
        "00:00:00+00:00 (1598 rows); the requested 2021-06-01 00:00:00+00:00 -> 2023-01-01 00:00:00+00:00 needs "
        "the missing part. Restore the file or correct its MANIFEST.csv row.")
    with pytest.raises(DataError, match="the requested 2021-06-01 00:00:00\\+00:00 -> end needs the missing part"):
        data.load_ohlcv("BTC", "1d", "2021-06-01", None, data_dir=folder)
    # a range inside what the file holds is served as before
    assert len(data.load_ohlcv("BTC", "1d", "2021-06-01", "2021-07-01", data_dir=folder).frame) == 30


def test_a_network_file_shorter_than_its_manifest_row_is_reported(data_dir, tmp_path):
    name = "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"
    lines = (data_dir / name).read_text().splitlines()
    folder = _folder_with(data_dir, tmp_path, name, "\n".join(lines[:-100]) + "\n")
    with pytest.raises(DataError, match=r"^btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: MANIFEST.csv "
                       r"says 2009-01-03 00:00:00\+00:00 -> 2026-03-22 00:00:00\+00:00 \(6288 rows\), the file holds "
                       r"2009-01-03 00:00:00\+00:00 -> 2025-12-12 00:00:00\+00:00 \(6188 rows\)"):
        data.load_network("BTC", "2025-01-01", None, data_dir=folder)


ETH_CM = "network/eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv"
ETH_EG = "network/eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv"
SAYS_CM = ("eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv: MANIFEST.csv says 2015-07-30 00:00:00+00:00 -> "
           "2020-07-27 00:00:00+00:00 (1825 rows), the file holds ")
SAYS_EG = ("eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv: MANIFEST.csv says 2015-07-30 "
           "00:00:00+00:00 -> 2023-01-08 00:00:00+00:00 (2720 rows), the file holds ")
READS_CM = " needs the missing part (the ETH network splice reads this file to 2020-07-27)."
READS_EG = " needs the missing part (the ETH network splice reads this file from 2020-07-27 to the Merge, 2022-09-15)."
RESTORE = " Restore the file or correct its MANIFEST.csv row."


@pytest.mark.parametrize("file,kept,start,end,message", [
    (ETH_EG, (None, "2021-12-31"), "2021-06-01", None,
     SAYS_EG + "2015-07-30 00:00:00+00:00 -> 2021-12-31 00:00:00+00:00 (2347 rows); the requested 2021-06-01 "
     "00:00:00+00:00 -> end" + READS_EG + RESTORE),
    (ETH_EG, ("2020-08-01", None), "2020-06-01", "2020-09-01",  # 2020-07-27 (the supply change's base) is gone
     SAYS_EG + "2020-08-01 00:00:00+00:00 -> 2023-01-08 00:00:00+00:00 (891 rows); the requested 2020-06-01 "
     "00:00:00+00:00 -> 2020-09-01 00:00:00+00:00" + READS_EG + RESTORE),
    (ETH_CM, (None, "2019-12-31"), "2019-06-01", "2020-12-01",
     SAYS_CM + "2015-07-30 00:00:00+00:00 -> 2019-12-31 00:00:00+00:00 (1616 rows); the requested 2019-06-01 "
     "00:00:00+00:00 -> 2020-12-01 00:00:00+00:00" + READS_CM + RESTORE),
    (ETH_CM, ("2017-01-01", None), None, "2018-01-01",
     SAYS_CM + "2017-01-01 00:00:00+00:00 -> 2020-07-27 00:00:00+00:00 (1304 rows); the requested start -> "
     "2018-01-01 00:00:00+00:00" + READS_CM + RESTORE),
], ids=["glassnode-end", "glassnode-start", "coinmetrics-end", "coinmetrics-start"])
def test_a_spliced_eth_network_file_shorter_than_its_manifest_row_is_reported(cut_copy, file, kept, start, end,
                                                                                message):
    # Before, the splice ran on what was left: a short Coin Metrics file left a gap of months before the
    # Glassnode part, a short Glassnode file ended the network data (and a run's bars) early.
    folder = cut_copy([ETH_CM, ETH_EG], {file: kept})
    with pytest.raises(DataError) as error:
        data.load_network("ETH", start, end, data_dir=folder)
    assert str(error.value) == message


def test_the_eth_splice_checks_only_the_days_it_reads_of_each_file(data_dir, cut_copy):
    # Neither MANIFEST.csv row matches what the splice reads: the Glassnode/Etherscan file's rows after the
    # Merge and before 2020-07-27 are not read, nor the Coin Metrics rows before a request's start.
    whole = data.load_network("ETH", data_dir=data_dir).frame
    folder = cut_copy([ETH_CM, ETH_EG], {ETH_EG: ("2020-07-27", "2022-09-15")})
    pd.testing.assert_frame_equal(data.load_network("ETH", data_dir=folder).frame, whole)
    folder = cut_copy([ETH_CM, ETH_EG], {ETH_CM: ("2019-01-01", None), ETH_EG: (None, "2021-01-31")})
    served = data.load_network("ETH", "2019-01-01", "2021-02-01", data_dir=folder).frame
    pd.testing.assert_frame_equal(served, whole.loc[day("2019-01-01"):day("2021-01-31")])
    # ... but a day the splice needs is needed: the one day before the Glassnode part is its supply change's base
    with pytest.raises(DataError, match=r"the file holds 2020-07-28 00:00:00\+00:00 -> 2021-01-31"):
        data.load_network("ETH", "2020-07-28", "2021-02-01",
                          data_dir=cut_copy([ETH_CM, ETH_EG], {ETH_EG: ("2020-07-28", "2021-01-31")}))


def test_network_days_needed_before_an_open_end_are_checked_and_those_after_served_as_far_as_they_follow(cut_copy):
    # A run loads network data with no end; only the days before needed_end must be there. Before, the
    # truncated Coin Metrics file was an error for any open-ended request.
    folder = cut_copy([ETH_CM, ETH_EG], {ETH_CM: (None, "2019-12-30")})
    served = data.load_network("ETH", "2019-01-01", None, data_dir=folder, needed_end="2019-12-31").frame
    assert (served.index[0], served.index[-1], len(served)) == (day("2019-01-01"), day("2019-12-30"), 364)
    with pytest.raises(DataError, match=r"2019-12-30 00:00:00\+00:00 \(1615 rows\); the requested 2019-01-01 "
                                        r"00:00:00\+00:00 -> 2020-01-01 00:00:00\+00:00 needs the missing part"):
        data.load_network("ETH", "2019-01-01", None, data_dir=folder, needed_end="2020-01-01")
    for needed in ("2019-01-01", "2020-01-02"):
        with pytest.raises(ConfigError) as error:
            data.load_network("ETH", "2019-01-01", "2020-01-01", data_dir=folder, needed_end=needed)
        assert str(error.value) == (f"needed_end='{needed}' must be after start='2019-01-01' and no later than "
                                    "end='2020-01-01' (the days needed are part of the range loaded).")


def test_eth_network_files_whose_manifest_rows_leave_a_gap_between_them_are_an_error(data_dir, tmp_path):
    # The rows match their (shorter) files, so no file is short of its row, but the splice would jump from
    # 2019-12-31 to 2020-07-28.
    for name in (ETH_CM, ETH_EG):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        lines = (data_dir / name).read_text().splitlines(keepends=True)
        (tmp_path / name).write_text("".join([lines[0], *(x for x in lines[1:] if name == ETH_EG or x[:10] <= "2019-12-31")]))
    manifest = pd.read_csv(data_dir / "MANIFEST.csv", dtype=str, keep_default_na=False)
    manifest = manifest[manifest["file"].isin([ETH_CM, ETH_EG])]
    manifest.loc[manifest["file"] == ETH_CM, ["last", "rows", "bytes"]] = [
        "2019-12-31", "1616", str((tmp_path / ETH_CM).stat().st_size)]
    manifest.to_csv(tmp_path / "MANIFEST.csv", index=False)
    with pytest.raises(DataError) as error:
        data.load_network("ETH", "2019-06-01", "2021-01-01", data_dir=tmp_path)
    assert str(error.value) == (
        "the ETH network data (eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv + "
        "eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv) have no rows from 2020-01-01 to "
        "2020-07-27; the splice needs the first file to 2020-07-27 and the second from 2020-07-27 on: check both "
        "files and their MANIFEST.csv rows.")
    assert len(data.load_network("ETH", "2019-06-01", "2020-01-01", data_dir=tmp_path).frame) == 214


def _load_manifest_file(row, folder):
    """Load the file of MANIFEST.csv ``row`` whole, through the package's loader for its kind; the name of the
    file read. The CBOE ``futures`` file has no loader: its rows are read and checked as a loader would."""
    if row.kind == "ohlcv":  # bad ticks dropped: the check counts the rows as written, not those kept
        loaded = data.load_ohlcv(row.asset, row.timeframe, venue=row.venue, bad_ticks="drop", data_dir=folder)
        return loaded.info.file, len(loaded.frame)
    if row.kind == "network":
        loaded = data.load_network(row.asset, data_dir=folder)
        return loaded.info.file, len(loaded.frame)
    if row.kind == "funding":
        loaded = data.load_funding(row.asset, row.venue, data_dir=folder, fallback="error")
        return loaded.info.file, len(loaded.frame)
    choice = choice_of_row(next(read_manifest(folder).loc[lambda m: m["file"] == row.file].itertuples()))
    index = read_ohlcv_csv(choice.path).index
    choice.check_file(index, None, None)
    return choice.path.name, len(index)


def _folder_editing(data_dir, tmp_path, name: str, edit) -> Path:
    """A data folder with the shared MANIFEST.csv, links to every shared file, and ``name`` written anew as
    ``edit(data lines)`` below its header."""
    folder = tmp_path / name.replace("/", "_")
    for other in read_manifest(data_dir)["file"]:
        (folder / other).parent.mkdir(parents=True, exist_ok=True)
        if other != name:
            (folder / other).symlink_to(data_dir / other)
    lines = (data_dir / name).read_text().splitlines(keepends=True)
    (folder / name).write_text("".join([lines[0], *edit(lines[1:])]))
    (folder / "MANIFEST.csv").symlink_to(data_dir / "MANIFEST.csv")
    return folder


def test_every_shared_file_holds_its_manifest_rows_and_one_row_less_in_its_middle_is_an_error(data_dir, tmp_path):
    # Before, only a file's first and last times were compared with its MANIFEST.csv row: a copy that lost
    # rows in its middle was served with a silent gap (or, for funding, the constant where its settlements were).
    manifest = read_manifest(data_dir)
    assert len(manifest) == 19
    loaded = {row.file: _load_manifest_file(row, data_dir) for row in manifest.itertuples()}
    for row in manifest.itertuples():
        assert Path(row.file).name in loaded[row.file][0]
    # the count compared is the file's as written: bad ticks dropped afterwards leave fewer bars (Coinbase's
    # 2017-04-15 low of 0.06 and a thin 2011 day; the bad first Binance hour)
    assert loaded["btc/btc_usd_daily_bitstamp-coinbase_2011-08-18_2025-09-23.csv"][1] == 5151 - 2
    assert loaded["btc/btc_usdt_1h_binance_2017-08-17_2021-06-09.csv"][1] == 33412 - 1
    for row in manifest.itertuples():
        folder = _folder_editing(data_dir, tmp_path, row.file, lambda rows: rows[:len(rows) // 2] + rows[len(rows) // 2 + 1:])
        with pytest.raises(DataError) as error:
            _load_manifest_file(row, folder)
        assert str(error.value) == (
            f"{Path(row.file).name}: MANIFEST.csv says {row.rows} rows ({row.first} -> {row.last}), the file holds "
            f"{int(row.rows) - 1} rows (1 fewer) between the same first and last times: rows were lost from the "
            "middle of the file. Restore the file from its source (MANIFEST.csv's source_repo and source_path) or "
            "correct its MANIFEST.csv row."), row.file


def test_a_row_added_to_a_file_or_a_manifest_count_that_is_no_number_is_an_error(data_dir, tmp_path):
    name = "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"
    folder = _folder_editing(data_dir, tmp_path, name, lambda rows: [*rows[:3000], rows[3000], *rows[3000:]])
    with pytest.raises(DataError) as error:
        data.load_network("BTC", "2025-01-01", "2025-02-01", data_dir=folder)
    # the added row repeats the time of the row before it: that line is named (audit25: it said "rows were added
    # to the middle of the file", which a duplicate appended at the end got too)
    assert str(error.value) == (
        "btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: line 3003 (2017-03-22 00:00:00+00:00) repeats "
        "line 3002's time: a duplicate timestamp. MANIFEST.csv says 6288 rows, the file holds 6289 (1 more). Remove "
        "or move that line, or restore the file from its source (MANIFEST.csv's source_repo and source_path).")
    manifest = pd.read_csv(data_dir / "MANIFEST.csv", dtype=str, keep_default_na=False)
    added = len(rows_text := (data_dir / name).read_text().splitlines(keepends=True)[3001])
    assert rows_text[:10] == "2017-03-22"  # the row the edit above repeats
    for rows, size, served in (("6,288", "", False), ("", "892650", False), ("", "", True)):
        # a blank count or size says nothing to check; the size alone still tells the added row
        manifest.loc[manifest["file"] == name, ["rows", "bytes"]] = [rows, size]
        (folder / "MANIFEST.csv").unlink()
        manifest.to_csv(folder / "MANIFEST.csv", index=False)
        if served:
            assert len(data.load_network("BTC", "2025-01-01", "2025-02-01", data_dir=folder).frame) == 31
            continue
        with pytest.raises(DataError) as error:
            data.load_network("BTC", "2025-01-01", "2025-02-01", data_dir=folder)
        assert str(error.value) == ((
            "MANIFEST.csv row of btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: rows='6,288' is not a "
            "whole number; it must be the file's count of data rows (lines after the header), e.g. 3064.")
            if rows else (
            f"btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: MANIFEST.csv says 892650 bytes, the file has "
            f"{892650 + added} ({added} more) with 6289 rows (its row's rows is blank: not compared) and the same "
            "first and last times (2009-01-03 00:00:00+00:00 -> 2026-03-22 00:00:00+00:00): its contents changed "
            "after the manifest was written (rows added or lost, values edited, or line endings converted, e.g. by "
            "git's core.autocrlf). Restore the file from its "
            "source (MANIFEST.csv's source_repo and source_path) or, if the edit is yours, set its MANIFEST.csv "
            f"bytes to {892650 + added} (blank: not checked)."))


def test_a_start_after_a_file_ends_is_not_served_by_it(data_dir):
    # with no end, the Bitstamp hourly file (to 2022-08-19) was "covering" a 2023 start and gave no bars
    result = data.load_ohlcv("BTC", "1h", "2023-01-01", None, data_dir=data_dir)
    assert result.info.file == "btc_usdt_1h_binance-perp-inferred_2023-01-01_2026-04-10.csv"
    assert len(result.frame) == 28687


def test_bad_parameters_name_allowed_values(data_dir):
    with pytest.raises(ConfigError, match="available venues: binance, bitfinex.*Did you mean 'binance'"):
        data.load_ohlcv("ETH", "1d", venue="binanse", data_dir=data_dir)
    with pytest.raises(ConfigError, match="asset='DOGE'.*BTC, ETH"):
        data.load_ohlcv("DOGE", "1d", data_dir=data_dir)
    with pytest.raises(ConfigError, match="end=.*must be after start"):
        data.load_ohlcv("BTC", "1d", "2020-02-01", "2020-01-01", data_dir=data_dir)
    with pytest.raises(DataError, match="holds no MANIFEST.csv"):
        data.load_ohlcv("BTC", "1d", data_dir=data_dir / "btc")


def test_env_var_resolution(data_dir, monkeypatch):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    assert data.resolve_data_dir() == data_dir.resolve()
    result = data.load_ohlcv("ETH", "4h", "2022-06-01", "2022-06-02")
    assert result.info.source == "csv" and len(result.frame) == 6


MANIFEST_HEAD = "file,asset,kind,timeframe,venue,quote,rows,first,last\n"


def test_manifest_memo_never_serves_an_edited_manifest(tmp_path):
    # The parsed table is remembered by directory and content: a same-size edit made at once (same mtime on
    # a coarse clock) is read afresh, a caller's changes do not leak into the next read, and a bad manifest
    # raises every time.
    path = tmp_path / "MANIFEST.csv"
    path.write_text(MANIFEST_HEAD + "a.csv,btc,ohlcv,1d,binance,USDT,2,2020-01-01,2020-01-02\n")
    first = read_manifest(tmp_path)
    assert list(first["asset"]) == ["BTC"] and first["first"].iloc[0] == day("2020-01-01")
    first.loc[0, "venue"] = "changed by the caller"
    assert read_manifest(tmp_path).loc[0, "venue"] == "binance"
    path.write_text(MANIFEST_HEAD + "a.csv,eth,ohlcv,1d,binance,USDT,2,2020-01-01,2020-01-02\n")
    assert list(read_manifest(tmp_path)["asset"]) == ["ETH"]
    assert read_manifest(tmp_path)["path"].iloc[0] == tmp_path / "a.csv"
    path.write_text("file,asset\na.csv,btc\n")
    for _ in range(2):
        with pytest.raises(DataError, match="missing columns"):
            read_manifest(tmp_path)


def test_manifest_memo_is_bounded(tmp_path):
    for i in range(12):
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "MANIFEST.csv").write_text(MANIFEST_HEAD + f"a.csv,btc,ohlcv,1d,v{i},USDT,2,2020-01-01,2020-01-02\n")
        assert read_manifest(folder).loc[0, "venue"] == f"v{i}"
    assert len(data.manifest._PARSED) == data.manifest._PARSED.kept == 8


def test_bad_tick_policy_passed_through(data_dir):
    masked = data.load_ohlcv("BTC", "1d", "2017-04-01", "2017-05-01", venue="bitstamp+coinbase", data_dir=data_dir)
    assert masked.frame.loc[day("2017-04-15"), "low"] == 1173.13
    assert "2017-04-15 00:00:00+00:00 low=0.06 -> 1173.13" in str(masked.info)
    with pytest.raises(DataError, match="low=0.06"):
        data.load_ohlcv("BTC", "1d", "2017-04-01", "2017-05-01", venue="bitstamp+coinbase", data_dir=data_dir,
                        bad_ticks="fail")


# --- resampling 1h -> 1d against the daily file ----------------------------------------------------------

@pytest.mark.parametrize("asset", ["BTC", "ETH"])
def test_resampled_hourly_reproduces_daily_file(data_dir, asset):
    """Two independent exports of the same Binance market: CryptoDataDownload 1h vs Binance API 1d.

    Tolerances from the data (not chosen to pass): on the 1,384 complete days (24 hourly bars) the close
    agrees exactly on >= 99 % of days and within 0.31 % on all (BTC max 0.09 %, ETH 0.31 % on 2018-01-23,
    export revisions); high/low agree exactly on >= 97 % of days but an hourly export misses a few extreme
    ticks (BTC 2019-09-24 daily low 7,800 vs 8,290.51 hourly: 6.3 %); the daily open is the first trade of
    the day while the CryptoDataDownload hourly open often repeats the previous close (up to 1.6 %). The 9
    days that are *not* complete are exactly the first day (bars from 04:00; its first bar is the bad tick)
    and the 8 days holding the hourly gaps; they are excluded and listed.
    """
    hourly = data.load_ohlcv(asset, "1h", venue="binance", data_dir=data_dir)
    daily = data.load_ohlcv(asset, "1d", "2017-08-17", "2021-06-10", venue="binance", data_dir=data_dir).frame
    resampled = resample_ohlcv(hourly.frame, "1d", partial="flag")
    joined = resampled.merge(daily, left_index=True, right_index=True, suffixes=("", "_file"))
    incomplete = joined.index[joined["source_bars"] < 24]
    hour = pd.Timedelta(hours=1)
    gap_days = {d for g in hourly.report.gaps for d in ((g.after + hour).normalize(), (g.before - hour).normalize())}
    assert set(incomplete) == {day("2017-08-17")} | {d for d in gap_days if d in joined.index}
    assert len(incomplete) == 9
    full = joined.drop(incomplete)
    assert len(full) == 1384
    rel = {c: (full[c] / full[f"{c}_file"] - 1).abs() for c in ("open", "high", "low", "close")}
    assert (rel["close"] <= 1e-12).mean() >= 0.99 and rel["close"].max() <= 0.0031
    for c in ("high", "low"):
        assert (rel[c] <= 1e-12).mean() >= 0.97 and rel[c].max() <= 0.063
    assert rel["open"].median() <= 1e-4 and rel["open"].max() <= 0.016


# --- network ----------------------------------------------------------------------------------------------

def test_btc_halvings_in_subsidy_per_block(data_dir):
    """Mean subsidy per block is issuance / blocks, exact in the data (multiples of 6.25 BTC / 2^k)."""
    net = data.load_network("BTC", "2020-05-01", "2024-05-01", data_dir=data_dir).frame
    assert net.loc[day("2020-05-10"), "subsidy_per_block"] == 12.5
    assert net.loc[day("2020-05-12"), "subsidy_per_block"] == 6.25
    assert net.loc[day("2024-04-18"), "subsidy_per_block"] == 6.25
    assert net.loc[day("2024-04-20"), "subsidy_per_block"] == 3.125
    mixed = net.loc[day("2020-05-11"), "subsidy_per_block"]
    assert 6.25 < mixed < 12.5  # the halving day itself: 1781.25 BTC over 157 blocks
    assert mixed == 1781.25 / 157


def test_btc_network_contract_and_units(data_dir):
    net = data.load_network("BTC", data_dir=data_dir).frame
    assert list(net.columns) == [*NETWORK_COLUMNS, "source"]
    assert all(net[c].dtype == "float64" for c in NETWORK_COLUMNS)
    assert str(net.index.tz) == UTC and net.index.is_monotonic_increasing
    row = net.loc[day("2020-05-10")]
    assert row["hashrate_hs"] == pytest.approx(1.360976e8 * 1e12, rel=1e-6)  # TH/s -> H/s
    assert row["difficulty"] == pytest.approx(1.610481e13, rel=1e-6)  # original DiffMean
    later = net.loc[day("2024-04-18")]  # DiffMean stops 2020-07-27: the derived identity takes over
    assert later["difficulty"] == pytest.approx(
        later["hashrate_hs"] * 86400 / (2**32 * later["block_count"]), rel=1e-12)
    assert later["miner_income_coin"] == later["issuance_coin"] + later["fees_coin"]
    both = net.loc[day("2019-01-01"):day("2020-07-27")]
    derived = derived_difficulty(both["hashrate_hs"], both["block_count"], "BTC")
    np.testing.assert_allclose(derived, both["difficulty"], rtol=1e-12)


def test_eth_splice_ranges_and_rules(data_dir):
    net = data.load_network("ETH", data_dir=data_dir).frame
    assert net.index[0] == day("2015-07-30") and net.index[-1] == day("2022-09-15")
    assert (net.index.to_series().diff().dropna() == pd.Timedelta(days=1)).all()
    src = net["source"]
    assert src[day("2020-07-27")].startswith("coinmetrics:") and src[day("2020-07-28")].startswith("glassnode+")
    # Before London the Glassnode supply change is CM issuance incl. uncles (2 ETH + ~0.1 per block).
    pre = net.loc[day("2020-07-28"):day("2021-08-04")]
    assert pre["subsidy_per_block"].between(2.0, 2.3).all()
    # After London: income only (supply change + fees, the burn cancels); the split is unknown.
    post = net.loc[day("2021-08-05"):day("2022-09-01")]
    assert post["issuance_coin"].isna().all() and post["subsidy_per_block"].isna().all()
    raw = pd.read_csv(data_dir / "network/eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv",
                      index_col="date")
    expected = (raw.loc["2022-01-10", "glassnode_total_supply_eth"] - raw.loc["2022-01-09", "glassnode_total_supply_eth"]
                + raw.loc["2022-01-10", "glassnode_total_fees_eth"])
    assert net.loc[day("2022-01-10"), "miner_income_coin"] == expected
    # Income per expected block: 2 ETH + tips + uncle rewards, 2.39-2.6 on typical days; the maximum is
    # 3.92 on 2022-05-01 (the Otherside NFT mint's priority fees). Never below the 2 ETH block reward.
    per_block = post["miner_income_coin"] / post["block_count"]
    assert per_block.between(2.0, 4.0).all() and 2.3 < per_block.median() < 2.6
    tail = net.loc[day("2022-09-02"):day("2022-09-14")]
    assert tail["difficulty"].notna().all() and tail["hashrate_hs"].isna().all()
    assert tail["miner_income_coin"].isna().all()
    assert np.isnan(net.loc[day("2022-09-15"), "difficulty"])
    assert net.loc[day("2022-09-14"), "difficulty"] == 12068.348e12


def test_eth_estimated_block_count_matches_coinmetrics(data_dir):
    """Glassnode hash rate x 86,400 / Etherscan difficulty vs CM BlkCnt on the CM era (2016-2020)."""
    raw = pd.read_csv(data_dir / "network/eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv",
                      index_col="date", parse_dates=True)
    cm = pd.read_csv(data_dir / "network/eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv",
                     index_col="time", parse_dates=True)
    window = slice("2019-01-01", "2020-07-27")
    estimate = raw.loc[window, "glassnode_hash_rate_mean_Hps"] * 86400 / (raw.loc[window, "etherscan_difficulty_TH"] * 1e12)
    ratio = estimate / cm.loc[window, "BlkCnt"]
    assert abs(ratio.median() - 1) < 0.01 and ratio.between(0.9, 1.1).all()


def test_network_range_error(data_dir):
    with pytest.raises(DataError, match=r"ETH network data cover 2015-07-30 -> 2022-09-15"):
        data.load_network("ETH", "2022-01-01", "2023-01-01", data_dir=data_dir)


def test_every_network_file_in_manifest_loads(data_dir):
    manifest = read_manifest(data_dir)
    network = manifest[manifest["kind"] == "network"]
    assert set(network["asset"]) == {"BTC", "ETH"} and len(network) == 3
    btc = data.load_network("BTC", data_dir=data_dir).frame
    assert len(btc) == int(network.loc[network.asset == "BTC", "rows"].iloc[0])
    eth = data.load_network("ETH", data_dir=data_dir).frame
    assert len(eth) == 1825 + (pd.Timestamp("2022-09-15") - pd.Timestamp("2020-07-27")).days


def test_a_file_whose_size_is_not_its_manifest_rows_is_an_error(data_dir, tmp_path):
    # Before, a file with its manifest's times and row count was served whatever its values: a close edited in
    # place, or a copy whose line endings git converted, went unnoticed.
    name = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
    row = next(read_manifest(data_dir).loc[lambda m: m["file"] == name].itertuples())
    said = int(row.bytes)
    assert said == (data_dir / name).stat().st_size

    def refused(folder: Path, held: int) -> None:
        with pytest.raises(DataError) as error:
            data.load_ohlcv("BTC", "1d", "2021-01-01", "2021-02-01", venue="binance", data_dir=folder)
        more = held - said
        assert str(error.value) == (
            f"btc_usdt_daily_binance_2017-08-17_2026-01-05.csv: MANIFEST.csv says {said} bytes, the file has {held} "
            f"({abs(more)} {'more' if more > 0 else 'fewer'}) with the same 3064 rows and first and last times "
            "(2017-08-17 00:00:00+00:00 -> 2026-01-05 00:00:00+00:00): its contents changed after the manifest was "
            "written (values edited, or line endings converted, e.g. by git's core.autocrlf). Restore the file from "
            "its source (MANIFEST.csv's source_repo and source_path) or, if the edit is yours, set its MANIFEST.csv "
            f"bytes to {held} (blank: not checked).")

    crlf = _folder_editing(data_dir, tmp_path / "crlf", name, lambda rows: [r.replace("\n", "\r\n") for r in rows])
    refused(crlf, said + 3064)  # one more byte on each data row
    first = (data_dir / name).read_text().splitlines(keepends=True)[1]
    opened = first.split(",")[1]
    edited = _folder_editing(data_dir, tmp_path / "edit", name, lambda rows: [first.replace(opened, opened[:-1]),
                                                                             *rows[1:]])
    refused(edited, said - 1)  # the first open with its last digit cut
    # a blank size says nothing to check, as does a manifest without the column; a size that is no number
    for size in ("", None, "175 474"):
        folder = tmp_path / f"manifest_{size}"
        folder.mkdir()
        (folder / "btc").symlink_to(crlf / "btc")
        manifest = pd.read_csv(data_dir / "MANIFEST.csv", dtype=str, keep_default_na=False)
        if size is None:
            manifest = manifest.drop(columns="bytes")
        else:
            manifest.loc[manifest["file"] == name, "bytes"] = size
        manifest[manifest["file"] == name].to_csv(folder / "MANIFEST.csv", index=False)
        if size == "175 474":
            with pytest.raises(DataError) as error:
                data.load_ohlcv("BTC", "1d", "2021-01-01", "2021-02-01", data_dir=folder)
            assert str(error.value) == (
                "MANIFEST.csv row of btc_usdt_daily_binance_2017-08-17_2026-01-05.csv: bytes='175 474' is not a "
                "whole number; it must be the file's size in bytes, e.g. 175474 (or blank: not checked).")
            continue
        assert len(data.load_ohlcv("BTC", "1d", "2021-01-01", "2021-02-01", data_dir=folder).frame) == 31


def test_data_validate_reports_a_file_that_differs_from_its_manifest_row_as_an_error(data_dir, tmp_path, capsys):
    # Before, `data validate FILE` never read the manifest (a CRLF copy its folder lists passed, exit 0), and the
    # range form stopped with the manifest's DataError (exit 2, a mistake in the command) instead of a finding.
    from minehedge.cli import main

    name = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
    folder = _folder_editing(data_dir, tmp_path, name, lambda rows: [r.replace("\n", "\r\n") for r in rows])
    said = int(next(read_manifest(data_dir).loc[lambda m: m["file"] == name].itertuples()).bytes)
    mismatch = (f"btc_usdt_daily_binance_2017-08-17_2026-01-05.csv: MANIFEST.csv says {said} bytes, the file has "
                f"{said + 3064} (3064 more) with the same 3064 rows and first and last times")
    assert main(["data", "validate", "--json", str(folder / name)]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert [(f["level"], f["what"]) for f in findings] == [("error", "MANIFEST.csv"), ("info", "summary")]
    assert findings[0]["detail"].startswith(mismatch)
    # the range form, on a folder whose manifest lists only that file
    only = tmp_path / "only"
    (only / "btc").mkdir(parents=True)
    (only / name).symlink_to(folder / name)
    manifest = pd.read_csv(data_dir / "MANIFEST.csv", dtype=str, keep_default_na=False)
    manifest[manifest["file"] == name].to_csv(only / "MANIFEST.csv", index=False)
    assert main(["data", "validate", "--json", "--data-dir", str(only), "--start", "2021-01-01",
                 "--end", "2021-02-01"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert len(findings) == 1 and findings[0]["level"] == "error" and findings[0]["detail"].startswith(mismatch)
    # the same file as the manifest says: clean, exit 0; a file no manifest lists: validated alone
    assert main(["data", "validate", "--json", str(data_dir / name)]) == 0
    assert [f["what"] for f in json.loads(capsys.readouterr().out)] == ["summary"]
    alone = tmp_path / "alone.csv"
    alone.write_bytes((folder / name).read_bytes())
    assert main(["data", "validate", "--json", str(alone)]) == 0
    assert [f["what"] for f in json.loads(capsys.readouterr().out)] == ["summary"]


@pytest.mark.parametrize(("asset", "timeframe", "start", "end"), [
    ("BTC", "1d", "2011-08-18", "2025-09-24"), ("BTC", "1d", "2019-01-01", "2024-01-01"),
    ("BTC", "4h", "2018-01-01", "2019-01-01"), ("BTC", "1h", "2018-06-01", "2021-01-01"),
    ("ETH", "1d", "2018-01-01", "2021-01-01"), ("ETH", "1h", "2023-01-01", "2024-01-01")])
def test_the_venues_covering_a_range_are_those_choose_file_finds_venue_by_venue(data_dir, asset, timeframe,
                                                                                 start, end):
    from data.manifest import choose_file, covering_ohlcv_venues, ohlcv_venues, read_manifest
    from minehedge.errors import DataError

    manifest = read_manifest(data_dir)
    start, end = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    expected = []
    for venue in ohlcv_venues(manifest, asset, timeframe):
        try:
            expected.append((venue, choose_file(manifest, asset, "ohlcv", timeframe, start, end, venue).first))
        except DataError:
            pass
    assert covering_ohlcv_venues(manifest, asset, timeframe, start, end) == expected
