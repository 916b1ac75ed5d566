"""The data layer's public API: one call per kind of data, whatever the source.

Resolution order (every loader): the explicit ``data_dir`` argument (the CLI's ``--data-dir``), else env
``MINEHEDGE_DATA_DIR``, else download (yfinance for OHLCV, Coin Metrics for network data) through the disk
cache, else :class:`DataUnavailableError` naming both remedies. ``source=`` forces one path.

Ranges are UTC and half-open, ``[start, end)`` on bar open times (like yfinance: ``end='2021-01-01'`` ends
with the 2020-12-31 daily bar). A range outside what the chosen source covers raises DataError naming the
covered range. Every result carries ``.frame`` and ``.info`` (what was chosen and why, notes, and for OHLCV
the validation report), and ``str(result.info)`` is what reports print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data import coinmetrics, yahoo
from data.frames import parse_timeframe, resample_ohlcv, timeframe_name, to_utc_timestamp
from data.funding import DEFAULT_FALLBACK_RATE, FundingResult, load_funding_dir
from data.manifest import FileChoice, choose_file, read_manifest
from data.network import (
    CM_ETH_END,
    MERGE,
    eth_splice_reads,
    read_btc_network_csv,
    read_eth_network_files,
    splice_eth_network,
)
from data.ohlcv_csv import read_ohlcv_csv
from data.validate import BAD_TICK_POLICIES, BadTickRule, ValidationReport, grid_errors, validate_ohlcv
from minehedge.errors import ConfigError, DataCoverageError, DataError, check_choice

DATA_DIR_ENV = "MINEHEDGE_DATA_DIR"
ASSETS = ("BTC", "ETH")


@dataclass(frozen=True)
class LoadInfo:
    """Provenance of a loaded frame, printed by reports."""

    asset: str
    kind: str
    source: str  # 'csv', 'yfinance' or 'coinmetrics-api'
    timeframe: str
    file: str | None = None
    venue: str | None = None
    resampled_from: str | None = None
    reason: str = ""
    notes: tuple[str, ...] = ()
    report: ValidationReport | None = None
    path: Path | None = None  # the CSV file read (absolute), None for downloads
    choice: FileChoice | None = field(default=None, repr=False, compare=False)  # its MANIFEST.csv row (CSV)

    def __str__(self) -> str:
        lines = [f"{self.asset} {self.kind} {self.timeframe} from {self.source}: {self.reason}"]
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.report is not None:
            lines.append(str(self.report))
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadResult:
    """A validated frame and where it came from."""

    frame: pd.DataFrame
    info: LoadInfo = field(repr=False)

    @property
    def report(self) -> ValidationReport | None:
        return self.info.report


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The data directory to use: ``data_dir``, else $MINEHEDGE_DATA_DIR, else None (download)."""
    for value, origin in ((data_dir, "data_dir"), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)):
        if value:
            path = Path(value).expanduser()
            if not (path / "MANIFEST.csv").is_file():
                what = ("no such folder" if not path.exists() else "not a folder" if not path.is_dir() else
                        "the folder holds no MANIFEST.csv")
                raise DataError(f"{origin}={str(value)!r}: {what}. Point --data-dir or {DATA_DIR_ENV} at a "
                                "data folder holding MANIFEST.csv (such as ../shared/data), or set neither "
                                "to download the data into the cache (needs network access).")
            return path.resolve()
    return None


def _bounds(start: object, end: object) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    start_ts = to_utc_timestamp(start, parameter="start")
    end_ts = to_utc_timestamp(end, parameter="end")
    if start_ts is not None and end_ts is not None and end_ts <= start_ts:
        raise ConfigError(f"end={end!r} must be after start={start!r} (the range is [start, end)).")
    return start_ts, end_ts


def _slice(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame.index >= start
    if end is not None:
        keep &= frame.index < end
    return frame.loc[keep.to_numpy()]


def _fetch_padded(asset: str, timeframe: str, start: pd.Timestamp | None, end: pd.Timestamp | None,
                  cache_dir: str | Path | None) -> tuple[pd.DataFrame, list[str]]:
    """yfinance bars for ``[start, end)`` plus the bad-tick rule's neighbours on each side (``window + 2``
    bars, see :mod:`data.validate`) where Yahoo serves them: not before its first bar (the 730-day hourly
    window) nor past the last complete bar. The caller slices the range and validates it with this as
    context; bars short of neighbours are listed as unchecked in the report."""
    pad = (BadTickRule().window + 2) * parse_timeframe(timeframe)
    earliest = yahoo.first_available(timeframe)
    padded_start = None if start is None else (max(start - pad, earliest) if start >= earliest else start)
    forming = yahoo.forming_bar(timeframe)  # the padding alone never asks past it (an end past it is clamped)
    padded_end = None if end is None else (end + pad if end + pad <= forming else max(end, forming))
    return yahoo.fetch_ohlcv(asset, timeframe, padded_start, padded_end, cache_dir=cache_dir)


def load_ohlcv(
    asset: str,
    timeframe: str,
    start: object = None,
    end: object = None,
    source: str = "auto",
    venue: str | None = None,
    data_dir: str | Path | None = None,
    bad_ticks: str = "mask",
    cache_dir: str | Path | None = None,
) -> LoadResult:
    """Validated OHLCV bars (float64 ``open, high, low, close, volume``; UTC open times) for ``[start, end)``.

    ``source``: 'auto' (resolution order above), 'csv' (a data directory is required) or 'yfinance'.
    ``venue`` names a manifest venue (CSV only). ``bad_ticks``: 'mask', 'drop', 'fail' or 'keep' (see
    :mod:`data.validate`). When only a finer file covers the range, it is validated at its own timeframe,
    then resampled, and ``info.resampled_from`` says so.
    """
    asset = check_choice("asset", str(asset).upper(), ASSETS)
    check_choice("source", source, ("auto", "csv", "yfinance"))
    check_choice("bad_ticks", bad_ticks, BAD_TICK_POLICIES)
    timeframe = timeframe_name(parse_timeframe(timeframe))
    start_ts, end_ts = _bounds(start, end)
    directory = resolve_data_dir(data_dir) if source != "yfinance" else None
    if source == "csv" and directory is None:
        raise ConfigError(f"source='csv' needs a data directory: pass data_dir= or set {DATA_DIR_ENV}.")

    if directory is None:
        if venue is not None:
            raise ConfigError(f"venue={venue!r} applies to CSV data directories only; yfinance has one "
                              "BTC-USD/ETH-USD series. Drop venue or set a data directory.")
        padded, notes = _fetch_padded(asset, timeframe, start_ts, end_ts, cache_dir)
        frame = _slice(padded, start_ts, end_ts)
        name = f"yfinance {yahoo.SYMBOLS[asset]}"
        if frame.empty:
            raise DataCoverageError(f"{name} has no {timeframe} bars in {start_ts} -> {end_ts}.")
        frame, report = validate_ohlcv(frame, timeframe, source=name, bad_ticks=bad_ticks, context=padded)
        return LoadResult(frame, LoadInfo(asset, "ohlcv", "yfinance", timeframe, None, "yahoo",
                                          "1h" if timeframe == "4h" else None,
                                          f"{name} (no data directory)", tuple(notes), report))

    choice = choose_file(read_manifest(directory), asset, "ohlcv", timeframe, start_ts, end_ts, venue)
    whole = read_ohlcv_csv(choice.path)
    off_grid = grid_errors(whole, choice.timeframe)  # first: shifted bars also misplace the file's range
    if off_grid:
        raise DataError(f"{choice.path.name}: {off_grid[0]}")
    choice.check_file(whole.index, start_ts, end_ts)
    native = _slice(whole, start_ts, end_ts)
    if native.empty:
        raise DataCoverageError(f"{choice.path.name} has no bars in {start_ts} -> {end_ts} "
                        f"(covers {choice.first} -> {choice.last}).")
    frame, report = validate_ohlcv(native, choice.timeframe, source=choice.path.name, bad_ticks=bad_ticks,
                                   context=whole)
    notes = []
    if choice.resampled_from:
        frame = resample_ohlcv(frame, timeframe)
        notes.append(f"validated at {choice.resampled_from}, then resampled to {timeframe} "
                     "(incomplete first/last bins dropped)")
    return LoadResult(frame, LoadInfo(asset, "ohlcv", "csv", timeframe, choice.path.name, choice.venue,
                                      choice.resampled_from, choice.reason, tuple(notes), report, choice.path,
                                      choice))


def load_history(loaded: LoadResult, start: object, lead: pd.Timedelta, bad_ticks: str = "mask",
                 cache_dir: str | Path | None = None) -> LoadResult:
    """The bars in ``[start - lead, start)`` from the source of ``loaded`` (an OHLCV result): the history an
    indicator needs before a run's first bar (dynamic_hedge's realised volatility).

    Same file (CSV) or symbol (yfinance), timeframe and bad-tick policy as ``loaded``; bad ticks are judged
    with the neighbours in the source, as for ``loaded``, and only the history is returned, so the run's bars
    are unchanged. Shorter or empty when the source starts later or cannot serve it (offline
    with no cache); ``info.reason`` says which. Never raises for history the source does not have; a CSV
    file holding less than its MANIFEST.csv row says, where the history needs the missing part (an interrupted
    copy), is a DataError naming both ranges, as in :func:`load_ohlcv`.
    """
    start_ts = to_utc_timestamp(start, parameter="start")
    info = loaded.info
    if start_ts is None:
        raise ConfigError("load_history needs start= (the run's first bar).")
    first = start_ts - lead
    empty = loaded.frame.iloc[:0]
    if info.source == "csv":
        if info.path is None:
            raise ConfigError("load_history needs the OHLCV result of load_ohlcv (its "
                              "info.path names the file).")
        context = read_ohlcv_csv(info.path)
        if info.choice is not None:
            info.choice.check_file(context.index, first, start_ts,
                                   use="the price history before the first bar")
        native = _slice(context, first, start_ts)
        name = info.file
    else:
        name = f"yfinance {yahoo.SYMBOLS[info.asset]}"
        first = max(first, yahoo.first_available(info.timeframe))
        try:
            context = _fetch_padded(info.asset, info.timeframe, first, start_ts, cache_dir)[0] \
                if first < start_ts else empty
            native = _slice(context, first, start_ts)
        except DataError as exc:
            return LoadResult(empty, LoadInfo(info.asset, "ohlcv history", info.source, info.timeframe, None,
                                              info.venue, reason=f"none: {exc}"))
    if native.empty:
        return LoadResult(empty, LoadInfo(info.asset, "ohlcv history", info.source, info.timeframe, info.file,
                                          info.venue, reason=f"none: {name} has no bars before {start_ts}"))
    # as load_ohlcv does: a CSV file is validated at its own timeframe and then resampled; yfinance's 4h bars
    # come resampled from fetch_ohlcv already
    resample = info.source == "csv" and info.resampled_from is not None
    frame, report = validate_ohlcv(native, info.resampled_from if resample else info.timeframe, source=name,
                                   bad_ticks=bad_ticks, context=context)
    if resample:
        frame = resample_ohlcv(frame, info.timeframe)
    reason = f"{len(frame)} bars {frame.index[0]} -> {frame.index[-1]} from {name}" if len(frame) else \
        f"none: {name} has no complete bars before {start_ts}"
    return LoadResult(frame, LoadInfo(info.asset, "ohlcv history", info.source, info.timeframe, info.file,
                                      info.venue, info.resampled_from, reason, (), report))


def load_network(
    asset: str,
    start: object = None,
    end: object = None,
    source: str = "auto",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    needed_end: object = None,
) -> LoadResult:
    """Daily network frame (contract in :mod:`data.network`) for ``[start, end)``.

    CSV: BTC from the Coin Metrics file; ETH spliced from the Coin Metrics and Etherscan/Glassnode files up
    to the Merge. Download: the Coin Metrics community API. ``source``: 'auto', 'csv' or 'coinmetrics'.
    A file holding less than its MANIFEST.csv row says is a DataError where the request needs the missing
    days (for ETH: the days the splice reads from that file), and so are missing days in the ETH splice.
    ``needed_end`` (exclusive; default ``end``) ends the days the caller cannot do without when that is
    earlier than ``end``, typically with ``end=None`` (every day from ``start`` as far as the data go, as a
    run loads them): a file shorter than its row is then an error only where it lacks days before
    ``needed_end``, and the days after it are returned as far as the file holds them. It must lie in
    ``(start, end]``.
    """
    asset = check_choice("asset", str(asset).upper(), ASSETS)
    check_choice("source", source, ("auto", "csv", "coinmetrics"))
    start_ts, end_ts = _bounds(start, end)
    needed_ts = to_utc_timestamp(needed_end, parameter="needed_end")
    if needed_ts is not None and ((start_ts is not None and needed_ts <= start_ts) or
                                  (end_ts is not None and needed_ts > end_ts)):
        raise ConfigError(f"needed_end={needed_end!r} must be after start={start!r} and no later than "
                          f"end={end!r} "
                          "(the days needed are part of the range loaded).")
    check_to = end_ts if needed_ts is None else needed_ts
    directory = resolve_data_dir(data_dir) if source != "coinmetrics" else None
    if source == "csv" and directory is None:
        raise ConfigError(f"source='csv' needs a data directory: pass data_dir= or set {DATA_DIR_ENV}.")
    if directory is None:
        frame, notes = coinmetrics.fetch_network(asset, start_ts, end_ts, cache_dir=cache_dir)
        return LoadResult(_slice(frame, start_ts, end_ts),
                          LoadInfo(asset, "network", "coinmetrics-api", "1d", None, "coinmetrics", None,
                                   "Coin Metrics community API (no data directory)", tuple(notes)))

    manifest = read_manifest(directory)
    if asset == "BTC":
        choice = choose_file(manifest, asset, "network", None, start_ts, end_ts, "coinmetrics")
        frame, files, reason = read_btc_network_csv(choice.path), choice.path.name, choice.reason
        choice.check_file(frame.index, start_ts, check_to)
    else:
        cm = choose_file(manifest, asset, "network", None, None, None, "coinmetrics")
        eg = choose_file(manifest, asset, "network", None, None, None, "etherscan+glassnode")
        cm_raw, eg_raw = read_eth_network_files(cm.path, eg.path)
        # The splice reads each file for its part only, so neither MANIFEST.csv row matches what is read: the
        # Coin Metrics file to 2020-07-27, the Etherscan/Glassnode file (its row runs to 2023-01-08) from that
        # day to the Merge. A file shorter than its row is an error where its part of the request needs the
        # missing days, and only there (eth_splice_reads); what the rows themselves leave out shows as a gap.
        (cm_from, cm_to), (eg_from, eg_to) = eth_splice_reads(start_ts, check_to)
        cm.check_file(cm_raw.index, cm_from, cm_to, requested=(start_ts, check_to),
                      use=f"the ETH network splice reads this file to {CM_ETH_END.date()}")
        eg.check_file(eg_raw.index, eg_from, eg_to, requested=(start_ts, check_to),
                      use=f"the ETH network splice reads this file from {CM_ETH_END.date()} to the Merge, "
                          f"{MERGE.date()}")
        frame = splice_eth_network(cm_raw, eg_raw, cm.path.name, eg.path.name)
        files = f"{cm.path.name} + {eg.path.name}"
        reason = f"spliced {cm.path.name} (to 2020-07-27) with {eg.path.name} (to the Merge, 2022-09-15)"
        frame = _days_that_follow(frame, start_ts, end_ts, check_to, files)
    covered = (frame.index[0], frame.index[-1])
    if (start_ts is not None and start_ts < covered[0]) or \
            (end_ts is not None and end_ts > covered[1] + pd.Timedelta(days=1)):
        raise DataError(f"{asset} network data cover {covered[0].date()} -> {covered[1].date()} ({files}); "
                        f"requested {start_ts} -> {end_ts}.")
    return LoadResult(_slice(frame, start_ts, end_ts),
                      LoadInfo(asset, "network", "csv", "1d", files, "coinmetrics" if asset == "BTC" else
                               "coinmetrics+etherscan+glassnode", None, reason))


def _days_that_follow(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None,
                      needed_end: pd.Timestamp | None, files: str) -> pd.DataFrame:
    """The spliced daily ``frame`` (read from ``files``) over ``[start, end)``, up to its first missing day
    when that comes at or after ``needed_end`` (the days after are not needed); DataError naming the first
    missing days when it comes before ``needed_end`` (None: any missing day)."""
    days = _slice(frame, start, end).index
    steps = days[1:] - days[:-1]
    gaps = (steps > pd.Timedelta(days=1)).nonzero()[0]
    if not len(gaps):
        return frame
    before, after = days[gaps[0]], days[gaps[0] + 1]
    if needed_end is not None and before + pd.Timedelta(days=1) >= needed_end:
        return frame.loc[:before]
    raise DataError(f"the ETH network data ({files}) have no rows from "
                    f"{(before + pd.Timedelta(days=1)).date()} to {(after - pd.Timedelta(days=1)).date()}"
                    f"{f' ({len(gaps)} gaps in all)' if len(gaps) > 1 else ''}; the splice needs the first "
                    "file to 2020-07-27 and the second from 2020-07-27 on: check both files and "
                    "their MANIFEST.csv rows.")


def load_funding(
    asset: str,
    venue: str | None = None,
    start: object = None,
    end: object = None,
    data_dir: str | Path | None = None,
    fallback: str = "constant",
    fallback_rate: float = DEFAULT_FALLBACK_RATE,
    deribit: str = "8h",
    venue_file_required: bool = True,
) -> FundingResult:
    """Funding settlements (see :mod:`data.funding`) for ``[start, end)``; ``info.assumption`` flags the
    constant fallback wherever it was used. ``venue='constant'`` asks for the assumption outright. A named
    ``venue`` without a file is an error unless ``venue_file_required`` is False (then the flagged
    constant)."""
    start_ts, end_ts = _bounds(start, end)
    directory = resolve_data_dir(data_dir)
    return load_funding_dir(directory, asset, venue, start_ts, end_ts, fallback, fallback_rate, deribit,
                            venue_file_required)
