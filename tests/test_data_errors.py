"""User-facing errors of the data layer: an empty or missing data file, a data folder that is not there, a
network or funding file given to `data validate`, and a misspelt key given to `api.load_market`. Each is one
message naming the file or key and what to do (exit 2 from the CLI), never a traceback."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from data.cache import read_cached
from data.funding import read_bitmex
from data.manifest import read_manifest
from data.network import read_btc_network_csv
from data.ohlcv_csv import read_ohlcv_csv
from minehedge.cli import main
from minehedge.errors import DataError

BTC_DAILY = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
BTC_NETWORK = "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"
BTC_FUNDING = "funding/btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv"
BITMEX = "funding/btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv"
FILES = [BTC_DAILY, BTC_NETWORK, BTC_FUNDING]
RUN = ["run", "--start", "2021-01-01", "--end", "2021-01-31", "--json"]
RESTORE = ("the copy was cut short or the file emptied. Restore it from its source (MANIFEST.csv's source_repo and "
           "source_path) or copy the data folder again.")


def _run_error(capsys, argv: list[str]) -> str:
    """The one line `argv` prints on stderr, having exited 2 with nothing on stdout and no traceback."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err.removeprefix("run_backtest.py: error: ").rstrip("\n")


# ------------------------------------------------------------------------------------------ empty files


@pytest.mark.parametrize("content,holds", [(b"", "is empty (0 bytes)"),
                                           (b"\n", "holds only blank space (1 byte)"),
                                           (b" \r\n\n", "holds only blank space (4 bytes)")],
                         ids=["0-bytes", "newline", "blanks"])
@pytest.mark.parametrize("name,kind,promise", [
    (BTC_DAILY, "OHLCV", "3064 rows, 2017-08-17 00:00:00+00:00 -> 2026-01-05 00:00:00+00:00, 175474 bytes"),
    (BTC_NETWORK, "network", "6288 rows, 2009-01-03 00:00:00+00:00 -> 2026-03-22 00:00:00+00:00, 892650 bytes"),
    (BTC_FUNDING, "funding", "2387 rows, 2019-09-10 00:00:00+00:00 -> 2026-03-23 00:00:00+00:00, 66082 bytes"),
], ids=["ohlcv", "network", "funding"])
def test_a_run_on_an_empty_data_file_names_it_and_its_manifest_row(capsys, cut_copy, name, kind, promise, content,
                                                                  holds):
    # Before: pandas.errors.EmptyDataError with a traceback, exit 1, "the run failed (traceback above)".
    folder = cut_copy(FILES, {})
    (folder / name).write_bytes(content)
    assert _run_error(capsys, [*RUN, "--data-dir", str(folder)]) == (
        f"{kind} file {str(folder / name)!r} {holds}: no header line and no rows, but MANIFEST.csv lists it with "
        f"{promise}: {RESTORE}")
    # `data validate` of the file says the same (a network or funding file too)
    assert _run_error(capsys, ["data", "validate", str(folder / name)]).startswith(
        f"{kind} file {str(folder / name)!r} {holds}: no header line and no rows, but MANIFEST.csv lists it")


@pytest.mark.parametrize("content", [b"", b"\n"], ids=["0-bytes", "newline"])
def test_an_empty_manifest_is_named_with_the_columns_it_needs(capsys, cut_copy, content):
    folder = cut_copy(FILES, {})
    (folder / "MANIFEST.csv").write_bytes(content)
    message = _run_error(capsys, [*RUN, "--data-dir", str(folder)])
    assert message.startswith(f"manifest file {str(folder / 'MANIFEST.csv')!r} ")
    assert message.endswith(": no header line and no rows. Give a CSV file with a header line (file, asset, kind, "
                            "timeframe, venue, quote, rows, first, last) and data rows, or restore the file.")
    with pytest.raises(DataError, match="no header line"):
        read_manifest(folder)


@pytest.mark.parametrize("reader,header", [
    (read_ohlcv_csv, "e.g. datetime,open,high,low,close,volume"),
    (read_btc_network_csv, "time,PriceUSD,HashRate,BlkCnt,IssTotNtv,FeeTotNtv"),
    (read_bitmex, "datetime,fundingRate,funding_interval_hours"),
], ids=["ohlcv", "network", "funding"])
def test_every_reader_turns_a_file_of_ones_own_that_is_empty_into_a_data_error(tmp_path, capsys, reader, header):
    path = tmp_path / "mine.csv"
    path.write_bytes(b"\n")
    kind = {read_ohlcv_csv: "OHLCV", read_btc_network_csv: "network", read_bitmex: "funding"}[reader]
    message = (f"{kind} file {str(path)!r} holds only blank space (1 byte): no header line and no rows. Give a CSV "
               f"file with a header line ({header}) and data rows, or restore the file.")
    with pytest.raises(DataError) as error:
        reader(path)
    assert str(error.value) == message
    if reader is read_ohlcv_csv:
        assert _run_error(capsys, ["data", "validate", str(path)]) == message


def test_a_cache_file_with_an_empty_body_is_a_corrupt_one_refetched(tmp_path):
    import hashlib

    (tmp_path / "key.csv").write_bytes(f"# minehedge-cache v1 sha256={hashlib.sha256(b'').hexdigest()} rows=0\n"
                                       .encode())
    read = read_cached("key.csv", tmp_path)
    assert read.frame is None and "no header line after the checksum" in read.note
    assert not (tmp_path / "key.csv").exists()


@pytest.mark.parametrize("name,kind", [(BTC_DAILY, "OHLCV"), (BTC_NETWORK, "network"), (BTC_FUNDING, "funding")],
                         ids=["ohlcv", "network", "funding"])
def test_a_file_the_manifest_lists_but_that_is_gone_is_named_as_such(capsys, cut_copy, name, kind):
    # Before: "... does not exist (listed in MANIFEST.csv?)", although the manifest lists it.
    folder = cut_copy(FILES, {})
    (folder / name).unlink()
    message = _run_error(capsys, [*RUN, "--data-dir", str(folder)])
    assert message.startswith(f"{kind} file {str(folder / name)!r} is missing: MANIFEST.csv lists it (")
    assert message.endswith(") but there is no such file. Restore it from its source (MANIFEST.csv's source_repo "
                            "and source_path) or copy the data folder again, or remove its row from MANIFEST.csv.")
    assert "listed in MANIFEST.csv?" not in message


def test_a_file_of_ones_own_that_does_not_exist_is_said_plainly(tmp_path):
    with pytest.raises(DataError) as error:
        read_ohlcv_csv(tmp_path / "nope.csv")
    assert str(error.value) == f"OHLCV file {str(tmp_path / 'nope.csv')!r} does not exist."


# ------------------------------------------------------------------------------------------ no data at all

REMEDY = ("Point --data-dir or MINEHEDGE_DATA_DIR at a data folder holding MANIFEST.csv (such as ../shared/data), or "
          "set neither to download the data into the cache (needs network access).")


@pytest.mark.parametrize("argv", [[], ["--start", "2022-01-01"]], ids=["no-start", "start"])
def test_a_data_folder_that_is_not_there_is_reported_alone_not_as_a_start_outside_the_data(capsys, tmp_path, argv):
    # Before, without --start: "no start was given, so the run starts on the fleet's first deployment, ..., where
    # the data have no bars: data_dir=... holds no MANIFEST.csv; ... Give a start within the data (--start ...)".
    missing = tmp_path / "nonexistent"
    assert _run_error(capsys, ["run", *argv, "--data-dir", str(missing)]) == (
        f"data_dir={str(missing)!r}: no such folder. {REMEDY}")
    assert _run_error(capsys, ["run", *argv, "--data-dir", str(tmp_path)]) == (
        f"data_dir={str(tmp_path)!r}: the folder holds no MANIFEST.csv. {REMEDY}")


def test_offline_with_no_data_folder_and_no_cache_is_reported_alone(capsys, monkeypatch, tmp_path):
    import yfinance

    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: pd.DataFrame())  # what yfinance returns offline
    assert _run_error(capsys, ["run"]) == (
        "yfinance returned no data for BTC-USD (offline, rate-limited or unknown symbol); set MINEHEDGE_DATA_DIR (or "
        "pass --data-dir / data_dir=) to a folder with a MANIFEST.csv, or get network access so it can be "
        "downloaded.")


def test_an_empty_file_without_a_start_is_not_advice_about_the_start(capsys, cut_copy):
    # the file's MANIFEST row covers the fleet's first day (2017-01-01): only the emptied file is wrong
    whole = "btc/btc_usd_daily_bitstamp-coinbase_2011-08-18_2025-09-23.csv"
    folder = cut_copy([whole, BTC_NETWORK, BTC_FUNDING], {})
    (folder / whole).write_bytes(b"")
    message = _run_error(capsys, ["run", "--data-dir", str(folder)])
    assert message.startswith(f"OHLCV file {str(folder / whole)!r} is empty (0 bytes)") and "--start" not in message


# ------------------------------------------------------------------------------------------ api.load_market keys

KNOWN = "asset, timeframe, start, end, venue, seed, data_dir, data_venue, policy, params"


@pytest.mark.parametrize("extra,message", [
    ({"strat": "2022-01-01"}, f"load_market: unknown key 'strat'; known keys: {KNOWN}. Did you mean 'start'?"),
    ({"leverage": 3}, f"load_market: unknown key 'leverage'; known keys: {KNOWN}. 'leverage' is a parameter of "
                      "static_hedge, collateral_short, dynamic_hedge, leveraged_long, leveraged_short, "
                      "financed_hedge: give it in 'params' (or to run_policy)."),
    ({"data-dir": "x"}, f"load_market: unknown key 'data-dir'; known keys: {KNOWN}. Did you mean 'data_dir'?"),
], ids=["strat", "leverage", "data-dir"])
def test_load_market_refuses_a_key_it_does_not_know(tmp_path, extra, message):
    # Before: a misspelt start loaded all the data (2011-2025), a policy parameter was dropped without a word.
    from minehedge import api
    from minehedge.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        api.load_market({"asset": "BTC", "timeframe": "1d", "data_dir": str(tmp_path), **extra})
    assert str(error.value) == message
    with pytest.raises(ConfigError, match="unknown key"):
        api.run_backtest({"asset": "BTC", "data_dir": str(tmp_path), **extra})


# ------------------------------------------------------------------------------------------ data validate FILE


def _findings(capsys, argv: list[str], code: int) -> list[dict[str, str]]:
    assert main(["data", "validate", "--json", *argv]) == code
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


@pytest.mark.parametrize("name,summary", [
    (BTC_NETWORK, "btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv [network coinmetrics, 1d]: 6288 rows, "
                  "2009-01-03 00:00:00+00:00 -> 2026-03-22 00:00:00+00:00"),
    ("network/eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv",
     "eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv [network etherscan+glassnode, 1d]: 2720 rows, "
     "2015-07-30 00:00:00+00:00 -> 2023-01-08 00:00:00+00:00"),
    (BITMEX, "btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv [funding bitmex, 8h]: 4866 rows (4866 "
             "settlements), 2016-05-14 12:00:00+00:00 -> 2020-11-05 04:00:00+00:00"),
    ("funding/btc_deribit_btc-perpetual_funding_1h_2019-04-30_2021-02-25.csv",
     "btc_deribit_btc-perpetual_funding_1h_2019-04-30_2021-02-25.csv [funding deribit, 1h]: 16008 rows "
     "({settlements} settlements), 2019-04-30 10:00:00+00:00 -> 2021-02-25 11:00:00+00:00"),
], ids=["btc-network", "eth-glassnode", "bitmex", "deribit"])
def test_data_validate_checks_a_shared_network_or_funding_file_as_its_reader_does(capsys, data_dir, name, summary):
    # Before: "missing columns ['open', 'high', 'low', 'close', 'volume']; expected open, high, low, close, volume"
    # (exit 2), whatever the file's kind in MANIFEST.csv.
    if "{settlements}" in summary:  # Deribit: each hour's accrual goes to the 00/08/16 settlement S, (S - 8h, S]
        hours = pd.to_datetime(pd.read_csv(data_dir / name, usecols=["datetime"])["datetime"])
        summary = summary.format(settlements=hours.dt.ceil("8h").nunique())
    assert _findings(capsys, [str(data_dir / name)], 0) == [{"level": "info", "what": "summary", "detail": summary}]


def test_data_validate_reports_a_network_or_funding_files_row_problems_as_findings(capsys, data_dir, tmp_path):
    network = (data_dir / BTC_NETWORK).read_text().splitlines(keepends=True)
    mine = tmp_path / "net.csv"  # a file of one's own: its kind comes from its header
    days = [line for line in network[1:] if line.startswith("2021-01-")]
    mine.write_text("".join([network[0], *days[:5], days[4], *days[8:]]))  # 2021-01-05 twice, 6 to 8 missing
    assert _findings(capsys, [str(mine)], 1) == [
        {"level": "error", "what": "consistency",
         "detail": "net.csv: duplicate timestamps, 1 row(s): 2021-01-05 00:00:00+00:00"},
        {"level": "warning", "what": "gap", "detail": "2021-01-05 00:00:00+00:00 -> 2021-01-09 00:00:00+00:00 (3 days)"},
        {"level": "info", "what": "summary",
         "detail": "net.csv [network coinmetrics]: 29 rows, 2021-01-01 00:00:00+00:00 -> 2021-01-31 00:00:00+00:00"}]
    funding = tmp_path / "fund.csv"
    funding.write_text("datetime,fundingRate,funding_interval_hours\n2020-01-01 04:00:00,0.0001,8\n"
                       "2020-01-01 20:00:00,0.0001,8\n2020-01-01 12:00:00,0.0001,8\n")
    assert _findings(capsys, [str(funding)], 1)[0] == {
        "level": "error", "what": "consistency", "detail": "fund.csv: timestamps not increasing, 1 row(s): "
                                                           "2020-01-01 12:00:00+00:00 after 2020-01-01 20:00:00+00:00"}
    # the reader's own checks stop validation with its message, as for an OHLCV file (exit 2)
    funding.write_text("datetime,fundingRate,funding_interval_hours\n2020-01-01 04:00:00,x,8\n")
    assert _run_error(capsys, ["data", "validate", str(funding)]) == (
        "fund.csv: column 'fundingRate' row 1 (line 2, 2020-01-01 04:00:00): 'x' is not a number.")


def test_data_validate_checks_a_price_schedule_file_as_a_run_reads_it(capsys, tmp_path):
    # Before: "prices.csv: its header (date, usd_per_kwh) is not that of a file `data validate` checks" (exit 2)
    from data.price_schedule import read_price_csv

    rows = [("2019-01-01", 0.05), ("2022-03-01", 0.07), ("2023-01-01", 0.06)]
    good = tmp_path / "prices.csv"
    good.write_text("date,usd_per_kwh\n" + "".join(f"{day},{price}\n" for day, price in rows))
    prices = [price for _, price in rows]
    assert _findings(capsys, [str(good)], 0) == [{"level": "info", "what": "summary", "detail": (
        f"prices.csv [price]: {len(rows)} rows, {rows[0][0]} -> {rows[-1][0]}, {min(prices):g} to {max(prices):g} "
        "USD/kWh")}]
    # a one-row file is a schedule a run takes (from its day on)
    one = tmp_path / "one.csv"
    one.write_text("date, usd_per_kwh\n2019-01-01, 0.05\n")  # spaces after the commas, as the reader allows
    assert _findings(capsys, [str(one)], 0)[-1]["detail"] == "one.csv [price]: 1 rows, 2019-01-01 -> 2019-01-01, " \
                                                            "0.05 to 0.05 USD/kWh"

    # what a run refuses after reading the rows: dates out of order, a negative price, each a finding (exit 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("date,usd_per_kwh\n2019-01-01,0.05\n2022-03-01,-0.07\n2022-03-01,0.07\n2021-01-01,0.06\n")
    with pytest.raises(ValueError, match="dates must increase"):
        read_price_csv(bad, "power_usd_per_kwh")
    assert _findings(capsys, [str(bad)], 1) == [
        {"level": "error", "what": "consistency",
         "detail": "bad.csv: duplicate timestamps, 1 row(s): 2022-03-01 00:00:00+00:00"},
        {"level": "error", "what": "consistency", "detail": "bad.csv: timestamps not increasing, 1 row(s): "
                                                            "2021-01-01 00:00:00+00:00 after 2022-03-01 00:00:00+00:00"},
        {"level": "error", "what": "consistency", "detail": "bad.csv: usd_per_kwh below 0.0 (power_usd_per_kwh and "
         "hosting_usd_per_kwh must be >= 0.0 USD/kWh), 1 row(s): line 3 2022-03-01 usd_per_kwh=-0.07"},
        {"level": "info", "what": "summary",
         "detail": "bad.csv [price]: 4 rows, 2019-01-01 -> 2022-03-01, -0.07 to 0.07 USD/kWh"}]
    # a run refuses the negative price too: the parameters' range, which the finding quotes
    from minehedge.errors import ConfigError
    from strategies.base import BASE_SPECS

    negative = tmp_path / "neg.csv"
    negative.write_text("date,usd_per_kwh\n2019-01-01,-0.07\n")
    for spec in BASE_SPECS:
        if spec.name in ("power_usd_per_kwh", "hosting_usd_per_kwh"):
            with pytest.raises(ConfigError, match=r"has a price out of range \(-0\.07\); allowed: float >= 0\.0 USD"):
                spec.coerce(str(negative))

    # what the reader refuses stops validation with the run's own message about the file (exit 2)
    for name, content in [("nan.csv", "date,usd_per_kwh\n2019-01-01,0.05\n2020-01-01,nan\n"),
                          ("word.csv", "date,usd_per_kwh\n2019-01-01,cheap\n"),
                          ("day.csv", "date,usd_per_kwh\n2019-02-30,0.05\n"),
                          ("header.csv", "date,usd_per_kwh\n"),
                          ("wide.csv", "date,usd_per_kwh\n2019-01-01,0.05,7\n")]:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(ValueError) as refused:
            read_price_csv(path, "power_usd_per_kwh")
        assert _run_error(capsys, ["data", "validate", str(path)]) == f"{name} {refused.value}."


def test_data_validate_names_the_kinds_it_checks_for_a_file_of_none(capsys, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("when,price\n2020-01-01,1\n")
    message = _run_error(capsys, ["data", "validate", str(other)])
    assert message.startswith("other.csv: its header (when, price) is not that of a file `data validate` checks: "
                              "ohlcv (datetime or date, open, high, low, close, volume), network (time or date, "
                              "PriceUSD, HashRate, BlkCnt, IssTotNtv, FeeTotNtv; or etherscan_difficulty_TH, ")
    assert message.endswith(" and price (date, usd_per_kwh: a power or hosting price schedule).")
    assert "missing columns" not in message


def test_data_validate_warns_of_a_price_file_row_above_1_usd_per_kwh_as_a_run_does(capsys, tmp_path):
    from mining.price_schedule import price_warnings
    from strategies.base import BASE_SPECS

    cents = tmp_path / "cents.csv"
    cents.write_text("date,usd_per_kwh\n2022-01-01,0.05\n2022-02-01,4.5\n2022-03-01,1\n")
    findings = _findings(capsys, [str(cents)], 0)  # a warning: the file is valid, exit 0
    assert findings[0] == {"level": "warning", "what": "plausibility", "detail": (
        "cents.csv: usd_per_kwh above 1 USD/kWh, more than any industrial power price miners paid: cents for "
        "dollars? (a run warns too), 1 row(s): line 3 2022-02-01 usd_per_kwh=4.5")}  # 1 itself is not above
    assert [f["what"] for f in findings] == ["plausibility", "summary"]
    # the run's warning for the same file: the bound is the same
    [spec] = [spec for spec in BASE_SPECS if spec.name == "power_usd_per_kwh"]
    [warning] = price_warnings({"power_usd_per_kwh": spec.coerce(str(cents))})
    assert "has 1 price(s) above 1 USD/kWh, the highest 4.5 USD/kWh" in warning


def test_data_validate_reports_every_row_problem_when_the_bar_spacing_is_no_timeframe(capsys, tmp_path):
    # Before: only "median bar spacing 3 days 00:00:00 is not one of 1h, 4h, 1d." (exit 2).
    path = tmp_path / "multi.csv"
    path.write_text("datetime,open,high,low,close,volume\n2020-01-01,100,110,90,105,5\n2020-01-01,100,110,90,105,5\n"
                    "2020-01-04,-100,110,90,105,5\n2020-01-07,100,90,80,85,5\n")
    assert [(f["what"], f["detail"]) for f in _findings(capsys, [str(path)], 1)] == [
        ("bar spacing", "multi.csv: median bar spacing 3 days 00:00:00 is not one of 1h, 4h, 1d, so the UTC grid, "
                        "gaps and bad ticks were not checked."),
        ("consistency", "multi.csv: duplicate timestamps, 1 row(s): 2020-01-01 00:00:00+00:00"),
        ("consistency", "multi.csv: non-positive open, 1 row(s): 2020-01-04 00:00:00+00:00 open=-100"),
        ("consistency", "multi.csv: high < max(open, close), 1 row(s): 2020-01-07 00:00:00+00:00 open=100 high=90 "
                        "close=85"),
        ("consistency", "multi.csv: low > min(open, close), 1 row(s): 2020-01-04 00:00:00+00:00 open=-100 low=90 "
                        "close=105"),
        ("summary", "multi.csv [spacing 3 days 00:00:00]: 4 bars, 2020-01-01 00:00:00+00:00 -> 2020-01-07 "
                    "00:00:00+00:00")]


@pytest.mark.parametrize("name,cut,says,holds,lacks", [
    (BTC_NETWORK, (None, "2021-12-29"), "2009-01-03 -> 2026-03-22 (6288 rows)", "2009-01-03 -> 2021-12-29 (4744 rows)",
     "the rows after 2021-12-29"),
    (BTC_DAILY, ("2018", "2020"), "2017-08-17 -> 2026-01-05 (3064 rows)", "2018-01-01 -> 2020-12-31 (1096 rows)",
     "the rows before 2018-01-01 and the rows after 2020-12-31"),
], ids=["network", "ohlcv"])
def test_data_validate_of_a_file_shorter_than_its_manifest_row_says_what_it_lacks(capsys, cut_copy, name, cut, says,
                                                                                  holds, lacks):
    # Before: "... the requested start -> end needs the missing part", a run's wording (and, for a network file,
    # the missing-columns error above).
    def stamps(text: str) -> str:
        return re.sub(r"(\d{4}-\d\d-\d\d)", r"\1 00:00:00+00:00", text)

    message = (f"{name.split('/')[1]}: MANIFEST.csv says {stamps(says)}, the file holds {stamps(holds)}: it lacks "
               f"{stamps(lacks)} (a copy cut short?). Restore the file or correct its MANIFEST.csv row.")
    folder = cut_copy(FILES, {name: cut})
    findings = _findings(capsys, [str(folder / name)], 1)
    assert findings[0] == {"level": "error", "what": "MANIFEST.csv", "detail": message}


def test_a_csv_that_is_not_utf8_is_a_data_error_saying_how_to_save_it(tmp_path):
    from data.csvfile import read_csv
    from minehedge.errors import DataError

    path = tmp_path / "u16.csv"
    path.write_bytes("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.5,10\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"u16.csv' is not UTF-8 text \(byte 0: invalid start byte\); save it as "
                                        r"UTF-8 CSV"):
        read_csv(path, kind="OHLCV")
