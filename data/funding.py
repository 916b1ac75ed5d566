"""Perpetual-swap funding rates as settlement series, from the shared files or a flagged constant.

Output frame (UTC index = settlement time), one row per settlement:

* ``funding_rate``: fraction of position notional paid **at that settlement**; positive = longs pay shorts;
* ``interval_hours``: hours the settlement covers (8 normally; 24 for BitMEX's first days);
* ``rate_8h``: ``funding_rate * 8 / interval_hours``, the 8h-equivalent rate, comparable across venues;
* ``assumed``: True where the value is the constant fallback, not venue data.

Per file (data README, section 4):

* **BitMEX XBTUSD** (settlements 04/12/20 UTC): ``fundingRate`` as is. The first 22 rows (to 2016-06-04)
  settled once every 24 h at 12:00 UTC, so each is one settlement with ``interval_hours=24`` and
  ``rate_8h = fundingRate / 3``; it is *not* split into fictitious 8h settlements.
* **Deribit BTC-PERPETUAL** (hourly): Deribit funds continuously; ``interest_1h`` at hour *t* is the funding
  accrued over ``(t - 1h, t]`` (its trailing 8h sum reproduces ``interest_8h`` to ~1e-6). Default
  ``deribit='8h'`` sums the accruals into settlements at 00/08/16 UTC covering ``(S - 8h, S]`` (hours
  missing from the file, e.g. 2020-08-27 06:00-07:00, contribute nothing); ``deribit='1h'`` keeps one
  settlement per hour (``interval_hours=1``). ``interest_8h`` (a rolling 8h-equivalent) is not used as a
  payment because summing it would count each hour eight times.
* **Binance BTCUSDT** (daily mean of the three 8h rates): expanded to three settlements at 00/08/16 UTC of
  that day, each equal to the mean, so the day's total is 3 x mean, exactly what was paid in total (the
  intra-day split is unknown). Each settlement's amount is therefore approximate, and uses the day's later
  rates: the mean is known only at the day's end (:data:`DAILY_MEAN_NOTE`, in the funding info).
* **ETH ETHUSDT (Binance inferred)**: the raw 8h settlements at 00/08/16 UTC.

Fallback: :func:`constant_funding` (default 0.0001 = 0.01 % per 8h, Binance's and BitMEX's base interest
rate component when the premium is zero) fills settlements at 00/08/16 UTC that no file covers. Every such
row has ``assumed=True`` and :class:`FundingInfo.assumption` says so in words for reports. What a file covers
is what its MANIFEST.csv row says: a file shorter than its row (an interrupted copy) is a DataError where the
request needs the missing rows (:meth:`data.manifest.FileChoice.check_file`), never filled with the constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brokers.formulas import MAX_PLAUSIBLE_RATE  # its home: venues' funding caps
from data.frames import read_time_csv, to_utc_index
from data.manifest import choice_of_row, read_manifest, rows_for_venue
from minehedge.errors import ConfigError, DataError, DataUnavailableError, check_choice

DEFAULT_FALLBACK_RATE = 0.0001  # fraction per 8h settlement (0.01 %)
SETTLEMENT_HOURS = (0, 8, 16)
FUNDING_COLUMNS = ("funding_rate", "interval_hours", "rate_8h", "assumed")


@dataclass(frozen=True)
class FundingInfo:
    """Where a funding series came from; ``assumption`` is None when every settlement is venue data."""

    asset: str
    venue: str
    file: str | None
    reason: str
    settlements: int
    assumed_settlements: int
    fallback_rate: float | None
    assumption: str | None

    def __str__(self) -> str:
        text = f"funding {self.asset}: {self.venue} ({self.file or 'no file'}); {self.reason}"
        return text + (f"\n  ASSUMPTION: {self.assumption}" if self.assumption else "")


@dataclass(frozen=True)
class FundingResult:
    frame: pd.DataFrame
    info: FundingInfo


def _frame(rate: pd.Series, interval_hours: pd.Series | float, assumed: bool = False) -> pd.DataFrame:
    out = pd.DataFrame({"funding_rate": rate.astype("float64")}, index=rate.index)
    out["interval_hours"] = np.asarray(interval_hours, dtype="float64") if not np.isscalar(interval_hours) \
        else float(interval_hours)
    out["rate_8h"] = out["funding_rate"] * 8.0 / out["interval_hours"]
    out["assumed"] = assumed
    out.index.name = "datetime"
    return to_utc_index(out, what="funding")


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    return read_time_csv(Path(path), "funding", ("datetime", "date"), columns)


def _bitmex(raw: pd.DataFrame, mode: str) -> pd.DataFrame:
    return _frame(raw["fundingRate"], raw["funding_interval_hours"])


def _deribit(raw: pd.DataFrame, mode: str) -> pd.DataFrame:
    check_choice("deribit", mode, ("8h", "1h"))
    accrual = raw["interest_1h"]
    if mode == "1h":
        return _frame(accrual, 1.0)
    # (S - 8h, S] windows: label each hour by the next 00/08/16 boundary at or after it.
    settlement = accrual.index.ceil("8h")
    summed = accrual.groupby(settlement).sum()
    return _frame(summed, 8.0)


def _binance_daily_mean(raw: pd.DataFrame, mode: str) -> pd.DataFrame:
    mean = raw["funding_rate_daily_mean_8h"]
    index = (mean.index.repeat(3) + pd.to_timedelta(np.tile(SETTLEMENT_HOURS, len(mean)), unit="h"))
    return _frame(pd.Series(np.repeat(mean.to_numpy(), 3), index=index), 8.0)


def _eth_8h(raw: pd.DataFrame, mode: str) -> pd.DataFrame:
    return _frame(raw["funding_rate"], 8.0)


Bound = pd.Timestamp | None


def _same_times(start: Bound, end: Bound, mode: str) -> tuple[Bound, Bound]:
    return start, end


def _deribit_hours(start: Bound, end: Bound, mode: str) -> tuple[Bound, Bound]:
    if check_choice("deribit", mode, ("8h", "1h")) == "1h":
        return start, end
    seven = pd.Timedelta(hours=7)  # the settlement at S sums the hours S - 7h .. S
    return (None if start is None else start.ceil("8h") - seven,
            None if end is None else end.ceil("8h") - seven)


def _days(start: Bound, end: Bound, mode: str) -> tuple[Bound, Bound]:
    return None if start is None else start.floor("D"), end  # day d's mean pays at d 00/08/16


@dataclass(frozen=True)
class _Format:
    """A funding file's columns (the first is its rate), its settlements from its rows (given the ``deribit``
    mode), and the file times ``[from, to)`` whose rows make the settlements in ``[start, end)``."""

    columns: tuple[str, ...]
    settle: Callable[[pd.DataFrame, str], pd.DataFrame]
    reads: Callable[[Bound, Bound, str], tuple[Bound, Bound]]


_FORMATS = {
    ("BTC", "bitmex"): _Format(("fundingRate", "funding_interval_hours"), _bitmex, _same_times),
    ("BTC", "binance"): _Format(("funding_rate_daily_mean_8h",), _binance_daily_mean, _days),
    ("BTC", "deribit"): _Format(("interest_1h",), _deribit, _deribit_hours),
    ("ETH", "binance-inferred"): _Format(("funding_rate",), _eth_8h, _same_times),
}


def read_bitmex(path: str | Path) -> pd.DataFrame:
    """BitMEX XBTUSD settlements; 24h rows kept as single 24h settlements (module docstring)."""
    return read_funding_file(Path(path), "BTC", "bitmex")


def read_deribit(path: str | Path, mode: str = "8h") -> pd.DataFrame:
    """Deribit hourly accruals, summed into 00/08/16 UTC settlements (``mode='8h'``) or kept hourly."""
    return read_funding_file(Path(path), "BTC", "deribit", mode)


def read_binance_daily_mean(path: str | Path) -> pd.DataFrame:
    """Binance daily mean of 8h rates -> three equal settlements at 00/08/16 UTC per day."""
    return read_funding_file(Path(path), "BTC", "binance")


def read_eth_8h(path: str | Path) -> pd.DataFrame:
    """Raw ETHUSDT 8h settlements (``datetime`` rounded to the second by the data README)."""
    return read_funding_file(Path(path), "ETH", "binance-inferred")


def constant_funding(start: pd.Timestamp, end: pd.Timestamp, rate: float = DEFAULT_FALLBACK_RATE,
                     anchor: pd.Timestamp | None = None) -> pd.DataFrame:
    """Settlements every 8h in ``[start, end)`` at a constant ``rate`` per 8h, all ``assumed``.

    The schedule is 00/08/16 UTC, or ``anchor + k x 8h`` when an ``anchor`` settlement is given (used to
    continue a venue's own schedule, e.g. BitMEX 04/12/20 UTC, so no period is paid twice or skipped).
    """
    if not np.isfinite(rate):
        raise ConfigError(f"fallback_rate={rate!r} must be a finite fraction per 8h (e.g. 0.0001).")
    eight = pd.Timedelta(hours=8)
    offset = (anchor - anchor.floor("8h")) if anchor is not None else pd.Timedelta(0)
    first = (pd.Timestamp(start) - offset).ceil("8h") + offset
    times = pd.date_range(first, end, freq=eight, inclusive="left")
    return _frame(pd.Series(float(rate), index=times), 8.0, assumed=True)


class SettlementRates:
    """Each settlement's own rate by its time, for :class:`brokers.broker.MarginBroker`'s ``funding_rates``.

    Called as ``rates(data, when)`` with ``when`` a settlement time (naive UTC); returns that settlement's
    ``rate_8h`` (fraction per 8h, positive = longs pay) or None when the series has no settlement then, so
    the broker falls back to the bar's ``funding_rate`` line, then to its constant. Without it a bar holding
    several settlements (a daily bar of an 8h venue) would pay each at the bar's mean rate: the bar's total is
    the same, but the split between funding paid and received, and each ledger row's rate, are not (BitMEX
    2018 to 2020-06 on daily bars, a 5x short: 378,837 USD paid and 445,345 received, where the
    settlements themselves give 410,547 and 477,055).
    Picklable (a sweep sends it with the market)."""

    __slots__ = ("_rates",)

    def __init__(self, frame: pd.DataFrame) -> None:
        """``frame``: a funding frame (UTC index = settlement time) with a ``rate_8h`` column."""
        frame = to_utc_index(frame, what="funding")
        times = frame.index.tz_convert(None).to_pydatetime()
        self._rates: dict = dict(zip(times, frame["rate_8h"].to_numpy(dtype="float64").tolist(), strict=True))

    def __call__(self, data: object, when) -> float | None:
        return self._rates.get(when)

    def __len__(self) -> int:
        return len(self._rates)


#: Said in the funding info wherever the Binance daily-mean file is used.
DAILY_MEAN_NOTE = ("the file holds each day's mean of the three 8h rates; each 00/08/16 settlement pays that "
                   "mean: the day's total is exact, an intraday settlement's amount approximate (the mean is "
                   "known only at the day's end)")

def _format(path: Path, asset: str, venue: str) -> _Format:
    """The format of a manifest funding row (looked up first, so a reader's own missing column is reported as
    such, not as an unknown venue)."""
    found = _FORMATS.get((asset, venue))
    if found is None:
        known = ", ".join(sorted(v for a, v in _FORMATS if a == asset))
        raise DataError(f"no reader for {asset} funding venue {venue!r} ({path.name}); "
                        f"readers exist for: {known}.")
    return found


def read_funding_file(path: Path, asset: str, venue: str, deribit: str = "8h") -> pd.DataFrame:
    """The settlements of a manifest funding row's file (module docstring, per venue)."""
    return read_funding_rows(path, asset, venue, deribit)[1]


def read_funding_rows(path: Path, asset: str, venue: str, deribit: str = "8h") -> tuple[pd.DataFrame,
                                                                                        pd.DataFrame]:
    """A manifest funding row's file as written (its columns on its own times: the rows its MANIFEST.csv row
    counts) and its settlements."""
    found = _format(Path(path), asset, venue)
    raw = _read(Path(path), found.columns)
    return raw, found.settle(raw, deribit)


def implausible_rates(raw: pd.DataFrame, start: Bound = None, end: Bound = None) -> str | None:
    """What is wrong with the rows of a funding file as written (``raw``: :func:`read_funding_rows`' first
    frame, its rate the first column) at times within ``[start, end)`` (None: open) whose rate's magnitude is
    beyond :data:`MAX_PLAUSIBLE_RATE`, naming the column, the bound and the first few rows' times and values;
    None when there are none."""
    from data.validate import rows_text

    column = raw.columns[0]
    rates = raw[column].to_numpy(dtype="float64")
    times = raw.index
    within = np.ones(len(raw), dtype=bool)
    if start is not None:
        within &= times >= start
    if end is not None:
        within &= times < end
    with np.errstate(invalid="ignore"):
        beyond = within & (np.abs(rates) > MAX_PLAUSIBLE_RATE)
    if not beyond.any():
        return None
    return (f"{column} beyond any venue's funding rate cap (|rate| <= {MAX_PLAUSIBLE_RATE:g} per settlement "
            "is plausible), " + rows_text(times, beyond, lambda i: f"{times[i]} {column}={rates[i]:g}"))


def format_of_columns(columns) -> tuple[str, str] | None:
    """The (asset, venue) of the funding file format whose columns ``columns`` (a header) holds, None if
    none."""
    return next((key for key, found in _FORMATS.items() if set(found.columns) <= set(columns)), None)


#: The columns of each funding file format, for messages.
FORMAT_COLUMNS = {venue: found.columns for (_, venue), found in _FORMATS.items()}


def load_funding_dir(
    data_dir: Path | None,
    asset: str,
    venue: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    fallback: str = "constant",
    fallback_rate: float = DEFAULT_FALLBACK_RATE,
    deribit: str = "8h",
    venue_file_required: bool = True,
) -> FundingResult:
    """Funding settlements for ``asset`` over ``[start, end)`` from ``data_dir``, filled by the fallback.

    Without ``venue`` the funding file overlapping the range most is used (ties: the longest file).
    Settlements the file does not cover come from :func:`constant_funding` when ``fallback='constant'``
    (flagged), or raise DataError naming the covered range when ``fallback='error'``; a file holding less than
    its MANIFEST.csv row says is a DataError naming both ranges where the request needs the missing rows.
    ``venue='constant'`` asks for the assumption outright. ``data_dir`` None means no files (constant only, or
    DataUnavailableError with ``fallback='error'``). A ``venue`` with no file in the manifest is a ConfigError
    naming the venues there, unless ``venue_file_required`` is False (a run's venue comes from its exchange
    profile, not from a request for that file): then the constant fallback applies, flagged, as for a range
    no file covers.
    """
    asset = str(asset).upper()
    check_choice("asset", asset, ("BTC", "ETH"))
    check_choice("fallback", fallback, ("constant", "error"))
    rows = pd.DataFrame()
    if data_dir is not None and venue != "constant":
        manifest = read_manifest(data_dir)
        rows = manifest[(manifest["asset"] == asset) & (manifest["kind"] == "funding")]
        if venue is not None and (venue_file_required or (rows["venue"].str.lower() == venue.lower()).any()):
            rows = rows_for_venue(rows, venue, f"{asset} funding", also=("constant",))
        elif venue is not None:
            rows = rows.iloc[:0]  # no file for the profile's venue: the flagged constant below
    if data_dir is None and fallback == "error":
        raise DataUnavailableError(
            "no funding data: set MINEHEDGE_DATA_DIR (or --data-dir) to a folder with funding files, or "
            "allow the constant fallback (fallback='constant').")

    chosen = None
    if not rows.empty:
        lo = start if start is not None else rows["first"].min()
        hi = end if end is not None else rows["last"].max() + pd.Timedelta(days=1)
        overlap = [(min(hi, r.last + pd.Timedelta(days=1)) - max(lo, r.first), r.last - r.first, r)
                   for r in rows.itertuples()]
        overlap.sort(key=lambda item: (item[0], item[1]), reverse=True)
        if overlap[0][0] > pd.Timedelta(0) or venue is not None:
            chosen = overlap[0][2]

    if chosen is None and fallback == "error":
        covered = "; ".join(f"{r.file}: {r.first} -> {r.last}" for r in rows.itertuples()) or "no files"
        raise DataError(f"no {asset} funding file covers {start} -> {end} ({covered}); use "
                        "fallback='constant' to fill with an assumption.")
    if chosen is None:
        if start is None or end is None:
            raise ConfigError("start and end are required for the constant funding fallback "
                              f"(no {asset} funding file{' for venue ' + repr(venue) if venue else ''} "
                              "applies).")
        frame = constant_funding(start, end, fallback_rate)
        note = (f"constant funding {fallback_rate:g} per 8h assumed for all {len(frame)} settlements "
                f"{start} -> {end} (no venue data used)")
        why = ("venue='constant' requested" if venue == "constant" else
               f"the data folder has no {asset} funding file for venue {venue!r}" if venue and rows.empty and
               data_dir is not None else "no funding file covers the range")
        return FundingResult(frame, FundingInfo(asset, "constant", None, why,
                                                len(frame), len(frame), fallback_rate, note))

    found = _format(Path(chosen.path), asset, chosen.venue)
    raw = _read(Path(chosen.path), found.columns)
    # The constant fills only what the file's MANIFEST.csv row does not cover: a file shorter than its row (an
    # interrupted copy) is an error where the request needs the missing rows, never filled in silently.
    reads = found.reads(start, end, deribit)
    choice_of_row(chosen).check_file(raw.index, *reads, requested=(start, end))
    # a corrupt rate is refused, not paid or replaced: nothing in the file says what the rate was
    implausible = implausible_rates(raw, *reads)
    if implausible is not None:
        raise DataError(f"{chosen.file}: {implausible}: a corrupt value? Restore the file from its source "
                        "(MANIFEST.csv's source_repo and source_path); `data validate` lists every such row.")
    frame = found.settle(raw, deribit)
    covered_from, covered_to = frame.index[0], frame.index[-1]
    if start is not None:
        frame = frame.loc[start:]
    if end is not None:
        frame = frame.loc[frame.index < end]
    pieces = [frame]
    missing = []
    if start is not None and start < covered_from:
        missing.append((start, min(covered_from, end) if end is not None else covered_from))
    if end is not None and end > covered_to + pd.Timedelta(hours=8):  # the next 8h settlement is missing
        missing.append((max(covered_to + pd.Timedelta(hours=8), start or covered_to), end))
    if missing and fallback == "error":
        raise DataError(f"{chosen.file} covers {covered_from} -> {covered_to}; the request "
                        f"{start} -> {end} is outside it (use fallback='constant' to fill "
                        "with an assumption).")
    for lo, hi in missing:
        anchor = covered_from if hi <= covered_from else covered_to
        pieces.append(constant_funding(lo, hi, fallback_rate, anchor=anchor))
    frame = pd.concat(pieces).sort_index()
    assumed = int(frame["assumed"].sum())
    note = None
    if assumed:
        spans = ", ".join(f"{lo} -> {hi}" for lo, hi in missing)
        note = (f"constant funding {fallback_rate:g} per 8h assumed for {assumed} of {len(frame)} "
                f"settlements ({spans}), outside {chosen.file} ({covered_from} -> {covered_to})")
    reason = "named by venue" if venue else "most overlap with the requested range (ties: longest file)"
    if chosen.venue == "deribit":
        reason += f"; hourly accruals {'summed into 00/08/16 UTC settlements' if deribit == '8h' else 'kept'}"
    if found.settle is _binance_daily_mean:
        reason += f"; {DAILY_MEAN_NOTE}"
    return FundingResult(frame, FundingInfo(asset, chosen.venue, chosen.file, reason, len(frame), assumed,
                                            fallback_rate if assumed else None, note))
