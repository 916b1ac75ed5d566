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
