"""Data checks from audit 25: a MANIFEST.csv value outside its allowed set (finding 5), an implausible funding
rate (finding 9), and two messages (finding 10: an appended out-of-order row, the 1h "no file covers" end).
Every corruption is made in a copy of the shared data in tmp_path (the `cut_copy` fixture); the shared folder is
only read."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from data.manifest import read_manifest
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
    ("asset", "xbt", "BTC, ETH (any case)"),  # quoted as written, not upper-cased
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


ISO = "an ISO 8601 UTC time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS): the time of the file's {} row"


def test_every_bad_manifest_value_is_named_in_one_error(capsys, cut_copy):
    # Before: only the first bad cell was named; fixing it revealed the next one, a command at a time.
    folder = cut_copy(FILES, {})
    manifest = folder / "MANIFEST.csv"
    bad = [(COINBASE, "timeframe", "1x", "1h, 4h, 1d (for kind ohlcv)"),
           (COINBASE, "last", "2025-09-31", ISO.format("last")),
           (BTC_FUNDING, "asset", "xbt", "BTC, ETH (any case)"),
           (BTC_NETWORK, "kind", "netwrk", "ohlcv, network, funding, futures")]  # its 1d timeframe is not judged
    where = {file: _edit_manifest(folder, file, column, value) for file, column, value, _ in bad}
    columns = manifest.read_text().splitlines()[0].split(",")
    # in row order, then the manifest's column order
    cells = sorted(((where[file], file, column, value, allowed) for file, column, value, allowed in bad),
                   key=lambda cell: (cell[0], columns.index(cell[2])))
    expected = (f"{manifest}: 4 values are not allowed: "
                + "; ".join(f"line {line} ({file}): {column}={value!r} is not allowed; allowed: {allowed}"
                            for line, file, column, value, allowed in cells)
                + ". Correct the rows, or copy the data folder again.")
    assert _error(capsys, ["data", "list", "--data-dir", str(folder)]) == expected
    assert _error(capsys, ["run", "--policy", "static_hedge", *RANGE, "--data-dir", str(folder)]) == expected


def test_a_manifest_with_many_bad_values_lists_the_first_ten_and_counts_the_rest(data_dir, tmp_path):
    from data.manifest import MANIFEST_ERRORS_SHOWN
    from minehedge.errors import DataError

    # a copy of the shared manifest alone (reading it needs none of its files), every row's first time bad
    rows = (data_dir / "MANIFEST.csv").read_text().splitlines(keepends=True)
    header = rows[0].rstrip("\n").split(",")
    at = header.index("first")
    corrupt = []
    for row in rows[1:]:
        cells = row.split(",")
        cells[at] = "soon"
        corrupt.append(",".join(cells))
    (tmp_path / "MANIFEST.csv").write_text("".join([rows[0], *corrupt]))
    assert len(corrupt) > MANIFEST_ERRORS_SHOWN == 10
    with pytest.raises(DataError) as caught:
        read_manifest(tmp_path)
    listed = [f"line {n} ({row.split(',')[0]}): first='soon' is not allowed; allowed: {ISO.format('first')}"
              for n, row in enumerate(corrupt, start=2)]
    assert str(caught.value) == (f"{tmp_path / 'MANIFEST.csv'}: {len(corrupt)} values are not allowed: "
                                 f"{'; '.join(listed[:10])}; and {len(corrupt) - 10} more. Correct the rows, or "
                                 "copy the data folder again.")


# ------------------------------------------------------------------------------- B: implausible funding rates

JUNE_10 = "7.597333333333333e-05"  # the Binance file's 2022-06-10 daily mean of the 8h rates


@pytest.mark.parametrize("corrupt", ["7.597333333333333e-01", "-7.59733333333333e-02"], ids=["76%", "-7.6%"])
def test_a_funding_rate_beyond_any_venue_cap_is_refused_by_a_run_that_reads_it(capsys, cut_copy, corrupt):
    # Before: the run went on (exit 0) and received 4.1 M USD of funding in a month at 76 % per 8h.
    folder = cut_copy(FILES, {})
    path = folder / BTC_FUNDING
    text = path.read_text()
    assert text.count(JUNE_10) == 1 and len(corrupt) == len(JUNE_10)  # same size: the bytes check passes
    path.write_text(text.replace(JUNE_10, corrupt))
    value = float(corrupt)
    assert abs(value) > 0.05
    run = ["run", "--policy", "static_hedge", "--set", "leverage=3", "--set", "hedge_ratio=1", "--data-dir",
           str(folder)]
    assert _error(capsys, [*run, "--start", "2022-06-01", "--end", "2022-06-30"]) == (
        f"{BTC_FUNDING}: funding_rate_daily_mean_8h beyond any venue's funding rate cap (|rate| <= 0.05 per "
        f"settlement is plausible), 1 row(s): 2022-06-10 00:00:00+00:00 funding_rate_daily_mean_8h={value:g}: a "
        "corrupt value? Restore the file from its source (MANIFEST.csv's source_repo and source_path); `data "
        "validate` lists every such row.")
    # a run that does not read the row is not refused (as for a file shorter than its row)
    assert main([*run, "--start", "2022-07-01", "--end", "2022-07-31", "--json"]) == 0
    capsys.readouterr()
    # `data validate` of the file: an error finding (exit 1), with the summary
    assert main(["data", "validate", "--json", str(path)]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert findings[0] == {"level": "error", "what": "funding rate", "detail": (
        f"{path.name}: funding_rate_daily_mean_8h beyond any venue's funding rate cap (|rate| <= 0.05 per "
        f"settlement is plausible), 1 row(s): 2022-06-10 00:00:00+00:00 funding_rate_daily_mean_8h={value:g}")}
    assert [row["what"] for row in findings] == ["funding rate", "summary"]


def test_every_shared_funding_file_is_within_the_plausible_bound(data_dir):
    # the bound sits above every real rate: the largest |rate| of a row is BitMEX's 0.01125 (2016-06-13 12:00)
    from data.funding import MAX_PLAUSIBLE_RATE, implausible_rates, read_funding_rows

    largest = {}
    for row in read_manifest(data_dir).itertuples():
        if row.kind == "funding":
            raw, _ = read_funding_rows(row.path, row.asset, row.venue)
            assert implausible_rates(raw) is None
            largest[row.venue] = raw.iloc[:, 0].abs().max()
    assert max(largest.values()) == largest["bitmex"] == 0.01125 < MAX_PLAUSIBLE_RATE


# ------------------------------------------------------------------------------- C: two messages


def test_a_row_appended_out_of_order_is_named_by_its_line_and_time(capsys, cut_copy):
    # Before: "... the file holds 5152 rows (1 more) between the same first and last times: rows were added to
    # the middle of the file", though the file's middle is intact and its last line is out of order.
    folder = cut_copy(FILES, {})
    path = folder / COINBASE
    lines = path.read_text().splitlines(keepends=True)
    original = next(number for number, line in enumerate(lines, start=1) if line.startswith("2022-06-18,"))
    path.write_text("".join([*lines, lines[original - 1]]))
    last = len(lines) + 1
    said = len(lines) - 1  # the manifest's rows: the lines after the header
    expected = (f"{path.name}: line {last}, the last (2022-06-18 00:00:00+00:00), repeats line {original}'s time and "
                f"is before line {last - 1}'s (2025-09-23 00:00:00+00:00): a duplicate and decreasing timestamp (a "
                f"row appended out of order?). MANIFEST.csv says {said} rows, the file holds {said + 1} (1 more). "
                "Remove or move that line, or restore the file from its source (MANIFEST.csv's source_repo and "
                "source_path).")
    assert _error(capsys, ["run", *RANGE, "--data-dir", str(folder)]) == expected
    assert main(["data", "validate", "--json", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)[0] == {"level": "error", "what": "MANIFEST.csv", "detail": expected}
    # a copy of the 2022-06-23 row inserted after 2022-06-18: the first time that does not increase is the
    # 2022-06-19 line after it
    path.write_text("".join([*lines[:original], lines[original + 4], *lines[original:]]))
    assert _error(capsys, ["run", *RANGE, "--data-dir", str(folder)]).startswith(
        f"{path.name}: line {original + 2} (2022-06-19 00:00:00+00:00) is before line {original + 1}'s (2022-06-23 "
        f"00:00:00+00:00): a decreasing timestamp. MANIFEST.csv says {said} rows, the file holds {said + 1} (1 more).")
    # times that increase: a row lost from the middle is still said as such
    path.write_text("".join([*lines[:original - 1], *lines[original:]]))
    assert _error(capsys, ["run", *RANGE, "--data-dir", str(folder)]).endswith(
        f"the file holds {said - 1} rows (1 fewer) between the same first and last times: rows were lost from the "
        "middle of the file. Restore the file from its source (MANIFEST.csv's source_repo and source_path) or correct "
        "its MANIFEST.csv row.")


def test_no_file_covers_names_the_users_inclusive_end_day(capsys, data_dir):
    # Before: "no BTC ohlcv file at 1h covers 2022-06-01 00:00:00+00:00 -> 2023-01-01 00:00:00+00:00", the
    # exclusive end, which reads as another day than the --end given.
    assert _error(capsys, ["run", "--timeframe", "1h", "--start", "2022-06-01", "--end", "2022-12-31",
                           "--data-dir", str(data_dir)]).startswith(
        "no BTC ohlcv file at 1h covers 2022-06-01 through 2022-12-31; covered ranges: ")
    from data.manifest import requested_text

    day, hour = pd.Timestamp("2023-01-01", tz="UTC"), pd.Timestamp("2023-01-01 05:00", tz="UTC")
    assert requested_text(hour, day) == "2023-01-01 05:00:00+00:00 through 2022-12-31"
    assert requested_text(None, hour) == "the start to 2023-01-01 05:00:00+00:00 (exclusive)"
    assert requested_text(day, None) == "2023-01-01 through the end"
