"""Analyzers, observers, reports and charts: drawdowns (USD and coin), margin and loan events, mining P&L,
hedge effectiveness, a flat Summary record, the report folder and matplotlib figures.

Metric functions (``analyzers.metrics``) are pure numpy/pandas; the ``Analyzer`` and ``Observer``
subclasses import backtrader through ``minehedge.compat``; only the chart modules import matplotlib (Agg,
headless), and the report loads them only when it draws charts.
"""

from __future__ import annotations

import importlib

# Public names -> module. Loaded on first use, so `import analyzers` (report, charts, metrics) does not
# import backtrader; the Analyzer and Observer classes import it through minehedge.compat when asked for.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("EquityRecorder", "Drawdown", "MarginEvents", "MiningPnL", "HedgeEffectiveness", "Fills",
                     "Summary", "add_analyzers", "build_run_result"),
                   "analyzers.backtrader_analyzers"),
    **dict.fromkeys(("SUMMARY_KEYS", "SUMMARY_BETTER", "LOWER_IS_BETTER"), "analyzers.summary_keys"),
    **dict.fromkeys(("EquityUSD", "MarginRatio", "MarginEventMarkers"), "analyzers.observers"),
    **dict.fromkeys(("RunResult", "write_report", "EQUITY_COLUMNS"), "analyzers.report"),
    "write_comparison": "analyzers.comparison",
    "EVENT_COLUMNS": "analyzers.event_stats",
    "LEDGER_COLUMNS": "analyzers.ledger_stats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analyzers' has no attribute {name!r}")
