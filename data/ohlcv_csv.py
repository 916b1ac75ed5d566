"""Read one OHLCV (or daily futures) CSV file of a data directory into a float64, UTC-indexed frame.

Files use ``date`` (daily) or ``datetime`` (intraday) for the bar open time, in UTC, and the columns
``open, high, low, close, volume`` (base units). The CBOE futures file has ``volume_contracts`` instead,
kept as ``volume`` (contracts; NaN where Investing.com shows "-"). ``volume_quote`` is kept when present;
bookkeeping columns (``tradecount``, ``volume_cols_swapped_in_source``, ``change_pct``) are not loaded.
A cell that is not a number, or a time that is not ISO 8601 (or a column mixing stamps with and without a UTC
offset), is a DataError naming the file, column, row and value (:func:`data.frames.parse_times`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.csvfile import file_bytes, read_csv
from data.frames import OHLCV_COLUMNS, parse_times, to_float_columns, to_utc_index
from data.memo import ParsedFiles
from minehedge.errors import DataError

_TIME_COLUMNS = ("datetime", "date", "time")
_HEADER = "e.g. datetime,open,high,low,close,volume"
_PARSED = ParsedFiles(kept=4)  # files remembered (an hourly file parses to about 2 MB)


def read_ohlcv_csv(path: str | Path) -> pd.DataFrame:
    """Return the file's OHLCV as float64 columns on a UTC DatetimeIndex named ``datetime`` (a fresh copy;
    the parsing is remembered per path and content, :mod:`data.memo`)."""
    path = Path(path)
    return _PARSED.get(str(path.resolve()), file_bytes(path, "OHLCV"), lambda content: _parse(path, content))


def _parse(path: Path, content: bytes) -> pd.DataFrame:
    header = read_csv(path, content, kind="OHLCV", expected=_HEADER, nrows=0).columns
    time_column = next((c for c in _TIME_COLUMNS if c in header), None)
    if time_column is None:
        raise DataError(f"{path.name}: no time column; expected one of {', '.join(_TIME_COLUMNS)}.")
    renames = {"volume_contracts": "volume"} if "volume_contracts" in header else {}
    wanted = [c for c in (*OHLCV_COLUMNS, "volume_quote", "volume_contracts") if c in header]
    frame = read_csv(path, content, kind="OHLCV", usecols=[time_column, *wanted], na_values=["-"])
    frame = frame.rename(columns=renames)
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: missing columns {missing}; expected {', '.join(OHLCV_COLUMNS)}.")
    times = frame.pop(time_column)
    columns = [c for c in (*OHLCV_COLUMNS, "volume_quote") if c in frame.columns]
    frame = to_float_columns(frame[columns], columns, what=path.name, times=times)
    frame.index = parse_times(times, what=path.name, column=time_column)
    return to_utc_index(frame, what=path.name)
