"""Vectorised margin path of a held linear (USD-M) futures position, isolated margin: numpy, no backtrader.

A position of ``qty`` coins opened at the open of bar ``start`` at price ``entry`` with ``wallet`` USD of
isolated margin, then held. Bar by bar, in MarginBroker's order within a bar:

1. funding at every settlement inside the bar: ``qty x mark x rate`` USD (``formulas.linear_funding_payment``)
   taken from the isolated margin, so the wallet moves settlement by settlement;
2. the liquidation price from that wallet and the bracket table in force that day
   (``formulas.linear_liquidation_price_array``), and whether the bar's worst price reaches it (low for a
   long, high for a short; ``formulas.is_liquidated``);
3. at the close: unrealised PnL, maintenance margin and margin ratio (maintenance / margin balance).

After the first liquidation bar the position is gone; the arrays end there (NaN after it).

What it is for: a cross-check of the broker's per-bar bookkeeping that shares only the pure formulas with it
(``tests/test_brokers_screening.py`` compares every bar with MarginBroker on real data), and a fast screen:
the work depends on the data only through :class:`BarSchedule`, built once per market, and then costs a few
array operations per configuration (``benchmarks/run.py`` prints the cost per configuration-bar).

Scope: one linear position, isolated margin, held without orders after its fill (no re-sizing, no added
margin), liquidated in full: a venue with ``partial_liquidation`` steps a position above its first bracket
down bracket by bracket instead, which this path does not model, so use it there only for first-bracket
positions. Funding from a per-bar rate line (fraction per 8 h, every settlement of a bar at the same
rate, as the shared data's ``funding_rate`` line) and a mark (USD per coin; the close when there is no mark
line). Fees are paid from free cash by the broker, so they do not touch the isolated margin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from brokers import formulas


def settlements_per_bar(bar_opens: Sequence[datetime], span: timedelta, hours: Sequence[int]) -> np.ndarray:
    """Number of funding settlements (at ``hours`` UTC) inside each bar ``[open, open + span)``: what the
    broker pays on that bar (int array)."""
    counts = np.zeros(len(bar_opens), dtype=np.int64)
    for k, start in enumerate(bar_opens):
        end = start + span
        when = formulas.next_funding_time(start, hours)
        while when < end:
            counts[k] += 1
            when = formulas.next_funding_time(when, hours, inclusive=False)
    return counts


@dataclass(frozen=True)
class BarSchedule:
    """What a margin path needs from the data, built once per market and shared by every configuration.

    bar_opens: bar open times (naive UTC); high, low, close, mark: USD per coin; rate: funding rate of the
    bar's settlements (fraction per 8 h); settlements: settlements inside each bar; tier_tables: the distinct
    bracket tables, and table_of_bar: which one is in force on each bar (index into tier_tables).
    """

    bar_opens: tuple[datetime, ...]
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    mark: np.ndarray
    rate: np.ndarray
    settlements: np.ndarray
    tier_tables: tuple[formulas.Tiers, ...]
    table_of_bar: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, span: timedelta, funding_hours: Sequence[int],
                   tiers_at: Callable[[date], formulas.Tiers], rate_column: str = "funding_rate",
                   mark_column: str | None = None, fallback_rate: float | None = None) -> BarSchedule:
        """From an OHLC frame (UTC index of bar open times) with a funding rate column (fraction per 8 h);
        ``tiers_at(day)`` gives the bracket table in force (e.g. ``InstrumentSpec.tiers_at``). Missing rates
        take ``fallback_rate`` (the broker's constant fallback); without one they are an error."""
        rate = frame[rate_column].to_numpy(dtype=float)
        if np.isnan(rate).any():
            if fallback_rate is None:
                first = frame.index[np.flatnonzero(np.isnan(rate))[0]]
                raise ValueError(f"{rate_column}: missing from {first}; pass fallback_rate (fraction per 8 "
                                 "h), as the broker falls back to its constant rate.")
            rate = np.where(np.isnan(rate), fallback_rate, rate)
        opens = tuple(stamp.to_pydatetime().replace(tzinfo=None) for stamp in frame.index.tz_convert("UTC"))
        close = frame["close"].to_numpy(dtype=float)
        mark = close if mark_column is None else frame[mark_column].to_numpy(dtype=float)
        # the broker marks at the close where the mark is missing
        mark = np.where(np.isnan(mark), close, mark)
        tables: list[formulas.Tiers] = []
        table_of_bar = np.empty(len(opens), dtype=np.int64)
        by_day: dict[date, int] = {}
        for k, when in enumerate(opens):
            day = when.date()
            if day not in by_day:
                tiers = tiers_at(day)
                found = next((i for i, known in enumerate(tables) if known is tiers or known == tiers), None)
                if found is None:
                    tables.append(tiers)
                    found = len(tables) - 1
                by_day[day] = found
            table_of_bar[k] = by_day[day]
        return cls(opens, frame["high"].to_numpy(dtype=float), frame["low"].to_numpy(dtype=float), close,
                   mark, rate, settlements_per_bar(opens, span, funding_hours),
                   tuple(tables), table_of_bar)


@dataclass(frozen=True)
class _PathFigures:
    wallet: np.ndarray
    liquidation_price: np.ndarray
    unrealized_pnl: np.ndarray
    maintenance_margin: np.ndarray
    margin_ratio: np.ndarray
    funding: np.ndarray


@dataclass(frozen=True)
class MarginPath(_PathFigures):
    """Per-bar figures of one held position from its fill bar on (NaN where it no longer exists).

    wallet: isolated margin after the bar's funding (USD); liquidation_price (USD per coin);
    unrealized_pnl, maintenance_margin (USD, at the close); margin_ratio (fraction, at the close; 1 =
    liquidation); funding (USD paid on the bar, negative = received); liquidated_at: index of the first bar
    whose worst price reached the liquidation price, or None.
    """

    liquidated_at: int | None


@dataclass(frozen=True)
class MarginPaths(_PathFigures):
    """:class:`MarginPath` of several margins for the same position, one row per margin: 2-D arrays
    (margins x bars) in the same units; liquidated_at: first liquidation bar per row, -1 when none."""

    liquidated_at: np.ndarray

    def path(self, row: int) -> MarginPath:
        """Row ``row`` as a :class:`MarginPath`."""
        at = int(self.liquidated_at[row])
        figures = (getattr(self, item.name)[row] for item in fields(_PathFigures))
        return MarginPath(*figures, None if at < 0 else at)


def held_linear_path(schedule: BarSchedule, qty: float, entry: float, wallet: float,
                     start: int = 0) -> MarginPath:
    """The margin path of ``qty`` coins (signed: + long) filled at ``entry`` (USD) on bar ``start`` with
    ``wallet`` USD of isolated margin (see the module docstring)."""
    return held_linear_paths(schedule, qty, entry, [wallet], start).path(0)


def held_linear_paths(schedule: BarSchedule, qty: float, entry: float, wallets: Sequence[float],
                      start: int = 0) -> MarginPaths:
    """:func:`held_linear_path` for several isolated margins (USD; e.g. one per leverage) at once: the
    funding, unrealised PnL and maintenance margin depend only on the position and are computed once, the
    wallet, liquidation price and margin ratio as arrays of margins x bars. Each row equals the single path
    of its margin to the last bit."""
    if qty == 0:
        raise ValueError("qty must be non-zero")
    margins = np.asarray(wallets, dtype=float).reshape(-1, 1)
    bars = len(schedule.close)
    n = bars - start
    # 1. funding, settlement by settlement and in the broker's order, so the wallet is the same to the
    # last bit
    count = schedule.settlements[start:]
    payment = formulas.linear_funding_payment(qty, schedule.mark[start:], schedule.rate[start:])
    paid = np.repeat(payment, count)
    # 0 - p1 - p2 ... as the broker subtracts each payment from the position's margin
    extra = np.cumsum(-paid)
    last = np.cumsum(count) - 1  # the last settlement of each bar (or of an earlier bar when a bar has none)
    drained = np.where(last >= 0, extra[np.maximum(last, 0)] if len(extra) else 0.0, 0.0)
    wallet_path = margins + drained
    # 2. liquidation price per bracket table in force, against the bar's worst price
    liq = np.empty(wallet_path.shape)
    tables = schedule.table_of_bar[start:]
    for t, tiers in enumerate(schedule.tier_tables):
        on = tables == t
        if on.any():
            liq[:, on] = formulas.linear_liquidation_price_array(qty, entry, wallet_path[:, on], tiers)
    side = 1 if qty > 0 else -1
    extreme = schedule.low[start:] if side > 0 else schedule.high[start:]
    crossed = formulas.is_liquidated(side, liq, extreme)
    hit = crossed.any(axis=1)
    first = np.where(hit, crossed.argmax(axis=1), n - 1)  # the last bar each position exists
    # 3. at the close
    close = schedule.close[start:]
    upnl = formulas.linear_pnl(qty, entry, close)
    maint = np.empty(n)
    for t, tiers in enumerate(schedule.tier_tables):
        on = tables == t
        if on.any():
            maint[on] = formulas.maintenance_margin_array(abs(qty) * close[on], tiers)
    ratio = formulas.margin_ratio_array(maint, wallet_path + upnl)
    alive = np.arange(n) <= first[:, None]

    def full(values: np.ndarray) -> np.ndarray:
        out = np.full((len(margins), bars), np.nan)
        out[:, start:] = np.where(alive, values, np.nan)
        return out

    return MarginPaths(full(wallet_path), full(liq), full(upnl), full(maint), full(ratio),
                       full(payment * count), np.where(hit, first + start, -1))
