"""Per-window ("episode") statistics of one run: its equity, drawdown, forced closes, loan calls, insolvency
and futures P&L within named stretches of days (``--window``), read from the run's own records, so the
treasury carries from one window into the next as it did in history (a window is never a run of its own).

Pure numpy/pandas (no backtrader). Windows are :class:`minehedge.config.Window` (name, first and last UTC day,
inclusive), checked and clipped to the run by ``minehedge.config``. Conventions:

* A bar belongs to a window when its label (the bar's open time) falls on one of the window's UTC days; the
  bar's row holds the account at its close. An event belongs to the bar it is placed on, the last bar at or
  before its time (as ``event_stats.insolvency_spells`` places them); a ledger entry counts from its own time
  on (``ledger_stats.cumulative_by_time``).
* A window's first value, ``equity_start_usd``, is the equity at the close of the last bar before the
  window; for a window that starts at the run's first bar, the run's opening value (``RunResult.opening``,
  the summary's ``initial_equity_usd``), also when that is zero or below (debt
  beyond the assets), or the first bar's value when the opening is unknown. So the changes of adjacent
  windows add up (``equity_change_usd`` over windows that cover the whole run sums to final - initial), the
  returns chain (the product of ``1 + return`` over windows that cover consecutive days equals ``1 +`` the
  return over all of them), and a window over the whole run has the summary's ``total_return_pct``,
  ``max_drawdown_pct``, counts, ``insolvent_days``, ``funding_net_usd`` and ``futures_pnl_usd``.
* A window that opens ruined (the value before it zero or below) has no return (NaN) and its drawdown counts
  from its first bar. A window that starts at the run's first bar has the summary's return and drawdown
  (``metrics.with_opening`` of the opening value): with an opening at or below zero they count from the first
  bar, the return NaN when that bar's value is zero or below too (an opening of debt beyond the assets).
  A window without bars (a gap in the data) has ``bars`` 0, NaN figures and zero counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analyzers import event_stats, ledger_stats, metrics
from analyzers.report import format_value
from minehedge.config import Window

#: The columns of :func:`window_stats`, in order (units in the names: USD, percent, days, counts).
WINDOW_COLUMNS: tuple[str, ...] = (
    "window", "start", "end", "bars", "equity_start_usd", "equity_end_usd", "equity_change_usd", "return_pct",
    "max_drawdown_pct", "worst_equity_usd", "margin_calls", "liquidations", "liquidation_loss_usd",
    "loan_calls", "loan_liquidations", "insolvencies", "insolvent_days", "funding_net_usd", "futures_pnl_usd",
)
#: The :func:`analyzers.event_stats.event_totals` keys counted within each window.
EVENT_KEYS: tuple[str, ...] = ("margin_calls", "liquidations", "liquidation_loss_usd", "loan_calls",
                               "loan_liquidations", "insolvencies")
_DAY = pd.Timedelta(days=1)


def window_stats(equity: pd.DataFrame | pd.Series, events: Iterable[event_stats.EventLike],
                 ledger: pd.DataFrame, windows: Sequence[Window],
                 opening: Mapping[str, object] | None = None) -> pd.DataFrame:
    """One row per window, columns :data:`WINDOW_COLUMNS`.

    ``equity``: the run's per-bar table (``RunResult.equity``: UTC index of bar open times, ``equity_usd``,
    and ``unrealized_pnl_usd`` for ``futures_pnl_usd``) or its ``equity_usd`` series; ``events``: the event
    log; ``ledger``: ``ledger_stats.ledger_frame(...)``; ``opening``: the account before the first bar
    (``RunResult.opening``: ``time``, ``equity_usd``), or None.

    Columns: window (name), start / end (the window's first and last UTC day, ``datetime.date``), bars;
    equity_start_usd (the value it starts from, see the module's conventions), equity_end_usd (at the close of
    its last bar), equity_change_usd (end - start), return_pct (``metrics.total_return_pct`` of the start
    value and the window's bars, percent); max_drawdown_pct (``metrics.drawdown_stats`` of the same curve:
    peak to trough within the window, the start value included, 0-100), worst_equity_usd (the lowest
    equity_usd of its bars); margin_calls, liquidations, liquidation_loss_usd, loan_calls, loan_liquidations,
    insolvencies (``event_stats.event_totals`` of the events on its bars); insolvent_days (the days of the
    ``event_stats.insolvency_spells`` within it, each bar counting until the next, the last bar the median
    spacing, as ``event_stats.insolvent_days``); funding_net_usd (funding received - paid on the futures
    wallet) and futures_pnl_usd (the change of ``ledger_stats.futures_pnl_by_time``: realized entries plus the
    change in unrealized P&L), USD.
    """
    table = equity.to_frame("equity_usd") if isinstance(equity, pd.Series) else equity
    index = pd.DatetimeIndex(table.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    values = table["equity_usd"].to_numpy(dtype=float)
    stamps = metrics.epoch_ns(index)
    unrealized = (table["unrealized_pnl_usd"] if "unrealized_pnl_usd" in table
                  else pd.Series(math.nan, index=table.index)).set_axis(index)
    futures_pnl = ledger_stats.futures_pnl_by_time(ledger, index, unrealized).to_numpy()
    funding = ledger_stats.cumulative_by_time(ledger, ("funding",), index, wallet="futures").to_numpy()
    records = event_stats.event_records(events)
    bar_of = [_bar_of(record, stamps) for record in records]
    spells = event_stats.insolvency_spells(records, index)
    opening = opening or {}
    rows = []
    for window in windows:
        lo, hi = np.searchsorted(stamps, [_day_ns(window.start), _day_ns(window.end) + _DAY.value])
        row: dict[str, object] = {"window": window.name, "start": window.start, "end": window.end,
                                  "bars": int(hi - lo)}
        within = [record for record, bar in zip(records, bar_of, strict=True) if lo <= bar < hi]
        totals = event_stats.event_totals(within)
        row.update({key: totals[key] for key in EVENT_KEYS})
        if hi <= lo:
            rows.append({**dict.fromkeys(WINDOW_COLUMNS, math.nan), **row, "insolvent_days": 0.0})
            continue
        curve = pd.Series(values[lo:hi], index=index[lo:hi])
        if lo > 0:
            start_time, start_value = index[lo - 1], float(values[lo - 1])
            curve = metrics.with_opening(curve, start_time, start_value)
            ruined = not start_value > 0.0
        else:  # the summary's curve: from the opening value when positive, else from the first bar
            start_value = _opening_value(opening, float(values[0]))
            curve = metrics.with_opening(curve, opening.get("time"), start_value)  # type: ignore[arg-type]
            ruined = not float(curve.iloc[0]) > 0.0
        row["equity_start_usd"] = start_value
        row["equity_end_usd"] = float(values[hi - 1])
        row["equity_change_usd"] = row["equity_end_usd"] - start_value
        row["return_pct"] = math.nan if ruined else metrics.total_return_pct(curve)
        row["max_drawdown_pct"] = metrics.drawdown_stats(curve).max_drawdown_pct
        row["worst_equity_usd"] = float(values[lo:hi].min())
        row["insolvent_days"] = event_stats.spell_days(spells, stamps, lo, hi)
        row["funding_net_usd"] = float(funding[hi - 1] - (funding[lo - 1] if lo > 0 else 0.0))
        row["futures_pnl_usd"] = float(futures_pnl[hi - 1] - (futures_pnl[lo - 1] if lo > 0 else 0.0))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))


def run_window_stats(result: object, windows: Sequence[Window]) -> pd.DataFrame:
    """:func:`window_stats` of an ``analyzers.report.RunResult`` (its equity table, events, ledger and
    opening)."""
    ledger = ledger_stats.ledger_frame(result.ledger, notes=False)  # type: ignore[attr-defined]
    return window_stats(result.equity, result.events, ledger, windows,  # type: ignore[attr-defined]
                        result.opening)  # type: ignore[attr-defined]


def _opening_value(opening: Mapping[str, object], first_bar_usd: float) -> float:
    """The value (USD) a window that starts at the run's first bar starts from: the run's opening value, also
    when it is zero or below (as the summary's ``initial_equity_usd``); the first bar's when it is unknown."""
    value = opening.get("equity_usd")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return first_bar_usd


def _day_ns(day: object) -> int:
    return int(pd.Timestamp(day).tz_localize("UTC").as_unit("ns").value)


def _bar_of(record: Mapping[str, object], stamps: np.ndarray) -> int:
    """The bar an event is placed on: the last at or before its time (the first for an earlier event)."""
    at = metrics.epoch_ns(pd.DatetimeIndex([record["datetime"]]))[0]
    return max(int(np.searchsorted(stamps, at, side="right")) - 1, 0)


# ------------------------------------------------------------------------------------------ tables


def window_title(row: Mapping[str, object]) -> str:
    """``2018: 2018-01-01 to 2018-12-31, 365 bars``: a window's heading in summary.md and on the terminal."""
    return f"{row['window']}: {row['start']} to {row['end']}, {row['bars']} bars"


#: The rows of a window's table (its name, days and bar count are in its heading).
TABLE_KEYS: tuple[str, ...] = WINDOW_COLUMNS[4:]


def windows_markdown(frame: pd.DataFrame) -> str:
    """The windows section of summary.md. ``frame``: :func:`window_stats` rows of one run (one table, windows
    across), or of several with a ``policy`` column first (one table per window, policies across, as the
    comparison's)."""
    lines = ["## Windows", "",
             "Each window's figures come from the same run (the treasury carries over from the window "
             "before): its return and drawdown count from the equity at the close of the bar before it. "
             "Files: windows.csv.", ""]
    if "policy" not in frame.columns:
        rows = frame.to_dict("records")
        lines += ["| metric | " + " | ".join(window_title(row) for row in rows) + " |",
                  "|---|" + "---|" * len(rows)]
        lines += [f"| {key} | " + " | ".join(format_value(key, row[key]) for row in rows) + " |"
                  for key in TABLE_KEYS]
        return "\n".join([*lines, ""])
    for _, group in frame.groupby("window", sort=False):
        rows = group.to_dict("records")
        lines += [f"### {window_title(rows[0])}", "",
                  "| metric | " + " | ".join(str(row["policy"]) for row in rows) + " |",
                  "|---|" + "---|" * len(rows)]
        lines += [f"| {key} | " + " | ".join(format_value(key, row[key]) for row in rows) + " |"
                  for key in TABLE_KEYS]
        lines.append("")
    return "\n".join(lines)
