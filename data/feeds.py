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
and 4h bars of an 8h venue it is the settlement's rate; on daily bars it is the day's mean. Settlement rates
are fixed by the venue at the settlement time, which is inside the bar, so both are known at the bar's close.

**Hashprice.** The formula lives in :func:`mining.revenue.network_hashprice` (one home); this module only
aligns its output: ``hashprice`` in USD per TH/s per day (BTC) or per MH/s per day (ETH) and
``coins_per_unit_day`` in coin per TH/s (BTC) or MH/s (ETH) per day, FPPS expected value before pool fees.
"""

from __future__ import annotations

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import numpy as np
import pandas as pd

from data.frames import OHLCV_COLUMNS, TIMEFRAMES, parse_timeframe, to_utc_index
from minehedge.errors import DataError, check_choice

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


class MinerFeed(bt.feeds.PandasData):
    """PandasData with the lines a miner strategy needs (units in :data:`NETWORK_LINES` and the module
    docstring). Feed it the frame from :func:`build_feed_frame`; columns are matched by name."""

    lines = EXTRA_LINES
    params = tuple((name, -1) for name in EXTRA_LINES)


def build_feed_frame(
    ohlcv: pd.DataFrame,
    network: pd.DataFrame,
    funding: pd.DataFrame | None,
    asset: str,
    *,
    timeframe: str | None = None,
    fee_window_days: int = 1,
    publication_lag: pd.Timedelta | str = "1D",
) -> pd.DataFrame:
    """One float64 frame for :class:`MinerFeed`: OHLCV columns plus :data:`EXTRA_LINES`.

    ``ohlcv``: validated bars (UTC open times); ``network``: the daily network contract frame;
    ``funding``: a :mod:`data.funding` frame (``funding_rate``, ``rate_8h``), or None for a spot-only run
    (both funding lines 0); ``timeframe``: the bar size (inferred from the smallest bar spacing when None);
    ``fee_window_days`` is passed to ``network_hashprice``; ``publication_lag``: see the module docstring.
    """
    from mining.revenue import network_hashprice  # owned by mining/: the one home of the formula

    asset = check_choice("asset", str(asset).upper(), ("BTC", "ETH"))
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

    out["funding_rate"] = 0.0
    out["funding_paid"] = 0.0
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
        out["funding_paid"] = paid
        out["funding_rate"] = rate
    return out
