"""OHLCV from Yahoo Finance through yfinance (``BTC-USD``, ``ETH-USD``), cached on disk.

What yfinance 1.x returns and how it is handled:

* ``yf.download`` returns **(Price, Ticker) MultiIndex columns** even for one ticker
  (``multi_level_index=True`` by default); we select our ticker's level and lower-case the names.
* ``auto_adjust`` defaults to True (since 0.2.51), which rescales OHLC by ``Adj Close / Close`` and drops
  ``Adj Close``. We pass ``auto_adjust=False`` explicitly: crypto pays no dividends and never splits, so
  adjustment can only differ from the exchange-quoted prices through Yahoo's own adjustments, and being
  explicit protects us from the default changing again. ``Adj Close`` is ignored.
* Time zones: daily bars come with a naive index (``ignore_tz=True`` for day+ intervals; crypto days are
  UTC midnights), hourly bars tz-aware in the exchange zone (UTC for crypto). :func:`to_utc_index` handles
  both.
* Offline (or for an unknown symbol) yfinance does **not** raise: it logs the failure and returns an
  **empty** frame. That becomes :class:`DataUnavailableError` naming both remedies.
* Yahoo serves 1h bars for the last 730 days only: earlier requests raise ConfigError before downloading.
  4h bars are resampled from 1h (Yahoo has no 4h interval), labelled by open time, edge bins dropped.
"""

from __future__ import annotations

import logging
import warnings

import pandas as pd

from data.cache import cache_key, cached_or_fetch
from data.frames import OHLCV_COLUMNS, parse_timeframe, resample_ohlcv, to_utc_index, to_utc_timestamp
from minehedge.errors import ConfigError, DataUnavailableError, check_choice

log = logging.getLogger(__name__)

SYMBOLS = {"BTC": "BTC-USD", "ETH": "ETH-USD"}
HOURLY_HISTORY = pd.Timedelta(days=730)
REMEDIES = ("set MINEHEDGE_DATA_DIR (or pass --data-dir / data_dir=) to a folder with a MANIFEST.csv, "
            "or get network access so it can be downloaded")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _download(symbol: str, start: pd.Timestamp, end: pd.Timestamp, interval: str) -> pd.DataFrame:
    import yfinance  # imported lazily: the CSV path must not pay for it

    # yfinance logs every network failure and trips pandas deprecation warnings inside its own code; an empty
    # frame (offline) becomes our single DataUnavailableError below, so its chatter is silenced here.
    quiet = logging.getLogger("yfinance")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return yfinance.download(
                symbol, start=start.strftime("%Y-%m-%d"), end=end.strftime("%Y-%m-%d"), interval=interval,
                auto_adjust=False, actions=False, progress=False, threads=False, multi_level_index=True,
            )
    except Exception as exc:  # yfinance wraps requests/curl errors inconsistently across versions
        raise DataUnavailableError(f"yfinance download of {symbol} {interval} failed ({exc}); "
                                   f"{REMEDIES}.") from exc
    finally:
        quiet.setLevel(level)


def first_available(timeframe: str) -> pd.Timestamp:
    """The first bar Yahoo serves at ``timeframe`` today: 2014-09-17 (BTC-USD's first day) for 1d, the start
    of the 730-day hourly window for 1h and 4h."""
    if timeframe == "1d":
        return pd.Timestamp("2014-09-17", tz="UTC")
    return _now().floor("D") - HOURLY_HISTORY + pd.Timedelta(days=1)


def forming_bar(timeframe: str) -> pd.Timestamp:
    """Open time of the ``timeframe`` bar still forming now (UTC, epoch-aligned): bars before it are
    complete."""
    return _now().floor(parse_timeframe(timeframe))


def normalise_download(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """yfinance frame (MultiIndex or flat columns) -> float64 open/high/low/close/volume on a UTC index."""
    if raw is None or raw.empty:
        raise DataUnavailableError(
            f"yfinance returned no data for {symbol} (offline, rate-limited or unknown symbol); {REMEDIES}.")
    frame = raw
    if isinstance(frame.columns, pd.MultiIndex):
        level = "Ticker" if "Ticker" in frame.columns.names else frame.columns.nlevels - 1
        tickers = frame.columns.get_level_values(level)
        if symbol not in set(tickers):
            raise DataUnavailableError(f"yfinance returned tickers {sorted(set(tickers))}, not {symbol}.")
        frame = frame.xs(symbol, axis=1, level=level)
    frame = frame.rename(columns=str.lower)
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataUnavailableError(f"yfinance frame for {symbol} lacks {missing}; got {list(frame.columns)}.")
    frame = frame[list(OHLCV_COLUMNS)].astype("float64").dropna(how="all")
    frame.columns.name = None
    return to_utc_index(frame, what=f"yfinance {symbol}")


def fetch_ohlcv(
    asset: str,
    timeframe: str,
    start: object = None,
    end: object = None,
    cache_dir: object = None,
    use_cache: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """Download (or read from the cache) OHLCV for ``[start, end)``; return the frame and notes to report.

    ``end`` defaults to today 00:00 UTC (only complete daily bars); ``start`` to 2014-09-17 (first Yahoo
    BTC-USD day) for 1d and to the 730-day limit for 1h/4h. A later ``end`` is clamped to the open of the
    still-forming bar (only complete bars are returned; a note says so). Yahoo serves whole days, so an
    intraday range reaching today downloads today's partial hours: it is not cached (the note says why).
    """
    symbol = SYMBOLS.get(str(asset).upper())
    if symbol is None:
        raise ConfigError(f"asset={asset!r} is not available from yfinance; choose BTC or ETH.")
    timeframe = check_choice("timeframe", str(timeframe).lower(), ("1d", "4h", "1h"))
    now = _now()
    forming = forming_bar(timeframe)
    requested = to_utc_timestamp(end, parameter="end")
    end_ts = min(requested or now.floor("D"), forming)
    notes = [f"end {requested} clamped to {forming}: the {timeframe} bar opening then is still forming"] \
        if requested is not None and requested > forming else []
    interval = "1d" if timeframe == "1d" else "1h"
    earliest = first_available(timeframe)
    start_ts = to_utc_timestamp(start, parameter="start") or earliest
    if interval == "1h" and start_ts < earliest:
        raise ConfigError(
            f"start={start_ts.date()} is too early for {timeframe} bars from yfinance: Yahoo serves hourly "
            f"data for the last 730 days only (from {earliest.date()}). Use timeframe='1d', or a data "
            "directory with hourly files (MINEHEDGE_DATA_DIR / --data-dir).")
    if end_ts <= start_ts:
        raise ConfigError(f"end={end_ts} must be after start={start_ts}.")
    # Yahoo's end is a date and exclusive: ask for whole days, trim to [start, end) afterwards.
    day_start, day_end = start_ts.floor("D"), end_ts.ceil("D")
    key = cache_key("yfinance", symbol, interval, day_start, day_end)
    uncached = (f"the range reaches today ({now.date()}), whose {interval} bars are still forming; it is "
                "downloaded again next time") if day_end > now.floor("D") else None
    frame, fetched = cached_or_fetch(
        key, lambda: normalise_download(_download(symbol, day_start, day_end, interval), symbol),
        f"{symbol} {interval} from yfinance", cache_dir, use_cache, uncached)
    notes += fetched
    if timeframe == "4h":
        frame = resample_ohlcv(frame, "4h")
        notes.append("4h bars resampled from yfinance 1h bars (Yahoo has no 4h interval)")
    frame = frame.loc[(frame.index >= start_ts) & (frame.index < end_ts)]
    log.info("; ".join(notes))
    return frame, notes
