"""A USD/kWh price parameter (``power_usd_per_kwh``, ``hosting_usd_per_kwh``) in any of its forms besides a
number: the inline shorthand, a table of dates, or a CSV file of ``date,usd_per_kwh`` rows.

:func:`price_schedule` is what :class:`minehedge.config.ParamSpec` calls for such a parameter's value when it
is not a number: a string ending in ``.csv`` is a file (a path relative to the current directory) read
here through :func:`data.csvfile.read_csv`; anything else goes to
:func:`mining.price_schedule.parse_price_schedule`.
Both give a :class:`mining.price_schedule.PriceSchedule`; a malformed value raises :class:`ValueError` whose
message follows ``name=value`` (the ParamSpec adds what is allowed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from data.csvfile import read_csv
from minehedge.errors import DataError
from mining.price_schedule import PriceSchedule, dated_schedule, parse_price_schedule, price_value, utc_day

#: The columns of a price CSV file, in order.
PRICE_COLUMNS = ("date", "usd_per_kwh")
#: What a price parameter takes besides a number: briefly (the ParamSpec's "allowed" text, in every error
#: message and the ``policies`` listing) ...
SCHEDULE_FORMS = "a schedule PRICE,PRICE@YYYY-MM-DD,... or FILE.csv"
#: ... and in full (the parameter's description).
SCHEDULE_DOC = ("a dated schedule: PRICE,PRICE@YYYY-MM-DD,... (the first price applies from before the run, "
                "each dated one from that UTC day on; dates increasing), a CSV file FILE.csv of "
                "date,usd_per_kwh rows, or a config file's table of YYYY-MM-DD = PRICE; costs and "
                "curtailment use each day's price")


def price_schedule(name: str, value: Any) -> PriceSchedule:
    """``value`` of the price parameter ``name`` as a :class:`PriceSchedule`: a CSV file's name (ending in
    ``.csv``) is read (:func:`read_price_csv`); any other form is parsed by
    :func:`mining.price_schedule.parse_price_schedule`."""
    if isinstance(value, str) and value.strip().lower().endswith(".csv"):
        return read_price_csv(value.strip(), name)
    return parse_price_schedule(name, value)


def read_price_csv(path: str | Path, name: str) -> PriceSchedule:
    """The schedule in the CSV file ``path``: a header ``date,usd_per_kwh``, then one row per change, dates
    YYYY-MM-DD (UTC days) strictly increasing, each price (USD/kWh) in force from its day until the next
    row's. A run that starts before the first row's date is refused (:meth:`PriceSchedule.on`).
    :class:`ValueError` naming the file, and the line and value where one is wrong."""
    rows = read_price_rows(path)
    return dated_schedule(name, [(day, price) for day, price, _ in rows], label=str(path),
                          where=[f"line {line} of {str(path)!r}" for _, _, line in rows])


def read_price_rows(path: str | Path) -> list[tuple[pd.Timestamp, float, int]]:
    """The rows of the price CSV file ``path`` in file order, each ``(UTC day, price in USD/kWh, its line
    number in the file)``: what :func:`read_price_csv` makes a schedule of (and ``data validate`` checks),
    with its rules (a header ``date,usd_per_kwh``, at least one row, dates YYYY-MM-DD, finite numbers) but
    not yet checked for their order. :class:`ValueError` naming the file, and the line and value where one is
    wrong."""
    try:
        frame = read_csv(path, kind="price", expected=",".join(PRICE_COLUMNS), listed=False, dtype=str,
                         keep_default_na=False, skipinitialspace=True)
    except DataError as exc:
        raise ValueError(f"cannot be read: {str(exc).rstrip('.')}") from None
    columns = tuple(str(column).strip().lower() for column in frame.columns)
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took a first column the header lacks as the index
        raise ValueError(f"cannot be read: price file {str(path)!r} has more values on a line than its "
                         f"header has columns ({','.join(columns)}); each row needs a date and a usd_per_kwh")
    if columns != PRICE_COLUMNS:
        raise ValueError(f"cannot be read: price file {str(path)!r} has the columns {','.join(columns)}; it "
                         f"needs exactly {','.join(PRICE_COLUMNS)}")
    if frame.empty:
        raise ValueError(f"cannot be read: price file {str(path)!r} has a header but no rows; give one row "
                         "per price change")
    rows = []
    for line, (day, price) in enumerate(frame.itertuples(index=False, name=None), start=2):
        where = f"line {line} of {str(path)!r}"
        rows.append((utc_day(day, f"{day!r} ({where})"), price_value(price, f"{price!r} ({where})"), line))
    return rows
