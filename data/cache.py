"""On-disk cache for downloads (yfinance, Coin Metrics), keyed by source, symbol, timeframe and range.

Location: the ``cache_dir`` argument, else env ``MINEHEDGE_CACHE_DIR``, else ``data/cache/`` beside this
module (git-ignored). Format: CSV (no extra dependency) behind one header line
``# minehedge-cache v1 sha256=<hex of the CSV body> rows=<n>``. Writes are atomic: a temporary file in the
same directory, fsync, then ``os.replace`` (readers never see half a file); a temporary file a killed writer
left is removed by a later write once it is an hour old. On read the header and checksum
are verified; a corrupt or truncated file is **reported** (logging warning and the returned note) and the
caller re-fetches; it is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.csvfile import read_csv
from data.frames import to_utc_index
from minehedge.errors import DataError

log = logging.getLogger(__name__)

CACHE_ENV = "MINEHEDGE_CACHE_DIR"
#: A writer's temporary file older than this is left over from a killed process (a write takes seconds).
STALE_TMP_SECONDS = 3600
_HEADER = re.compile(r"^# minehedge-cache v1 sha256=([0-9a-f]{64}) rows=(\d+)$")


def cache_dir(path: str | Path | None = None) -> Path:
    """The cache directory: ``path``, else $MINEHEDGE_CACHE_DIR, else ``data/cache`` in the package."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent / "cache"


def cache_key(source: str, symbol: str, timeframe: str, start: object, end: object) -> str:
    """File name for one download; range bounds as UTC ISO dates/times (``open`` for an unbounded side)."""
    def bound(value: object) -> str:
        if value is None:
            return "open"
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime("%Y%m%dT%H%M")

    raw = f"{source}_{symbol}_{timeframe}_{bound(start)}_{bound(end)}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw) + ".csv"


@dataclass(frozen=True)
class CacheRead:
    """Result of :func:`read_cached`: the frame (None on miss or corruption) and a note for the report."""

    frame: pd.DataFrame | None
    note: str


def write_cached(frame: pd.DataFrame, key: str, directory: str | Path | None = None) -> Path:
    """Write ``frame`` (UTC DatetimeIndex) atomically under ``key``; return the path. Temporary files that a
    killed writer left (``.*.tmp`` older than :data:`STALE_TMP_SECONDS`) are removed first; a live writer's
    are younger and stay."""
    folder = cache_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    body = frame.to_csv(index=True, index_label="datetime", float_format="%.17g", lineterminator="\n")
    data = body.encode("utf-8")
    header = f"# minehedge-cache v1 sha256={hashlib.sha256(data).hexdigest()} rows={len(frame)}\n"
    target = folder / key
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{key}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(header.encode("ascii"))
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


def _remove_stale_temporaries(folder: Path) -> None:
    cutoff = time.time() - STALE_TMP_SECONDS
    for path in folder.glob(".*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                log.info("removed %s, left by a cache write that did not finish", path)
        except FileNotFoundError:  # another process removed it first
            pass


def read_cached(key: str, directory: str | Path | None = None) -> CacheRead:
    """Read a cached frame; a missing file is a miss, a corrupt one is reported (warning + note) and
    removed."""
    path = cache_dir(directory) / key
    if not path.is_file():
        return CacheRead(None, f"cache miss: {path}")
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    match = _HEADER.match(header.decode("ascii", errors="replace"))
    problem = None
    if match is None:
        problem = "header missing or unreadable"
    elif hashlib.sha256(body).hexdigest() != match.group(1):
        problem = "checksum mismatch (truncated or modified)"
    frame = None
    if problem is None:
        try:
            frame = read_csv(path, body, kind="cache", listed=False, index_col=0)
        except DataError:
            problem = "no header line after the checksum"
    if frame is not None:
        frame.index = pd.to_datetime(frame.index, utc=True, format="ISO8601")
        if len(frame) != int(match.group(2)):
            problem = f"row count {len(frame)} != header {match.group(2)}"
        else:
            return CacheRead(to_utc_index(frame.astype("float64")), f"cache hit: {path}")
    note = f"corrupt cache file {path} ({problem}): ignored, removed and re-fetched"
    log.warning(note)
    path.unlink(missing_ok=True)
    return CacheRead(None, note)


def cached_or_fetch(key: str, fetch, what: str, directory: str | Path | None = None,
                    use_cache: bool = True, uncached: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The cached frame for ``key`` when it is intact, else ``fetch()`` (written to the cache when
    ``use_cache``), with notes for the report: a corrupt file's note, or where the download was cached.

    ``uncached``: why this range must not be cached (it reaches data still forming or not yet published; a
    key never expires, so it would be served frozen forever). The download is then neither read from nor
    written to the cache, and the note says why."""
    if uncached:
        return fetch(), [f"downloaded {what}, not cached: {uncached}"]
    notes: list[str] = []
    cached = read_cached(key, directory) if use_cache else None
    if cached is not None:
        notes.append(cached.note)
        if cached.frame is not None:
            return cached.frame, notes
    frame = fetch()
    if use_cache:
        notes.append(f"downloaded {what}, cached at {write_cached(frame, key, directory)}")
    return frame, notes

