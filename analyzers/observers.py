"""backtrader observers that only plot: equity (USD), margin ratio with its warning level, and margin-call /
liquidation markers on the price. Add them with ``cerebro.addobserver(...)``; ``cerebro.plot()`` then shows
them. They compute nothing the analyzers report (the numbers live in the analyzers).
"""

from __future__ import annotations

import math

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt

from analyzers.event_stats import LIQUIDATION_KINDS, MARGIN_CALL_KINDS


class EquityUSD(bt.Observer):
    """Line ``equity_usd``: ``broker.getvalue()`` each bar (USD), in its own subplot."""

    lines = ("equity_usd",)
    plotinfo = dict(plot=True, subplot=True, plotname="Equity (USD)")
    plotlines = dict(equity_usd=dict(color="tab:blue", lw=1.2))

    def next(self) -> None:
        self.lines.equity_usd[0] = self._owner.broker.getvalue()


class MarginRatio(bt.Observer):
    """Lines ``margin_ratio`` (``broker.get_margin_ratio()``, fraction; NaN if the broker has none),
    ``warning`` (``broker.warning_level``) and ``liquidation`` (1.0), in their own subplot."""

    lines = ("margin_ratio", "warning", "liquidation")
    plotinfo = dict(plot=True, subplot=True, plotname="Margin ratio (fraction)", plotymargin=0.05)
    plotlines = dict(
        margin_ratio=dict(color="tab:blue", lw=1.2),
        warning=dict(color="tab:orange", ls="--", _name="warning level"),
        liquidation=dict(color="red", ls="-", _name="liquidation level"),
    )

    def start(self) -> None:
        broker = self._owner.broker
        self._read_ratio = getattr(broker, "get_margin_ratio", None) or (lambda: math.nan)
        self._warning = float(getattr(broker, "warning_level", math.nan))

    def next(self) -> None:
        self.lines.margin_ratio[0] = self._read_ratio()
        self.lines.warning[0] = self._warning
        self.lines.liquidation[0] = 1.0


class MarginEventMarkers(bt.Observer):
    """Markers on the price chart at the bars where the broker logged margin calls (orange) or liquidations
    (red), at the event's price (the bar's close when the event has none). Reads only the new tail of
    ``broker.events`` each bar."""

    lines = ("margin_call", "liquidation")
    plotinfo = dict(plot=True, subplot=False, plotlinelabels=True)
    plotlines = dict(
        margin_call=dict(marker="v", markersize=9.0, color="orange", fillstyle="full", ls=""),
        liquidation=dict(marker="X", markersize=10.0, color="red", fillstyle="full", ls=""),
    )

    def start(self) -> None:
        self._events = getattr(self._owner.broker, "events", [])
        self._seen = 0

    def next(self) -> None:
        events = self._events
        if len(events) == self._seen:
            return
        for event in events[self._seen:]:
            price = event.price if event.price and event.price == event.price else self.data.close[0]
            if event.kind in MARGIN_CALL_KINDS:
                self.lines.margin_call[0] = price
            elif event.kind in LIQUIDATION_KINDS:
                self.lines.liquidation[0] = price
        self._seen = len(events)
