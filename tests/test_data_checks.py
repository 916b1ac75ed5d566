"""Data checks from audit 25: a MANIFEST.csv value outside its allowed set (finding 5), an implausible funding
rate (finding 9), and two messages (finding 10: an appended out-of-order row, the 1h "no file covers" end).
Every corruption is made in a copy of the shared data in tmp_path (the `cut_copy` fixture); the shared folder is
only read."""

from __future__ import annotations

import pytest

from minehedge.cli import main

COINBASE = "btc/btc_usd_daily_bitstamp-coinbase_2011-08-18_2025-09-23.csv"
BINANCE = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
BTC_NETWORK = "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"
BTC_FUNDING = "funding/btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv"
BITMEX = "funding/btc_bitmex_xbtusd_funding_2016-05-14_2020-11-05.csv"
FILES = [COINBASE, BINANCE, BTC_NETWORK, BTC_FUNDING]
RANGE = ["--start", "2022-01-01", "--end", "2022-01-31"]


def _error(capsys, argv: list[str]) -> str:
    """The last stderr line of `argv`, which exited 2 with no traceback (a sweep prints its size first)."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    return err.splitlines()[-1].removeprefix("run_backtest.py: error: ")


def _edit_manifest(folder, file: str, column: str, value: str) -> int:
    """Set ``column`` of ``file``'s MANIFEST.csv row in ``folder`` to ``value``; the row's line number."""
    path = folder / "MANIFEST.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    number = next(i for i, line in enumerate(lines) if line.startswith(file + ","))
    cells = lines[number].split(",")
    cells[header.index(column)] = value
    lines[number] = ",".join(cells)
    path.write_text("".join(lines))
    return number + 1


# ------------------------------------------------------------------------------- A: MANIFEST.csv values


@pytest.mark.parametrize("column,value,allowed", [
    ("timeframe", "1x", "1h, 4h, 1d (for kind ohlcv)"),
    ("timeframe", "8h", "1h, 4h, 1d (for kind ohlcv)"),
    ("kind", "ohlvc", "ohlcv, network, funding, futures"),
    ("asset", "XBT", "BTC, ETH"),
    ("first", "2011-13-18", "an ISO 8601 UTC time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS): the time of the file's "
                            "first row"),
    ("last", "", "an ISO 8601 UTC time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS): the time of the file's last row"),
], ids=["timeframe-1x", "timeframe-of-another-kind", "kind", "asset", "first", "last-blank"])
def test_a_manifest_value_outside_its_allowed_set_is_a_data_error_in_every_command(capsys, cut_copy, tmp_path,
                                                                                    column, value, allowed):
    # Before: the row was ignored (timeframe, kind, asset): the run quietly took Binance's daily file and its
    # final equity changed; `data list` showed the value without comment. A bad first/last was a traceback.
    folder = cut_copy(FILES, {})
    line = _edit_manifest(folder, COINBASE, column, value)
    expected = (f"{folder / 'MANIFEST.csv'} line {line} ({COINBASE}): {column}={value!r} is not allowed; allowed: "
                f"{allowed}. Correct the row, or copy the data folder again.")
    where = ["--data-dir", str(folder)]
    assert _error(capsys, ["run", "--policy", "static_hedge", *RANGE, *where]) == expected
    assert _error(capsys, ["data", "list", *where]) == expected
    assert _error(capsys, ["data", "validate", *RANGE, *where]) == expected
    assert _error(capsys, ["data", "validate", str(folder / BINANCE)]) == expected  # a FILE its manifest lists
    assert _error(capsys, ["sweep", "--policy", "static_hedge", "--grid", "hedge_ratio=0,1", *RANGE, *where,
                           "--workers", "1", "--out", str(tmp_path / "sweep")]) == expected


def test_the_line_named_counts_blank_lines_of_the_manifest(capsys, cut_copy):
    folder = cut_copy(FILES, {})
    manifest = folder / "MANIFEST.csv"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join([lines[0], "\n", *lines[1:]]))  # pandas skips the blank line 2
    line = _edit_manifest(folder, BINANCE, "kind", "OHLCV")
    assert _error(capsys, ["data", "list", "--data-dir", str(folder)]) == (
        f"{manifest} line {line} ({BINANCE}): kind='OHLCV' is not allowed; allowed: ohlcv, network, funding, "
        "futures. Correct the row, or copy the data folder again.")
