"""Data layer: loaders, validation, the download cache and backtrader feeds.

One API for every source (CSV directories described by a MANIFEST.csv, yfinance for OHLCV, the Coin Metrics
community API for network data), returning validated pandas frames with a UTC DatetimeIndex of bar *open*
times. May import pandas, numpy, requests and yfinance, mining's pure formulas and ``brokers.formulas``'
bound on funding rates (their one home); only ``data.feeds`` imports backtrader (through
``minehedge.compat``). Never imports matplotlib.
"""

from data.api import (
           LoadInfo,
           LoadResult,
           load_funding,
           load_history,
           load_network,
           load_ohlcv,
           resolve_data_dir,
)

__all__ = ["LoadInfo", "LoadResult", "load_funding", "load_history", "load_network", "load_ohlcv",
           "resolve_data_dir"]
