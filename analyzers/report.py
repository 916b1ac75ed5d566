"""The report folder of one finished run: summary.json, summary.md, events.csv, equity.csv, ledger.csv,
fills.csv and PNG charts, every file written atomically (temporary file + ``os.replace``).

Input is a plain :class:`RunResult` (pandas objects and dicts, no backtrader), built from the analyzers by
``analyzers.backtrader_analyzers.build_run_result`` or by hand in a notebook or test.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers import event_stats, ledger_stats, metrics
from analyzers.files import atomic_write
from minehedge.errors import DataError

# Columns of equity.csv after its datetime index (the contract).
EQUITY_COLUMNS: tuple[str, ...] = (
    "equity_usd", "equity_coin", "cash_usd", "coins", "unrealized_pnl_usd", "margin_ratio", "drawdown_pct",
)
# Columns of equity.csv: EQUITY_COLUMNS, then the bar's close (RunResult.prices, USD per coin) beside them.
EQUITY_CSV_COLUMNS: tuple[str, ...] = (*EQUITY_COLUMNS, "price_usd")
# Columns of fills.csv (money columns unit-suffixed, as in events.csv), each with the key of RunResult.trades
# (the Fills analyzer's records) it is read from.
FILL_CSV_KEYS: dict[str, str] = {
    "datetime": "datetime", "instrument": "instrument", "side": "side", "size": "size",
    "contracts": "contracts", "price_usd": "price", "commission_usd": "commission", "reason": "reason",
}
FILL_COLUMNS: tuple[str, ...] = tuple(FILL_CSV_KEYS)
CHART_FILES: tuple[str, ...] = ("price.png", "equity_drawdown.png", "margin_ratio.png", "mining.png")
# The rows of summary.md's headline table, in reading order (other summary keys follow).
HEADLINE_KEYS: tuple[str, ...] = (
    "start", "end", "final_equity_usd", "final_equity_coin", "total_return_pct", "cagr_pct",
    "max_drawdown_pct", "max_drawdown_usd", "max_drawdown_coin_pct", "longest_underwater_days", "sharpe",
    "sortino", "margin_calls", "liquidations", "liquidation_loss_usd", "loan_calls", "coins_mined",
    "mining_revenue_usd", "power_cost_usd", "funding_paid_usd", "fees_paid_usd",
    "hedge_variance_reduction_pct", "insolvent", "insolvencies", "insolvent_days", "ledger_residual_usd",
)
# What summary.md says beside a ratio that has no unit (the Summary analyzer's definitions).
RATIO_NOTES: dict[str, str] = {
    "sharpe": "annualised: mean / standard deviation of daily returns x √365",
    "sortino": "annualised: mean / downside deviation of daily returns x √365",
}


@dataclass
class RunResult:
    """Everything the report needs from one run.

    summary: the Summary analyzer's flat record (unit-suffixed keys).
    equity: per-bar table, UTC DatetimeIndex, columns :data:`EQUITY_COLUMNS` (USD, coin, fraction, %).
    prices: coin price per bar, USD per coin, UTC DatetimeIndex (equity.csv's ``price_usd``: the bar's close).
    events: event records (``MarginEvent`` fields, ``datetime`` for the time), in log order.
    ledger: ledger records (``brokers.ledger.Ledger.to_records()`` shape): a list, or from a run a
        ``ledger_stats.LedgerRecords`` that keeps them as a table until they are read.
    trades: fill records (``Fills`` analyzer shape: datetime, instrument (the contract), side, size (coins,
        signed), contracts (the venue's order units, signed), price (USD per coin), commission (USD), reason);
        fills.csv names price and commission ``price_usd`` and ``commission_usd``.
    asset: ``"BTC"`` or ``"ETH"``; warning_level / liquidation_level: margin-ratio levels (fractions).
    assumptions: what a reader must know, shown in summary.md and summary.json: name -> text or list of
        texts (e.g. ``{"data files": [...], "venues": [...], "funding": "constant 0.01 % per 8 h",
        "masked bad ticks": [...]}``).
    title: heading of summary.md and the charts.
    opening: the account before the first bar (``EquityRecorder.opening``): time (UTC Timestamp, one bar
        before the first), equity_usd (USD), equity_coin (coin); empty when unknown. See :meth:`valuation`.
    loans: one row per loan the run serviced (``analyzers.loan_stats.loan_rows``: the debt owed at the first
        bar, then the loans a policy drew), empty without loans.
    """

    summary: Mapping[str, object]
    equity: pd.DataFrame
    prices: pd.Series
    events: list[Mapping[str, object]] = field(default_factory=list)
    ledger: Sequence[Mapping[str, object]] = field(default_factory=list)
    trades: list[Mapping[str, object]] = field(default_factory=list)
    asset: str = "BTC"
    warning_level: float = 0.8
    liquidation_level: float = 1.0
    assumptions: Mapping[str, object] = field(default_factory=dict)
    title: str = ""
    opening: Mapping[str, object] = field(default_factory=dict)
    loans: list[Mapping[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [c for c in EQUITY_COLUMNS if c not in self.equity.columns]
        if missing:
            raise DataError(f"RunResult.equity lacks columns {missing}; it must have {list(EQUITY_COLUMNS)}.")
        for name in ("equity", "prices"):
            index = getattr(self, name).index
            if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
                raise DataError(f"RunResult.{name} must have a UTC DatetimeIndex, got {type(index).__name__}"
                                f" (tz={getattr(index, 'tz', None)}).")

    def valuation(self, column: str = "equity_usd") -> pd.Series:
        """``equity[column]`` (``equity_usd``, USD, or ``equity_coin``, coin) with the opening value first:
        the curve the summary's drawdowns count from (``metrics.with_opening``), for the charts."""
        return metrics.with_opening(self.equity[column].astype(float), self.opening.get("time"),
                                    self.opening.get(column))

    def mining(self) -> pd.DataFrame:
        """Mining P&L per bar from the ledger (``ledger_stats.mining_frame``)."""
        return ledger_stats.mining_frame(ledger_stats.ledger_frame(self.ledger), self.asset, self.prices)


# ------------------------------------------------------------------------------------------ atomic files


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def _write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> Path:
    return _write_text(path, frame.to_csv(index=index, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n"))


# --------------------------------------------------------------------------------------------- summary


def fills_frame(trades: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """fills.csv: one row per fill, columns :data:`FILL_COLUMNS` (size in coins and contracts in the venue's
    order units, both signed; price_usd USD per coin; commission_usd USD, an inverse contract's coin fee at
    the fill price; instrument the contract, ``BTCUSDT``, as events.csv and ledger.csv name it), header only
    when nothing traded."""
    return pd.DataFrame([{column: t.get(key) for column, key in FILL_CSV_KEYS.items()} for t in trades],
                        columns=list(FILL_COLUMNS))


def json_safe(value: object) -> object:
    """``value`` with NaN/inf as None, timestamps as ISO-8601 strings, numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def format_value(key: str, value: object, asset: str = "") -> str:
    """``value`` of Summary key ``key`` for people, with the unit its suffix names: ``_usd`` USD, ``_pct`` %,
    ``_days`` days, and coin amounts (``_coin``, ``coins_mined``) in ``asset`` when it is given."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):  # e.g. a Sortino with no down day (metrics)
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if key.endswith("_pct"):
            return f"{value:,.2f} %"
        if key.endswith("_usd"):
            return f"{value:,.2f} USD"
        if key.endswith("_coin") or key == "coins_mined":
            return f"{value:,.6f} {asset}".rstrip()
        if key.endswith("_days"):
            return f"{value:,.1f} days"
        return f"{value:,.3f}"
    return str(value)


def summary_markdown(result: RunResult, windows: pd.DataFrame | None = None) -> str:
    """summary.md: the headline table (every summary key, headline ones first), the table of ``windows``
    (``analyzers.windows.window_stats`` rows) when given, the loans table when the run had loans, and the
    assumptions."""
    title = result.title or "minehedge run"
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    keys = [k for k in HEADLINE_KEYS if k in result.summary]
    keys += [k for k in result.summary if k not in keys]
    for key in keys:
        text = format_value(key, result.summary[key], result.asset)
        lines.append(f"| {key} | {text} ({RATIO_NOTES[key]}) |" if key in RATIO_NOTES
                     else f"| {key} | {text} |")
    if windows is not None:
        from analyzers.windows import windows_markdown  # it formats with this module's format_value

        lines += ["", windows_markdown(windows).rstrip("\n")]
    if result.loans:
        from analyzers.loan_stats import loans_markdown  # it formats with this module's format_value

        lines += ["", loans_markdown({"": result.loans}, result.asset).rstrip("\n")]
    lines += ["", "## Assumptions", ""]
    if not result.assumptions:
        lines.append("- none recorded")
    for name, text in result.assumptions.items():
        if isinstance(text, (list, tuple)):
            lines.append(f"- **{name}**:" + ("" if text else " none"))
            lines += [f"  - {item}" for item in text]
        else:
            lines.append(f"- **{name}**: {text}")
    lines += ["", f"Warning level: margin ratio {result.warning_level:g}; liquidation at "
              f"{result.liquidation_level:g}. Asset: {result.asset}. Percentages are in percent; coin "
              f"amounts in {result.asset}; USD and USDT count as one unit.", "",
              "Files: summary.json, events.csv, equity.csv, ledger.csv, fills.csv, "
              + ("loans.csv, " if result.loans else "") + ", ".join(CHART_FILES) + ".", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- writer


def write_report(result: RunResult, folder: str | os.PathLike[str], dpi: int = 110,
                 with_charts: bool = True, windows: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the report folder for ``result`` (created if needed); returns {file name: path}.

    ``dpi``: resolution of the PNG charts; ``with_charts=False`` skips them (e.g. for every run of a sweep);
    ``windows``: the run's ``analyzers.windows.window_stats`` rows, written to windows.csv and summary.md.
    A run with loans (``result.loans``) gets loans.csv, and its loans in summary.md and summary.json.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    payload = {"title": result.title, "asset": result.asset, "warning_level": result.warning_level,
               "liquidation_level": result.liquidation_level, "summary": dict(result.summary),
               "assumptions": dict(result.assumptions)}
    if result.loans:
        payload["loans"] = list(result.loans)
    written["summary.json"] = _write_text(
        target / "summary.json", json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    written["summary.md"] = _write_text(target / "summary.md", summary_markdown(result, windows))
    if windows is not None:
        written["windows.csv"] = _write_csv(target / "windows.csv", windows)
    if result.loans:
        written["loans.csv"] = _write_csv(target / "loans.csv", pd.DataFrame(list(result.loans)))

    events = event_stats.events_frame(result.events)
    written["events.csv"] = _write_csv(target / "events.csv", events)
    equity = result.equity.loc[:, list(EQUITY_COLUMNS)].rename_axis("datetime")
    equity = equity.assign(price_usd=result.prices.reindex(equity.index).astype(float))
    written["equity.csv"] = _write_csv(target / "equity.csv", equity, index=True)
    ledger = ledger_stats.ledger_frame(result.ledger)
    written["ledger.csv"] = _write_csv(target / "ledger.csv", ledger)
    written["fills.csv"] = _write_csv(target / "fills.csv", fills_frame(result.trades))
    if not with_charts:
        return written
    from analyzers import charts

    for name, figure in report_figures(result, events).items():
        written[name] = charts.save_figure(figure, target / name, dpi=dpi)
    return written


def report_figures(result: RunResult, events: pd.DataFrame | None = None) -> dict:
    """The report's charts, {file name: matplotlib Figure} (:data:`CHART_FILES`); ``events``: the events table
    if already built. The equity and drawdown chart draws the curves from the opening value
    (:meth:`RunResult.valuation`), as the summary and equity.csv count drawdowns."""
    # imported here, not at the top: matplotlib takes ~0.6 s to import, and sweeps never plot
    from analyzers import charts

    events = event_stats.events_frame(result.events) if events is None else events
    return {
        "price.png": charts.price_chart(
            result.prices, result.trades, events, result.asset,
            title=f"{result.title}: price, trades and margin events".lstrip(": ")),
        "equity_drawdown.png": charts.equity_drawdown_chart(
            {column: result.valuation(column) for column in ("equity_usd", "equity_coin")}, result.asset,
            title=f"{result.title}: equity and drawdown".lstrip(": ")),
        "margin_ratio.png": charts.margin_ratio_chart(result.equity, result.warning_level,
                                                      result.liquidation_level, events),
        "mining.png": charts.mining_chart(result.mining(), result.prices, result.asset),
    }
