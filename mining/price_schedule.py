"""Prices that change on dated days: electricity (or hosting) in USD/kWh as a schedule, not only a constant.

A :class:`PriceSchedule` holds an opening price (in force before its first dated change, or none) and dated
changes, each in force from its time (00:00 UTC of its day) until the next one. :meth:`PriceSchedule.on` gives
the price in force on each day a fleet is simulated; a day before the schedule starts is an error, never a
price guessed backwards. :func:`parse_price_schedule` reads the forms a price parameter takes besides a
number:

* ``"0.045,0.07@2022-03-01,0.05@2023-01-01"``: comma-separated ``PRICE@YYYY-MM-DD`` items, the first of which
  may have no date: it is the price before the first dated change, from before the run. Dates strictly
  increase. A first item with a date starts the schedule on that day (``0.05@2019-01-01,0.07@2022-03-01``);
  so does a first item ``none`` (``none,0.05@2019-01-01``: no price before that day), the only way to write
  one dated price alone (``0.05@2019-01-01`` alone is refused: most often a price before it was forgotten,
  or a ``--grid`` split a schedule at its commas).
* a mapping ``{date: price}`` (a Python dict; a TOML table of ``2022-03-01 = 0.07`` lines): every price dated,
  dates increasing.
* a pandas Series indexed by times: each value from its time on (times of day are kept).

Prices must be finite numbers; their allowed range (>= 0 USD/kWh) is checked by the caller
(:class:`minehedge.config.ParamSpec`, :class:`mining.fleet.Fleet`). A CSV file of ``date,usd_per_kwh`` rows is
read by :func:`data.price_schedule.read_price_csv` into the same object.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from minehedge.errors import ConfigError
from mining.revenue import _utc_index

_ITEM = re.compile(r"^(?P<price>[^@]*?)\s*(?:@\s*(?P<date>.*))?$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The first item of an inline schedule without a price before its first dated one: ``none,0.07@2022-03-01``.
NO_OPENING = "none"
#: How many dated prices :meth:`PriceSchedule.describe` lists one by one; a longer schedule is summarised.
DESCRIBE_AT_MOST = 12


@dataclass(frozen=True, repr=False)
class PriceSchedule:
    """A price (USD/kWh) that changes on dated days (frozen and hashable: a fleet's cache key holds it).

    opening: the price before the first change (from before any run), or None: the schedule starts with its
        first change, and a day before it has no price.
    changes: ``(time, price)`` pairs, times UTC and strictly increasing (00:00 of a day for a dated day);
        each price is in force from its time until the next change.
    label: where it came from (a CSV file's path), which reports and results.csv show; empty: the shorthand.
    name: the parameter it prices, for error messages.
    Two schedules are equal when their prices and times are (label and name aside).
    """

    opening: float | None
    changes: tuple[tuple[pd.Timestamp, float], ...]
    label: str = field(default="", compare=False)
    name: str = field(default="price", compare=False)

    def __post_init__(self) -> None:
        if self.opening is None and not self.changes:
            raise ConfigError(f"{self.name}: a price schedule needs at least one price.")
        times = [when for when, _ in self.changes]
        if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
            raise ConfigError(f"{self.name}: a price schedule's times must strictly increase.")
        if not all(math.isfinite(price) for price in self.prices):
            raise ConfigError(f"{self.name}: a price schedule's prices must be finite numbers.")

    @property
    def prices(self) -> tuple[float, ...]:
        """Every price of the schedule (USD/kWh), the opening one first."""
        opening = () if self.opening is None else (self.opening,)
        return (*opening, *(price for _, price in self.changes))

    @property
    def start(self) -> pd.Timestamp | None:
        """When the schedule starts (UTC): None when an opening price covers every earlier day."""
        return None if self.opening is not None else self.changes[0][0]

    def on(self, days: pd.DatetimeIndex) -> np.ndarray:
        """The price (USD/kWh) in force at each of ``days`` (UTC; naive values are UTC): the last change at
        or before it, else the opening price. :class:`ConfigError` when the first day is before the schedule
        starts (no opening price): no price is assumed backwards."""
        days = _utc_index(days)
        times = np.array([when.value for when, _ in self.changes], dtype=np.int64)
        prices = np.array([np.nan if self.opening is None else self.opening,
                           *(price for _, price in self.changes)], dtype=float)
        start = self.start
        if start is not None and len(days) and days[0] < start:
            first = days[0].date()
            raise ConfigError(
                f"{self.name}={str(self)!r} starts on {_when_text(start)}, after the first day to price, "
                f"{first}; give a price from {first} or earlier (a CSV row or table entry dated then, or, "
                "inline, a first price without a date, which applies from before the run).")
        return prices[np.searchsorted(times, days.asi8, side="right")]

    def shorthand(self) -> str:
        """The inline form: ``0.045,0.07@2022-03-01`` (a time of day, where one is not 00:00, in ISO form);
        ``none,0.07@2022-03-01`` for one dated price with none before it (a one-entry table), which the inline
        parser refuses without its ``none``."""
        opening = [] if self.opening is None else [repr(self.opening)]
        if self.opening is None and len(self.changes) == 1:
            opening = [NO_OPENING]
        return ",".join([*opening, *(f"{price!r}@{_when_text(when)}" for when, price in self.changes)])

    def __str__(self) -> str:
        return self.label or self.shorthand()

    def __repr__(self) -> str:
        return f"PriceSchedule({str(self)!r})"

    def describe(self, unit: str = "USD/kWh") -> str:
        """The schedule in words for a report (``0.045 before 2022-03-01, 0.07 from 2022-03-01 (USD/kWh; each
        from 00:00 UTC of its day)``): each price with the day it starts, up to :data:`DESCRIBE_AT_MOST`
        changes; a longer schedule by its count, span and range."""
        if len(self.changes) > DESCRIBE_AT_MOST:
            (first, low), (last, high) = self.changes[0], self.changes[-1]
            parts = [f"{len(self.changes):,} prices from {_when_text(first)} ({low}) to {_when_text(last)} "
                     f"({high}), between {min(self.prices)} and {max(self.prices)}"]
        else:
            parts = [f"{price} from {_when_text(when)}" for when, price in self.changes]
        if self.opening is not None:
            parts.insert(0, f"{self.opening} before {_when_text(self.changes[0][0])}" if self.changes
                         else str(self.opening))
        return f"{', '.join(parts)} ({unit}; each from 00:00 UTC of its day)"

    def to_json(self) -> dict[str, Any]:
        """A JSON form of its content (a sweep hashes it: the same prices and dates, the same hash, whatever
        file or spelling they came from)."""
        return {"opening": self.opening,
                "changes": [[when.isoformat(), price] for when, price in self.changes]}


def parse_price_schedule(name: str, value: Any, *, label: str = "") -> PriceSchedule:
    """``value`` (shorthand text, a mapping of dates to prices, a pandas Series or a :class:`PriceSchedule`)
    as a :class:`PriceSchedule` for parameter ``name``. A malformed value raises :class:`ValueError` whose
    message is a clause to follow ``name=value`` ("is not a price schedule: ..."); see the module's doc for
    the forms."""
    if isinstance(value, PriceSchedule):
        return value
    if isinstance(value, str):
        return _from_shorthand(name, value)
    if isinstance(value, pd.Series):
        return _from_series(name, value, label)
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("is an empty table; give at least one date = price")
        rows = [(utc_day(key, f"date {key!r}"), price_value(price, f"the price of {key}"))
                for key, price in value.items()]
        return dated_schedule(name, rows, label=label)
    raise ValueError("is not a number or a price schedule")


def dated_schedule(name: str, rows: Iterable[tuple[pd.Timestamp, float]], *, opening: float | None = None,
                   label: str = "", where: Iterable[str] | None = None) -> PriceSchedule:
    """A schedule of ``rows`` of (UTC time, price) after ``opening`` (None: the first row starts it), in
    increasing time; ``where`` names each row for the error (``line 3``, ``item 2``; default: its date).
    :class:`ValueError` when a time does not follow the one before it."""
    rows = list(rows)
    names = list(where) if where is not None else [str(when.date()) for when, _ in rows]
    for (earlier, _), (later, _), row in zip(rows, rows[1:], names[1:], strict=False):
        if later <= earlier:
            raise ValueError(f"is not a price schedule: dates must increase, and {row} ({_when_text(later)}) "
                             f"is not after {_when_text(earlier)}")
    return PriceSchedule(opening, tuple(rows), label=label, name=name)


def _from_shorthand(name: str, text: str) -> PriceSchedule:
    items = [item.strip() for item in text.split(",")]
    if len(items) == 1 and "@" not in items[0]:
        raise ValueError("is not a number, a price schedule or a CSV file's name (ending in .csv)")
    no_opening = len(items) > 1 and items[0].lower() == NO_OPENING  # no price before the first dated one
    opening: float | None = None
    rows: list[tuple[pd.Timestamp, float]] = []
    for number, item in enumerate(items[1:] if no_opening else items, start=2 if no_opening else 1):
        if not item:
            raise ValueError(f"is not a price schedule: item {number} is empty")
        match = _ITEM.match(item)
        price = price_value(match["price"], f"{match['price']!r} (item {number})")
        if match["date"] is not None:
            rows.append((utc_day(match["date"], f"{match['date']!r} (item {number})"), price))
        elif number == 1:
            opening = price
        else:
            raise ValueError(f"is not a price schedule: item {number} {item!r} has no @YYYY-MM-DD (only the "
                             "first price may have none: it applies from before the run)")
    if opening is None and len(rows) == 1 and not no_opening:
        raise ValueError(f"is one dated price alone; give the price in force before it first (for example "
                         f"0.045,{items[0]}), {NO_OPENING},{items[0]} for none before it, or the number "
                         "alone for a constant (in a --grid, separate schedules with ';')")
    return dated_schedule(name, rows, opening=opening,
                          where=[f"item {n}" for n in range(len(items) - len(rows) + 1, len(items) + 1)])


def _from_series(name: str, series: pd.Series, label: str) -> PriceSchedule:
    if not isinstance(series.index, pd.DatetimeIndex) or len(series) == 0:
        raise ValueError("is not a price schedule: a Series needs a non-empty DatetimeIndex of dates")
    values = pd.to_numeric(series, errors="coerce")
    if values.isna().any():
        raise ValueError("is not a price schedule: a Series' values must be numbers (USD/kWh)")
    ordered = pd.Series(values.to_numpy(dtype=float), index=_utc_index(series.index)).sort_index()
    if ordered.index.has_duplicates:
        raise ValueError("is not a price schedule: a Series' dates must differ")
    return PriceSchedule(None, tuple(zip(ordered.index, ordered.to_numpy().tolist(), strict=True)),
                         label=label, name=name)


def price_value(value: Any, what: str) -> float:
    """``value`` (a number, or its text) as a finite float; ValueError naming ``what`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"is not a price schedule: {what} is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(Decimal(str(value).strip()))
        except InvalidOperation:
            raise ValueError(f"is not a price schedule: {what} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"is not a price schedule: {what} is not a finite number")
    return number


def utc_day(value: Any, what: str) -> pd.Timestamp:
    """``value`` (a date, a datetime, or YYYY-MM-DD text) as a UTC Timestamp; ValueError naming ``what``."""
    if isinstance(value, dt.datetime):  # pd.Timestamp too: its time of day is kept
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    if isinstance(value, dt.date):
        return pd.Timestamp(value, tz="UTC")
    text = str(value).strip()
    try:
        if not _DAY.match(text):
            raise ValueError
        return pd.Timestamp(dt.date.fromisoformat(text), tz="UTC")
    except ValueError:
        raise ValueError(f"is not a price schedule: {what} is not a date YYYY-MM-DD") from None


def _when_text(when: pd.Timestamp) -> str:
    """A change's time: its day, or the full ISO time when it is not 00:00 UTC."""
    return str(when.date()) if when == when.normalize() else when.isoformat()


#: The parameters priced in USD/kWh that :func:`price_warnings` checks.
KWH_PRICE_PARAMS: tuple[str, ...] = ("power_usd_per_kwh", "hosting_usd_per_kwh")
#: The highest power or hosting price (USD/kWh) taken without a warning: above any industrial tariff miners
#: paid, even at Europe's 2022 peaks (README "Mining economics", Plausible prices); a price above it is most
#: likely given in cents.
PLAUSIBLE_USD_PER_KWH = 1.0


def implausible_price_warning(name: str, value: float | PriceSchedule,
                              bound: float = PLAUSIBLE_USD_PER_KWH) -> str:
    """The warning for a price parameter ``name`` (USD/kWh: a number or a :class:`PriceSchedule`) with a price
    above ``bound`` (USD/kWh), or "" when none is: names the parameter, the value, the unit and the likely
    slip (cents for dollars), with the price in dollars that was probably meant (the highest / 100)."""
    prices = value.prices if isinstance(value, PriceSchedule) else (float(value),)
    above = [price for price in prices if price > bound]
    if not above:
        return ""
    highest = max(above)
    if isinstance(value, PriceSchedule):
        given = (f"{name}={str(value)!r} has {len(above)} price(s) above {bound:g} USD/kWh, the highest "
                 f"{highest:g} USD/kWh")
    else:
        given = f"{name}={highest:g} USD/kWh is above {bound:g} USD/kWh"
    return (f"{given}, more than any industrial power price miners paid (even Europe's 2022 peaks): did you "
            f"give cents? The price is in USD per kWh: {highest:g} cents is {highest / 100:g}.")


def price_warnings(values: Mapping[str, Any]) -> list[str]:
    """The :func:`implausible_price_warning` of each of :data:`KWH_PRICE_PARAMS` in ``values`` (policy
    parameters by name, typed), in that order: what a run, and ``data breakeven``, print once."""
    texts = (implausible_price_warning(name, values[name]) for name in KWH_PRICE_PARAMS if name in values)
    return [text for text in texts if text]
