"""Frame plumbing shared by every loader: timeframes, UTC indexes and OHLCV resampling.

Conventions: every frame has a tz-aware UTC ``DatetimeIndex`` of bar **open** times; bars are left-closed,
``[open, open + timeframe)``; prices are float64 in quote currency, ``volume`` float64 in base units (coin).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.csvfile import read_csv
from minehedge.errors import ConfigError, DataError, check_choice, did_you_mean

#: OHLCV bar sizes the data layer serves (any loader, any source).
TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1h": pd.Timedelta(hours=1),
    "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1),
}
OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")

# How each column aggregates when bars are merged (extra columns such as volume_quote are additive).
_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
                "volume_quote": "sum"}
_TIMEFRAME_RE = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)


def parse_timeframe(timeframe: str) -> pd.Timedelta:
    """Return the bar size of ``timeframe`` ('1h', '4h' or '1d'); ConfigError naming the allowed values."""
    if isinstance(timeframe, str):
        key = timeframe.strip().lower()
        if key in TIMEFRAMES:
            return TIMEFRAMES[key]
        match = _TIMEFRAME_RE.match(key)
        if match and pd.Timedelta(int(match.group(1)), unit=match.group(2).lower()) in TIMEFRAMES.values():
            return pd.Timedelta(int(match.group(1)), unit=match.group(2).lower())  # e.g. '24h' == '1d'
    raise ConfigError(
        f"timeframe={timeframe!r} is not supported; choose one of: {', '.join(TIMEFRAMES)}."
        + did_you_mean(str(timeframe), TIMEFRAMES)
    )


def timeframe_name(step: pd.Timedelta) -> str:
    """Inverse of :func:`parse_timeframe` ('1h', '4h', '1d')."""
    for name, size in TIMEFRAMES.items():
        if size == step:
            return name
    raise ConfigError(f"bar size {step} is not one of the supported timeframes {', '.join(TIMEFRAMES)}.")


def to_utc_index(frame: pd.DataFrame | pd.Series, *, what: str = "frame") -> pd.DataFrame | pd.Series:
    """Return a copy whose index is a UTC ``DatetimeIndex``.

    A naive index is taken to be UTC already (all shared files are UTC) and localised; a tz-aware index in
    any zone is converted to UTC. Anything that is not a ``DatetimeIndex`` raises DataError naming ``what``.
    """
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{what}: index must be a DatetimeIndex of bar open times, got {type(index).__name__}."
        )
    out = frame.copy()
    utc = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out.index = utc.as_unit("ns")  # one resolution everywhere (merge_asof and asi8 arithmetic need it)
    out.index.name = "datetime"
    return out


_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d*)?$")


def _first_bad(values: pd.Series, bad: np.ndarray, times: pd.Series | None) -> tuple[str, str]:
    """``row N (line L[, time])`` of the first bad value, and a note on how many more there are."""
    i = int(np.flatnonzero(bad)[0])
    stamp = f", {times.iloc[i]}" if times is not None else ""
    more = f" ({int(bad.sum()) - 1} more bad value(s) in the column)" if bad.sum() > 1 else ""
    return f"row {i + 1} (line {i + 2}{stamp})", more


def parse_times(values: pd.Series, *, what: str, column: str) -> pd.DatetimeIndex:
    """A CSV time column (ISO 8601) as a DatetimeIndex, naive or tz-aware as written (see
    :func:`to_utc_index`).

    DataError naming ``what`` (the file), the column, the first bad row (1-based data row and file line) and
    its value: an empty cell, a value that is not an ISO 8601 date/time (e.g. month 13), or a column mixing
    stamps with and without a UTC offset (ambiguous: the offset-less ones are not known to be UTC).
    """
    try:
        parsed = pd.to_datetime(values, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        parsed = None
    if parsed is not None and not parsed.isna().any():
        return pd.DatetimeIndex(parsed)
    text = values.astype(str)
    coerced = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    bad = coerced.isna().to_numpy()
    empty = values.isna().to_numpy()
    if empty.any():
        where, more = _first_bad(values, empty, None)
        raise DataError(f"{what}: column {column!r} {where} is empty; every row needs a time{more}.")
    if bad.any():
        where, more = _first_bad(values, bad, None)
        value = values.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(f"{what}: column {column!r} {where}: {value!r} is not an ISO 8601 date/time such as "
                        f"'2020-01-05' or '2020-01-05 13:00:00'{more}.")
    aware = text.str.contains(_OFFSET).to_numpy()
    first_naive, first_aware = int(np.argmin(aware)), int(np.argmax(aware))
    raise DataError(f"{what}: column {column!r} mixes stamps without a UTC offset (row {first_naive + 1}, "
                    f"line {first_naive + 2}: {values.iloc[first_naive]!r}) and with one (row "
                    f"{first_aware + 1}, line {first_aware + 2}: {values.iloc[first_aware]!r}); write every "
                    "stamp in UTC, all with or all without the offset.")


def to_float_columns(frame: pd.DataFrame, columns, *, what: str,
                     times: pd.Series | None = None) -> pd.DataFrame:
    """``frame`` with ``columns`` as float64 (empty cells NaN); DataError naming ``what`` (the file), the
    column, the first bad row (with its time from ``times``) and its value where a cell is not a number."""
    out = frame.copy()
    for column in columns:
        raw = out[column]
        if raw.dtype.kind in "fiub":
            out[column] = raw.astype("float64")
            continue
        number = pd.to_numeric(raw, errors="coerce")
        bad = (number.isna() & raw.notna()).to_numpy()
        if bad.any():
            where, more = _first_bad(raw, bad, times)
            value = raw.iloc[int(np.flatnonzero(bad)[0])]
            hint = " (no thousands separators)" if _THOUSANDS.match(str(value)) else ""
            raise DataError(f"{what}: column {column!r} {where}: {value!r} is not a number{hint}{more}.")
        out[column] = number.astype("float64")
    return out


def read_time_csv(path: Path, kind: str, time_columns: tuple[str, ...], required: tuple[str, ...],
                  optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """The ``required`` and present ``optional`` columns of a CSV file as float64 on a UTC index read from
    the first of ``time_columns`` it has. DataError naming the file and the missing columns, or the column,
    row and value of a malformed cell (:func:`parse_times`, :func:`to_float_columns`); ``kind`` ('network',
    'funding') names the file in a not-found message."""
    frame = read_csv(path, kind=kind, expected=f"{time_columns[0]},{','.join(required)}")
    time_column = next((c for c in time_columns if c in frame.columns), None)
    missing = [c for c in required if c not in frame.columns]
    if time_column is None or missing:
        raise DataError(f"{path.name}: missing column(s) {missing or [time_columns[0]]}; the {kind} reader "
                        f"needs {' (or '.join(time_columns)}{')' * (len(time_columns) - 1)}, "
                        f"{', '.join(required)}.")
    times = frame.pop(time_column)
    columns = [*required, *(c for c in optional if c in frame.columns)]
    frame = to_float_columns(frame[columns], columns, what=path.name, times=times)
    frame.index = parse_times(times, what=path.name, column=time_column)
    return to_utc_index(frame, what=path.name)


def to_utc_timestamp(value: object, *, parameter: str) -> pd.Timestamp | None:
    """Parse a user-supplied time bound (str, date, datetime, Timestamp, None) as a UTC Timestamp."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{parameter}={value!r} is not a date or timestamp (e.g. '2020-03-12').") from None
    if stamp is pd.NaT:
        raise ConfigError(f"{parameter}={value!r} is not a date or timestamp (e.g. '2020-03-12').")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def resample_ohlcv(frame: pd.DataFrame, timeframe: str, *, partial: str = "drop") -> pd.DataFrame:
    """Merge finer OHLCV bars into ``timeframe`` bars (open first, high max, low min, close last, volume sum).

    Bars are labelled by their open time and are left-closed; bins are aligned to the Unix epoch, so 4h bars
    open at 00/04/08/12/16/20 UTC and daily bars at 00:00 UTC. A bin with no source bar is absent (never
    forward-filled). A bin is *partial* when it holds fewer source bars than it should (``timeframe /
    source bar size``): at the start or end of the data that means the bar is incomplete (the trailing bar
    still forming, or a series starting mid-day), so ``partial`` decides:

    * ``'drop'`` (default): incomplete **edge** bins are dropped; interior bins short of bars because the
      source has a gap are kept (the source's validation report lists that gap);
    * ``'flag'``: every bin is kept and a float64 column ``source_bars`` holds the count so the caller can
      see and report the short ones.
    """
    check_choice("partial", partial, ("drop", "flag"))
    target = parse_timeframe(timeframe)
    frame = to_utc_index(frame, what="resample_ohlcv input")
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"resample_ohlcv input lacks columns {missing}; it needs {list(OHLCV_COLUMNS)}.")
    if len(frame) < 2:
        raise DataError("resample_ohlcv needs at least two source bars to infer their bar size.")
    source_step = pd.Series(frame.index).diff().min()
    if source_step > target:
        raise DataError(f"cannot resample {timeframe_name(source_step)} bars down to "
                        f"finer {timeframe!r} bars.")
    per_bin = target / source_step
    if per_bin != int(per_bin):
        raise DataError(f"{timeframe!r} is not a whole number of source bars of {source_step}.")
    columns = {c: how for c, how in _AGGREGATION.items() if c in frame.columns}
    grouped = frame[list(columns)].resample(target, label="left", closed="left", origin="epoch")
    out = grouped.agg(columns)
    counts = grouped["close"].count()
    out = out[counts > 0].astype("float64")
    counts = counts[counts > 0]
    if partial == "drop":
        short = counts < int(per_bin)
        keep = np.ones(len(out), dtype=bool)
        if len(out) and short.iloc[0]:
            keep[0] = False
        if len(out) and short.iloc[-1]:
            keep[-1] = False
        out = out[keep]
    else:
        out["source_bars"] = counts.astype("float64")
    out.index.name = "datetime"
    return out
