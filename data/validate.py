"""Validation of OHLCV frames before anything reaches backtrader, with a printable report.

Errors (raise :class:`~minehedge.errors.DataError` naming the rows and values, or are collected in
``report.errors`` with ``raise_on_error=False``): index not strictly increasing or duplicated, NaN or
non-positive prices, ``high < max(open, close)``, ``low > min(open, close)``, negative volume, bars off the
UTC grid of their timeframe (1d at 00:00, 4h at multiples of 4 h, 1h on the hour).
Reported, not errors: gaps against the nominal bar size (count, missing bars, longest interval between
bars, as the data README measures them), zero-volume bars
(exchange filler bars), NaN volume (e.g. Investing.com's "-"), and bad ticks with the action taken.

Bad-tick rule (:class:`BadTickRule`, all in log prices, one bar ``i`` at a time):

* reference levels: the median **close** of the ``window`` bars before ``i`` and of the ``window`` bars
  after it (``i`` excluded; a side needs 3 bars); the distance ``d`` of a price is to the *nearer* side,
  so a level shift (the price moved and stayed) is near one side, while a bad tick is far from both;
* robust range ``r_i`` = median **true range** ``max(high, prev close) - min(low, prev close)`` of the same
  neighbours, floored at ``range_floor`` (flat filler bars have zero range);
* a price ``p`` (open, high, low or close) of bar ``i`` is a bad tick when
  ``d > max_ranges * r_i`` **and** ``d > log(min_ratio)``.

**Neighbours come from the file, not the range.** A loader validating a range passes the whole file (or a
download padded around the range) as ``context``; each bar is judged with its neighbours there (``window + 2``
bars of context each side: the window, plus the bars whose closes start the neighbours' true ranges and
repair a bad open or close), so a bar's verdict and repair are the same whatever range is asked for. A bar
with fewer than 3 neighbours on both sides (a file or download of 3 bars or fewer) cannot be judged: it is
listed in ``report.unchecked``, never reported clean.

With the defaults (``window=5``, ``max_ranges=25``, ``min_ratio=1.5``, ``range_floor=0.001``) on the shared
files this flags exactly: Coinbase daily 2017-04-15 low 0.06 (463.6 ranges off), the first Binance 1h bars
2017-08-17 04:00 open = high = 16199.91 (BTC, 129 ranges) and 652.74 (ETH, 69 ranges), and one thin 2011
Bitstamp day in the Coinbase file (2011-09-01 low 5.25 between an open of 8 and a close of 8.22; its
neighbours were flat single-trade days). Real crashes stay below the threshold because their neighbours
move too and widen ``r_i``: BTC 2020-03-12/13 (<= 3.6 ranges on every file), ETH 2021-05-19 low 1,888 (< 3.9),
the Bitstamp 1h flash crash 2019-05-17 03:00 low 6,178 (8.6), and the largest real wick in the data, Binance
ETH 2017-08-22 low 144.21 (18.0 ranges on 1h, 14.5 on 1d, 14.1 on 4h), which is why ``max_ranges`` is 25 and
not lower. The early Bitstamp wicks the data README calls real but illiquid are not flagged either (2011-11-25
high 15: 18.3 ranges; April 2013 lows 45-70: < 2). ``min_ratio`` keeps flat 2011 single-trade days (zero
ranges, tiny moves such as 2011-08-30 low 8 vs 8.9) from being flagged on the range test alone.

Policies for flagged ticks (``bad_ticks=``), never silent: every tick is listed in the report with the
action taken.

* ``'mask'`` (default): a bad **wick** (high or low) is clipped to the bar body (``high = max(open,
  close)``, ``low = min(open, close)``); a bad **open** is replaced by the previous bar's close (continuous
  trading; the bar's own close for the first bar), a bad **close** by the next bar's open (the bar's own
  open for the last bar); after that the unflagged high/low are widened to contain the body. A bar whose
  open and close are both bad cannot be repaired and is dropped (listed in ``report.dropped``).
* ``'drop'``: bars with any bad tick are removed (the gap they leave is reported).
* ``'fail'``: raise DataError naming each bad tick.
* ``'keep'``: leave the values as they are; the report still lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from data.frames import PRICE_COLUMNS, parse_timeframe, to_utc_index
from minehedge.errors import DataError, check_choice, check_positive

BAD_TICK_POLICIES = ("mask", "drop", "fail", "keep")
_MAX_LISTED = 5  # rows named per error kind in a message


@dataclass(frozen=True)
class Gap:
    """Missing bars between two consecutive rows (``after`` and ``before`` are bar open times)."""

    after: pd.Timestamp
    before: pd.Timestamp
    missing_bars: int


@dataclass(frozen=True)
class BadTick:
    """One price the bad-tick rule rejected; ``replacement`` is the masked value (None unless masked)."""

    timestamp: pd.Timestamp
    field: str
    value: float
    reference: float  # neighbours' median close, quote currency
    ranges: float  # distance from the reference in robust ranges
    replacement: float | None = None


@dataclass(frozen=True)
class BadTickRule:
    """Parameters of the bad-tick rule (see the module docstring)."""

    window: int = 5  # neighbours on each side
    max_ranges: float = 25.0  # distance limit, in neighbours' median log true ranges
    min_ratio: float = 1.5  # and the price must be at least this factor away from the reference
    range_floor: float = 0.001  # log-range floor for flat (zero-range) neighbourhoods


@dataclass
class ValidationReport:
    """What validation found and did; ``str(report)`` prints it for users and run reports."""

    source: str
    timeframe: str
    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    gaps: list[Gap] = field(default_factory=list)
    zero_volume: list[pd.Timestamp] = field(default_factory=list)
    missing_volume: list[pd.Timestamp] = field(default_factory=list)
    bad_ticks: list[BadTick] = field(default_factory=list)
    policy: str = "mask"
    action: str = "none"
    dropped: list[pd.Timestamp] = field(default_factory=list)
    unchecked: list[pd.Timestamp] = field(default_factory=list)  # bars too short of neighbours to judge
    errors: list[str] = field(default_factory=list)

    @property
    def gap_count(self) -> int:
        return len(self.gaps)

    @property
    def missing_bars(self) -> int:
        return sum(g.missing_bars for g in self.gaps)

    @property
    def longest_gap(self) -> pd.Timedelta:
        """Longest interval between consecutive bar open times across a gap (the data README's measure,
        e.g. 5 h for a gap of 4 missing hourly bars); zero when there are no gaps."""
        return max((g.before - g.after for g in self.gaps), default=pd.Timedelta(0))

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        lines = [f"{self.source} [{self.timeframe}]: {self.rows} bars, {self.first} -> {self.last}"]
        lines.append(f"  gaps: {self.gap_count} ({self.missing_bars} missing bars, "
                     f"longest {self.longest_gap})")
        lines.append(f"  zero-volume bars: {len(self.zero_volume)}; missing volume: "
                     f"{len(self.missing_volume)}")
        lines.append(f"  bad ticks: {len(self.bad_ticks)} (policy {self.policy!r}: {self.action})")
        for tick in self.bad_ticks:
            fixed = "" if tick.replacement is None else f" -> {tick.replacement:g}"
            lines.append(f"    {tick.timestamp} {tick.field}={tick.value:g}{fixed} "
                         f"(neighbours {tick.reference:g}, {tick.ranges:.0f} ranges)")
        if self.dropped:
            lines.append(f"  dropped bars: {', '.join(map(str, self.dropped))}")
        if self.unchecked:
            lines.append(f"  {unchecked_text(self.unchecked)}")
        lines.extend(f"  ERROR: {e}" for e in self.errors)
        return "\n".join(lines)


def rows_text(index: pd.DatetimeIndex, mask: np.ndarray, describe) -> str:
    """``N row(s): ...`` naming the rows where ``mask`` is true, each by ``describe(position)``, the first
    few of them (the form every error of this module lists its rows in)."""
    where = np.flatnonzero(mask)
    shown = "; ".join(describe(i) for i in where[:_MAX_LISTED])
    more = f"; ... {len(where) - _MAX_LISTED} more" if len(where) > _MAX_LISTED else ""
    return f"{len(where)} row(s): {shown}{more}"


def row_errors(frame: pd.DataFrame, source: str) -> list[str]:
    """The errors of an OHLCV frame that need no timeframe (index order, prices, OHLC consistency, volume),
    each starting with ``source``: what ``data validate`` still checks in a file whose bar spacing is no
    timeframe."""
    return [f"{source}: {e}" for e in _consistency_errors(frame)]


def order_errors(index: pd.DatetimeIndex) -> list[str]:
    """Duplicate and decreasing times of ``index`` (each names its rows); for any time series file."""
    errors: list[str] = []
    stamps = index.as_unit("ns").asi8
    if len(index) > 1:
        steps = np.diff(stamps)
        if (steps == 0).any():
            errors.append("duplicate timestamps, "
                          + rows_text(index[1:], steps == 0, lambda i: str(index[i + 1])))
        if (steps < 0).any():
            errors.append("timestamps not increasing, "
                          + rows_text(index[1:], steps < 0, lambda i: f"{index[i + 1]} after {index[i]}"))
    return errors


def price_errors(index: pd.Index, name: str, column: np.ndarray) -> list[str]:
    """The rows of price ``column`` (float64, one value a row of ``index``) that are NaN, and those <= 0,
    named by time (and value): the rule every price a broker fills or values at must pass, in files,
    downloads and the frames handed to :class:`data.feeds.FastPandasData`."""
    errors: list[str] = []
    nan = np.isnan(column)
    if nan.any():
        errors.append(f"NaN {name}, " + rows_text(index, nan, lambda i: str(index[i])))
    bad = column <= 0
    if bad.any():
        errors.append(f"non-positive {name}, "
                      + rows_text(index, bad, lambda i: f"{index[i]} {name}={column[i]:g}"))
    return errors


def _consistency_errors(frame: pd.DataFrame) -> list[str]:
    """Index order, NaN / non-positive prices, OHLC consistency, negative volume (each names its rows)."""
    index = frame.index
    errors = order_errors(index)
    prices = frame[list(PRICE_COLUMNS)].to_numpy(dtype="float64")
    for j, name in enumerate(PRICE_COLUMNS):
        errors += price_errors(index, name, prices[:, j])
    o, h, lo, c = prices.T
    with np.errstate(invalid="ignore"):
        high_bad = h < np.maximum(o, c)
        low_bad = lo > np.minimum(o, c)
    if high_bad.any():
        errors.append("high < max(open, close), " + rows_text(
            index, high_bad, lambda i: f"{index[i]} open={o[i]:g} high={h[i]:g} close={c[i]:g}"))
    if low_bad.any():
        errors.append("low > min(open, close), " + rows_text(
            index, low_bad, lambda i: f"{index[i]} open={o[i]:g} low={lo[i]:g} close={c[i]:g}"))
    if "volume" in frame.columns:
        volume = frame["volume"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            negative = volume < 0
        if negative.any():
            errors.append("negative volume, "
                          + rows_text(index, negative, lambda i: f"{index[i]} volume={volume[i]:g}"))
    return errors


_GRID = {"1h": "on the hour", "4h": "at 00, 04, 08, 12, 16 or 20 h", "1d": "at 00:00"}


def grid_errors(frame: pd.DataFrame, timeframe: str) -> list[str]:
    """Bars whose open time is off the UTC grid of their timeframe (epoch-aligned, as resampling bins are):
    e.g. daily bars at 22:00 UTC from a file written in UTC+2. Funding and the network publication rule assume
    the grid, so such bars straddle the days they are booked to."""
    step = parse_timeframe(timeframe).value
    off = frame.index.as_unit("ns").asi8 % step != 0
    if not off.any():
        return []
    index = frame.index
    return [f"bars not on the {timeframe} UTC grid (a {timeframe} bar opens {_GRID[timeframe]} UTC; were the "
            "times written in another zone?), " + rows_text(index, off, lambda i: str(index[i]))]


def _side_medians(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median of the ``window`` values before, after, and either side of each element (itself excluded).

    NaN values are left out; a side with fewer than 3 values gives NaN (edges of the data, tiny frames).
    """
    padded = np.concatenate([np.full(window, np.nan), values, np.full(window, np.nan)])
    windows = sliding_window_view(padded, 2 * window + 1)
    before, after = windows[:, :window], windows[:, window + 1:]
    both = np.concatenate([before, after], axis=1)
    return _row_medians(before), _row_medians(after), _row_medians(both)


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """NaN-skipping median of each row, NaN where a row has fewer than 3 values.

    The mean of the two middle values of the sorted row ((x + x) / 2 = x for an odd count): the same
    arithmetic as ``np.nanmedian``, which for short rows sorts masked arrays row by row and made this
    check 40 % of loading an hourly file. The sort puts NaN last, so the middle indices come from the count.
    """
    ordered = np.sort(rows, axis=1)
    counts = np.count_nonzero(~np.isnan(rows), axis=1)
    low = np.take_along_axis(ordered, np.maximum(counts - 1, 0)[:, None] // 2, axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.minimum(counts // 2, rows.shape[1] - 1)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        medians = (low + high) / 2
    return np.where(counts >= 3, medians, np.nan)


def unchecked_text(unchecked: list[pd.Timestamp]) -> str:
    """The report line for bars the bad-tick rule could not judge."""
    shown = ", ".join(map(str, unchecked[:_MAX_LISTED])) + (" ..." if len(unchecked) > _MAX_LISTED else "")
    return (f"not checked for bad ticks: {len(unchecked)} bar(s) with fewer than 3 neighbours on both sides "
            f"({shown})")


def find_bad_ticks(frame: pd.DataFrame, rule: BadTickRule = BadTickRule()) -> list[BadTick]:
    """Apply the bad-tick rule (module docstring) to a frame with positive OHLC prices."""
    return _judge(frame, rule)[0]


def _judge(frame: pd.DataFrame, rule: BadTickRule) -> tuple[list[BadTick], np.ndarray]:
    """The bad ticks of ``frame`` and a mask of the bars with too few neighbours to be judged."""
    check_positive("rule.max_ranges", rule.max_ranges)
    check_positive("rule.range_floor", rule.range_floor)
    if rule.min_ratio < 1:
        raise DataError(f"rule.min_ratio={rule.min_ratio!r} must be >= 1 (a price ratio).")
    if len(frame) < 4:
        return [], np.ones(len(frame), dtype=bool)
    prices = frame[list(PRICE_COLUMNS)].to_numpy(dtype="float64")
    logs = np.log(prices)
    o, h, lo, c = logs.T
    previous_close = np.concatenate([[np.nan], c[:-1]])
    true_range = np.fmax(h, previous_close) - np.fmin(lo, previous_close)
    before, after, _ = _side_medians(c, rule.window)
    _, _, typical_range = _side_medians(true_range, rule.window)
    scale = np.maximum(typical_range, rule.range_floor)
    # Distance to the nearer side: a level shift (price moved and stayed) is near one side, a bad tick
    # is far from both.
    to_before = np.abs(logs - before[:, None])
    to_after = np.abs(logs - after[:, None])
    distance = np.fmin(to_before, to_after)
    reference = np.where(np.isnan(to_after) | (to_before <= to_after), before[:, None], after[:, None])
    with np.errstate(invalid="ignore"):
        flagged = (distance > rule.max_ranges * scale[:, None]) & (distance > math.log(rule.min_ratio))
    ticks = []
    for i, j in zip(*np.nonzero(flagged), strict=True):
        ticks.append(BadTick(frame.index[i], PRICE_COLUMNS[j], float(prices[i, j]),
                             float(np.exp(reference[i, j])), float(distance[i, j] / scale[i])))
    return ticks, np.isnan(before) & np.isnan(after)


def _neighbourhood(frame: pd.DataFrame, context: pd.DataFrame | None,
                   rule: BadTickRule) -> tuple[pd.DataFrame, slice]:
    """``frame``'s prices with ``rule.window + 2`` bars of ``context`` on each side (module docstring), and
    where ``frame`` sits in it. Without a usable context (none, unsorted, or not holding ``frame``'s bars),
    ``frame`` alone. Context prices that are not usable (NaN, <= 0: errors of bars outside the range) become
    NaN, which the medians skip."""
    whole = slice(0, len(frame))
    if context is None or frame.empty:
        return frame, whole
    index = context.index
    if not (index.is_monotonic_increasing and index.is_unique):
        return frame, whole
    lo, hi = index.searchsorted(frame.index[0]), index.searchsorted(frame.index[-1], side="right")
    if hi - lo != len(frame) or not index[lo:hi].equals(frame.index):
        return frame, whole
    pad = rule.window + 2
    first, last = max(lo - pad, 0), min(hi + pad, len(index))
    around = context.iloc[first:last][list(PRICE_COLUMNS)].astype("float64")
    around = around.where(around > 0)
    inside = slice(lo - first, hi - first)
    around.iloc[inside] = frame[list(PRICE_COLUMNS)].to_numpy()  # the range as validated
    return around, inside


def _mask(frame: pd.DataFrame,
          ticks: list[BadTick]) -> tuple[pd.DataFrame, list[BadTick], list[pd.Timestamp]]:
    """The 'mask' policy (module docstring). Returns the frame, the ticks with replacements, dropped bars."""
    out = frame.copy()
    positions = {ts: out.index.get_loc(ts) for ts in {t.timestamp for t in ticks}}
    bad_fields: dict[pd.Timestamp, set[str]] = {}
    for tick in ticks:
        bad_fields.setdefault(tick.timestamp, set()).add(tick.field)
    columns = {name: out.columns.get_loc(name) for name in PRICE_COLUMNS}
    values = out[list(PRICE_COLUMNS)].to_numpy(dtype="float64", copy=True)
    last = len(out) - 1
    drop: list[pd.Timestamp] = []
    replaced: dict[tuple[pd.Timestamp, str], float] = {}
    for ts, names in sorted(bad_fields.items()):
        i = positions[ts]
        if {"open", "close"} <= names:
            drop.append(ts)
            continue
        o, h, lo, c = values[i]
        if "open" in names:
            neighbour_ok = i > 0 and "close" not in bad_fields.get(out.index[i - 1], set())
            o = values[i - 1, 3] if neighbour_ok else c
        if "close" in names:
            neighbour_ok = i < last and "open" not in bad_fields.get(out.index[i + 1], set())
            c = values[i + 1, 0] if neighbour_ok else o
        h = max(o, c) if "high" in names else max(h, o, c)
        lo = min(o, c) if "low" in names else min(lo, o, c)
        values[i] = (o, h, lo, c)
        for name, value in zip(PRICE_COLUMNS, values[i], strict=True):
            replaced[(ts, name)] = float(value)
    for j, name in enumerate(PRICE_COLUMNS):
        out.iloc[:, columns[name]] = values[:, j]
    masked = [BadTick(t.timestamp, t.field, t.value, t.reference, t.ranges,
                      replaced.get((t.timestamp, t.field))) for t in ticks]
    if drop:
        out = out.drop(index=drop)
    return out, masked, drop


def validate_ohlcv(
    frame: pd.DataFrame,
    timeframe: str,
    *,
    source: str = "frame",
    bad_ticks: str = "mask",
    rule: BadTickRule = BadTickRule(),
    raise_on_error: bool = True,
    context: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate an OHLCV frame; return the (possibly masked) float64 frame and its report.

    ``timeframe`` is the nominal bar size for gap counting; ``source`` names the file or download in
    messages; ``bad_ticks`` is the policy (module docstring). Consistency errors raise DataError naming the
    rows and values unless ``raise_on_error`` is False, in which case they are listed in ``report.errors``
    and the frame is returned untouched (bad ticks are then only detected when prices are usable).
    ``context``: a frame holding ``frame``'s bars and more around them (the whole file, a padded download),
    from which the bad-tick rule takes each bar's neighbours (module docstring); only ``frame``'s bars are
    reported and returned.
    """
    check_choice("bad_ticks", bad_ticks, BAD_TICK_POLICIES)
    step = parse_timeframe(timeframe)
    frame = to_utc_index(frame, what=source)
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing OHLC columns {missing}.")
    frame = frame.astype({c: "float64" for c in frame.columns if c in (*PRICE_COLUMNS, "volume")})
    report = ValidationReport(source=source, timeframe=timeframe, rows=len(frame), policy=bad_ticks,
                              first=frame.index[0] if len(frame) else None,
                              last=frame.index[-1] if len(frame) else None)
    report.errors = [f"{source}: {e}" for e in (*_consistency_errors(frame), *grid_errors(frame, timeframe))]
    if report.errors and raise_on_error:
        raise DataError("\n".join(report.errors))

    if len(frame) > 1:
        steps = np.diff(frame.index.as_unit("ns").asi8)
        where = np.flatnonzero(steps > step.value)
        report.gaps = [Gap(frame.index[i], frame.index[i + 1], int(steps[i] // step.value) - 1)
                       for i in where]
    if "volume" in frame.columns:
        volume = frame["volume"]
        report.zero_volume = list(frame.index[volume.to_numpy() == 0])
        report.missing_volume = list(frame.index[volume.isna().to_numpy()])

    prices_usable = not any(("NaN" in e or "non-positive" in e) for e in report.errors)
    if not prices_usable:
        report.action = "not checked (unusable prices)"
        return frame, report
    around, inside = _neighbourhood(frame, None if context is None else to_utc_index(context, what=source),
                                    rule)
    ticks, unchecked = _judge(around, rule)
    report.unchecked = list(around.index[inside][unchecked[inside]])
    first, last = frame.index[0], frame.index[-1]
    report.bad_ticks = [t for t in ticks if first <= t.timestamp <= last]
    if not report.bad_ticks:
        report.action = "none needed"
        return frame, report
    if bad_ticks == "fail":
        listed = "; ".join(f"{t.timestamp} {t.field}={t.value:g} (neighbours {t.reference:g})"
                           for t in report.bad_ticks)
        raise DataError(f"{source}: {len(report.bad_ticks)} bad tick(s) (policy bad_ticks='fail'): {listed}. "
                        "Use bad_ticks='mask' or 'drop' to repair them, or another venue's file.")
    count = len(report.bad_ticks)
    if bad_ticks == "keep":
        report.action = "kept as is (reported only)"
        return frame, report
    if bad_ticks == "drop":
        report.dropped = sorted({t.timestamp for t in report.bad_ticks})
        report.action = f"dropped {len(report.dropped)} bar(s)"
        return frame.drop(index=report.dropped), report
    # Repaired with every tick of the neighbourhood known (a bad close next to the range must not become the
    # range's first open), then cut back to the range.
    repaired, masked, dropped = _mask(around, ticks)
    kept = (repaired.index >= first) & (repaired.index <= last)
    frame = frame.loc[frame.index.isin(repaired.index[kept])].copy()
    frame[list(PRICE_COLUMNS)] = repaired.loc[kept, list(PRICE_COLUMNS)].to_numpy()
    report.bad_ticks = [t for t in masked if first <= t.timestamp <= last]
    report.dropped = [ts for ts in dropped if first <= ts <= last]
    report.action = (f"masked {count} price(s) to the bar body"
                     + (f", dropped {len(report.dropped)} unrepairable bar(s)" if report.dropped else ""))
    return frame, report
