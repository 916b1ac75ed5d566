"""Trading calendars: when a venue's market is open. Pure standard library (no backtrader, no pandas).

Times in and out are naive UTC ``datetime`` (the engine's convention); each calendar is defined in its
exchange's local wall time and converted with :mod:`zoneinfo`, so daylight saving time moves the UTC hours.

``cme_globex`` - CME Bitcoin (BTC) and Micro Bitcoin (MBT) futures on CME Globex: "Sunday - Friday 5:00 p.m. -
4:00 p.m. [Central Time] with a 60-minute break each day beginning at 4:00 p.m."
(https://www.cmegroup.com/trading/equity-index/us-index/bitcoin_contractSpecs_options.html, Trading Hours).
In UTC that is Sunday 23:00 to Friday 22:00 with a halt 22:00-23:00 Monday to Thursday while Chicago keeps
standard time (CST, UTC-6), and each an hour earlier under daylight saving time (CDT, UTC-5; from the second
Sunday of March to the first Sunday of November).

Not modelled:
  - exchange holidays. CME publishes each holiday's hours per product and year ("On these holidays, trading
    hours may vary depending on markets traded",
    https://www.cmegroup.com/tools-information/holiday-calendar.html); no rule for Bitcoin futures was found
    to derive them from, so none is invented: the market is taken as open on holidays that fall inside the
    weekly schedule;
  - the 15-minute halt (3:15-3:30 p.m. CT) in the launch announcement of 2017-11 (not in the contract
    specification cited above).

The trading week runs from the Sunday open to the Friday close; :func:`add_week_hours` counts time in it (the
daily halt counts, the weekend does not), which is how a CME margin call's deadline is counted (see
:mod:`brokers.broker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from minehedge.errors import ConfigError, did_you_mean

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class WeeklyCalendar:
    """A weekly schedule in local wall time. ``week_open`` / ``week_close``: (weekday, seconds after local
    midnight), weekday 0 = Monday ... 6 = Sunday; the week opens on ``week_open``'s day and closes on
    ``week_close``'s day of the following days. ``halt``: (start, end) seconds after local midnight of a
    daily break inside the week (None: none). ``source``: where the hours come from."""

    name: str
    zone: str
    week_open: tuple[int, int]
    week_close: tuple[int, int]
    halt: tuple[int, int] | None
    source: str


CALENDARS: dict[str, WeeklyCalendar] = {
    "cme_globex": WeeklyCalendar(
        name="cme_globex", zone="America/Chicago", week_open=(6, 17 * 3600), week_close=(4, 16 * 3600),
        halt=(16 * 3600, 17 * 3600),
        source="https://www.cmegroup.com/trading/equity-index/us-index/bitcoin_contractSpecs_options.html"),
}


def check_calendar(name: object, where: str = "trading_hours") -> str:
    """Return ``name`` if it names a calendar of :data:`CALENDARS`; else ConfigError naming ``where`` (the
    parameter), the value as given (its repr: a number in a venue file reads ``5``, a name ``'nyse'``) and the
    calendars allowed."""
    if isinstance(name, str) and name in CALENDARS:
        return name
    hint = did_you_mean(name, list(CALENDARS)) if isinstance(name, str) else ""
    kind = "" if isinstance(name, str) else " (a calendar's name is a string)"
    raise ConfigError(f"{where}={name!r} is not a known trading calendar{kind}; choose one of: "
                      f"{', '.join(CALENDARS)} (or leave it out: the market never closes).{hint}")


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # pragma: no cover - only on machines without any time zone database
        raise ConfigError(f"time zone {name!r} is not available: install the 'tzdata' package (a dependency "
                          "of minehedge) or the system's time zone database.") from None


def _calendar(name: str) -> WeeklyCalendar:
    return CALENDARS[check_calendar(name)]


def _week_seconds(cal: WeeklyCalendar, local: datetime) -> int:
    """Seconds since the local week's open day at midnight (the week counted from ``week_open``'s day)."""
    day = (local.weekday() - cal.week_open[0]) % 7
    return day * DAY_S + local.hour * 3600 + local.minute * 60 + local.second


def _bounds(cal: WeeklyCalendar) -> tuple[int, int]:
    """(open, close) of the trading week in seconds since its open day's midnight."""
    close_day = (cal.week_close[0] - cal.week_open[0]) % 7
    return cal.week_open[1], close_day * DAY_S + cal.week_close[1]


def _local(cal: WeeklyCalendar, when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc).astimezone(_zone(cal.zone))


def _to_utc(local: datetime) -> datetime:
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def _at(local: datetime, day_shift: int, seconds: int) -> datetime:
    """UTC time of local midnight ``day_shift`` days after ``local``'s date, plus ``seconds`` of wall time."""
    day = (local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day_shift))
    # wall-clock arithmetic: zoneinfo keeps tzinfo, re-resolves offset
    wall = day + timedelta(seconds=seconds)
    return _to_utc(wall.replace(tzinfo=local.tzinfo))


def _in_week(cal: WeeklyCalendar, local: datetime) -> bool:
    start, end = _bounds(cal)
    seconds = _week_seconds(cal, local) + local.microsecond / 1e6
    return start <= seconds < end


def _in_halt(cal: WeeklyCalendar, local: datetime) -> bool:
    if cal.halt is None:
        return False
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return cal.halt[0] <= seconds < cal.halt[1]


def is_open(calendar: str, when: datetime) -> bool:
    """True if ``calendar``'s market is open at ``when`` (naive UTC): inside the trading week and not in the
    daily halt. Sessions are half-open: the open instant is open, the close instant is closed."""
    cal = _calendar(calendar)
    local = _local(cal, when)
    return _in_week(cal, local) and not _in_halt(cal, local)


def _week_open_at_or_after(cal: WeeklyCalendar, local: datetime) -> datetime:
    """UTC time of the first week open at or after ``local`` (the next one if the week is open now)."""
    day = (local.weekday() - cal.week_open[0]) % 7  # days since the week's open day
    start = _at(local, -day, cal.week_open[1])
    return start if start >= _to_utc(local) else _at(local, 7 - day, cal.week_open[1])


def last_close(calendar: str, when: datetime) -> datetime:
    """The latest moment at or before ``when`` (naive UTC) up to which the market was open: ``when`` itself
    if the market is open just before it, else the start of the closure that holds ``when`` (a halt's start
    or the week's close)."""
    cal = _calendar(calendar)
    just_before = when - timedelta(microseconds=1)
    local = _local(cal, just_before)
    if _in_week(cal, local):
        if not _in_halt(cal, local):
            return when
        return _at(local, 0, cal.halt[0])  # type: ignore[index]
    day = (local.weekday() - cal.week_open[0]) % 7
    _, close = _bounds(cal)
    closed = _at(local, -day, close)  # this week's close (local midnight arithmetic, DST-safe)
    return closed if closed <= when else _at(local, -day - 7, close)


def check_time(calendar: str, start: datetime, end: datetime) -> datetime | None:
    """A bar's check time: the last moment of (start, end] up to which the market was open (``end`` when it
    is open at the bar's close, else the close of the bar's last session); None if the market was closed
    during the whole bar [start, end)."""
    moment = last_close(calendar, end)
    return moment if moment > start else None


def add_week_hours(calendar: str, when: datetime, hours: float) -> datetime:
    """The moment ``hours`` hours of the trading week after ``when`` (naive UTC): time between the week's
    open and its close counts, the daily halt included; the weekend does not. From a moment in the weekend,
    counting starts at the next week's open."""
    cal = _calendar(calendar)
    left = timedelta(hours=hours)
    moment = when
    for _ in range(10_000):
        local = _local(cal, moment)
        if not _in_week(cal, local):
            moment = _week_open_at_or_after(cal, local)
            local = _local(cal, moment)
        day = (local.weekday() - cal.week_open[0]) % 7
        _, close = _bounds(cal)
        week_close = _at(local, -day, close)
        if moment + left <= week_close:
            return moment + left
        left -= week_close - moment
        moment = week_close
    raise ConfigError(f"add_week_hours: {hours!r} hours is too long to count.")  # pragma: no cover
