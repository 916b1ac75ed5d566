"""Data layer: loaders, validation, the download cache and backtrader feeds.

One API for every source (CSV directories described by a MANIFEST.csv, yfinance for OHLCV, the Coin Metrics
community API for network data), returning validated pandas frames with a UTC DatetimeIndex of bar *open*
times. May import pandas, numpy, requests and yfinance; only ``data.feeds`` imports backtrader (through
``minehedge.compat``). Never imports matplotlib.
"""
