"""Dated (expiring) futures without futures price data: the expiry calendar and a synthetic price series.

Pure pandas/numpy (no backtrader). The price of each contract is
:func:`brokers.formulas.dated_future_price` (spot x (1 + annual basis x years to expiry), ACT/365): a carry
model whose basis is an *assumption* the run reports. It converges to spot at expiry, where the contract is
cash-settled.

Expiry calendars (UTC):
  - ``quarterly``: the last Friday of March, June, September and December at 08:00, as Binance's and
    Deribit's quarterly BTC contracts (Binance "Quarterly Futures" contract specifications);
  - ``monthly``: the last Friday of every month at 16:00 UTC (CME Bitcoin futures settle at 4:00 p.m.
    London time on the last Friday of the month; London time is taken as UTC here, an hour off in summer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brokers.formulas import SECONDS_PER_YEAR, dated_future_price
from minehedge.errors import ConfigError, check_choice

EXPIRY_CYCLES = {"quarterly": (8, (3, 6, 9, 12)), "monthly": (16, tuple(range(1, 13)))}


def last_friday(year: int, month: int) -> pd.Timestamp:
    """The last Friday of ``month`` (a UTC midnight)."""
    month_end = pd.Timestamp(year=year, month=month, day=1, tz="UTC") + pd.offsets.MonthEnd(0)
    return month_end - pd.Timedelta(days=(month_end.weekday() - 4) % 7)


def expiries(start: pd.Timestamp, end: pd.Timestamp, cycle: str = "quarterly") -> pd.DatetimeIndex:
    """Every expiry of ``cycle`` from ``start`` up to the first one after ``end`` (UTC)."""
    hour, months = EXPIRY_CYCLES[check_choice("expiry_cycle", cycle, EXPIRY_CYCLES)]
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    out = []
    year, month = start.year, start.month
    while True:
        if month in months:
            stamp = last_friday(year, month) + pd.Timedelta(hours=hour)
            if stamp >= start:
                out.append(stamp)
                if stamp > end:
                    break
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return pd.DatetimeIndex(out)


def dated_price_frame(spot: pd.DataFrame, annual_basis: float, cycle: str = "quarterly") -> pd.DataFrame:
    """The front dated contract's OHLC on ``spot``'s bars (UTC open times), plus its ``expiry`` and the
    ``settlement_bar`` (open time of the bar whose close is the contract's last price).

    Each bar belongs to the first contract expiring after the bar's open; a bar's prices use that
    contract's time to expiry measured at the bar's close, so the bar containing an expiry closes at spot
    (years to expiry 0) and the next bar trades the next contract. Volume is spot's.
    """
    if not -1.0 < float(annual_basis) < 5.0:
        raise ConfigError(f"annual_basis={annual_basis!r} is not a plausible basis; "
                          "allowed: (-1, 5) per year.")
    index = spot.index
    if len(index) < 2:
        raise ConfigError("dated_price_frame needs at least two bars (the bar length is their spacing).")
    bar = pd.Series(index).diff().min()
    calendar = expiries(index[0], index[-1] + bar, cycle)
    opens = index.as_unit("ns").asi8
    which = np.searchsorted(calendar.as_unit("ns").asi8, opens, side="right")  # first expiry after the open
    expiry = calendar[which]
    closes = opens + bar.value
    years = np.maximum(expiry.as_unit("ns").asi8 - closes, 0) / 1e9 / SECONDS_PER_YEAR
    out = spot[["open", "high", "low", "close"]].apply(lambda column: dated_future_price(
        column.to_numpy(dtype=float), float(annual_basis), years))
    out["volume"] = spot["volume"] if "volume" in spot else 0.0
    out["expiry"] = expiry
    contains = (expiry.as_unit("ns").asi8 > opens) & (expiry.as_unit("ns").asi8 <= closes)
    settle = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    settle[contains] = index[contains]
    out["settlement_bar"] = settle.groupby(expiry).transform("max").to_numpy()
    return out
