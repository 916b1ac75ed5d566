"""Daily network metrics from the Coin Metrics community API (HTTP, no key), cached on disk.

Endpoint: ``GET https://community-api.coinmetrics.io/v4/timeseries/asset-metrics`` with ``assets``,
``metrics`` (comma-separated), ``frequency=1d``, ``start_time``/``end_time`` and ``page_size`` (max 10000).
Response (API v4 conventions, docs.coinmetrics.io): ``{"data": [{"asset": "btc", "time":
"2020-05-10T00:00:00.000000000Z", "PriceUSD": "8715.03", ...}, ...], "next_page_token": "...",
"next_page_url": "https://..."}``; metric values are **strings**, a metric absent on a day is absent from
that row, and while ``next_page_url`` is present it is fetched unmodified for the next page. Errors come
as ``{"error": {"type": ..., "message": ...}}``. The community tier allows 10 requests per 6 s per IP; a
full BTC history is one page at page_size 10000. ``DiffMean`` is no longer served for BTC by the
community tier and is not requested (a refused metric may fail the whole request with HTTP 403):
:func:`data.network.network_from_coinmetrics` derives difficulty from HashRate and BlkCnt.
"""

from __future__ import annotations

import pandas as pd
import requests

from data.cache import cache_key, cached_or_fetch
from data.frames import to_utc_timestamp
from data.network import COINMETRICS_METRICS, network_from_coinmetrics
from minehedge.errors import ConfigError, DataError, DataUnavailableError

URL = "https://community-api.coinmetrics.io/v4/timeseries/asset-metrics"
PAGE_SIZE = 10000
TIMEOUT_S = 30
MAX_PAGES = 100  # a guard against a server that keeps returning next_page_url
REMEDIES = ("set MINEHEDGE_DATA_DIR (or pass --data-dir / data_dir=) to a folder with a MANIFEST.csv, "
            "or get network access to community-api.coinmetrics.io")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _get(url: str, params: dict | None) -> dict:
    try:
        response = requests.get(url, params=params, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        # the remedy first: urllib3's text runs to hundreds of characters
        detail = str(exc)
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise DataUnavailableError(f"Coin Metrics could not be reached: {REMEDIES}. "
                                   f"({type(exc).__name__}: {detail})") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict) or "data" not in payload:
        detail = payload.get("error") if isinstance(payload, dict) else None
        raise DataError(f"Coin Metrics answered HTTP {response.status_code}: "
                        f"{detail or (response.text or '')[:200]!r} for {url} {params or ''}.")
    return payload


def fetch_asset_metrics(asset: str, start: pd.Timestamp | None, end: pd.Timestamp | None,
                        metrics: tuple[str, ...] = COINMETRICS_METRICS) -> pd.DataFrame:
    """All pages of daily ``metrics`` for ``asset`` as a float64 frame on a UTC day index."""
    params = {"assets": asset.lower(), "metrics": ",".join(metrics), "frequency": "1d",
              "page_size": PAGE_SIZE}
    if start is not None:
        params["start_time"] = start.strftime("%Y-%m-%d")
    if end is not None:
        params["end_time"] = end.strftime("%Y-%m-%d")
        params["end_inclusive"] = "false"
    rows: list[dict] = []
    url, query = URL, params
    for _ in range(MAX_PAGES):
        payload = _get(url, query)
        rows.extend(payload["data"])
        url, query = payload.get("next_page_url"), None
        if not url:
            break
    else:
        raise DataError(f"Coin Metrics kept paging after {MAX_PAGES} pages for {asset}; giving up.")
    if not rows:
        raise DataError(f"Coin Metrics returned no {asset} rows for {params.get('start_time')} -> "
                        f"{params.get('end_time')}.")
    frame = pd.DataFrame.from_records(rows)
    frame.index = pd.to_datetime(frame.pop("time"), utc=True, format="ISO8601").rename("datetime")
    frame = frame.drop(columns=["asset"], errors="ignore")
    return frame.apply(pd.to_numeric, errors="coerce").astype("float64").sort_index()


def fetch_network(asset: str, start: object = None, end: object = None, cache_dir: object = None,
                  use_cache: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Network frame (contract in :mod:`data.network`) for ``[start, end)`` from the API or the cache.

    Coin Metrics publishes a day's values about a day after the day ends, so only days before yesterday
    (UTC) are final. ``end`` defaults to yesterday 00:00 (final days only, cached); a later ``end`` is clamped
    to today 00:00 (today is still forming) and such a download, which holds yesterday, is not cached (the
    notes say so): a cache key never expires, and a day published late or revised would stay frozen.
    """
    asset = str(asset).upper()
    if asset not in ("BTC", "ETH"):
        raise ConfigError(f"asset={asset!r} is not supported for network data; choose BTC or ETH.")
    today = _now().floor("D")
    final = today - pd.Timedelta(days=1)  # days before this one are published and final
    start_ts = to_utc_timestamp(start, parameter="start")
    requested = to_utc_timestamp(end, parameter="end")
    end_ts = min(requested or final, today)
    notes = [f"end {requested} clamped to {today}: today's network values are not complete"] \
        if requested is not None and requested > today else []
    if start_ts is not None and end_ts <= start_ts:
        raise ConfigError(f"start={start_ts} leaves no complete day of Coin Metrics data (to {end_ts}).")
    uncached = (f"the range reaches {final.date()}, which Coin Metrics may not have published in full yet; "
                "it is downloaded again next time") if end_ts > final else None
    key = cache_key("coinmetrics", asset, "1d", start_ts, end_ts)
    metrics, fetched = cached_or_fetch(key, lambda: fetch_asset_metrics(asset, start_ts, end_ts),
                                       f"{asset} from Coin Metrics", cache_dir, use_cache, uncached)
    return network_from_coinmetrics(metrics, asset, "coinmetrics-api"), notes + fetched
