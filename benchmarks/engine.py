"""One benchmarked run, phase by phase, and the plain-backtrader baseline that replays its orders.

:func:`timed_run` builds the same cerebro as :func:`minehedge.api.run_policy` (MinerFeed, MarginBroker,
every analyzer, ``stdstats=False``) and splits the wall time into engine set-up (cerebro, feed
start/preload, strategy and analyzer construction: up to the strategy's ``start``), the run (the bar
loop: ``start`` to the strategy's ``stop``) and the report (the analyzers' ``stop`` statistics, then
:func:`analyzers.build_run_result`).

:func:`baseline_run` is the reference for the engine overhead: stock backtrader on the same MinerFeed
frame with ``BackBroker``, a stock ``bt.CommissionInfo`` equal to the venue's taker fee and initial margin
(futures-like, ``automargin = mult / leverage``), no analyzers, and a minimal strategy that submits every
fill of the miner run as a market order on the bar before it, so each fills at the open of the same bar
with the same size (liquidations, which the miner fills at the liquidation price, fill at that open).

:func:`margin_replay_run` is the step between the two: the same replay on ``MarginBroker`` with the policy's
own futures contract (funding, liquidation and margin checks, ledger), still no miner and no analyzers. The
broker makes its own liquidations there, so the miner's forced closes are not replayed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import numpy as np
import pandas as pd

from analyzers.backtrader_analyzers import add_analyzers, build_run_result
from brokers.broker import MarginBroker
from brokers.commission import FuturesCommInfo, futures_comminfo
from brokers.venues import load_venue
from data.feeds import MinerFeed
from minehedge import api
from strategies.base import forget_mining_schedules
from strategies.registry import policy_class


@dataclass
class RunTiming:
    """Seconds per phase of one run (see the module docstring) and what it produced."""

    bars: int
    setup_s: float
    run_s: float
    analysis_s: float  # the analyzers' stop(): statistics computed once at the end
    result_s: float  # build_run_result: the RunResult (equity table, ledger records, fills)
    summary: dict[str, Any] = field(repr=False)
    fills: list[dict[str, Any]] = field(repr=False)
    events: list[dict[str, Any]] = field(repr=False)  # the broker's margin events (RunResult.events)

    @property
    def cerebro_s(self) -> float:
        """What ``cerebro.run()`` took plus building the cerebro: the engine, as the baseline is timed."""
        return self.setup_s + self.run_s + self.analysis_s

    @property
    def report_s(self) -> float:
        return self.analysis_s + self.result_s

    @property
    def total_s(self) -> float:
        return self.setup_s + self.run_s + self.report_s


def _timed_policy(cls: type, marks: dict[str, float]) -> type:
    """``cls`` with its start/stop time-stamped (behaviour unchanged: both call the policy's own)."""

    def start(self) -> None:
        marks["start"] = time.perf_counter()
        cls.start(self)

    def stop(self) -> None:
        cls.stop(self)
        marks["stop"] = time.perf_counter()

    return type(f"Timed{cls.__name__}", (cls,), {"start": start, "stop": stop})


def timed_run(market: api.Market, policy: str = "static_hedge", params: dict[str, Any] | None = None,
              *, preload: bool = True, runonce: bool = True) -> RunTiming:
    """One run as :func:`minehedge.api.run_policy` builds it, timed per phase."""
    values = api._policy_params(policy, {"asset": market.asset, **(params or {})}, None)
    marks: dict[str, float] = {}
    began = time.perf_counter()
    cerebro = _miner_cerebro(market, _timed_policy(policy_class(policy), marks), values,
                             preload=preload, runonce=runonce)
    strategy = cerebro.run()[0]
    ran = time.perf_counter()
    result = build_run_result(strategy, dict(market.assumptions), title="benchmark")
    ended = time.perf_counter()
    return RunTiming(len(market.frame), marks["start"] - began, marks["stop"] - marks["start"],
                     ran - marks["stop"], ended - ran, dict(result.summary), list(result.trades),
                     list(result.events))


class ReplayOrders(bt.Strategy):
    """Submit ``orders[bar index]`` (signed sizes) as market orders and, on a MarginBroker, add
    ``margins[bar index]`` (USD) to the position's isolated margin; nothing else."""

    params = (("orders", None), ("margins", None))

    def start(self) -> None:
        self._replay = dict(self.p.orders or {})
        self._margins = dict(self.p.margins or {})
        self.fills = 0

    def next(self) -> None:
        bar = len(self) - 1
        sizes = self._replay.get(bar)
        if sizes:
            for size in sizes:
                if size > 0:
                    self.buy(size=size)
                else:
                    self.sell(size=-size)
        for amount in self._margins.get(bar, ()):
            if not self.broker.add_margin(self.data, amount):
                raise RuntimeError(f"bar {bar}: the replay could not add {amount} USD of margin")

    def notify_order(self, order) -> None:
        if order.status == order.Completed:
            self.fills += 1


def replay_orders(market: api.Market, fills: list[dict[str, Any]], *,
                  forced: bool = True) -> dict[int, list[float]]:
    """The miner run's fills as {bar index to submit on: [signed contracts]} (one bar before each fill);
    ``forced=False`` leaves out the broker's forced closes (reason ``liquidation``)."""
    opens = market.frame.index
    orders: dict[int, list[float]] = {}
    for fill in fills:
        if not forced and fill.get("reason") == "liquidation":
            continue
        bar = int(np.searchsorted(opens, pd.Timestamp(fill["datetime"]), side="right")) - 1
        orders.setdefault(max(bar - 1, 0), []).append(float(fill["contracts"]))  # order units, not coins
    return orders


class _MarginMoveLog(MarginBroker):
    """A MarginBroker that notes every margin its strategy adds to a position: {bar index: [USD]}."""

    def __init__(self) -> None:
        super().__init__()
        self.margin_moves: dict[int, list[float]] = {}

    def add_margin(self, data, amount: float) -> bool:
        added = super().add_margin(data, amount)
        if added:
            self.margin_moves.setdefault(len(data) - 1, []).append(amount)
        return added


def miner_margin_moves(market: api.Market, policy: str = "static_hedge") -> dict[int, list[float]]:
    """The margin the miner adds to its isolated position (margin-call top-ups, leverage restored at a
    re-hedge), {bar index: [USD]}, from one run without analyzers: what a replay must add to walk the same
    position path."""
    values = api._policy_params(policy, {"asset": market.asset}, None)
    cerebro = _miner_cerebro(market, policy_class(policy), values, analyzers=False,
                             broker_class=_MarginMoveLog)
    return cerebro.run()[0].broker.margin_moves


def policy_comminfo(policy: str, params: dict[str, Any] | None, asset: str) -> FuturesCommInfo:
    """The futures contract the policy trades with these params (venue, leverage, margin mode; perpetual)."""
    values = api._policy_params(policy, {"asset": asset, **(params or {})}, None)
    venue = load_venue(values["venue"])
    symbol = next(s.symbol for s in venue.instruments if s.asset == asset)
    return futures_comminfo(venue, symbol=symbol, leverage=values["leverage"],
                            margin_mode=values["margin_mode"])


def baseline_commission(policy: str, params: dict[str, Any] | None, asset: str) -> bt.CommissionInfo:
    """Stock backtrader commission equal to the policy's linear venue contract: taker fee (fraction of
    notional) and initial margin price x mult / leverage."""
    comminfo = policy_comminfo(policy, params, asset)
    if comminfo.is_inverse:
        raise ValueError("the baseline replays linear contracts only (choose a linear venue)")
    return bt.CommissionInfo(commission=comminfo.p.commission, commtype=bt.CommInfoBase.COMM_PERC,
                             percabs=True, stocklike=False, mult=comminfo.p.mult,
                             automargin=comminfo.p.mult / comminfo.p.leverage)


def baseline_run(market: api.Market, orders: dict[int, list[float]], commission: bt.CommissionInfo,
                 cash: float) -> tuple[float, int]:
    """Seconds (cerebro construction to the end of ``run``) and fills of the plain backtrader replay."""
    began = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name=market.asset))
    cerebro.broker.setcash(cash)
    cerebro.broker.addcommissioninfo(commission)
    cerebro.addstrategy(ReplayOrders, orders=orders)
    strategy = cerebro.run()[0]
    return time.perf_counter() - began, strategy.fills


def margin_replay_run(market: api.Market, orders: dict[int, list[float]], margins: dict[int, list[float]],
                      cash: float, policy: str = "static_hedge") -> tuple[float, bt.Strategy]:
    """Seconds (cerebro construction to the end of ``run``) and the finished strategy (``fills``, and its
    ``broker`` with events and ledger) of the replay on ``MarginBroker(cash=cash)`` (USD) with the policy's
    futures contract: the margin engine without the miner."""
    began = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MinerFeed(dataname=market.frame, name=market.asset))
    cerebro.broker = MarginBroker(cash=cash, funding_rates=market.funding_rates)
    cerebro.broker.addcommissioninfo(policy_comminfo(policy, None, market.asset), name=market.asset)
    cerebro.addstrategy(ReplayOrders, orders=orders, margins=margins)
    strategy = cerebro.run()[0]
    return time.perf_counter() - began, strategy


# Miner runs with parts switched off that do not change what it trades (analyzers only read the broker);
# switching off broker checks would (no liquidations, other fills), so those are not ablated here.
ABLATIONS: dict[str, dict[str, Any]] = {"no analyzers": {"analyzers": False}}


def ablated_run(market: api.Market, *, analyzers: bool = True, policy: str = "static_hedge") -> float:
    """Seconds (cerebro construction to the end of ``run``) of the miner run with parts switched off
    (``analyzers=False``: none added)."""
    values = api._policy_params(policy, {"asset": market.asset}, None)
    began = time.perf_counter()
    _miner_cerebro(market, policy_class(policy), values, analyzers=analyzers).run()
    return time.perf_counter() - began


def _miner_cerebro(market: api.Market, strategy: type, values: dict[str, Any], *, analyzers: bool = True,
                   preload: bool = True, runonce: bool = True,
                   broker_class: type = MarginBroker) -> bt.Cerebro:
    """The cerebro :func:`minehedge.api.run_policy` builds (perpetual contracts), ready to run; the
    per-process mining-schedule memo is emptied first, so every benchmarked run pays for its schedule as a
    single run does (a sweep computes it once; see ``strategies.base._memo_schedule``)."""
    forget_mining_schedules()
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce)
    cerebro.adddata(MinerFeed(dataname=market.frame, name=market.asset))
    cerebro.broker = broker_class(cash=0.0)
    cerebro.addstrategy(strategy, **values)
    if analyzers:
        add_analyzers(cerebro, market.asset)
    return cerebro
