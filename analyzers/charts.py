"""matplotlib figures for one run, for comparisons and for sweeps; headless (Agg), no pyplot state.

Every function RETURNS a ``matplotlib.figure.Figure`` (display it in a notebook, or write it with
:func:`save_figure`, which is atomic). Figures are built with ``Figure()`` rather than ``pyplot`` so a sweep
of a thousand runs leaks no global figure, and rendering needs no display or backend choice
(``Figure.savefig`` renders with Agg). Inputs are plain pandas objects (a UTC-indexed equity table,
price series, event and fill records), so charts need no backtrader. Dates on the x axes are UTC.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analyzers import metrics
from analyzers.files import atomic_write

# Marker style per event kind on the price and margin-ratio charts. Every kind of brokers.events.EVENT_KINDS
# is here or in UNMARKED_EVENTS (a test checks it, so a new kind needs a decision).
EVENT_MARKERS: dict[str, dict[str, object]] = {
    "margin_call": {"marker": "v", "color": "tab:orange", "label": "margin call"},
    "cme_margin_call": {"marker": "v", "color": "goldenrod", "label": "CME margin call"},
    "desk_margin_call": {"marker": "v", "color": "tab:cyan", "label": "desk margin call (margin_buffer)"},
    "cme_margin_call_missed": {"marker": "X", "color": "darkred", "label": "CME call missed"},
    "liquidation": {"marker": "X", "color": "red", "label": "liquidation"},
    "partial_liquidation": {"marker": "P", "color": "crimson", "label": "partial liquidation"},
    "loan_call": {"marker": "D", "color": "purple", "label": "loan call"},
    "loan_liquidation": {"marker": "X", "color": "indigo", "label": "loan liquidation"},
    "missed_payment": {"marker": "X", "color": "darkviolet", "label": "missed loan payment"},
    "bill_carried": {"marker": "h", "color": "tab:olive", "label": "bill carried (market closed)"},
    "bill_carried_paid": {"marker": "h", "color": "tab:green", "label": "carried bills paid"},
    "loan_payment_carried": {"marker": "d", "color": "orchid",
                             "label": "loan payment carried (market closed)"},
    "loan_payment_carried_paid": {"marker": "d", "color": "tab:green", "label": "carried loan payment paid"},
    "insolvency": {"marker": "s", "color": "black", "label": "insolvency"},
    "insolvency_cured": {"marker": "s", "color": "tab:green", "label": "mining resumed"},
    "ruin": {"marker": "s", "color": "black", "label": "ruin"},
}
#: Event kinds deliberately not marked, and why.
UNMARKED_EVENTS: dict[str, str] = {
    "cme_margin_call_met": "the end of a CME call, whose start is marked (a missed call is marked too)",
    "loan_call_met": "the end of a loan call, whose start is marked (a call not met ends in a "
                     "marked loan liquidation)",
    "insurance_fund": "at the bar of the liquidation whose shortfall it absorbs, which is marked",
}


#: Characters of a figure title per inch of figure width (matplotlib's default 12 pt suptitle: about 6.6 pt a
#: character, so 10 an inch with a margin): a longer title wraps onto more lines, not off the figure's edges.
_TITLE_CHARS_PER_INCH = 10


def _wrapped(text: str, inches: float) -> str:
    """``text`` wrapped at word boundaries (", " between run names) to a title ``inches`` wide."""
    width = max(20, int(inches * _TITLE_CHARS_PER_INCH))
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False)) or text


def _suptitle(fig: Figure, text: str) -> None:
    """``fig``'s title, wrapped to the figure's width."""
    fig.suptitle(_wrapped(text, fig.get_figwidth()))


def _naive_utc(index: pd.Index) -> np.ndarray:
    stamps = pd.DatetimeIndex(index)
    stamps = stamps.tz_convert("UTC").tz_localize(None) if stamps.tz is not None else stamps
    return stamps.to_numpy()


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, alpha=0.3)


def _money_axis(ax: Axes) -> None:
    """Plain numbers with thousands separators (no '1e7' offset) on the y axis."""
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda value, _: f"{value:,.6g}" if abs(value) < 10
                                                       else f"{value:,.0f}"))


def _equity_over_drawdown(top: Axes, bottom: Axes, unit: str, drawdown_title: str) -> None:
    """Titles, labels and axes of an equity panel (``unit``) above its drawdown panel (percent below the
    peak, drawn from 0 down to -100)."""
    top.set_title(f"Equity ({unit})")
    top.set_ylabel(f"equity ({unit})")
    _money_axis(top)
    bottom.set_ylim(-105, 5)
    bottom.set_title(drawdown_title)
    bottom.set_ylabel("drawdown (% below peak)")
    bottom.set_xlabel("date (UTC)")
    for ax in (top, bottom):
        _date_axis(ax)


def _records_frame(records: Iterable[Mapping[str, object]] | pd.DataFrame | None) -> pd.DataFrame:
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records or []))
    if frame.empty:
        return frame
    if "datetime" not in frame and "time" in frame:
        frame = frame.rename(columns={"time": "datetime"})
    stamps = pd.to_datetime(frame["datetime"])
    frame["datetime"] = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return frame


def _mark_events(ax: Axes, events: pd.DataFrame, y: pd.Series) -> None:
    """Mark each event kind of :data:`EVENT_MARKERS` at the value of ``y`` in force at the event time."""
    if events.empty or y.empty:
        return
    for kind, style in EVENT_MARKERS.items():
        rows = events[events["kind"] == kind]
        if rows.empty:
            continue
        positions = np.clip(np.searchsorted(metrics.epoch_ns(y.index), metrics.epoch_ns(rows["datetime"]),
                                            side="right") - 1, 0, len(y) - 1)
        ax.scatter(_naive_utc(pd.DatetimeIndex(rows["datetime"])), y.to_numpy()[positions], s=60, zorder=5,
                   marker=style["marker"], color=style["color"], label=f"{style['label']} ({len(rows)})",
                   edgecolors="black", linewidths=0.5)


def price_chart(prices: pd.Series, trades: Iterable[Mapping[str, object]] | pd.DataFrame | None = None,
                events: Iterable[Mapping[str, object]] | pd.DataFrame | None = None,
                asset: str = "BTC", title: str = "") -> Figure:
    """Coin price (USD per coin) with buys/sells (from fill records: datetime, side, price; liquidation
    fills drawn apart) and the events of :data:`EVENT_MARKERS` marked (from event records): margin calls,
    liquidations, loan events, bills and loan payments carried over a market closure, insolvency."""
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(_naive_utc(prices.index), prices.to_numpy(dtype=float), color="tab:blue", lw=1.2,
            label=f"{asset} price")
    fills = _records_frame(trades)
    if not fills.empty:
        reason = fills["reason"] if "reason" in fills else pd.Series("", index=fills.index)
        forced = reason == "liquidation"
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            rows = fills[(fills["side"] == side) & ~forced]
            if len(rows):
                ax.scatter(_naive_utc(pd.DatetimeIndex(rows["datetime"])), rows["price"], marker=marker,
                           color=color, s=30, zorder=4, label=f"{side} ({len(rows)})")
        if forced.any():
            rows = fills[forced]
            ax.scatter(_naive_utc(pd.DatetimeIndex(rows["datetime"])), rows["price"], marker="x",
                       color="black", s=50, zorder=4, label=f"forced close ({len(rows)})")
    _mark_events(ax, _records_frame(events), prices)
    ax.set_ylabel(f"{asset} price (USD per {asset})")
    _money_axis(ax)
    ax.set_xlabel("date (UTC)")
    ax.set_title(title or f"{asset} price, trades, margin calls and liquidations")
    ax.legend(loc="best", fontsize=8)
    _date_axis(ax)
    return fig


def equity_drawdown_chart(equity: pd.DataFrame | Mapping[str, pd.Series], asset: str = "BTC",
                          title: str = "") -> Figure:
    """Equity in USD and in coin (top) and their drawdowns in percent (bottom), from the ``equity_usd`` and
    ``equity_coin`` curves: pass them with the opening value first (``RunResult.valuation``) for the drawdowns
    the summary reports; the equity table's per-bar columns alone miss the first bar's move."""
    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    for column, (top, bottom), unit, color in (
        ("equity_usd", axes[:, 0], "USD", "tab:blue"), ("equity_coin", axes[:, 1], asset, "tab:orange"),
    ):
        values = equity[column].astype(float)
        top.plot(_naive_utc(values.index), values.to_numpy(), color=color, lw=1.2)
        under = (metrics.drawdown_pct(values) if values.notna().any()
                 else pd.Series(np.nan, index=values.index))
        bottom.fill_between(_naive_utc(under.index), -under.to_numpy(), 0.0, color="tab:red", alpha=0.4)
        _equity_over_drawdown(top, bottom, unit, f"Drawdown in {unit} terms (%)")
    _suptitle(fig, title or "Equity and drawdown")
    return fig


def margin_ratio_chart(equity: pd.DataFrame, warning_level: float = 0.8, liquidation_level: float = 1.0,
                       events: Iterable[Mapping[str, object]] | pd.DataFrame | None = None,
                       title: str = "") -> Figure:
    """Margin ratio per bar (maintenance margin / margin balance, fraction) with the warning and liquidation
    levels, and margin calls and liquidations marked."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ratio = equity["margin_ratio"].astype(float)
    finite = ratio.to_numpy()[np.isfinite(ratio.to_numpy())]
    ceiling = max(liquidation_level, float(finite.max()) if finite.size else 0.0) * 1.1
    ratio = ratio.clip(upper=ceiling)  # an infinite ratio (margin balance <= 0) is drawn at the top
    ax.plot(_naive_utc(ratio.index), ratio.to_numpy(), color="tab:blue", lw=1.2, label="margin ratio")
    if np.isfinite(warning_level):
        ax.axhline(warning_level, color="tab:orange", ls="--", label=f"warning level ({warning_level:.2f})")
    ax.axhline(liquidation_level, color="red", ls="-", label=f"liquidation level ({liquidation_level:.2f})")
    _mark_events(ax, _records_frame(events), ratio.fillna(0.0))
    ax.set_ylim(0.0, ceiling)
    ax.set_ylabel("margin ratio (maintenance margin / margin balance)")
    ax.set_xlabel("date (UTC)")
    ax.set_title(title or "Margin ratio against warning and liquidation levels")
    ax.legend(loc="upper left", fontsize=8)
    _date_axis(ax)
    return fig


def mining_chart(mining: pd.DataFrame, prices: pd.Series | None = None, asset: str = "BTC",
                 title: str = "") -> Figure:
    """Mining revenue against costs, cumulative in USD (top), and the break-even price against the coin
    price (bottom), from ``ledger_stats.mining_frame``."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    if mining.empty:
        top.text(0.5, 0.5, "no mining entries in the ledger", ha="center", va="center",
                 transform=top.transAxes, fontsize=12)
    dates = _naive_utc(mining.index)
    costs = mining["power_cost_usd"] + mining["hosting_cost_usd"] + mining["pool_fee_usd"]
    top.plot(dates, mining["revenue_usd"].cumsum().to_numpy(), color="tab:green", lw=1.5,
             label="revenue (coins x price when mined)")
    top.plot(dates, costs.cumsum().to_numpy(), color="tab:red", lw=1.5, label="power + hosting + pool fees")
    top.plot(dates, mining["power_cost_usd"].cumsum().to_numpy(), color="tab:red", lw=1.0, ls=":",
             label="power only")
    top.set_ylabel("cumulative USD")
    _money_axis(top)
    _money_axis(bottom)
    top.set_title("Mining revenue against costs (cumulative)")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(dates, mining["break_even_price_usd"].to_numpy(), color="tab:purple", lw=1.2,
                label="break-even price (cash costs / net coins)")
    if prices is not None and len(prices):
        bottom.plot(_naive_utc(prices.index), prices.to_numpy(dtype=float), color="tab:blue", lw=1.0,
                    alpha=0.8, label=f"{asset} price")
    bottom.set_ylabel(f"USD per {asset}")
    bottom.set_xlabel("date (UTC)")
    bottom.set_title("Break-even price against the market price")
    bottom.legend(loc="upper left", fontsize=8)
    for ax in (top, bottom):
        _date_axis(ax)
    _suptitle(fig, title or "Mining P&L")
    return fig


def compare_chart(equity_by_run: Mapping[str, pd.Series], unit: str = "USD", title: str = "") -> Figure:
    """Several runs overlaid: equity (top, in ``unit``) and drawdown in percent (bottom), one colour per run.
    Pass each curve with its opening value first (``RunResult.valuation``), as the summary counts
    drawdowns."""
    fig = Figure(figsize=(12, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name, equity in equity_by_run.items():
        values = equity.astype(float)
        (line,) = top.plot(_naive_utc(values.index), values.to_numpy(), lw=1.2, label=name)
        under = metrics.drawdown_pct(values)
        bottom.plot(_naive_utc(under.index), -under.to_numpy(), lw=1.0, color=line.get_color(), label=name)
    top.legend(loc="upper left", fontsize=8)
    _equity_over_drawdown(top, bottom, unit, "Drawdown (%)")
    _suptitle(fig, title or "Run comparison")
    return fig


def _axis_values(column: pd.Series) -> list[object]:
    """The distinct values of a swept parameter, sorted (by their text when they mix types), a missing one
    (a parameter swept to ``none``) last as ``None``."""
    values = pd.Index(column.dropna().unique())
    try:
        ordered = list(values.sort_values())
    except TypeError:
        ordered = sorted(values, key=str)
    return [*ordered, None] if column.isna().any() else ordered


def _tick_label(value: object) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_heatmap(results: pd.DataFrame, x: str, y: str, value: str, title: str = "",
                  cmap: str = "viridis") -> Figure:
    """Heatmap of ``value`` over two swept parameters ``x`` (columns) and ``y`` (rows), one cell per pair
    (the mean if a pair occurs more than once), each cell annotated with its number.

    Every value ``x`` and ``y`` take in ``results`` has its column and row (sorted; a parameter swept to
    ``none`` last), also when all its cells are NaN. A NaN cell (a pair not in ``results``, or a metric
    undefined there) is drawn light grey and says ``n/a``. The colour scale spans the finite values only: a
    +inf cell (a Sortino with no down day) takes the colour of the scale's top, a -inf cell of its bottom,
    each hatched and saying ``inf`` / ``-inf``, and the colour bar's arrows show that such cells exist.
    """
    for column in (x, y, value):
        if column not in results:
            raise KeyError(f"sweep_heatmap: column {column!r} not in results; have {list(results.columns)}")
    columns, rows = _axis_values(results[x]), _axis_values(results[y])
    row_of = {key: i for i, key in enumerate(rows)}
    column_of = {key: j for j, key in enumerate(columns)}
    numbers = pd.to_numeric(results[value], errors="coerce").astype(float)
    data = np.full((len(rows), len(columns)), np.nan)
    for (row, col), number in numbers.groupby([results[y], results[x]], dropna=False).mean().items():
        data[row_of[None if pd.isna(row) else row], column_of[None if pd.isna(col) else col]] = number
    fig = Figure(figsize=(1.2 * len(columns) + 3, 0.6 * len(rows) + 2.5), layout="constrained")
    ax = fig.add_subplot()
    finite = data[np.isfinite(data)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if low == high:  # one value: a scale around it, so that an infinite cell still takes an end's colour
        low, high = low - 1.0, high + 1.0
    base = colormaps[cmap]
    scale = base.with_extremes(bad="lightgrey", over=base(1.0), under=base(0.0))
    # drawn: an infinite cell as a number past the scale's end (matplotlib's resampling makes inf a bad value)
    beyond = np.where(np.isposinf(data), 2 * high - low, np.where(np.isneginf(data), 2 * low - high, data))
    image = ax.imshow(np.ma.masked_where(np.isnan(data), beyond), cmap=scale, vmin=low, vmax=high,
                      aspect="auto", origin="lower")
    ax.set_xticks(range(len(columns)), [_tick_label(v) for v in columns])
    ax.set_yticks(range(len(rows)), [_tick_label(v) for v in rows])
    middle = (low + high) / 2
    for (row, col), number in np.ndenumerate(data):
        text = "n/a" if np.isnan(number) else f"{number:,.3g}"  # "inf" / "-inf" for an infinite one
        if np.isinf(number):
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, hatch="//", linewidth=0,
                                   edgecolor="white" if number < 0 else "black"))
        ax.text(col, row, text, ha="center", va="center", fontsize=8,
                color="white" if not np.isnan(number) and number < middle else "black",
                bbox={"facecolor": scale(np.sign(number) * np.inf), "edgecolor": "none", "pad": 1}
                if np.isinf(number) else None)
    extend = {(False, False): "neither", (True, False): "max", (False, True): "min", (True, True): "both"}
    fig.colorbar(image, ax=ax, label=value, extend=extend[bool(np.isposinf(data).any()),
                                                         bool(np.isneginf(data).any())])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    # the axes' title: as wide as the figure less the colour bar's 2 inches or so
    ax.set_title(_wrapped(title or f"{value} by {y} and {x}", fig.get_figwidth() - 2.0))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default) atomically: a temporary file in the
    same folder, then ``os.replace``, so an interrupted run never leaves half an image."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda stream: fig.savefig(stream, format=fmt, dpi=dpi))
