"""Malformed CSV cells in the OHLCV, network and funding readers: a DataError naming the file, column, row and
value (never a bare pandas error), and `data validate FILE` prints the message, not a traceback."""

from __future__ import annotations

import pytest

from data.funding import read_bitmex, read_funding_file
from data.network import read_btc_network_csv
from data.ohlcv_csv import read_ohlcv_csv
from minehedge.cli import main
from minehedge.errors import DataError

GOOD = [f"2020-01-0{d} 00:00:00,100,110,90,105,5" for d in range(1, 10)]


def ohlcv_file(tmp_path, row: int, text: str):
    lines = list(GOOD)
    lines[row] = text
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(["datetime,open,high,low,close,volume", *lines]) + "\n")
    return path


@pytest.mark.parametrize("cell,message", [
    ("2020-01-05 00:00:00,100,110,90,abc,5",
     "bars.csv: column 'close' row 5 (line 6, 2020-01-05 00:00:00): 'abc' is not a number."),
    ('2020-01-05 00:00:00,100,110,90,"1,050",5',
     "bars.csv: column 'close' row 5 (line 6, 2020-01-05 00:00:00): '1,050' is not a number (no thousands "
     "separators)."),
    ("2020-13-05 00:00:00,100,110,90,105,5",
     "bars.csv: column 'datetime' row 5 (line 6): '2020-13-05 00:00:00' is not an ISO 8601 date/time such as "
     "'2020-01-05' or '2020-01-05 13:00:00'."),
    (",100,110,90,105,5",
     "bars.csv: column 'datetime' row 5 (line 6) is empty; every row needs a time."),
    ("2020-01-05 00:00:00+00:00,100,110,90,105,5",
     "bars.csv: column 'datetime' mixes stamps without a UTC offset (row 1, line 2: '2020-01-01 00:00:00') and "
     "with one (row 5, line 6: '2020-01-05 00:00:00+00:00'); write every stamp in UTC, all with or all without "
     "the offset."),
])
def test_malformed_ohlcv_cells_name_file_column_row_and_value(tmp_path, capsys, cell, message):
    path = ohlcv_file(tmp_path, 4, cell)
    with pytest.raises(DataError) as error:
        read_ohlcv_csv(path)
    assert str(error.value) == message
    assert main(["data", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_malformed_network_cell_and_missing_column(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("time,PriceUSD,HashRate,BlkCnt,IssTotNtv,FeeTotNtv\n2020-01-01,7200,100,144,1800,10\n"
                    "2020-01-02,7200 USD,100,144,1800,10\n")
    with pytest.raises(DataError, match=r"^net.csv: column 'PriceUSD' row 2 \(line 3, 2020-01-02\): '7200 USD' is not "
                                        r"a number\.$"):
        read_btc_network_csv(path)
    path.write_text("time,PriceUSD,HashRate,IssTotNtv,FeeTotNtv\n2020-01-01,7200,100,1800,10\n")
    with pytest.raises(DataError, match=r"^net.csv: missing column\(s\) \['BlkCnt'\]; the network reader needs time "
                                        r"\(or date\), PriceUSD, HashRate, BlkCnt, IssTotNtv, FeeTotNtv\.$"):
        read_btc_network_csv(path)


def test_funding_file_missing_column_is_named_not_an_unknown_venue(tmp_path):
    path = tmp_path / "bitmex.csv"
    path.write_text("datetime,symbol,funding_interval_hours,funding_rate\n2020-01-01 04:00:00,XBTUSD,8,0.0001\n")
    with pytest.raises(DataError) as error:
        read_funding_file(path, "BTC", "bitmex")
    assert str(error.value) == ("bitmex.csv: missing column(s) ['fundingRate']; the funding reader needs datetime "
                                "(or date), fundingRate, funding_interval_hours.")
    with pytest.raises(DataError, match=r"no reader for BTC funding venue 'okx' \(bitmex.csv\); readers exist for: "
                                        r"binance, bitmex, deribit\."):
        read_funding_file(path, "BTC", "okx")
    path.write_text("datetime,symbol,funding_interval_hours,fundingRate\n2020-01-01 04:00:00,XBTUSD,8,1e-4%\n")
    with pytest.raises(DataError, match=r"^bitmex.csv: column 'fundingRate' row 1 \(line 2, 2020-01-01 04:00:00\): "
                                        r"'1e-4%' is not a number\.$"):
        read_bitmex(path)


# --- bars off their timeframe's UTC grid; data validate on unsorted and empty files -------------------------

def test_bars_off_the_utc_grid_are_errors_naming_the_file_and_stamps(tmp_path):
    import pandas as pd

    from data.validate import validate_ohlcv

    daily = pd.DataFrame({"open": 100.0, "high": 110.0, "low": 90.0, "close": 105.0, "volume": 5.0},
                         index=pd.date_range("2020-01-01 00:00+02:00", periods=3, freq="1D"))
    with pytest.raises(DataError) as error:
        validate_ohlcv(daily, "1d", source="plus2.csv")
    assert str(error.value) == (
        "plus2.csv: bars not on the 1d UTC grid (a 1d bar opens at 00:00 UTC; were the times written in another "
        "zone?), 3 row(s): 2019-12-31 22:00:00+00:00; 2020-01-01 22:00:00+00:00; 2020-01-02 22:00:00+00:00")
    four = daily.set_axis(pd.date_range("2020-01-01 02:00", periods=3, freq="4h", tz="UTC"))
    with pytest.raises(DataError, match=r"not on the 4h UTC grid \(a 4h bar opens at 00, 04, 08, 12, 16 or 20 h UTC"):
        validate_ohlcv(four, "4h", source="four.csv")
    hourly = daily.set_axis(pd.date_range("2020-01-01 00:30", periods=3, freq="1h", tz="UTC"))
    with pytest.raises(DataError, match=r"not on the 1h UTC grid \(a 1h bar opens on the hour UTC"):
        validate_ohlcv(hourly, "1h", source="hourly.csv")


def test_load_ohlcv_names_the_grid_not_the_manifest_for_a_shifted_file(tmp_path):
    import data

    (tmp_path / "btc").mkdir()
    (tmp_path / "btc" / "plus2.csv").write_text("\n".join(
        ["date,open,high,low,close,volume", *(f"2020-01-0{d} 00:00:00+02:00,100,110,90,105,5" for d in range(1, 10))])
        + "\n")
    (tmp_path / "MANIFEST.csv").write_text("file,asset,kind,timeframe,venue,quote,rows,first,last\n"
                                           "btc/plus2.csv,BTC,ohlcv,1d,x,USD,9,2020-01-01,2020-01-09\n")
    with pytest.raises(DataError, match=r"^plus2.csv: bars not on the 1d UTC grid .* 9 row\(s\): 2019-12-31 22:00"):
        data.load_ohlcv("BTC", "1d", "2020-01-01", "2020-01-10", data_dir=tmp_path)


def test_data_validate_unsorted_and_header_only_files(tmp_path, capsys):
    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("\n".join(["datetime,open,high,low,close,volume", *reversed(GOOD)]) + "\n")
    assert main(["data", "validate", str(unsorted)]) == 1
    out = capsys.readouterr().out
    assert "unsorted.csv: timestamps not increasing, 8 row(s): 2020-01-08 00:00:00+00:00 after 2020-01-09" in out
    assert "unsorted.csv [1d]: 9 bars" in out
    empty = tmp_path / "header_only.csv"
    empty.write_text("datetime,open,high,low,close,volume\n")
    assert main(["data", "validate", str(empty)]) == 2
    assert capsys.readouterr().err.endswith(
        "header_only.csv: no rows (only a header); validation needs at least two bars (their spacing tells the "
        "timeframe).\n")


def test_data_validate_of_a_file_too_short_to_judge_warns_that_bad_ticks_were_not_checked(tmp_path, capsys):
    import json

    short = tmp_path / "short.csv"
    short.write_text("\n".join(["datetime,open,high,low,close,volume", *GOOD[:3]]) + "\n")
    assert main(["data", "validate", str(short), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert {"level": "warning", "what": "bad ticks not checked",
            "detail": "not checked for bad ticks: 3 bar(s) with fewer than 3 neighbours on both sides "
                      "(2020-01-01 00:00:00+00:00, 2020-01-02 00:00:00+00:00, 2020-01-03 00:00:00+00:00)"} in findings
