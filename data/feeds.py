"""backtrader feed for miner strategies: OHLCV plus network, hashprice and funding lines, without lookahead.

:func:`build_feed_frame` aligns everything to the OHLCV bars (vectorised: ``merge_asof`` and a grouped
sum, no per-bar Python) and :class:`MinerFeed` reads the result.

**Publication rule (no lookahead).** A daily network value describes UTC day ``D`` and is only complete
(and published by Coin Metrics) after that day ends. It becomes visible from the first bar whose **open
time** is at or after ``D + publication_lag`` (default one day, i.e. ``D+1 00:00 UTC``) and stays visible
for one day after that (``D+1`` replaces it; if ``D+1`` is missing the lines are NaN rather than stale).
So an hourly bar opening at 2020-05-12 13:00 sees the values of 2020-05-11, and the daily bar of
2020-05-12 (open 00:00) sees 2020-05-11 too. backtrader processes a bar after its close, so a strategy acting
on bar ``t`` uses network values at least one full bar old.

**Funding.** Each settlement (see :mod:`data.funding`) belongs to the bar whose ``[open, open + bar)``
contains its time. ``funding_paid`` is the sum of the fractions paid at the settlements inside the bar
(0 when none): what a broker applies to the position's notional on that bar (positive = longs pay).
``funding_rate`` is the mean 8h-equivalent rate of those settlements (fraction per 8h; 0 when none): on 1h
and 4h bars of an 8h venue it is the settlement's rate; on daily bars it is the day's mean. Both are NaN
(unknown, not 0) without a funding series and on the bars it does not reach (before its first settlement's
bar, after its last's): MarginBroker then pays its constant rate and lists that in its ``assumptions``.
Settlement rates are fixed by the venue at the settlement time, which is inside the bar, so both are known
at the bar's close, with one exception: the Binance BTCUSDT file holds only each day's mean of its three 8h
rates, so each of the day's 00/08/16 settlements pays that mean
(:func:`data.funding.read_binance_daily_mean`). The day's total is exact, but on 1h and 4h bars a
settlement's amount (and ``funding_rate``) uses rates fixed later that day: the mean is known only at the
day's end. Its funding info says so.

**Hashprice.** The formula lives in :func:`mining.revenue.network_hashprice` (one home); this module only
aligns its output: ``hashprice`` in USD per TH/s per day (BTC) or per MH/s per day (ETH) and
``coins_per_unit_day`` in coin per TH/s (BTC) or MH/s (ETH) per day, FPPS expected value before pool fees.
"""

from __future__ import annotations

import array
import math

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import numpy as np
import pandas as pd
from backtrader.linebuffer import LineBuffer
from backtrader.utils.dateintern import date2num

from data.frames import (
    OHLCV_COLUMNS,
    PRICE_COLUMNS,
    TIMEFRAMES,
    parse_timeframe,
    timeframe_name,
    to_utc_index,
)
from data.validate import grid_errors, price_errors
from minehedge.errors import DataError, check_choice
from minehedge.timeframes import timeframe_span

#: Extra lines, their units, and the network/hashprice column each comes from.
NETWORK_LINES = {
    "difficulty": "difficulty",  # raw (BTC difficulty; ETH hashes per block)
    "hashrate": "hashrate_hs",  # network hash rate, H/s
    "subsidy": "subsidy_per_block",  # coin per block (block-weighted daily mean)
    "fees_per_block": "fees_per_block",  # coin per block
    "hashprice": "hashprice_usd_per_unit_day",  # USD per TH/s/day (BTC), per MH/s/day (ETH)
    "coins_per_unit_day": "coins_per_unit_day",  # coin per TH/s/day (BTC), per MH/s/day (ETH)
}
FUNDING_LINES = ("funding_rate", "funding_paid")
EXTRA_LINES = (*NETWORK_LINES, *FUNDING_LINES)
_ORDINAL_OF_EPOCH = 719_163  # date(1970, 1, 1).toordinal()


class FastPandasData(bt.feeds.PandasData):
    """backtrader's PandasData, read faster with the same values (tests/test_data_fastfeed.py compares every
    line, tick and fill in all four engine modes): :meth:`start` takes each mapped column once as a float64
    numpy array and the bar times as backtrader date numbers (:func:`bar_date_numbers`), so no bar costs
    a pandas ``.iloc`` lookup (PandasData: about 40 us per bar). With ``preload`` (the default) and no
    filters, date bounds or input time zone, :meth:`preload` fills each line's buffer in one step;
    otherwise bars go through backtrader's own ``load()`` one at a time. Columns must be numeric.
    """

    def __init__(self) -> None:
        super().__init__()
        # ``feed.close`` reaches the line through LineSeries.__getattr__, a Python call for every read (a
        # run reads a dozen lines per bar); as instance attributes the lines are found directly. Names a
        # class attribute already answers keep their meaning.
        for alias in self.getlinealiases():
            if not hasattr(type(self), alias) and alias not in self.__dict__:
                setattr(self, alias, getattr(self.lines, alias))

    def start(self) -> None:
        super().start()
        frame = self.p.dataname
        self._fast_lines: list[tuple[object, np.ndarray | None]] = []
        prices: dict[str, tuple[str, np.ndarray]] = {}  # open, high, low, close: (column, values)
        for alias in self.getlinealiases():
            if alias == "datetime":
                continue
            column = self._colmapping[alias]
            values = None if column is None else np.asarray(frame.iloc[:, column], dtype="float64")
            self._fast_lines.append((getattr(self.lines, alias), values))
            if alias in PRICE_COLUMNS and values is not None:
                prices[alias] = (str(frame.columns[column]), values)
        self._fast_prices = [prices[alias] for alias in PRICE_COLUMNS if alias in prices]
        column = self._colmapping["datetime"]
        stamps = frame.index if column is None else pd.DatetimeIndex(frame.iloc[:, column])
        self._fast_stamps = stamps
        self._fast_times = bar_date_numbers(stamps)
        self._fast_rows = len(frame)
        # backtrader's per-bar tick bookkeeping (_tick_nullify/_tick_fill) with the names resolved once
        aliases = [alias for alias in self.getlinealiases() if alias != "datetime"]
        self._tick_names = [f"tick_{alias}" for alias in aliases]
        self._tick_lines = [getattr(self.lines, alias) for alias in aliases]
        self._tick_first = f"tick_{self._getlinealias(0)}"
        self._tick_line0 = getattr(self.lines, self._getlinealias(0))
        self._tick_cleared = dict.fromkeys((*self._tick_names, "tick_last"))
        self._plain_lines: list[LineBuffer] | None = None  # decided at the first advance (see advance)

    def _start(self) -> None:
        super()._start()  # start(), then backtrader's date bounds (fromdate, todate: date numbers)
        self._check_prices()

    def _check_prices(self) -> None:
        """DataError naming the feed and the rows whose open, high, low or close is NaN or <= 0
        (:func:`data.validate.price_errors`, the rule the loaders apply to files): a broker would fill or
        value a position there, and one NaN price makes MarginBroker's cash NaN for the rest of the run. Rows
        outside ``fromdate``/``todate`` are never loaded and not checked (with ``tzinput`` every row is).
        Other lines (volume, a MinerFeed's network and funding lines) may be NaN."""
        times = self._fast_times
        loaded = np.ones(len(times), dtype=bool)
        if not self._tzinput:  # the frame's times are the bars' (UTC or naive) times
            loaded = (times >= self.fromdate) & (times <= self.todate)
        stamps = self._fast_stamps[loaded]
        errors = [error for column, values in self._fast_prices
                  for error in price_errors(stamps, column, values[loaded])]
        if errors:
            name = self._name or self.p.name or "(unnamed)"
            raise DataError(
                f"data {name!r}: {'; '.join(errors)}. A broker cannot fill or value a position at such a "
                "price; drop or repair those rows first "
                "(data.validate.validate_ohlcv(frame, timeframe, raise_on_error=False) lists what is wrong "
                "with an OHLCV frame; bad_ticks= repairs isolated bad prices).")

    def _tick_nullify(self) -> None:
        self.__dict__.update(self._tick_cleared)

    def _tick_fill(self, force: bool = False) -> None:
        if force or getattr(self, self._tick_first, None) is None:
            state = self.__dict__
            if self._plain_lines:  # unbounded LineBuffers (see advance): line[0] is line.array[line._idx]
                for name, line in zip(self._tick_names, self._tick_lines, strict=True):
                    state[name] = line.array[line._idx]
                line0 = self._tick_line0
                self.tick_last = line0.array[line0._idx]
                return
            for name, line in zip(self._tick_names, self._tick_lines, strict=True):
                state[name] = line[0]
            self.tick_last = self._tick_line0[0]

    def _lines_if_plain(self) -> list[LineBuffer]:
        """Every line, if each is an unbounded LineBuffer (the mode preload gives unless cerebro saves memory
        with ``exactbars``), else []. Buffer modes are fixed before the first bar, so this is asked once."""
        lines = list(self.lines)
        plain = all(type(line) is LineBuffer and line.mode == LineBuffer.UnBounded for line in lines)
        return lines if plain else []

    def advance_peek(self) -> float:
        """backtrader's advance_peek: the next bar's date number, inf after the last preloaded bar."""
        lines = self._plain_lines
        if lines is None:
            lines = self._plain_lines = self._lines_if_plain()
        if not lines:
            return super().advance_peek()
        line0 = lines[0]
        if line0.lencount < len(line0.array) - line0.extension:  # len(self) < self.buflen()
            datetime_line = self.lines.datetime
            return datetime_line.array[datetime_line._idx + 1]
        return math.inf

    def advance(self, size: int = 1, datamaster=None, ticks: bool = True) -> None:
        """backtrader's advance (every line one bar on), keeping each line's index directly in the plain
        case: one bar, no master data, unbounded LineBuffers (what LineBuffer.advance does through the idx
        property, ~15 lines x 5,000-40,000 bars per run). Other cases go to backtrader's own."""
        lines = self._plain_lines
        if lines is None:
            lines = self._plain_lines = self._lines_if_plain()
        if size != 1 or datamaster is not None or not lines:
            super().advance(size, datamaster, ticks)
            return
        if ticks:
            self._tick_nullify()
        for line in lines:
            line._idx += 1
            line.lencount += 1
        line0 = lines[0]
        if ticks and line0.lencount < len(line0.array) - line0.extension:  # a resampler may have gone past
            self._tick_fill()

    def _load(self) -> bool:
        self._idx += 1
        i = self._idx
        if i >= self._fast_rows:
            return False
        for line, values in self._fast_lines:
            if values is not None:
                line[0] = values[i]
        self.lines.datetime[0] = self._fast_times[i]
        return True

    def preload(self) -> None:
        lines = [line for line, _ in self._fast_lines] + [self.lines.datetime]
        bulk = (not self._filters and not self._ffilters and not self._barstack and not self._barstash
                and not self._tzinput and self.fromdate == -math.inf and self.todate == math.inf
                and self._idx == -1 and len(self) == 0 and self.buflen() == 0
                and all(line.mode == line.UnBounded and line.extension == 0 for line in lines))
        if not bulk:
            super().preload()
            return
        # What load() leaves after N bars: every line holds N values, the pointer is at the end.
        rows = self._fast_rows
        for line, values in (*self._fast_lines, (self.lines.datetime, self._fast_times)):
            buffer = array.array("d")
            if values is None:
                buffer.frombytes(np.full(rows, np.nan).tobytes())
            else:
                buffer.frombytes(np.ascontiguousarray(values, dtype="<f8").tobytes())
            line.array = buffer
            line.idx = rows - 1
            line.lencount = rows
        self._idx = rows
        self._last()
        self.home()


def bar_timeframe(bar: pd.Timedelta) -> tuple[int, int]:
    """backtrader's ``(timeframe, compression)`` for a bar size: ``(Days, n)`` for whole days,
    ``(Minutes, n)`` for whole minutes below a day. MarginBroker takes each bar's span from these to decide
    which funding settlements the bar holds, so they must match the bars."""
    bar = pd.Timedelta(bar)
    if bar <= pd.Timedelta(0) or bar % pd.Timedelta(minutes=1):
        raise DataError(f"bar size {bar} is not a whole number of minutes; allowed: {', '.join(TIMEFRAMES)}.")
    if bar % pd.Timedelta(days=1) == pd.Timedelta(0):
        return bt.TimeFrame.Days, bar // pd.Timedelta(days=1)
    if bar < pd.Timedelta(days=1):
        return bt.TimeFrame.Minutes, bar // pd.Timedelta(minutes=1)
    raise DataError(f"bar size {bar} is neither whole days nor under a day; allowed: "
                    f"{', '.join(TIMEFRAMES)}.")


class MinerFeed(FastPandasData):
    """The feed for miner strategies: OHLCV plus the lines in :data:`NETWORK_LINES` and the funding lines
    (units in the module docstring). Feed it the frame from :func:`build_feed_frame`; columns are matched
    by name.

    ``history_close``: closes (USD per coin) of the bars before the frame's first, oldest first, at the same
    bar size; for indicators that need history at the first bar (dynamic_hedge's realised volatility). Not a
    line: backtrader never steps through these bars. :func:`minehedge.api.load_market` fills it.

    The bar size is read from the frame (the smallest spacing of its index; for one bar,
    ``frame.attrs["timeframe"]``, set by :func:`build_feed_frame`), so 1h and 4h bars are not taken for
    backtrader's default of one day: MarginBroker pays each funding settlement on the bar whose span holds
    it. An explicit ``timeframe``/``compression`` must agree with the bars (DataError otherwise). Daily bars
    must open at 00:00 UTC (:func:`_grid_errors`), and no loaded bar may have a NaN or non-positive price
    (:meth:`FastPandasData._check_prices`): DataError otherwise."""

    lines = EXTRA_LINES
    params = (("timeframe", None), ("compression", None), ("history_close", ()),
              *((name, -1) for name in EXTRA_LINES))

    def __init__(self) -> None:
        super().__init__()
        bar = _frame_bar(self.p.dataname)
        name = self.p.name or "MinerFeed"
        if bar is not None:
            off_grid = _grid_errors(self.p.dataname, bar)
            if off_grid:
                raise DataError(f"data {name!r}: {off_grid[0]}")
        if self.p.timeframe is None:
            if bar is None:
                raise DataError(f"data {name!r}: cannot tell the bar size of a one-bar frame without "
                                "DatetimeIndex spacing; pass timeframe= and compression= (backtrader units) "
                                "or build the frame with data.feeds.build_feed_frame(timeframe=...).")
            self.p.timeframe, self.p.compression = bar_timeframe(bar)
            return
        if self.p.compression is None:
            self.p.compression = 1
        declared = pd.Timedelta(timeframe_span(self.p.timeframe, self.p.compression))  # NaT: no fixed span
        if bar is not None and declared != bar:
            timeframe, compression = bar_timeframe(bar)
            allowed = f"timeframe=bt.TimeFrame.{bt.TimeFrame.Names[timeframe]}, compression={compression}"
            raise DataError(
                f"data {name!r}: timeframe={bt.TimeFrame.Names[self.p.timeframe]} x compression="
                f"{self.p.compression} ({declared}) does not match the frame's bars ({bar} apart); pass "
                f"{allowed}, or leave both out to read them from the frame.")


def _frame_bar(frame: object) -> pd.Timedelta | None:
    """The bar size of a feed frame: the smallest spacing of its DatetimeIndex, else (one bar) its
    ``attrs["timeframe"]``; None when neither tells. Spacing comes first: pandas carries ``attrs`` into
    derived frames, where they may be stale (a 1h frame resampled to 4h)."""
    index = getattr(frame, "index", None)
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        steps = np.diff(index.as_unit("ns").asi8)
        steps = steps[steps > 0]
        if len(steps):
            return pd.Timedelta(int(steps.min()), unit="ns")
    attrs = getattr(frame, "attrs", None) or {}
    return parse_timeframe(attrs["timeframe"]) if attrs.get("timeframe") else None


def _grid_errors(frame: pd.DataFrame, bar: pd.Timedelta) -> list[str]:
    """The loaders' daily grid rule (:func:`data.validate.grid_errors`) for a feed frame of ``bar``-sized
    bars: bars of whole days must open at 00:00 UTC, since MarginBroker takes a daily bar's span from its UTC
    date (a bar at 23:00 UTC, a Berlin midnight, would have its funding booked a day off). Bars under a day
    keep their own times: their span starts at their open, wherever that is. Empty when the frame has no
    DatetimeIndex (times in a column) or every bar is on the grid."""
    if not isinstance(getattr(frame, "index", None), pd.DatetimeIndex) or bar % pd.Timedelta(days=1):
        return []
    return grid_errors(frame, "1d")


def bar_date_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    """backtrader's float date numbers (days since 0001-01-01 plus one, UTC) of ``index``: exactly what
    ``backtrader.date2num(timestamp.to_pydatetime())`` gives (tz-aware stamps are converted to UTC;
    naive ones are taken as they are), vectorised where that is provably the same float.

    date2num is ``math.fsum((ordinal, hour / 24, minute / 1440, second / 86400, microsecond / 86400e6))``:
    with minute, second and microsecond all 0 that is one correctly rounded addition, which numpy's
    float64 ``+`` performs identically; other stamps go through date2num itself.
    """
    index = pd.DatetimeIndex(index)
    nanoseconds = index.as_unit("ns").asi8  # UTC for tz-aware stamps, wall time for naive ones
    day_ns = 86_400_000_000_000
    days, within = np.divmod(nanoseconds, day_ns)
    hours, rest = np.divmod(within, 3_600_000_000_000)
    numbers = (days + _ORDINAL_OF_EPOCH).astype("float64") + hours.astype("float64") / 24.0
    odd = np.flatnonzero(rest != 0)
    for i in odd:  # sub-hour stamps (rare): backtrader's own conversion
        numbers[i] = date2num(index[i].to_pydatetime())
    return numbers


def _check_network_lines(out: pd.DataFrame, daily: pd.DataFrame, asset: str, lag: pd.Timedelta) -> None:
    """DataError naming the network days, and the NaN columns, behind the bars of ``out`` whose hashprice
    lines are NaN (their mining revenue is unknown). ETH bars from the Merge on earn nothing and need none."""
    from data.network import CONTRACT_METRICS
    from mining.revenue import ETH_MERGE, HASHPRICE_INPUTS

    unknown = (out["coins_per_unit_day"].isna() | out["hashprice"].isna()).to_numpy()
    if asset == "ETH":
        unknown = unknown & (out.index < ETH_MERGE)
    if not unknown.any():
        return
    bars = out.index[unknown]
    reasons: list[tuple[pd.Timestamp, pd.Timestamp, str]] = []  # (first day, last day, why) of each run
    for day in network_day_seen(bars, lag).unique():
        if day not in daily.index:
            why = "no network row"
        else:
            row = daily.loc[day]
            nan = [c if asset == "ETH" else f"{c} ({CONTRACT_METRICS[c]})"
                   for c in HASHPRICE_INPUTS[asset] if c in row and pd.isna(row[c])]
            why = f"NaN {', '.join(nan)}" if nan else "unusable values (zero difficulty or hash rate)"
        if reasons and reasons[-1][2] == why and reasons[-1][1] + pd.Timedelta(days=1) == day:
            reasons[-1] = (reasons[-1][0], day, why)
        else:
            reasons.append((day, day, why))
    spans = [f"{a.date()}{'' if a == b else f' -> {b.date()}'} ({(b - a).days + 1} day(s)): {why}"
             for a, b, why in reasons]
    more = f"; ... {len(spans) - 5} more" if len(spans) > 5 else ""
    source = daily["source"].iloc[0] if "source" in daily and len(daily) else "the network frame"
    raise DataError(
        f"{asset} network data missing for {len(bars)} bar(s), {bars[0]} -> {bars[-1]}: their mining revenue "
        "is unknown (a bar sees the network values of the UTC day before, publication lag "
        f"{lag / pd.Timedelta(hours=1):g} h). Network days: {'; '.join(spans[:5])}"
        f"{more} (from {source}). Use a range the network data cover, or complete the network data.")


#: Default time from the start of a network day until its values are visible (module docstring).
PUBLICATION_LAG = pd.Timedelta(days=1)


def network_day_seen(
    bar_open: pd.Timestamp | pd.DatetimeIndex,
    publication_lag: pd.Timedelta | str = PUBLICATION_LAG,
) -> pd.Timestamp | pd.DatetimeIndex:
    """The network day (UTC midnight) whose values a bar opening at ``bar_open`` (UTC; one time or an index)
    sees: the last day ``D`` with ``D + publication_lag <= bar_open`` (module docstring; daily bar of
    2020-05-12 -> 2020-05-11). :func:`build_feed_frame` joins the same days as of each bar."""
    opens = bar_open if isinstance(bar_open, pd.DatetimeIndex) else pd.Timestamp(bar_open)
    return (opens - pd.Timedelta(publication_lag)).floor("D")


def _frame_argument(name: str, value: object, loader: str) -> pd.DataFrame:
    """``value`` when it is a DataFrame, else DataError naming the parameter ``name`` and what to pass: the
    frame of a loader's result (``loader(...).frame``)."""
    if isinstance(value, pd.DataFrame):
        return value
    if value is None:
        got = ("None; it is required: the mining lines come from it (MinerFeed on the OHLCV frame alone has "
               "NaN mining lines)") if name == "network" else "None"
    elif isinstance(getattr(value, "frame", None), pd.DataFrame):
        got = f"a {type(value).__name__}; pass its .frame"
    else:
        got = f"a {type(value).__name__}"
    raise DataError(f"build_feed_frame: {name}= must be a DataFrame ({loader}(...).frame), got {got}.")


def build_feed_frame(
    ohlcv: pd.DataFrame,
    network: pd.DataFrame,
    funding: pd.DataFrame | None,
    asset: str,
    *,
    timeframe: str | None = None,
    fee_window_days: int = 1,
    publication_lag: pd.Timedelta | str = PUBLICATION_LAG,
    missing_network: str = "raise",
) -> pd.DataFrame:
    """One float64 frame for :class:`MinerFeed`: OHLCV columns plus :data:`EXTRA_LINES`.

    ``ohlcv``: validated bars (UTC open times; daily ones at 00:00 UTC: :func:`_grid_errors`);
    ``network``: the daily network contract frame (required: the mining lines come from it);
    ``funding``: a :mod:`data.funding` frame (``funding_rate``, ``rate_8h``), or None without a funding
    series (a spot-only run, dated contracts): both funding lines are then NaN, as on the bars before the
    series' first settlement or after its last, so a perpetual held there pays MarginBroker's constant rate,
    listed in its ``assumptions``, never a silent 0; ``timeframe``: the bar size (inferred from the smallest
    bar spacing when None); ``fee_window_days`` is passed to ``network_hashprice``; ``publication_lag``: see
    the module docstring.
    ``missing_network``: 'raise' (default): a bar whose hashprice lines are NaN (its network day is absent, or
    a value the hashprice needs is NaN: mining revenue unknown) raises DataError naming the days and the
    columns; ETH bars from the Merge on need none. 'nan': such lines stay NaN for a caller that handles them.
    """
    from mining.revenue import network_hashprice  # owned by mining/: the one home of the formula

    asset = check_choice("asset", str(asset).upper(), ("BTC", "ETH"))
    check_choice("missing_network", missing_network, ("raise", "nan"))
    ohlcv = _frame_argument("ohlcv", ohlcv, "data.load_ohlcv")
    network = _frame_argument("network", network, "data.load_network")
    if funding is not None:
        funding = _frame_argument("funding", funding, "data.load_funding")
    bars = to_utc_index(ohlcv, what="ohlcv")
    if bars.empty:
        raise DataError("build_feed_frame: the OHLCV frame is empty.")
    missing = [c for c in OHLCV_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(f"build_feed_frame: OHLCV frame lacks {missing}.")
    if timeframe is not None:
        bar = parse_timeframe(timeframe)
    elif len(bars) > 1:
        bar = pd.Series(bars.index).diff().min()
    else:
        raise DataError("build_feed_frame: pass timeframe= for a single-bar frame.")
    if bar not in TIMEFRAMES.values():
        raise DataError(f"build_feed_frame: bar spacing {bar} is not one of {', '.join(TIMEFRAMES)}.")
    off_grid = _grid_errors(bars, bar)
    if off_grid:
        raise DataError(f"build_feed_frame: ohlcv: {off_grid[0]}")
    lag = pd.Timedelta(publication_lag)
    if lag < pd.Timedelta(0):
        raise DataError(f"publication_lag={publication_lag!r} must be >= 0 (a negative lag looks ahead).")

    out = bars[list(OHLCV_COLUMNS)].astype("float64")
    daily = to_utc_index(network, what="network")
    hashprice = network_hashprice(daily, asset, fee_window_days)
    values = pd.concat([daily, hashprice[["coins_per_unit_day", "hashprice_usd_per_unit_day"]]], axis=1)
    values = values[list(NETWORK_LINES.values())].astype("float64")
    values.columns = list(NETWORK_LINES)
    values.index = values.index + lag  # the time each day's values become visible
    values = values.rename_axis("visible_from").reset_index()
    aligned = pd.merge_asof(
        pd.DataFrame({"bar_open": out.index}), values, left_on="bar_open", right_on="visible_from",
        direction="backward", tolerance=pd.Timedelta(days=1) - pd.Timedelta(1, unit="ns"),
    )
    for name in NETWORK_LINES:
        out[name] = aligned[name].to_numpy(dtype="float64")
    if missing_network == "raise":
        _check_network_lines(out, daily, asset, lag)

    out["funding_rate"] = math.nan  # no funding series: unknown, not a measured 0 (module docstring)
    out["funding_paid"] = math.nan
    if funding is not None and not funding.empty:
        settlements = to_utc_index(funding, what="funding")
        opens = out.index.as_unit("ns").asi8
        times = settlements.index.as_unit("ns").asi8
        position = np.searchsorted(opens, times, side="right") - 1
        inside = (position >= 0) & (times < opens[np.clip(position, 0, None)] + bar.value)
        grouped = pd.DataFrame({"bar": position[inside],
                                "paid": settlements["funding_rate"].to_numpy(dtype="float64")[inside],
                                "rate_8h": settlements["rate_8h"].to_numpy(dtype="float64")[inside]})
        per_bar = grouped.groupby("bar").agg(paid=("paid", "sum"), rate_8h=("rate_8h", "mean"))
        paid = np.zeros(len(out))
        rate = np.zeros(len(out))
        paid[per_bar.index.to_numpy()] = per_bar["paid"].to_numpy()
        rate[per_bar.index.to_numpy()] = per_bar["rate_8h"].to_numpy()
        beyond = (opens + bar.value <= times.min()) | (opens > times.max())  # bars the series does not reach
        paid[beyond] = math.nan
        rate[beyond] = math.nan
        out["funding_paid"] = paid
        out["funding_rate"] = rate
    out.attrs["timeframe"] = timeframe_name(bar)  # MinerFeed's bar size (one-bar frames have no spacing)
    return out
