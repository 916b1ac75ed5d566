"""MANIFEST.csv directories: read the manifest and choose the file that serves a request.

A data directory holds CSV files and a ``MANIFEST.csv`` with (at least) the columns ``file, asset, kind,
timeframe, venue, quote, rows, first, last``; ``file`` is relative to the directory. See
``../shared/data/README.md`` for the format of the files themselves. Parsing checks each row's values
(:func:`_check_manifest_values`: ``asset``, ``kind``, ``timeframe`` for its kind, ``first``/``last``): a
row that no request could use must be an error, not silently skipped in favour of another venue's file.
``venue`` and ``quote`` are free text; ``rows`` and ``bytes`` are checked when the file is read
(:class:`FileChoice`).

Choosing (:func:`choose_file`): candidates are the rows of the requested asset and kind at the requested
timeframe, or at a finer one that divides it (resampled, and the choice says so); a user-named ``venue``
restricts them (exact, case-insensitive). A candidate must cover the whole requested range. Among those,
prefer the native timeframe over resampling, then the longest coverage; the returned
:class:`FileChoice` carries a one-line ``reason`` the caller reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.csvfile import read_csv
from data.frames import TIMEFRAMES, parse_timeframe, timeframe_name
from data.memo import ParsedFiles
from minehedge.errors import ConfigError, DataCoverageError, DataError, ManifestMismatchError, did_you_mean

REQUIRED_COLUMNS = ("file", "asset", "kind", "timeframe", "venue", "quote", "rows", "first", "last")
ASSETS = ("BTC", "ETH")


@dataclass(frozen=True)
class FileChoice:
    """The file chosen for a request, and why."""

    path: Path
    asset: str
    kind: str
    timeframe: str  # the file's own timeframe
    venue: str
    quote: str
    first: pd.Timestamp  # first bar open time (UTC)
    last: pd.Timestamp  # last bar open time (UTC)
    resampled_from: str | None  # the file's timeframe when it must be resampled to the request, else None
    reason: str
    rows: str = ""  # the manifest's row count, as written
    # the manifest's ``bytes`` (the file's size in bytes), as written; blank or absent: unchecked
    size: str = ""

    def check_file(self, index: pd.DatetimeIndex, start: pd.Timestamp | None, end: pd.Timestamp | None, *,
                   requested: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None,
                   use: str = "") -> None:
        """DataError when the file (its row times ``index``) starts after or ends before what its manifest row
        says, and ``[start, end)`` (None: the manifest's bound), the part of the file a request reads, needs
        the missing part: an interrupted copy must not silently give a shorter run, nor a constant in place of
        the file's values. Only the part the manifest promises is required (``[start, end)`` is clipped to
        it): a request reaching past the file's documented range is the caller's business (a funding
        fallback, a splice). ``requested`` (default ``(start, end)``) is the request the message names and
        ``use`` says which part of the file it reads, when that differs (a splice, funding settlements).
        Each row covers one ``timeframe`` step from its time (:data:`ROW_SPACING`).

        A file whose first and last times are the row's but whose row count is not (rows missing from, or
        added to, its middle, at places the manifest cannot tell) is a DataError naming both counts whenever
        the request reads any of it. ``index`` must hold every data row of the file as written, before any
        cleaning (bad ticks dropped, Deribit hours summed): the count is the manifest's, of the file's rows.
        A file whose times and row count are the row's but whose size in bytes is not (values edited in place,
        line endings converted) is a DataError too: the run would read other numbers than the manifest's
        source published."""
        step = ROW_SPACING.get(self.timeframe, pd.Timedelta(days=1))
        want_from = self.first if start is None else max(start, self.first)
        want_to = self.last + step if end is None else min(end, self.last + step)
        if want_to <= want_from:
            return  # the request reads nothing of what the manifest says the file holds
        first, last = (index.min(), index.max()) if len(index) else (None, None)
        if first == self.first and last == self.last:
            self._check_rows(index)
            self._check_size(len(index), rows_compared=bool(self.rows.strip()))
        if first is not None and want_from >= first and want_to <= last + step:
            return
        holds = f"{first} -> {last} ({len(index)} rows)" if first is not None else "no rows"
        asked_from, asked_to = (start, end) if requested is None else requested
        if asked_from is None and asked_to is None:  # the whole file (data validate): no request to name
            lacks = ("every row" if first is None else " and ".join(
                part for part, short in ((f"the rows before {first}", first > self.first),
                                         (f"the rows after {last}", last < self.last)) if short))
            raise ManifestMismatchError(
                f"{self.path.name}: MANIFEST.csv says {self.first} -> {self.last} ({self.rows or '?'} rows), "
                f"the file holds {holds}: it lacks {lacks} (a copy cut short?). Restore the file or correct "
                "its MANIFEST.csv row.")
        raise ManifestMismatchError(
            f"{self.path.name}: MANIFEST.csv says {self.first} -> {self.last} ({self.rows or '?'} rows), the "
            f"file holds {holds}; the requested {asked_from if asked_from is not None else 'start'} -> "
            f"{asked_to if asked_to is not None else 'end'} needs the missing "
            f"part{f' ({use})' if use else ''}. "
            "Restore the file or correct its MANIFEST.csv row.")

    def _check_rows(self, index: pd.DatetimeIndex) -> None:
        """DataError when the file holds ``len(index)`` data rows (their times as written) and its manifest
        row says otherwise (a blank ``rows`` says nothing); one for a ``rows`` that is not a whole number.
        When the times do not increase, the message names the first line whose time does not (a row appended
        out of order, a duplicate), which explains the count; else it says rows were added to or lost from
        the middle."""
        said = self._whole_number("rows", self.rows,
                                  "count of data rows (lines after the header), e.g. 3064.")
        held = len(index)
        if said is not None and said != held:
            more = held - said
            counts = (f"MANIFEST.csv says {said} rows, the file holds {held} ({abs(more)} "
                      f"{'more' if more > 0 else 'fewer'})")
            disorder = _disorder_text(index)
            if disorder is not None:
                raise ManifestMismatchError(
                    f"{self.path.name}: {disorder}. {counts}. Remove or move that line, or restore the file "
                    "from its source (MANIFEST.csv's source_repo and source_path).")
            raise ManifestMismatchError(
                f"{self.path.name}: MANIFEST.csv says {said} rows ({self.first} -> {self.last}), the file "
                f"holds {held} rows ({abs(more)} {'more' if more > 0 else 'fewer'}) between the same first "
                f"and last times: rows were {'added to' if more > 0 else 'lost from'} the middle of the "
                "file. Restore the file from its source (MANIFEST.csv's source_repo and source_path) or "
                "correct its MANIFEST.csv row.")

    def _check_size(self, rows: int, *, rows_compared: bool) -> None:
        """DataError when the file's size in bytes is not its manifest row's ``bytes`` (a blank or absent
        ``bytes`` says nothing), once its times agree with the row, and its ``rows`` data rows too when the
        row gives a count (``rows_compared``); one for a ``bytes`` that is not a whole number."""
        said = self._whole_number("bytes", self.size, "size in bytes, e.g. 175474 (or blank: not checked).")
        if said is None:
            return
        held = self.path.stat().st_size
        if held != said:
            more = held - said
            raise ManifestMismatchError(
                f"{self.path.name}: MANIFEST.csv says {said} bytes, the file has {held} ({abs(more)} "
                f"{'more' if more > 0 else 'fewer'}) with "
                + (f"the same {rows} rows and " if rows_compared else
                   f"{rows} rows (its row's rows is blank: not compared) and the same ")
                + f"first and last times ({self.first} -> {self.last}): its contents changed after the "
                "manifest was written ("
                + ("values edited" if rows_compared else "rows added or lost, values edited") +
                ", or line endings converted, e.g. by git's core.autocrlf). Restore the file from its source "
                "(MANIFEST.csv's source_repo and source_path) or, if the edit is yours, set its MANIFEST.csv "
                f"bytes to {held} (blank: not checked).")

    def _whole_number(self, column: str, text: str, meaning: str) -> int | None:
        """The manifest row's ``column`` (``text`` as written) as an int; None when blank; DataError naming
        the column, the value and ``meaning`` (what it must be) when it is not a whole number."""
        said = text.strip()
        if not said:
            return None
        if not said.isdigit():
            raise ManifestMismatchError(f"MANIFEST.csv row of {self.path.name}: {column}={text!r} is not a "
                                        f"whole number; it must be the file's {meaning}")
        return int(said)


def _disorder_text(index: pd.DatetimeIndex) -> str | None:
    """``line N, the last (TIME), repeats line M's time and is before line N-1's (TIME): a duplicate and
    decreasing timestamp (a row appended out of order?)`` for the first row of ``index`` (a file's row times
    as written; line = row + 2, the header being line 1) whose time is not after the one before it; None when
    the times increase."""
    stamps = index.as_unit("ns").asi8
    steps = np.flatnonzero(np.diff(stamps) <= 0)
    if not len(steps):
        return None
    i = int(steps[0]) + 1
    line, last = i + 2, i == len(index) - 1
    said, kinds = [], []
    earlier = np.flatnonzero(stamps[:i] == stamps[i])
    if len(earlier):
        said.append(f"repeats line {int(earlier[0]) + 2}'s time")
        kinds.append("duplicate")
    if stamps[i] < stamps[i - 1]:
        said.append(f"is before line {line - 1}'s ({index[i - 1]})")
        kinds.append("decreasing")
    where = f"line {line}, the last ({index[i]})," if last else f"line {line} ({index[i]})"
    return (f"{where} {' and '.join(said)}: a {' and '.join(kinds)} timestamp"
            f"{' (a row appended out of order?)' if last else ''}")


#: How long after its time one row of a file counts, by the manifest's ``timeframe``: the OHLCV bar sizes,
#: and the funding files' own steps (8h settlements; one daily mean of the 8h rates per day). Anything else
#: (network files are '1d') counts one day.
ROW_SPACING: dict[str, pd.Timedelta] = {**TIMEFRAMES, "8h": pd.Timedelta(hours=8),
                                        "1d-mean-of-8h": pd.Timedelta(days=1)}


def listed_choice(path: str | Path) -> FileChoice | None:
    """The :class:`FileChoice` of the MANIFEST.csv row listing the file ``path``, from the manifest of the
    nearest folder above it that has one; None when no such manifest lists it (a file of one's own)."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / "MANIFEST.csv").is_file():
            manifest = read_manifest(folder)
            rows = [row for row in manifest.itertuples() if Path(row.path).resolve() == path]
            return choice_of_row(rows[0]) if rows else None
    return None


def choice_of_row(row, reason: str = "", resampled_from: str | None = None) -> FileChoice:
    """The :class:`FileChoice` of a manifest row (a row of :func:`read_manifest`'s table, as a namedtuple)."""
    return FileChoice(path=Path(row.path), asset=row.asset, kind=row.kind, timeframe=row.timeframe,
                      venue=row.venue, quote=row.quote, first=row.first, last=row.last,
                      resampled_from=resampled_from, reason=reason, rows=str(row.rows),
                      size=str(getattr(row, "bytes", "")))


def read_manifest(data_dir: str | Path) -> pd.DataFrame:
    """Read ``data_dir/MANIFEST.csv``; ``first``/``last`` become UTC Timestamps. DataError if unusable.

    One load reads the manifest three times (OHLCV, network, funding); the parsed table is remembered per
    directory and file content (:mod:`data.memo`), and each call gets its own copy.
    """
    data_dir = Path(data_dir)
    path = data_dir / "MANIFEST.csv"
    if not path.is_file():
        raise DataError(f"data directory {str(data_dir)!r} has no MANIFEST.csv (expected {path}).")
    return _PARSED.get(str(data_dir), path.read_bytes(),
                       lambda content: _parse_manifest(content, data_dir, path))


_PARSED = ParsedFiles(kept=8)  # data directories remembered (a manifest is a few kB)


def _parse_manifest(content: bytes, data_dir: Path, path: Path) -> pd.DataFrame:
    manifest = read_csv(path, content, kind="manifest", expected=", ".join(REQUIRED_COLUMNS), listed=False,
                        dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; required: {', '.join(REQUIRED_COLUMNS)}.")
    _check_manifest_values(manifest, _row_lines(content, len(manifest)), path)
    manifest["asset"] = manifest["asset"].str.upper()
    for column in ("first", "last"):
        manifest[column] = pd.to_datetime(manifest[column], utc=True, format="ISO8601")
    manifest["path"] = [data_dir / f for f in manifest["file"]]
    return manifest


#: The kinds of file a MANIFEST.csv row may list (``futures``: listed, not read).
KINDS = ("ohlcv", "network", "funding", "futures")
#: The ``timeframe`` values a row of each kind may have: the bar sizes for prices; a network file is daily;
#: a funding file's own step (:data:`ROW_SPACING`: 1h Deribit accruals, 8h settlements, a daily mean).
KIND_TIMEFRAMES: dict[str, tuple[str, ...]] = {"ohlcv": tuple(TIMEFRAMES), "futures": tuple(TIMEFRAMES),
                                               "network": ("1d",), "funding": tuple(ROW_SPACING)}


def _row_lines(content: bytes, rows: int) -> list[int]:
    """The line number (1 = the header) of each of the ``rows`` data rows of a CSV file's ``content``: its
    non-blank lines after the header (pandas skips blank ones); one row a line after the header when that
    does not give ``rows`` lines (a quoted value spanning lines)."""
    lines = [number for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1)
             if line.strip()][1:]
    return lines if len(lines) == rows else list(range(2, rows + 2))


#: How many bad MANIFEST.csv cells one error lists (:func:`_check_manifest_values`); the rest are counted.
MANIFEST_ERRORS_SHOWN = 10


def _check_manifest_values(manifest: pd.DataFrame, lines: list[int], path: Path) -> None:
    """DataError naming the manifest ``path`` and, for every cell of ``manifest`` (as written, strings) that a
    loader would misread, the row (its line and ``file``), the column, the value and what is allowed: a blank
    ``file``, an ``asset``, ``kind`` or ``timeframe`` (for its kind; not judged when the kind is bad) outside
    the allowed values, a ``first``/``last`` that is not an ISO 8601 time. The first
    :data:`MANIFEST_ERRORS_SHOWN` such cells in row order are listed, the others counted. Such a row must not
    be skipped silently: a run would quietly take another venue's file (a ``1x`` timeframe serves no
    request)."""
    bad = []
    for line, row in zip(lines, manifest.itertuples(), strict=True):
        timeframes = KIND_TIMEFRAMES.get(row.kind, ())
        checks = (("file", row.file, bool(row.file.strip()), "a file path relative to the folder"),
                  ("asset", row.asset, row.asset.upper() in ASSETS, f"{', '.join(ASSETS)} (any case)"),
                  ("kind", row.kind, row.kind in KINDS, ", ".join(KINDS)),
                  ("timeframe", row.timeframe, row.timeframe in timeframes or row.kind not in KINDS,
                   f"{', '.join(timeframes)} (for kind {row.kind})"),
                  *((column, getattr(row, column), _is_time(getattr(row, column)),
                     "an ISO 8601 UTC time (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS): the time of the file's "
                     f"{column} row")
                    for column in ("first", "last")))
        bad += [f"line {line} ({row.file}): {column}={value!r} is not allowed; allowed: {allowed}"
                for column, value, ok, allowed in checks if not ok]
    if len(bad) == 1:
        raise DataError(f"{path} {bad[0]}. Correct the row, or copy the data folder again.")
    if bad:
        more = len(bad) - MANIFEST_ERRORS_SHOWN
        raise DataError(f"{path}: {len(bad)} values are not allowed: {'; '.join(bad[:MANIFEST_ERRORS_SHOWN])}"
                        f"{f'; and {more} more' if more > 0 else ''}. Correct the rows, or copy the data "
                        "folder again.")


def _is_time(text: str) -> bool:
    """Whether a manifest cell is an ISO 8601 time, as :func:`_parse_manifest` reads ``first``/``last``."""
    try:
        return not pd.isna(pd.to_datetime(text, utc=True, format="ISO8601"))
    except (ValueError, TypeError):
        return False


def _coverage_text(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.file} ({r.venue}, {r.timeframe}): {r.first} -> {r.last}" for r in rows.itertuples())


def rows_for_venue(rows: pd.DataFrame, venue: str, what: str, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """Manifest ``rows`` of ``venue`` (case-insensitive); ConfigError naming the available venues (plus
    ``also``, e.g. the constant-funding fallback) when there are none."""
    venues = sorted(rows["venue"].unique())
    chosen = rows[rows["venue"].str.lower() == str(venue).lower()]
    if chosen.empty:
        raise ConfigError(f"venue={venue!r} has no {what} file; available venues: "
                          f"{', '.join([*venues, *also])}." + did_you_mean(str(venue), venues))
    return chosen


def covers(row: Any, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    """Whether manifest ``row``'s file covers ``start`` -> ``end`` (exclusive; None: open): its first time is
    at or before the start and its last bar ends at or after the end."""
    covered_end = row.last + TIMEFRAMES.get(row.timeframe, pd.Timedelta(days=1))
    return ((start is None or row.first <= start < covered_end)
            and (end is None or row.first < end <= covered_end))


def _coarser_hint(rows: pd.DataFrame, timeframe: str | None, start: pd.Timestamp | None,
                  end: pd.Timestamp | None) -> str:
    """`` A 4h file covers it (--timeframe 4h).`` when no file at ``timeframe`` or finer covers
    ``start`` -> ``end`` (exclusive) but one of a coarser timeframe among ``rows`` does; "" otherwise."""
    if timeframe is None:
        return ""
    target = parse_timeframe(timeframe)
    coarser = set()
    for row in rows.itertuples():
        size = TIMEFRAMES.get(row.timeframe)
        if size is not None and size > target and covers(row, start, end):
            coarser.add(row.timeframe)
    if not coarser:
        return ""
    finest = min(coarser, key=lambda name: TIMEFRAMES[name])
    return f" A {finest} file covers it (--timeframe {finest})."


def _serving(rows: pd.DataFrame, timeframe: str | None) -> list[tuple[Any, str | None]]:
    """``(row, resampled_from)`` of each manifest row that serves ``timeframe``: its own bars, or finer ones a
    whole number of which make one bar (resampled_from: the row's timeframe); every row when None."""
    if timeframe is None:
        return [(row, None) for row in rows.itertuples()]
    target = parse_timeframe(timeframe)
    candidates = []
    for row in rows.itertuples():
        if row.timeframe not in TIMEFRAMES:
            continue
        size = TIMEFRAMES[row.timeframe]
        if size == target:
            candidates.append((row, None))
        elif size < target and (target / size) == int(target / size):
            candidates.append((row, row.timeframe))
    return candidates


def covering_ohlcv_venues(manifest: pd.DataFrame, asset: str, timeframe: str, start: pd.Timestamp,
                          end: pd.Timestamp) -> list[tuple[str, pd.Timestamp]]:
    """``(venue, first time of its file)`` of each venue with an OHLCV file of ``asset`` serving ``timeframe``
    (at it or finer) that covers ``start`` -> ``end`` (exclusive), sorted by venue: the file
    ``choose_file(..., venue=...)`` would choose for each (its own timeframe first, then the longest), found
    in one pass over the manifest."""
    rows = manifest[(manifest["asset"] == str(asset).upper()) & (manifest["kind"] == "ohlcv")]
    best: dict[str, tuple[tuple[bool, pd.Timedelta], pd.Timestamp]] = {}
    for row, resampled_from in _serving(rows, timeframe):
        if covers(row, start, end):
            key = (resampled_from is None, row.last + TIMEFRAMES[row.timeframe] - row.first)
            venue = str(row.venue)
            if venue not in best or key > best[venue][0]:
                best[venue] = (key, row.first)
    return sorted((venue, first) for venue, (_, first) in best.items())


def ohlcv_venues(manifest: pd.DataFrame, asset: str, timeframe: str) -> list[str]:
    """The venues (MANIFEST.csv's ``venue``, sorted) with an OHLCV file of ``asset`` serving ``timeframe``: at
    it, or finer and resampled (whatever range it covers): the values ``data_venue`` may take."""
    rows = manifest[(manifest["asset"] == str(asset).upper()) & (manifest["kind"] == "ohlcv")]
    return sorted({str(row.venue) for row, _ in _serving(rows, timeframe)})


def requested_text(start: pd.Timestamp | None, end: pd.Timestamp | None) -> str:
    """A requested range ``[start, end)`` (UTC; None: open) in words a user reads as the days asked for: a
    whole-day bound as its day, the exclusive end as the last day included (``2022-06-01 through
    2022-12-31`` for ``--start 2022-06-01 --end 2022-12-31``, whose exclusive end is 2023-01-01 00:00);
    ``START to END (exclusive)`` for an end within a day."""
    def day(stamp: pd.Timestamp) -> bool:
        return stamp == stamp.normalize()

    first = "the start" if start is None else str(start.date()) if day(start) else str(start)
    if end is None:
        return f"{first} through the end"
    if day(end):
        return f"{first} through {(end - pd.Timedelta(days=1)).date()}"
    return f"{first} to {end} (exclusive)"


def choose_file(
    manifest: pd.DataFrame,
    asset: str,
    kind: str,
    timeframe: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    venue: str | None = None,
) -> FileChoice:
    """Choose the manifest row serving ``asset``/``kind``/``timeframe`` over ``[start, end)`` (UTC bounds).

    ``timeframe`` None matches any timeframe of that kind (funding, network files). ``end`` is exclusive.
    Raises ConfigError for an unknown asset or venue (naming what exists) and DataError naming the covered
    ranges when no file covers the request.
    """
    asset = str(asset).upper()
    rows = manifest[(manifest["asset"] == asset) & (manifest["kind"] == kind)]
    if rows.empty:
        assets = sorted(manifest.loc[manifest["kind"] == kind, "asset"].unique())
        raise ConfigError(f"asset={asset!r}: the data directory has no {kind} file for it; "
                          f"available: {', '.join(assets) or 'none'}." + did_you_mean(asset, assets))
    if venue is not None:
        rows = rows_for_venue(rows, venue, f"{asset} {kind}")
    candidates = _serving(rows, timeframe)
    if timeframe is not None and not candidates:
        have = sorted(rows["timeframe"].unique())
        raise DataError(f"no {asset} {kind} file at timeframe {timeframe!r} or finer"
                        f"{f' for venue {venue!r}' if venue else ''}; files have: {', '.join(have)}.")
    covering = []
    for row, resampled_from in candidates:
        if covers(row, start, end):
            covered_end = row.last + TIMEFRAMES.get(row.timeframe, pd.Timedelta(days=1))
            covering.append(((resampled_from is None, covered_end - row.first), row, resampled_from))
    if not covering:
        wanted = requested_text(start, end)
        raise DataCoverageError(
            f"no {asset} {kind} file{f' at {timeframe}' if timeframe else ''}"
            f"{f' from venue {venue!r}' if venue else ''} covers {wanted}; covered ranges: "
            f"{_coverage_text(pd.DataFrame([r._asdict() for r, _ in candidates]))}."
            + _coarser_hint(rows, timeframe, start, end)
        )
    covering.sort(key=lambda item: item[0], reverse=True)
    _, row, resampled_from = covering[0]
    others = len(covering) - 1
    reason = (
        f"{row.file} ({row.venue}, {row.timeframe}, {row.first} -> {row.last})"
        + (f" named by venue={venue!r}" if venue else "")
        + (f"; resampled {resampled_from} -> {timeframe_name(parse_timeframe(timeframe))} because no "
           f"{timeframe} file covers the range" if resampled_from else "")
        + (f"; longest coverage among {others + 1} covering file(s)" if others else "")
    )
    return choice_of_row(row, reason, resampled_from)
