"""backtrader's bar sizes as time spans: the one place that maps ``(timeframe, compression)`` to a duration.

The feed checks its declared bar against its bars with it (``data.feeds.MinerFeed``), and MarginBroker takes
each bar's span from it to decide which funding settlements the bar holds.
"""

from __future__ import annotations

from datetime import timedelta

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt

_UNITS = {bt.TimeFrame.Seconds: timedelta(seconds=1), bt.TimeFrame.Minutes: timedelta(minutes=1),
          bt.TimeFrame.Days: timedelta(days=1), bt.TimeFrame.Weeks: timedelta(days=7)}
#: The backtrader timeframes that have a fixed duration (months and years do not).
SPANNED_TIMEFRAMES: tuple[str, ...] = tuple(bt.TimeFrame.Names[tf] for tf in _UNITS)


def timeframe_span(timeframe: int, compression: int) -> timedelta | None:
    """The duration of one bar of backtrader ``timeframe`` x ``compression``; None for a timeframe without a
    fixed duration (ticks, months, years)."""
    unit = _UNITS.get(timeframe)
    return None if unit is None else unit * compression


def span_timeframe(span: timedelta) -> tuple[int, int] | None:
    """backtrader's ``(timeframe, compression)`` for bars ``span`` apart: ``(Days, n)`` for whole days, else
    ``(Minutes, n)`` for whole minutes, else ``(Seconds, n)`` for whole seconds; None for anything else (the
    inverse of :func:`timeframe_span` on the spans a feed's bars can have)."""
    for timeframe in (bt.TimeFrame.Days, bt.TimeFrame.Minutes, bt.TimeFrame.Seconds):
        count, rest = divmod(span, _UNITS[timeframe])
        if not rest and count > 0:
            return timeframe, count
    return None
