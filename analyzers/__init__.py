"""Analyzers, observers, reports and charts: drawdowns (USD and coin), margin and loan events, mining P&L,
hedge effectiveness, a flat Summary record, the report folder and matplotlib figures.

Metric functions (``analyzers.metrics``) are pure numpy/pandas; the ``Analyzer`` and ``Observer``
subclasses import backtrader through ``minehedge.compat``; only the chart and report modules import
matplotlib (Agg, headless).
"""
