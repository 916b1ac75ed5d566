"""MinerStrategy: the mining business on backtrader, plus a futures leg that policies drive.

Each bar, after the broker has filled orders, paid funding and checked liquidations (see
:mod:`brokers.broker`), :meth:`MinerStrategy.next` runs, in this order:

1. **Mining**: the coins the fleet earned during the bar are credited to the spot wallet
   (``mining_credit``, gross FPPS) and the pool fee is debited (``pool_fee``); power and hosting are due in
   USD. The per-bar amounts come from :meth:`mining.fleet.Fleet.simulate` and :func:`mining.fleet.per_bar`,
   computed once at start from the feed's network lines, which are already published-lagged (a day's
   network values are visible from the next UTC day on, see :mod:`data.feeds`). So the bar's coins are
   paid at the most recently *published* rate (as FPPS pools pay each day for the previous day), and
   curtailment decides with the previous day's hashprice: nothing here looks ahead.
2. **Loans**: instalments, interest, loan calls and loan liquidations (:mod:`mining.loans`) of every loan in
   :attr:`MinerStrategy.loans`, one after the other: the debt owed at the first bar (``debt_usd``), then those
   a policy draws (:meth:`MinerStrategy.add_loan`). A payment due on
   a bar during which the hedge's market does not trade, that only a draw on the hedge could pay, waits for
   the first bar the market trades (``loan_payment_carried``; :meth:`MinerStrategy.carry_loan_payment`) and is
   paid there before anything else, or missed there.
3. **Treasury**: coins are sold at the bar's close under the treasury policy
   (:func:`strategies.rules.coins_to_sell`); then bills carried from bars when the hedge's market was closed
   are paid (at the first bar it trades), then the bar's USD costs. When USD is short, coins are sold to cover
   it (spot first, then free coins in the futures wallet), then part of the hedge is closed at the close. When
   the only thing missing is that draw, impossible because the hedge's market did not trade during the bar
   (CME on a weekend), the unpaid part is carried (``bill_carried``, liability ``bills_carried``) and mining
   goes on; otherwise the strategy records an ``insolvency`` event and stops mining (it never borrows silently
   and never drives a balance negative).
4. **Hedge**: the policy's :meth:`rebalance` (subclasses) sets the futures position, sized in coins and
   converted to contracts per the venue's face value; orders fill at the next bar's open (backtrader's
   default), stop-losses are real backtrader stop orders.

Margin calls reach :meth:`notify_margin_call` before the next bar, and the ``on_margin_call`` response
(``top_up_from_treasury``, ``reduce_position``, ``ignore``) is applied there.
"""

from __future__ import annotations

import hashlib
import math
import threading
import types
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import numpy as np
import pandas as pd

from brokers.broker import CASH_TOLERANCE_USD, MarginBroker
from brokers.commission import (
    FuturesCommInfo,
    check_contract_leverage,
    futures_comminfo,
    opening_liquidation_distance,
)
from brokers.events import MarginEvent
from brokers.formulas import dated_future_price, initial_margin, inverse_notional_coin, years_between
from brokers.venues import VenueProfile, available_venues, load_venue
from data.feeds import bar_date_numbers
from data.price_schedule import SCHEDULE_DOC, SCHEDULE_FORMS, price_schedule
from minehedge.config import ParamSpec, spec_map
from minehedge.errors import ConfigError, check_choice
from mining.fleet import (
    DAY,
    DAYS_PER_YEAR,
    Fleet,
    bar_edges,
    hashprice_market_value,
    idle_fleet_note,
    per_bar,
    straight_line_book_value,
    trailing_hashprice,
    value_on_day,
)
from mining.loans import CoinLoan, EquipmentLoan, loan_statement, ltv_from_collateral_ratio
from mining.price_schedule import price_warnings
from mining.revenue import ETH_MERGE
from strategies import rules

#: Collateral moved for a new position, as a multiple of what the broker checks at submission (margin + fee):
#: market orders fill at the next bar's open, and backtrader re-checks the margin at that price. USD margin
#: comes from spot USD first, then from selling spot coins (a hedge is worth a small sale of the treasury).
MARGIN_CUSHION = 1.05
#: Why a stop-loss distance of 0 is refused (the ``stop_loss`` parameter's and the strategy's own check).
STOP_AT_ENTRY = ("the stop would sit at the entry price; for no stop-loss leave stop_loss at its default, "
                 "none (stop_loss=None in Python; on the command line drop --set stop_loss=0, or give --set "
                 "stop_loss=none)")
#: Room kept for the venue's re-check of an order's margin at its fill (the next open; backtrader re-checks
#: linear fills, the MarginBroker inverse ones): a target goes out whole only when the futures wallet holds
#: its margin and fee times this (else the treasury moves collateral, up to MARGIN_CUSHION), and a target the
#: collateral cannot carry is cut so that its margin and fee times this use what there is. Without the room
#: the re-check refuses the order whenever the price moved against it. 1 % covers 99.9 % of the gaps between a
#: bar's close and the next open in the shared BTC data (1d, 4h, 1h; the largest: 1.6 %, 2.0 %, 1.5 %) and
#: leaves a fully collateralised short (collateral_short at 1x) 1 % short of its target until the next
#: re-size tops it up.
CUT_CUSHION = 1.01
MARGIN_CALL_RESPONSES = ("top_up_from_treasury", "reduce_position", "ignore")
#: Kinds of debt owed at the first bar (``debt_type``).
DEBT_TYPES = ("equipment", "coin")
#: The name (its instrument is ``loan:existing_debt``) and lender of the debt owed at the first bar.
EXISTING_DEBT, EXISTING_LENDER = "existing_debt", "existing lender"
CONTRACT_KINDS = ("perpetual", "dated")
#: How machines bought at a price count in equity (the ``hardware_value`` parameter): straight-line book
#: value, or that scaled by hashprice (:func:`mining.fleet.hashprice_market_value`).
HARDWARE_VALUES = ("book", "market")
DAY_NS = DAY.value
#: Default fleet: a mid-size BTC miner that grew and renewed its machines through the cycles.
DEFAULT_FLEET = ("S9:4000@2017-01-01,S17Pro:1500@2019-06-01,S19Pro:2000@2020-06-01,-S9:4000@2021-01-01,"
                 "S19XP:1500@2022-06-01,S21:1000@2023-09-01")
#: Used instead when the asset is ETH and the fleet was left at its default: 3,000 six-GPU rigs
#: (~180 MH/s, 1,000 W each, e.g. 6 x RX 580 / GTX 1070 class) from 2018.
DEFAULT_ETH_FLEET = "180MH/1000W:3000@2018-01-01"


def check_coin_loan_ratios(call: tuple[str, float], liquidation: tuple[str, float], above: tuple[str, float],
                           why: str) -> None:
    """A coin loan's terms, each a (parameter name, value) pair: the call LTV 1 / ``call`` (``call``:
    collateral value / debt, x) below the ``liquidation`` LTV (fraction), and the ratio ``above`` (x; a loan's
    drawdown or cure ratio) above ``call``, for the reason ``why``; ConfigError naming them otherwise."""
    (call_name, call_ratio), (liquidation_name, ltv), (name, ratio) = call, liquidation, above
    if 1.0 / call_ratio >= ltv:
        raise ConfigError(f"{liquidation_name}={ltv} must exceed the call LTV 1/{call_name}="
                          f"{1.0 / call_ratio:.4f}.")
    if ratio <= call_ratio:
        raise ConfigError(f"{name}={ratio} must exceed {call_name}={call_ratio}: {why}.")


def check_debt_params(values: Mapping[str, Any]) -> None:
    """The debt owed at the first bar (``debt_usd`` > 0; at 0 the other ``debt_`` parameters are ignored, and
    :func:`ignored_debt_note` says so): an equipment debt pledges no coins; a coin debt pledges some, its call
    LTV (1 / debt_call_ratio) is below debt_liquidation_ltv, and debt_cure_ratio is above debt_call_ratio.
    ConfigError otherwise."""
    debt = values.get("debt_usd") or 0.0
    if debt <= 0:
        return
    coins = values.get("debt_collateral_coins") or 0.0
    if values["debt_type"] == "equipment":
        if coins > 0:
            raise ConfigError(f"debt_collateral_coins={coins:g} pledges coins, but debt_type='equipment' is "
                              "an amortising loan without coin collateral: set debt_type=coin for a coin-"
                              "collateralised debt, or leave debt_collateral_coins at 0.")
        return
    if coins <= 0:
        raise ConfigError(f"debt_type='coin' needs debt_collateral_coins > 0: the coins pledged for "
                          f"debt_usd={debt:,.0f} USD at the first bar (e.g. the filing's 3,064 BTC for "
                          "100,000,000 USD).")
    check_coin_loan_ratios(("debt_call_ratio", values["debt_call_ratio"]),
                           ("debt_liquidation_ltv", values["debt_liquidation_ltv"]),
                           ("debt_cure_ratio", values["debt_cure_ratio"]),
                           "a call must restore more collateral than the level that raised it")


def ignored_debt_note(values: Mapping[str, Any], specs: Sequence[ParamSpec]) -> str:
    """A run note naming the ``debt_`` parameters of ``values`` (policy parameters by name, typed) that differ
    from their ``specs`` default when ``debt_usd`` is 0: with no debt owed at the first bar they change
    nothing, which the user should hear; "" when ``debt_usd`` > 0 or none differs. A note, not an error: a
    sweep over ``debt_usd`` may include 0."""
    if values.get("debt_usd"):
        return ""
    changed = [f"{spec.name}={format(values[spec.name], 'g') if spec.type is float else values[spec.name]}"
               for spec in specs if spec.name.startswith("debt_") and spec.name != "debt_usd"
               and spec.name in values and values[spec.name] != spec.default]
    if not changed:
        return ""
    return (f"{', '.join(changed)} change{'s' if len(changed) == 1 else ''} nothing here: debt_usd is 0, so "
            "no debt is owed at the first bar and the other debt_ parameters are ignored; give debt_usd > 0 "
            "for the debt they describe, or leave them out.")


def fleet_for(asset: str, fleet: str) -> str:
    """The fleet shorthand to use: ``fleet``, or the ETH default when an ETH run kept the BTC default."""
    return DEFAULT_ETH_FLEET if asset.upper() == "ETH" and fleet == DEFAULT_FLEET else fleet

# One home for every parameter: name, type, default, unit and meaning. backtrader's ``params`` tuple and
# the CLI's validation and ``policies`` listing are both derived from these specs.
BASE_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("asset", str, "BTC", "", "coin mined and hedged", choices=("BTC", "ETH")),
    ParamSpec("fleet", str, DEFAULT_FLEET, "shorthand",
              "deployments 'MODEL:UNITS@YYYY-MM-DD[$USD]', retirements '-MODEL:UNITS@DATE', comma-separated "
              f"(ETH runs that keep this default use {DEFAULT_ETH_FLEET})"),
    ParamSpec("power_usd_per_kwh", float, 0.045, "USD/kWh",
              f"electricity price: a constant, or {SCHEDULE_DOC}",
              minimum=0.0, schedule=price_schedule, schedule_forms=SCHEDULE_FORMS),
    ParamSpec("hosting_usd_per_kwh", float, 0.0, "USD/kWh",
              "hosting fee per kWh drawn: a constant, or a dated schedule as power_usd_per_kwh", minimum=0.0,
              schedule=price_schedule, schedule_forms=SCHEDULE_FORMS),
    ParamSpec("pool_fee", float, 0.02, "fraction", "FPPS pool fee", minimum=0.0, maximum=1.0),
    ParamSpec("uptime", float, 0.97, "fraction", "share of the time machines hash", minimum=0.01,
              maximum=1.0),
    ParamSpec("curtail", bool, True, "",
              "switch machines off on days their revenue is below their power cost"),
    ParamSpec("depreciation_years", float, 3.0, "years",
              "straight-line life of a machine's price; machines bought at a price count in equity at book "
              "value (or market value: hardware_value)", minimum=0.1),
    ParamSpec("hardware_value", str, "book", "",
              "equity value of machines bought at a price: straight-line book value, or market = book x "
              "trailing hashprice / trailing hashprice on the purchase day (machine prices track hashprice)",
              choices=HARDWARE_VALUES),
    ParamSpec("market_value_window_days", int, 30, "days",
              "hardware_value=market: days of the trailing mean of hashprice that machine prices follow",
              minimum=1),
    ParamSpec("start_usd", float, 2_000_000.0, "USD", "opening USD cash (spot wallet)", minimum=0.0),
    ParamSpec("start_coins", float, 0.0, "coins", "opening coin treasury (spot wallet)", minimum=0.0),
    ParamSpec("treasury", str, "hodl", "",
              "what happens to mined coins (every policy sells when USD is short)",
              choices=rules.TREASURY_POLICIES),
    ParamSpec("sell_fraction", float, 0.5, "fraction", "share of production sold (treasury=sell_fraction)",
              minimum=0.0, maximum=1.0),
    ParamSpec("spot_fee", float, 0.001, "fraction", "fee on spot coin sales", minimum=0.0, maximum=0.1),
    ParamSpec("debt_usd", float, 0.0, "USD",
              "debt owed at the first bar (principal; no cash is credited: it was spent before the run, and "
              "equity counts it as a liability from the opening); 0 = none, and the other debt_ parameters "
              "are ignored (a run note names any given)", minimum=0.0),
    ParamSpec("debt_type", str, "equipment", "",
              "the debt: equipment = an amortising loan, monthly USD instalments over debt_term_months, the "
              "first a month after the first bar; coin = a USD loan against debt_collateral_coins pledged "
              "coins, interest paid monthly in USD, called at debt_call_ratio, sold at debt_liquidation_ltv",
              choices=DEBT_TYPES),
    ParamSpec("debt_rate", float, 0.1075, "fraction/yr", "the debt's interest rate", minimum=0.0,
              maximum=1.0),
    ParamSpec("debt_term_months", int, 36, "months",
              "equipment debt: monthly instalments left at the first bar", minimum=1),
    ParamSpec("debt_collateral_coins", float, 0.0, "coins",
              "coin debt: coins already pledged to the lender (in the collateral wallet from the first bar, "
              "beside start_coins)", minimum=0.0),
    ParamSpec("debt_call_ratio", float, 1.33, "x",
              "coin debt: collateral value / debt that triggers a loan call", minimum=1.0),
    ParamSpec("debt_cure_ratio", float, 1.43, "x",
              "coin debt: collateral value / debt that meets a loan call (top-up or price)", minimum=1.0),
    ParamSpec("debt_liquidation_ltv", float, 0.85, "fraction",
              "coin debt: LTV (debt / collateral value) at which the lender sells the collateral",
              minimum=0.0, maximum=1.0),
    ParamSpec("debt_call_deadline_days", float, 3.0, "days", "coin debt: time to meet a loan call",
              minimum=0.0),
    ParamSpec("venue", str, "binance_usdm", "", "futures venue profile", choices=tuple(available_venues())),
    ParamSpec("contract", str, "perpetual", "", "futures contract kind", choices=CONTRACT_KINDS),
    ParamSpec("annual_basis", float, 0.05, "fraction/yr",
              "dated contracts: futures premium over spot per year (price = spot x (1 + basis x years left))",
              minimum=-0.5, maximum=2.0),
    ParamSpec("expiry_cycle", str, "quarterly", "", "dated contracts: expiry calendar (brokers.dated)",
              choices=("quarterly", "monthly")),
    ParamSpec("symbol", str, "", "", "contract of the venue (empty: its first for the asset; e.g. MBT = CME "
              "micro, 0.1 BTC)"),
    ParamSpec("leverage", float, 2.0, "x", "futures leverage (initial margin = notional / leverage)",
              minimum=1.0, maximum=125.0),
    ParamSpec("margin_mode", str, "isolated", "", "futures margin mode", choices=("isolated", "cross")),
    ParamSpec("buy_coin_margin", bool, False, "",
              "inverse (coin-margined) contracts: when the spot coins are short of the margin, buy the rest "
              "with spot USD at the close, paying spot_fee (off: only coins held are posted)"),
    ParamSpec("on_margin_call", str, "top_up_from_treasury", "",
              "response to a margin call (and to a coin loan's call: top_up_from_treasury pledges spare spot "
              "coins, the others leave it to its deadline)", choices=MARGIN_CALL_RESPONSES),
    ParamSpec("top_up_target", float, 0.4, "fraction",
              "margin ratio a top-up restores (maintenance / margin balance)", minimum=0.01, maximum=1.0),
    ParamSpec("margin_buffer", float, 0.0, "fraction",
              "the desk's own margin call: at a close where the liquidation price is nearer than this "
              "fraction of the hedge's close, apply on_margin_call at once (a top-up restores notional / "
              "leverage); 0 = answer only the venue's calls", minimum=0.0, maximum=0.99),
    ParamSpec("rebalance_days", float, 7.0, "days", "how often the futures position is re-sized",
              minimum=0.0),
    ParamSpec("stop_loss", float, None, "fraction", "stop-loss distance from entry, > 0 (none = no stop)",
              minimum=0.0, maximum=1.0, nullable=True, refuse_minimum=STOP_AT_ENTRY),
)


def size_text(size: float) -> str:
    """A position size for a note, in thousands-separated digits: whole (contracts, and anything of 100,000
    or more: ``-3,530,470``, never ``-3.53047e+06``) or to six significant digits (``0.512346``,
    ``0.00001234``, never ``1.234e-05``)."""
    if float(size).is_integer() or abs(size) >= 1e5:
        return f"{size:,.0f}"
    if abs(size) < 1:  # fixed point for small sizes too: 0.00001234, not 1.234e-05
        return np.format_float_positional(size, precision=6, unique=False, fractional=False, trim="-")
    return f"{size:,.6g}"


def params_from_specs(specs: Sequence[ParamSpec]) -> tuple[tuple[str, object], ...]:
    """backtrader ``params`` from specs (name, default)."""
    return tuple((spec.name, spec.default) for spec in specs)


def listens_to_cashvalue(analyzer: bt.Analyzer) -> bool:
    """Whether ``analyzer`` or one of its children needs backtrader's per-bar cash/value notification.

    An analyzer class may say so with a ``uses_cashvalue_notifications`` attribute (True or False; its
    children are asked in any case). Otherwise it needs it when it overrides ``notify_cashvalue``,
    ``notify_fund`` or their dispatchers, as backtrader's ``TimeReturn`` does (``PeriodStats`` listens through
    the ``TimeReturn`` child it builds).
    """
    cls = type(analyzer)
    uses = getattr(cls, "uses_cashvalue_notifications", None)
    if uses is None:
        uses = any(getattr(cls, name) is not getattr(bt.Analyzer, name)
                   for name in ("notify_cashvalue", "notify_fund", "_notify_cashvalue", "_notify_fund"))
    return bool(uses) or any(listens_to_cashvalue(child) for child in analyzer._children)


#: (data digest, fleet key, compute function) -> per-bar mining schedule, least recently used first.
_SCHEDULES: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_SCHEDULES_KEPT = 4  # a sweep rarely varies its fleet; an hourly BTC schedule is 7.4 MiB
_SCHEDULES_LOCK = threading.Lock()


def _memo_schedule(frame: pd.DataFrame, fleet: Fleet, compute) -> pd.DataFrame:
    """``compute(frame)`` for this fleet, remembered per process by the content of the frame's index and
    network lines (a digest, so a frame changed in place is computed afresh) and ``fleet.cache_key()``.

    Every caller gets its own shallow copy: under pandas' copy-on-write, a change to one run's
    ``mining_schedule`` never reaches the remembered table or another run's.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(frame.index.asi8.tobytes())
    digest.update(str(frame.index.dtype).encode())
    for column in ("coins_per_unit_day", "hashprice"):
        digest.update(frame[column].to_numpy(dtype=float).tobytes())
    key = (digest.digest(), fleet.cache_key(), getattr(compute, "__func__", compute))
    with _SCHEDULES_LOCK:  # a user's Dask worker may run several configurations in threads
        schedule = _SCHEDULES.get(key)
        if schedule is not None:
            _SCHEDULES.move_to_end(key)
    if schedule is None:
        schedule = compute(frame)
        with _SCHEDULES_LOCK:
            _SCHEDULES[key] = schedule
            while len(_SCHEDULES) > _SCHEDULES_KEPT:
                _SCHEDULES.popitem(last=False)
    return schedule.copy(deep=False)


def forget_mining_schedules() -> None:
    """Empty the per-process schedule memo (the benchmarks time every run from cold with it)."""
    with _SCHEDULES_LOCK:
        _SCHEDULES.clear()


@dataclass(frozen=True)
class CarriedPayment:
    """A loan payment waiting for the hedge's market to trade (:meth:`MinerStrategy.carry_loan_payment`), kept
    whole and apart from any other until it is paid or missed: ``what`` it is (``"instalment 2/36 of 1,010.00
    USD due 2021-04-06"``), ``usd`` (USD), ``due`` (when it fell due, naive UTC), ``since`` (the bar it was
    carried from, naive UTC) and, for an equipment loan's instalment, its ``instalment`` number (1-based)."""

    what: str
    usd: float
    due: datetime
    since: datetime
    instalment: int | None = None


class MinerStrategy(bt.Strategy):
    """A miner: mining revenue, costs and treasury each bar, plus a futures leg set by :meth:`rebalance`.

    Params (units in :data:`BASE_SPECS`; subclasses add their own ``specs``). Use with
    ``cerebro.broker = brokers.broker.MarginBroker(cash=0)`` and a :class:`data.feeds.MinerFeed` built by
    :func:`data.feeds.build_feed_frame` and named after the asset (``name='BTC'``: the broker prices the mined
    coins by it). This base class never trades futures: it is the ``unhedged`` miner with the treasury policy
    of its params.
    """

    specs: tuple[ParamSpec, ...] = BASE_SPECS
    params = params_from_specs(BASE_SPECS)
    #: True for policies that hold futures (the comminfo is installed on the data at start).
    uses_futures = False
    #: True for hedges that re-establish the chosen leverage at each roll (see :meth:`restore_leverage`).
    restores_leverage_on_roll = False
    #: Venue used when the policy's contract must be inverse (``collateral_short``); None: any venue.
    required_contract_type: str | None = None

    # --- set-up ---------------------------------------------------------------------------------------
    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` when ``values`` (every parameter, each one already valid on its own, as
        :func:`minehedge.config.validate_params` returns them) do not fit together. It needs no data, so
        :func:`minehedge.api.check_config` runs it before any is loaded, and the strategy runs it again when
        it starts. Here: the venue must list a contract for the asset (and the policy's contract type); cme
        lists dated contracts only; the leverage must be within the contract's first bracket on some date (the
        error states the range from the ``leverage`` parameter's own minimum; the broker checks each order
        against the bracket in force); a stop-loss is a distance > 0 (none, the default, is no stop); the debt
        owed at the first bar fits its type (:func:`check_debt_params`). A policy with rules of its own
        extends it."""
        if values.get("stop_loss") == 0:  # a strategy given its params directly, not through validate_params
            raise ConfigError(f"stop_loss=0 is not allowed: {STOP_AT_ENTRY}; allowed: a distance in (0, 1].")
        if cls.uses_futures:
            if values.get("venue") == "cme" and values.get("contract", "perpetual") != "dated":
                raise ConfigError("venue='cme' lists dated contracts only; use contract='dated' with it.")
            venue, symbol = cls.venue_symbol(values)
            check_contract_leverage(venue, venue.instrument(symbol), values["leverage"],
                                    minimum=spec_map(cls.specs)["leverage"].minimum)
            buffer = values.get("margin_buffer", 0.0) or 0.0
            room = opening_liquidation_distance(venue, venue.instrument(symbol), values["leverage"])
            if buffer >= room:
                raise ConfigError(
                    f"margin_buffer={buffer:g} is not below {room:.4g}, the distance from its liquidation "
                    f"price at which a position opens at leverage={values['leverage']:g} on {venue.name} (as "
                    f"a fraction of the price): the desk would call on every bar; choose margin_buffer < "
                    f"{room:.4g} (e.g. half of it) or a lower leverage.")
        check_debt_params(values)

    @classmethod
    def venue_symbol(cls, values: Mapping[str, Any]) -> tuple[VenueProfile, str]:
        """The venue profile and contract symbol ``values`` trade (``symbol``, or the venue's first contract
        on the asset); ConfigError when the venue is not of the policy's contract type, lists no contract on
        the asset (naming the venues that do) or not the symbol asked."""
        asset = str(values["asset"]).upper()
        venue = load_venue(values["venue"])
        if cls.required_contract_type and venue.contract_type != cls.required_contract_type:
            raise ConfigError(f"venue={values['venue']!r} is {venue.contract_type}; this policy needs an "
                              f"{cls.required_contract_type} venue (e.g. binance_coinm or bitmex).")
        symbols = [s.symbol for s in venue.instruments if s.asset == asset]
        if not symbols:
            others = [name for name in available_venues()
                      if any(s.asset == asset for s in load_venue(name).instruments)
                      and (not cls.required_contract_type
                           or load_venue(name).contract_type == cls.required_contract_type)]
            fix = (f" Choose one: venue={others[0]!r} (--venue {others[0]} on the command line, "
                   f"venue = \"{others[0]}\" under [set] in a config file)." if others else "")
            raise ConfigError(f"venue={values['venue']!r} has no {asset} contract; venues with one: "
                              f"{', '.join(others) or 'none'}.{fix}")
        symbol = values.get("symbol", "") or symbols[0]
        check_choice("symbol", symbol, symbols)
        return venue, symbol

    def __init__(self) -> None:
        if not isinstance(self.broker, MarginBroker):
            raise ConfigError("MinerStrategy needs cerebro.broker = brokers.broker.MarginBroker(...); "
                              f"got {type(self.broker).__name__}.")
        self._validate_params()
        self.asset = self.p.asset.upper()
        frame = getattr(self.data.p, "dataname", None)
        if not isinstance(frame, pd.DataFrame) or "coins_per_unit_day" not in frame.columns:
            raise ConfigError("MinerStrategy needs a data.feeds.MinerFeed fed by data.feeds.build_feed_frame "
                              "(a DataFrame with coins_per_unit_day and hashprice columns).")
        self.fleet = self.build_fleet()
        self.mining_schedule = self._bar_schedule(frame)
        schedule = self.mining_schedule
        # Per-bar amounts as lists of floats: read one element per bar, where a list beats a numpy array.
        self._coins_gross = schedule["coins_gross"].to_numpy(dtype=float).tolist()
        self._pool_fee_coin = schedule["pool_fee_coin"].to_numpy(dtype=float).tolist()
        self._costs_usd = (schedule["power_cost_usd"]
                           + schedule["hosting_usd"]).to_numpy(dtype=float).tolist()
        self._power_usd = schedule["power_cost_usd"].to_numpy(dtype=float).tolist()
        self._hosting_usd = schedule["hosting_usd"].to_numpy(dtype=float).tolist()
        self._capex_usd = schedule["capex_usd"].to_numpy(dtype=float).tolist()
        self._production_per_day = schedule["production_coin_per_day"].to_numpy(dtype=float).tolist()
        self._breakeven = schedule["breakeven_price_usd"].to_numpy(dtype=float).tolist()
        self._bar_nums = bar_date_numbers(frame.index)  # backtrader's date numbers of the frame's bars
        self._bar_opens_ns, self._bar_ends_ns = bar_edges(frame.index)
        #: hardware_value='market': the daily hashprice the bars see (USD per unit per day, published-lagged:
        #: the bars of day D see day D-1's), and per bar the trailing mean of the day it opens in; None: book.
        self._hardware_hashprice: pd.Series | None = None
        self._hashprice_seen: np.ndarray | None = None
        if self.p.hardware_value == "market":
            daily = self._daily_lines(frame)["hashprice_usd_per_unit_day"]
            self._hardware_hashprice = daily
            trailing = trailing_hashprice(daily.to_numpy(dtype=float), self.p.market_value_window_days)
            self._hashprice_seen = value_on_day(daily.index.as_unit("ns").asi8, trailing, self._bar_opens_ns)
        #: Machines owned off the wallets, per broker asset name: their value (USD; ``hardware_value``) at
        #: each bar's end, set on the broker each bar (see :meth:`add_hardware`). The fleet's own, when any
        #: machine has a price.
        self._hardware: dict[str, list[float]] = {}
        self._opening_hardware_usd = 0.0
        if any(d.unit_price_usd > 0 for d in self.fleet.deployments):
            self._hardware["hardware"] = self._fleet_hardware_usd(0)
            self._opening_hardware_usd = self._fleet_opening_hardware_usd()
        #: The bar size (the median spacing of the bars; a day for a one-bar frame).
        self.bar_length = (pd.Series(frame.index).diff().median() if len(frame.index) > 1
                           else pd.Timedelta(days=1)).to_pytimedelta()
        self.insolvent = False
        self._insolvent_from = 0  # first bar of the current insolvency
        self._arrears: dict[str, float] = {}  # ledger kind -> USD of the insolvency bar's bills still owed
        #: ledger kind -> USD of bills carried over a closure of the hedge's market (see _carry), owed until
        #: the first bar the market trades; and the times of the bars they come from
        self._carried: dict[str, float] = {}
        self._carried_times: list[datetime] = []
        #: loan instrument -> the loan payments carried over a closure of the hedge's market
        #: (carry_loan_payment), oldest first, each on its own, settled at the first bar the market trades
        #: (hedge_market_traded)
        self._loans_carried: dict[str, list[CarriedPayment]] = {}
        #: The loans serviced each bar (:meth:`step_loans`), oldest first: the debt owed at the first bar
        #: (``debt_usd``), then those a policy draws (:meth:`add_loan`); and, per coin loan's instrument, the
        #: (year, month) of the last month whose interest was paid (its first bar's, at the start)
        self.loans: list[EquipmentLoan | CoinLoan] = []
        self._interest_months: dict[str, tuple[int, int]] = {}
        self._cashvalue_listened: bool | None = None  # see _notify; decided at the first bar
        self._pool_fee_note = f"pool fee {self.p.pool_fee:g}"
        self.hedge_order = None
        self.stop_order = None
        self._desk_call_open = False  # a margin_buffer call is open (see _check_margin_buffer)
        #: What a reader of the run must know (refused orders, a loan cut short, ...): the report's run notes.
        self.notes: list[str] = []
        #: Run notes the user must see at once too (an event date outside the run, :meth:`note_event_date`):
        #: ``run`` and ``compare`` print them as warnings.
        self.run_warnings: list[str] = []
        for text in price_warnings(self.param_values()):  # a price above 1 USD/kWh: in cents, most likely
            self.notes.append(text)
            self.run_warnings.append(text)
        if self._hardware_hashprice is not None:
            self._note_early_machines(self._hardware_hashprice.index[0])
        if self.p.debt_usd > 0:
            self.add_loan(self._existing_debt(frame))
        elif text := ignored_debt_note(self.param_values(), self.specs):
            self.notes.append(text)
        self._refusals: list[tuple[datetime, str, str]] = []  # (bar time, kind, text) of refused hedge orders
        # (notional, its unit, max leverage) of those
        self._bracket_refusals: list[tuple[float, str, float]] = []
        self._hedge_fills = 0  # hedge orders filled
        self._stop_sides: set[bool] = set()  # sides (True: long) of the positions stop orders protected
        self._stops_fired = 0  # stop orders filled
        # (bar time, wanted, placed) of hedge targets cut
        self._cuts: list[tuple[datetime, float, float]] = []
        #: (time, coins, USD spent) of each purchase of an inverse hedge's margin coins (buy_coin_margin)
        self._margin_buys: list[tuple[datetime, float, float]] = []
        # (bar time, closed, held) of draws on the hedge
        self._draws: list[tuple[datetime, float, float]] = []
        self.comminfo: FuturesCommInfo | None = None
        self._last_rebalance: datetime | None = None
        self._curtailed = schedule["curtailed_fraction"].fillna(0.0).to_numpy(dtype=float).tolist()
        #: Read by analyzers.MiningPnL each bar: ``curtailed_fraction`` (0-1) of the bar's machines off.
        self.mining_state = types.SimpleNamespace(curtailed_fraction=0.0)
        #: The data the futures leg trades: the spot feed (perpetuals) or the dated-contract feed.
        self.hedge_data = self.data
        self._contract_expiry: datetime | None = None
        self._roll_price: float | None = None
        if self.uses_futures:
            if getattr(self.p, "contract", "perpetual") == "dated":
                if len(self.datas) < 2:
                    raise ConfigError("contract='dated' needs a second feed with the dated contract's prices "
                                      "(brokers.dated.dated_price_frame); minehedge.api.run_policy adds it.")
                self.hedge_data = self.datas[1]
                self._dated = self.hedge_data.p.dataname
            self.comminfo = self.make_comminfo(expiry=self._expiry_of(0))
            self.broker.addcommissioninfo(self.comminfo, name=self.hedge_data._name)
            self._note_before_profile(frame.index[0])
            if self.p.buy_coin_margin and not self.comminfo.venue.is_inverse:
                self.notes.append(
                    f"buy_coin_margin=true changes nothing here: {self.comminfo.venue.name}'s "
                    f"{self.comminfo.spec.symbol} is a linear contract, margined in "
                    f"{self.comminfo.venue.margin_currency}; it buys the margin's coins for inverse "
                    "(coin-margined) contracts only.")

    def _existing_debt(self, frame: pd.DataFrame) -> EquipmentLoan | CoinLoan:
        """The loan of the debt owed at the first bar (``debt_usd``, ``debt_type``), owed from the first bar's
        time: an equipment loan's first instalment falls due a month later; a coin loan's collateral
        (``debt_collateral_coins``) is pledged from the opening (:meth:`_open_account`). A coin debt whose LTV
        at the first bar's open is at or past ``debt_liquidation_ltv`` is a ConfigError (its lender would
        have sold the collateral before the run); one past its call LTV is a warning: the lender's call is
        judged at the first close, as at every bar."""
        start = bt.num2date(self._bar_nums[0])  # the first bar's time, as the broker dates it
        p = self.p
        if p.debt_type == "equipment":
            return EquipmentLoan(p.debt_usd, p.debt_rate, p.debt_term_months, start, name=EXISTING_DEBT,
                                 lender=EXISTING_LENDER, existing=True)
        loan = CoinLoan(p.debt_usd, p.debt_collateral_coins, p.debt_rate,
                        margin_call_ltv=ltv_from_collateral_ratio(p.debt_call_ratio),
                        liquidation_ltv=p.debt_liquidation_ltv,
                        call_deadline=pd.Timedelta(days=p.debt_call_deadline_days),
                        cure_ltv=ltv_from_collateral_ratio(p.debt_cure_ratio), start=start,
                        name=EXISTING_DEBT, lender=EXISTING_LENDER, asset=self.asset, existing=True)
        price = float(frame["open"].iloc[0])
        ltv = loan.ltv(price)
        state = (f"debt_usd={p.debt_usd:,.0f} USD against debt_collateral_coins="
                 f"{p.debt_collateral_coins:,.4f} {self.asset} at the first bar's open ({price:,.2f} USD on "
                 f"{start:%Y-%m-%d}) is an LTV of {ltv:.4f} (collateral {1 / ltv:.2%} of the debt)")
        if ltv >= loan.liquidation_ltv:
            raise ConfigError(f"{state}, at or past debt_liquidation_ltv={loan.liquidation_ltv:g}: the "
                              "lender would have sold the collateral before the run. To start at the cure "
                              "level, pledge debt_cure_ratio x debt / price = "
                              f"{p.debt_usd * p.debt_cure_ratio / price:,.4f} {self.asset}; or start the run "
                              "on another day.")
        if ltv >= loan.margin_call_ltv:
            text = (f"{state}, past its call LTV {loan.margin_call_ltv:.4f} (debt_call_ratio="
                    f"{p.debt_call_ratio:g}): the run starts under water, and the lender calls the loan at "
                    "the first close unless the price has recovered by then.")
            self.notes.append(text)
            self.run_warnings.append(text)
        return loan

    def add_loan(self, loan: EquipmentLoan | CoinLoan) -> None:
        """Service ``loan`` from this bar on (:meth:`step_loans`), after the loans already held."""
        self.loans.append(loan)

    def loan_statements(self) -> list[dict[str, Any]]:
        """Each loan's account so far (:func:`mining.loans.loan_statement`), oldest first: the report's
        loans table."""
        return [loan_statement(loan) for loan in self.loans]

    def note_event_date(self, name: str, day: date | None, before: str | None, after: str) -> None:
        """A run note, also a warning (:attr:`run_warnings`), when the policy's event date ``name`` (a
        parameter; None: not given) lies outside the run's bars: before the first bar's day ``before`` says
        what happened instead (None: no note now; the policy calls again once it knows what happened), after
        the last bar's day ``after`` does. A sweep over periods may meet either, so neither is an error."""
        if day is None:
            return
        index = self.data.p.dataname.index
        first, last = index[0].date(), index[-1].date()
        if first <= day <= last or (day < first and before is None):
            return
        edge = f"before the run's first bar, {first}" if day < first else f"after the run's last bar, {last}"
        text = (f"{name}={day} is {edge} (the run covers {first} to {last}): "
                f"{before if day < first else after}.")
        self.notes.append(text)
        self.run_warnings.append(text)

    def _note_early_machines(self, first_day: pd.Timestamp) -> None:
        """hardware_value='market': a run note when priced machines were deployed before the first bar's day,
        whose purchase-day hashprice the run does not see: their market value starts at book value there."""
        early = [d for d in self.fleet.deployments if d.unit_price_usd > 0 and d.date < first_day]
        if early:
            units = sum(d.units for d in early)
            self.notes.append(
                f"hardware_value=market: {units:,} priced machine(s) deployed before the first bar "
                f"({first_day.date()}; the earliest on {early[0].date.date()}) are scaled from the trailing "
                "hashprice of the first day, not of their purchase day: they open at book value.")

    def _note_before_profile(self, first_bar: pd.Timestamp) -> None:
        """A run note when the run starts before the venue profile's first dated schedule for the contract:
        the earliest fees and margin brackets are then applied to bars when the contract may not have been
        listed yet (a binance_coinm run from 2019, say: that profile's schedules start in 2020)."""
        ci = self.comminfo
        fees_from = ci.venue.fees[0].effective
        tiers_from = ci.spec.tier_tables[0].effective
        first_day = first_bar.date()
        if first_day < min(fees_from, tiers_from):
            self.notes.append(
                f"{ci.venue.name} {ci.spec.symbol}: the run starts {first_day}, before the venue profile's "
                f"earliest fee schedule ({fees_from}) and margin brackets ({tiers_from}); those are applied "
                "to the earlier bars, and the contract may not have been listed yet then.")

    def param_values(self) -> dict[str, Any]:
        """Every parameter of the policy by name, as :meth:`check_params` and :meth:`venue_symbol` take
        them."""
        return {spec.name: getattr(self.p, spec.name) for spec in self.specs}

    def _validate_params(self) -> None:
        for spec in self.specs:
            setattr(self.p, spec.name, spec.coerce(getattr(self.p, spec.name), context="parameter"))
        self.check_params(self.param_values())

    def build_fleet(self) -> Fleet:
        """The fleet from the params (subclasses add machines, e.g. a financed expansion)."""
        return Fleet.from_shorthand(fleet_for(self.p.asset, self.p.fleet), asset=self.p.asset.upper(),
                                    uptime=self.p.uptime,
                                    power_price_usd_per_kwh=self.p.power_usd_per_kwh,
                                    hosting_usd_per_kwh=self.p.hosting_usd_per_kwh, pool_fee=self.p.pool_fee,
                                    curtail=self.p.curtail, depreciation_years=self.p.depreciation_years)

    def _bar_schedule(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-bar mining amounts from the feed frame's (published-lagged) network lines.

        The daily input is the first bar of each UTC day (the lagged values are constant within a day);
        days with no bar (exchange outages) carry the previous day's values, since machines keep hashing. A
        NaN value on a day with bars is an error (:meth:`mining.fleet.Fleet.simulate`), never zero revenue.
        The schedule depends on nothing but those lines and the fleet, so it is computed once per process for
        each (data, fleet) pair (see :func:`_memo_schedule`): a sweep over hedge settings computes it once.
        """
        return _memo_schedule(frame, self.fleet, self._compute_bar_schedule)

    def _compute_bar_schedule(self, frame: pd.DataFrame) -> pd.DataFrame:
        index = (frame.index.tz_convert("UTC") if frame.index.tz is not None
                 else frame.index.tz_localize("UTC"))
        schedule = self.fleet.simulate(self._daily_lines(frame))
        schedule["production_coin_per_day"] = schedule["coins_mined"]
        bars = per_bar(schedule, index)
        bars["production_coin_per_day"] = bars["production_coin_per_day"].fillna(0.0)
        return bars.fillna({c: 0.0 for c in ("coins_gross", "pool_fee_coin", "power_cost_usd", "hosting_usd",
                                             "capex_usd", "coins_mined")})

    def _daily_lines(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feed frame's (published-lagged) network lines per UTC day, from its first day to its last:
        ``coins_per_unit_day`` and ``hashprice_usd_per_unit_day`` (USD per TH/s or MH/s per day), each day's
        as its bars see them (see :meth:`_bar_schedule`)."""
        index = (frame.index.tz_convert("UTC") if frame.index.tz is not None
                 else frame.index.tz_localize("UTC"))
        lines = frame[["coins_per_unit_day", "hashprice"]].set_axis(index)
        daily = lines.groupby(index.normalize()).first()
        days = pd.date_range(daily.index[0], daily.index[-1], freq="D", tz="UTC")
        # Only days without a bar carry the day before's values; a NaN line on a day with bars stays NaN, so
        # Fleet.simulate stops on it instead of paying zero or stale revenue (build_feed_frame names the
        # cause).
        without_bar = ~days.isin(daily.index)
        daily = daily.reindex(days)
        daily[without_bar] = daily.ffill()[without_bar]
        daily = daily.rename(columns={"hashprice": "hashprice_usd_per_unit_day"})
        if self.fleet.asset == "ETH":
            # The Merge is a protocol date known in advance: no proof-of-work revenue from its day on, though
            # the published-lagged line still carries the day before's rate on 2022-09-15.
            daily.loc[daily.index >= ETH_MERGE, ["coins_per_unit_day", "hashprice_usd_per_unit_day"]] = 0.0
        return daily

    def _fleet_hardware_usd(self, i: int, paid_until: int | None = None) -> list[float]:
        """USD value of the fleet's machines at the end of bars ``i``.. (``hardware_value``): book value
        (:meth:`Fleet.book_value_at`) or market value (:meth:`Fleet.market_value_at`, each bar with the
        trailing hashprice of the day it opens in). ``paid_until`` (ns since the epoch): no purchase paid
        after it."""
        ends = self._bar_ends_ns[i:]
        if self._hardware_hashprice is None:
            return self.fleet.book_value_at(ends, paid_until=paid_until).tolist()
        return self.fleet.market_value_at(ends, self._hardware_hashprice, seen=self._bar_opens_ns[i:],
                                          paid_until=paid_until,
                                          window_days=self.p.market_value_window_days).tolist()

    def _fleet_opening_hardware_usd(self) -> float:
        """USD value of the fleet's machines at the first bar's open (the opening balance sheet)."""
        first = self._bar_opens_ns[:1]
        if self._hardware_hashprice is None:
            return float(self.fleet.book_value_at(first)[0])
        return float(self.fleet.market_value_at(first, self._hardware_hashprice,
                                                window_days=self.p.market_value_window_days)[0])

    def _expiry_of(self, i: int) -> datetime | None:
        """Settlement time (naive UTC) of the dated contract traded at bar ``i``: the open of the bar whose
        close is its expiry price (the broker settles at that bar's close), else the expiry itself. The
        calendar is known in advance, so reading the next bar's contract is no lookahead. None: perpetual."""
        if self.hedge_data is self.data:
            return None
        row = self._dated.iloc[min(i, len(self._dated) - 1)]
        stamp = row["settlement_bar"] if not pd.isna(row["settlement_bar"]) else row["expiry"]
        return pd.Timestamp(stamp).tz_convert("UTC").tz_localize(None).to_pydatetime()

    def make_comminfo(self, expiry: datetime | None = None) -> FuturesCommInfo:
        """The futures commission scheme from the params (venue, leverage, margin mode, expiry)."""
        venue, symbol = self.venue_symbol(self.param_values())
        self._contract_expiry = expiry
        return futures_comminfo(venue, symbol=symbol, leverage=self.p.leverage,
                                margin_mode=self.p.margin_mode, expiry=expiry)

    def _roll_dated(self, i: int, now: datetime) -> None:
        """At a dated contract's settlement bar (the broker has just cash-settled it at the close), switch
        the futures leg to the next contract and re-hedge now (the order fills at the next bar's open)."""
        if self._contract_expiry is None or now < self._contract_expiry or self.position_size():
            return
        self.comminfo = self.make_comminfo(expiry=self._expiry_of(i + 1))
        self.broker.addcommissioninfo(self.comminfo, name=self.hedge_data._name)
        self._last_rebalance = None
        # the order fills in the next contract: price it from spot and its (known) expiry, not the expired one
        row = self._dated.iloc[min(i + 1, len(self._dated) - 1)]
        bar_close = pd.Timestamp(self._dated.index[i]) + (self._dated.index[1] - self._dated.index[0])
        self._roll_price = dated_future_price(self.data.close[0], self.p.annual_basis,
                                              years_between(bar_close.to_pydatetime(),
                                                            pd.Timestamp(row["expiry"]).to_pydatetime()))

    def _start(self) -> None:
        """backtrader's ``Strategy._start`` with the account opened first: backtrader starts the analyzers
        before the strategy, and stock ones read the opening value there (TimeReturn, and SharpeRatio
        through it, divided by a zero opening value when the account opened on the first bar)."""
        self._open_account()
        super()._start()

    def _open_account(self) -> None:
        """Deposit the opening USD and coins before the first bar, dated at the first bar's time. Until that
        bar's close prices them, opening coins are valued at its open (USD per coin): the opening value. The
        debt owed at the first bar is a liability from here, its coins pledged in the ``collateral`` wallet;
        no cash is credited for it (a run note and warning when the opening value is then zero or below)."""
        self.broker.open_at(bt.num2date(self._bar_nums[0]))  # what data.datetime.datetime(0) gives at bar 0
        pledged = sum(loan.collateral_coin for loan in self.loans if isinstance(loan, CoinLoan))
        if self.p.start_coins or pledged:
            self.broker.set_price(self.asset, float(self.data.p.dataname["open"].iloc[0]))
        if self._opening_hardware_usd:  # priced machines deployed before the first bar: already owned
            self.broker.set_asset("hardware", self._opening_hardware_usd)
        if self.p.start_usd:
            self.broker.deposit("USD", self.p.start_usd, wallet="spot")
        if self.p.start_coins:
            self.broker.deposit(self.asset, self.p.start_coins, wallet="spot")
        for loan in self.loans:  # the debt owed at the first bar: a liability, and the coins pledged for it
            if isinstance(loan, CoinLoan):
                self.broker.deposit(self.asset, loan.collateral_coin, wallet="collateral")
            self.broker.set_liability(loan.instrument, loan.liability_usd)
        if self.loans and self.broker.getvalue() <= 0:
            text = (f"the opening equity is {self.broker.getvalue():,.2f} USD: the debt owed at the first "
                    f"bar ({self.p.debt_usd:,.2f} USD) exceeds the cash, coins and priced machines then, so "
                    "the run opens ruined (equity <= 0) and its returns and drawdowns count from the first "
                    "bar. Machines the debt paid for count as assets only with a price in the fleet "
                    "(MODEL:UNITS@DATE$USD).")
            self.notes.append(text)
            self.run_warnings.append(text)

    # --- the bar --------------------------------------------------------------------------------------
    def next(self) -> None:
        i = len(self.data) - 1
        now = self.broker.bar_time(self.data)
        if abs(self._bar_nums[i] - self.data.datetime[0]) > 1e-6:
            raise ConfigError("MinerStrategy: the feed's bars do not match its frame (use build_feed_frame "
                              "and no fromdate/todate filter on the feed; slice the frame instead).")
        price = self.data.close[0]
        produced = 0.0
        costs = 0.0
        stepped = self.insolvent
        if stepped:  # loans first: a lender may return collateral that pays the arrears
            self.step_loans(now, price)
            self._try_to_resume(i, now, price)
            self.mining_state.curtailed_fraction = 0.0  # off for insolvency, not curtailed for economics
        if not self.insolvent:
            produced = self._credit_mining(i, now, price)
            costs = self.bar_costs_usd(i)
        if not stepped:
            self.step_loans(now, price)
        self._treasury(produced, costs, i, now, price)
        for name, book in self._hardware.items():
            self.broker.set_asset(name, book[i])
        self.after_mining(now, price)
        if self.uses_futures:
            if self._contract_expiry is not None:
                self._roll_dated(i, now)
            if self._rebalance_due(now):
                self._last_rebalance = now
                futures_price = self._roll_price or self.hedge_data.close[0]
                self._roll_price = None
                if self.restores_leverage_on_roll:
                    self.restore_leverage(futures_price)
                self.rebalance(now, futures_price)
            if self.p.margin_buffer:
                self._check_margin_buffer(now)

    def _credit_mining(self, i: int, now: datetime, price: float) -> float:
        gross, fee = self._coins_gross[i], self._pool_fee_coin[i]
        if gross > 0:
            self.broker.credit_coins(self.asset, gross, kind="mining_credit", note="FPPS")
            self.broker.debit_coins(self.asset, fee, kind="pool_fee", note=self._pool_fee_note)
        net = gross - fee
        self.mining_state.curtailed_fraction = self._curtailed[i]
        return net

    def _treasury(self, produced: float, costs: float, i: int, now: datetime, price: float) -> None:
        """Sell under the treasury policy; at the first bar the hedge's market trades after a closure, pay the
        bills carried over it (:meth:`_pay_carried`); then pay the bar's ``costs`` (USD), selling more coins
        if USD is short and drawing on the hedge if that is not enough. When the draw is impossible only
        because the hedge's market did not trade during the bar, the unpaid part is carried (:meth:`_carry`);
        otherwise the miner is insolvent."""
        spot = self.broker.free_balance(self.asset, "spot")
        sale = rules.coins_to_sell(getattr(self.p, "treasury", "hodl"), produced, spot, costs, price,
                                   getattr(self.p, "sell_fraction", 0.0), self.p.spot_fee)
        if sale > 0:
            self.broker.sell_coins(self.asset, sale, price, fee_rate=self.p.spot_fee)
        if self._carried and not self.insolvent and self.hedge_market_traded():
            if not self._pay_carried(now, price):
                self._insolvency(now, price, costs)
                self._pay_what_it_can(i)
                return
        if costs <= 0:
            return
        if not self.raise_usd(costs, price, draw_on_hedge=True):
            if not self.insolvent:
                if self._draw_waits_for_the_market(costs, price):
                    self._carry(i, now, price, costs)
                else:
                    self._insolvency(now, price, costs)
                    self._pay_what_it_can(i)
            return
        if not self.insolvent:
            self._pay(i)

    def _closed_reason(self) -> str:
        """Why a carried bill waits, for events and ledger notes: e.g. ``"CME closed"``."""
        return f"{self.comminfo.venue.name.upper()} closed"

    def _carried_since(self) -> str:
        """The bars the carried bills come from, for notes: ``"carried from 2022-09-03 00:00 UTC"``, or
        ``"carried from A to B UTC (n bars)"``."""
        first, last, n = self._carried_times[0], self._carried_times[-1], len(self._carried_times)
        if n == 1:
            return f"carried from {first:%Y-%m-%d %H:%M} UTC"
        return f"carried from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({n} bars)"

    def hedge_market_traded(self) -> bool:
        """The one decision "the market reopened: pay what waited". True when the hedge's market traded during
        this bar (always, for a venue without ``trading_hours``; :meth:`MarginBroker.market_open` at the
        close): the bills carried (:meth:`_pay_carried`) and the loan payments carried
        (:meth:`carry_loan_payment`) over a closure are paid, or missed, at the first bar where this is True,
        and at no other. False on a bar during which it did not trade (CME on a Saturday): what waits keeps
        waiting, even if the hedge went flat during the bar (a dated contract that expired in a gap of the
        feed is cash-settled at the first bar after it, a fixing, not a trade) and the treasury could pay it;
        and nothing can be drawn from the hedge, so a payment the treasury cannot raise may be carried
        (:meth:`_draw_waits_for_the_market`)."""
        return self.broker.market_open(self.hedge_data, "close")

    def _owed_over_closure(self) -> float:
        """USD waiting for the hedge's market to trade again: the bills carried (:meth:`_carry`) and the loan
        payments carried (:meth:`carry_loan_payment`)."""
        loans = sum(p.usd for waiting in self._loans_carried.values() for p in waiting)
        return sum(self._carried.values()) + loans

    def _draw_waits_for_the_market(self, usd: float, price: float) -> bool:
        """The one test of whether a payment of ``usd`` (USD: the bar's costs, or a loan payment due at the
        bar) that the treasury cannot raise waits for the market instead of being missed: True when the
        hedge's market did not trade during the bar (:meth:`hedge_market_traded`), and what the treasury
        (:meth:`raisable_usd`) lacks for it and for everything already waiting (:meth:`_owed_over_closure`)
        closing the hedge would have freed had the market traded (:meth:`closing_release_usd`, what
        :meth:`draw_on_hedge` would have closed; nothing when no hedge is held: then only a payment queued
        behind one already waiting, which the treasury covers with all the rest, waits)."""
        if self.hedge_market_traded():
            return False
        short = usd + self._owed_over_closure() - self.raisable_usd(price)
        return short <= self.closing_release_usd(price)

    def _carry(self, i: int, now: datetime, price: float, costs: float) -> None:
        """Bar ``i``'s ``costs`` (USD: power, hosting, purchases) cannot be paid only because the hedge's
        market is closed (:meth:`_draw_waits_for_the_market`): the cash raised pays them pro rata, as on an
        insolvency bar, and the rest is carried to the first bar the market trades (the liability
        ``bills_carried``, so equity counts it; a ``bill_carried`` event). Mining goes on: the machines run,
        only the payment waits, as a treasury desk pays a weekend's bill when the market reopens."""
        bills = {"power_cost": self._power_usd[i], "hosting_cost": self._hosting_usd[i],
                 "hardware_purchase": self._capex_usd[i]}
        reason, release = self._closed_reason(), self.closing_release_usd(price)
        paid, carried = self._pay_pro_rata(bills, max(self.broker.get_cash(), 0.0),
                                           f"part paid: rest carried, {reason}", self._carried)
        self._carried_times.append(now)
        owed = sum(self._carried.values())
        self.broker.set_liability("bills_carried", owed)
        if "hardware" in self._hardware:  # a purchase carried is made: the event's equity counts the machines
            self.broker.set_asset("hardware", self._hardware["hardware"][i])
        self.broker.add_event(MarginEvent(
            time=now, kind="bill_carried", instrument="fleet", venue=self.comminfo.venue.name, side="",
            size=0.0,
            price=price, equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0, margin_ratio=0.0,
            loss_usd=0.0, fee_usd=0.0,
            detail=f"carried {carried:,.2f} USD of the bar's {costs:,.2f} USD of costs ({paid:,.2f} USD "
                   f"paid): {reason}, so the hedge cannot be drawn on (closing it would free {release:,.2f} "
                   f"USD had the market traded); {owed:,.2f} USD carried in all, paid at the first "
                   "bar the market trades"))

    def carry_loan_payment(self, loan, usd: float, what: str, now: datetime, price: float, *,
                           due: datetime | None = None, instalment: int | None = None) -> bool:
        """A loan payment of ``usd`` (USD; ``what``: e.g. ``"instalment 1/36 of 1,010.00 USD due
        2021-03-06"``) due at this bar that the treasury cannot raise: True when it waits for the first bar
        the hedge's market trades (:meth:`_draw_waits_for_the_market`), as a lender's "due on the next
        business day" convention would have it: nothing is paid or missed now, a ``loan_payment_carried``
        event says so, and the caller pays it there before the bar's other payments, or reports it missed
        there (:meth:`settle_carried_loan_payment`). It is kept on its own (a :class:`CarriedPayment`;
        ``due``: when it fell due, default now; ``instalment``: an equipment loan's instalment number), behind
        the loan's payments already waiting. The payment stays in the loan's own liability meanwhile. False
        when it does not wait: the caller reports it missed, as before."""
        if not self._draw_waits_for_the_market(usd, price):
            return False
        self._loans_carried.setdefault(loan.instrument, []).append(
            CarriedPayment(what, usd, now if due is None else due, now, instalment))
        reason, release = self._closed_reason(), self.closing_release_usd(price)
        self.broker.add_event(MarginEvent(
            time=now, kind="loan_payment_carried", instrument=loan.instrument, venue=loan.lender, side="",
            size=0.0, price=price, equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0,
            margin_ratio=0.0, loss_usd=0.0, fee_usd=0.0,
            detail=f"{what} carried: {reason}, so the hedge cannot be drawn on (closing it would free "
                   f"{release:,.2f} USD had the market traded; {self.raisable_usd(price):,.2f} USD in the "
                   f"treasury); {self._owed_over_closure():,.2f} USD waiting in all, paid at the first "
                   "bar the market trades"))
        return True

    def carried_loan_payments(self, loan) -> list[CarriedPayment]:
        """``loan``'s payments carried over a closure of the hedge's market, oldest first ([] if none)."""
        return list(self._loans_carried.get(loan.instrument, ()))

    def carried_loan_usd(self, loan) -> float:
        """USD of ``loan``'s payments carried over a closure of the hedge's market (0.0 if none)."""
        return sum(p.usd for p in self._loans_carried.get(loan.instrument, ()))

    def carried_loan_note(self, loan, payment: CarriedPayment) -> str:
        """The ledger note of ``loan``'s carried ``payment``: ``"loan:x; carried from 2021-03-06 00:00 UTC:
        CME closed"``."""
        return f"{loan.instrument}; carried from {payment.since:%Y-%m-%d %H:%M} UTC: {self._closed_reason()}"

    def settle_carried_loan_payment(self, loan, now: datetime, price: float, paid: bool) -> CarriedPayment:
        """Forget ``loan``'s oldest carried payment, ``paid`` (its own ``loan_payment_carried_paid`` event) or
        not (the caller reports it missed, or the lender's liquidation settled the debt holding it); returns
        it."""
        waiting = self._loans_carried[loan.instrument]
        payment = waiting.pop(0)
        if not waiting:
            del self._loans_carried[loan.instrument]
        if paid:
            self.broker.add_event(MarginEvent(
                time=now, kind="loan_payment_carried_paid", instrument=loan.instrument, venue=loan.lender,
                side="", size=0.0, price=price, equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0,
                margin_ratio=0.0, loss_usd=0.0, fee_usd=0.0,
                detail=f"paid {payment.what}, carried from {payment.since:%Y-%m-%d %H:%M} UTC: "
                       f"{self._closed_reason()}"))
        return payment

    def _pay_carried(self, now: datetime, price: float) -> bool:
        """At the first bar the hedge's market trades after a closure, pay the carried bills (USD) before the
        bar's own costs, drawing on the hedge at this bar's close if need be (:meth:`raise_usd`); each keeps
        its ledger kind, noted "carried from <time>: CME closed". False, and nothing paid, when they cannot be
        paid: the miner is then insolvent at this bar, the carried bills joining the arrears
        (:meth:`_pay_what_it_can`)."""
        owed = sum(self._carried.values())
        if not self.raise_usd(owed, price, draw_on_hedge=True):
            return False
        note = f"{self._carried_since()}: {self._closed_reason()}"
        for kind, amount in self._carried.items():
            if amount > 0:
                self.broker.debit_usd(amount, kind, note=note)
        self._carried, self._carried_times = {}, []
        self.broker.set_liability("bills_carried", 0.0)
        self.broker.add_event(MarginEvent(
            time=now, kind="bill_carried_paid", instrument="fleet", venue=self.comminfo.venue.name, side="",
            size=0.0, price=price, equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0,
            margin_ratio=0.0, loss_usd=0.0, fee_usd=0.0, detail=f"paid {owed:,.2f} USD of bills {note}"))
        return True

    def _pay_pro_rata(self, bills: dict[str, float], cash: float, note: str,
                      owed: dict[str, float]) -> tuple[float, float]:
        """Pay ``bills`` (ledger kind -> USD) pro rata from ``cash`` (USD, at most all of them) and add what
        is left of each to ``owed`` (kind -> USD). Returns (USD paid, USD left owed). Cash under the broker's
        ``CASH_TOLERANCE_USD`` is rounding left by earlier payments, not money to share out: nothing is
        paid."""
        total = sum(bills.values())
        if total <= 0:
            return 0.0, 0.0
        share = min(1.0, cash / total) if cash >= CASH_TOLERANCE_USD else 0.0
        for kind, amount in bills.items():
            if amount * share > 0:
                self.broker.debit_usd(amount * share, kind, note=note)
            if amount > 0:
                owed[kind] = owed.get(kind, 0.0) + amount * (1.0 - share)
        return total * share, total * (1.0 - share)

    def bar_costs_usd(self, i: int) -> float:
        """USD the treasury step pays at bar ``i``: power, hosting and machine purchases (0 once
        insolvent)."""
        return 0.0 if self.insolvent else self._costs_usd[i] + self._capex_usd[i]

    def day_end_bar(self, i: int) -> int:
        """Index of the first bar that opens a day or more after bar ``i`` opens (the bar count if none)."""
        return int(np.searchsorted(self._bar_opens_ns, self._bar_opens_ns[i] + DAY_NS))

    def day_costs_usd(self, i: int) -> float:
        """USD of power, hosting and machine purchases scheduled over the day from bar ``i``'s open (the bars
        opening within it; one bar on daily bars): the treasury's reserve before it pledges coins to a lender,
        and what an insolvent miner must be able to pay, beside its arrears, to restart. An insolvent miner
        keeps the reserve too: it is what restarting needs."""
        end = self.day_end_bar(i)
        return sum(self._costs_usd[i:end]) + sum(self._capex_usd[i:end])

    def _pay(self, i: int) -> None:
        for amount, kind in ((self._power_usd[i], "power_cost"), (self._hosting_usd[i], "hosting_cost"),
                             (self._capex_usd[i], "hardware_purchase")):
            if amount > 0:
                self.broker.debit_usd(amount, kind)

    def _pay_what_it_can(self, i: int) -> None:
        """The insolvency bar: bills carried over a market closure (:meth:`_carry`) are paid first, pro rata
        from the cash raised, then the power and hosting the bar used, pro rata from what is left; the rest of
        both is owed (the arrears, the liability ``unpaid_bills``, until :meth:`_try_to_resume` pays it); a
        machine purchase due at the bar is not made while insolvent (the machines' value, book or market per
        ``hardware_value``, counts what was paid before the bar, a carried purchase included: its unpaid part
        is in the arrears)."""
        if "hardware" in self._hardware:
            self._hardware["hardware"][i:] = self._fleet_hardware_usd(i, paid_until=self._bar_opens_ns[i])
        cash = max(self.broker.get_cash(), 0.0)
        carried_unpaid = 0.0
        if self._carried:
            note = f"{self._carried_since()}: {self._closed_reason()}; part paid: insolvent"
            paid, carried_unpaid = self._pay_pro_rata(self._carried, cash, note, self._arrears)
            cash = max(cash - paid, 0.0)
            self._carried, self._carried_times = {}, []
            self.broker.set_liability("bills_carried", 0.0)
        _, unpaid = self._pay_pro_rata({"power_cost": self._power_usd[i],
                                        "hosting_cost": self._hosting_usd[i]},
                                       cash, "part paid: insolvent", self._arrears)
        self.broker.set_liability("unpaid_bills", carried_unpaid + unpaid)

    def _try_to_resume(self, i: int, now: datetime, price: float) -> None:
        """An insolvent miner restarts its machines at the first bar where the treasury (cash, spot and free
        futures coins sold at ``price``, and what closing the hedge frees; e.g. collateral a lender returned
        this bar) can pay the arrears, the purchases due while it was insolvent and a day's costs from this
        bar on (a day on every bar size). It pays the first two here; the bar then runs as any other. The
        machines bought late count from here on as if bought on their scheduled date (book value written off
        from it; at market value, scaled from its hashprice)."""
        k = self._insolvent_from
        arrears = sum(self._arrears.values())
        delayed = sum(self._capex_usd[k:i])
        day_costs = self.day_costs_usd(i)
        available = self.raisable_usd(price) + self.hedge_release_usd(price)
        if available < (arrears + delayed + day_costs) * (1 + 1e-9):
            return
        self.raise_usd(arrears + delayed, price, draw_on_hedge=True)
        for kind, amount in self._arrears.items():
            if amount > 0:
                self.broker.debit_usd(amount, kind, note="arrears")
        if delayed > 0:
            self.broker.debit_usd(delayed, "hardware_purchase", note="delayed by the insolvency")
        self.broker.set_liability("unpaid_bills", 0.0)
        self._arrears = {}
        self.insolvent = False
        if "hardware" in self._hardware:
            self._hardware["hardware"][i:] = self._fleet_hardware_usd(i)
            self.broker.set_asset("hardware", self._hardware["hardware"][i])  # the event's equity counts them
        self.broker.add_event(MarginEvent(
            time=now, kind="insolvency_cured", instrument="fleet", venue="", side="", size=0.0, price=price,
            equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0, margin_ratio=0.0, loss_usd=0.0,
            fee_usd=0.0,
            detail=f"paid {arrears:,.2f} USD of arrears and {delayed:,.2f} USD of delayed purchases; "
                                f"mining resumed after {self.bar_length * (i - k)}"))

    def raise_usd(self, usd: float, price: float, draw_on_hedge: bool = False) -> bool:
        """Make ``usd`` of USD cash available: spot USD and the futures wallet's free USD, then spot coins and
        free futures-wallet coins sold at ``price`` (USD per coin, spot close). With ``draw_on_hedge`` (costs
        and loan payments, not the hedge's own margin), if that is not enough, close as much of the hedge
        at its close as frees the rest (:meth:`draw_on_hedge`) and sell again."""
        if self._raise_from_treasury(usd, price):
            return True
        return draw_on_hedge and self.draw_on_hedge(usd, price) and self._raise_from_treasury(usd, price)

    def raisable_usd(self, price: float) -> float:
        """USD the treasury can raise without touching the hedge: cash plus spot and free futures-wallet coins
        sold at ``price`` less the spot fee."""
        coins = self.broker.free_balance(self.asset, "spot") + max(self.broker.free_balance(self.asset,
                                                                                            "futures"),
                                                                   0.0)
        return self.broker.get_cash() + coins * price * (1.0 - self.p.spot_fee)

    def hedge_release_usd(self, price: float) -> float:
        """USD that closing the whole hedge now would add to :meth:`raisable_usd`
        (:meth:`closing_release_usd`); 0 when the hedge's market did not trade during the bar (a venue's
        ``trading_hours``: CME on a Saturday's daily bar; :meth:`MarginBroker.market_open`): the treasury
        cannot draw on it then."""
        held = self.position_size() if self.comminfo is not None else 0.0
        if not held or not self.hedge_market_traded():
            return 0.0
        return self.closing_release_usd(price)

    def closing_release_usd(self, price: float) -> float:
        """USD that closing the whole hedge at its close would add to :meth:`raisable_usd` if its market
        traded: the broker's ``closing_release`` less the closing fee (and, for inverse contracts, less the
        coins that first fill a negative free futures-wallet coin balance, which :meth:`raisable_usd` counts
        as 0), coins valued at ``price`` (USD per coin) less the spot fee; 0 when flat or when closing would
        free nothing.
        :meth:`hedge_release_usd` is this while the market trades; a bill is carried over a closure
        (:meth:`_carry`) when this would pay it."""
        held = self.position_size() if self.comminfo is not None else 0.0
        if not held:
            return 0.0
        ci, close = self.comminfo, self.hedge_data.close[0]
        freed = self.broker.closing_release(self.hedge_data)
        if ci.is_inverse:
            return max(freed - ci.coin_fee(held, close) - self._coin_hole(),
                       0.0) * price * (1.0 - self.p.spot_fee)
        return max(freed - ci.getcommission(held, close), 0.0)

    def _coin_hole(self) -> float:
        """Coins by which the futures wallet's free coin balance is below zero (an inverse position's losses
        beyond the wallet's free coins): the first coins that closing an inverse hedge frees fill it."""
        return max(-self.broker.free_balance(self.asset, "futures"), 0.0)

    def draw_on_hedge(self, usd: float, price: float) -> bool:
        """Close the share of the hedge, at its close, that frees what :meth:`raisable_usd` lacks of ``usd``,
        as a treasury desk would before missing a payment; nothing when even the whole hedge would not free
        enough (the miner is insolvent either way, and the hedge is then bought back at the next re-size). The
        next re-size re-opens what the collateral allows. Each draw is counted in the run notes. True if it
        closed some."""
        short = usd - self.raisable_usd(price)
        whole = self.hedge_release_usd(price)
        if short <= 0 or whole <= 0 or short > whole:
            return False
        held = self.position_size()
        # the release is linear in the size closed, and an inverse hedge's first coins fill the coin hole
        hole = self._coin_hole() * price * (1.0 - self.p.spot_fee) if self.comminfo.is_inverse else 0.0
        units = abs(held) * (short + hole) / (whole + hole) * (1.0 + 1e-9)
        if self.comminfo.is_inverse or self.comminfo.qty(1.0) != 1.0:  # whole contracts: round up
            units = float(math.ceil(units - 1e-9))
        units = math.copysign(min(units, abs(held)), held)
        self.broker.close_now(self.hedge_data, units, reason="treasury")
        self._draws.append((self.broker.bar_time(self.data), units, held))
        if self.stop_order is not None:
            self._place_stop()  # the stop-loss covers what is left
        return True

    def _raise_from_treasury(self, usd: float, price: float) -> bool:
        short = usd - self.broker.get_cash()
        if short <= 1e-9:
            return True
        need = rules.coins_for_shortfall(usd, self.broker.get_cash(), price, self.p.spot_fee)
        spot = self.broker.free_balance(self.asset, "spot")
        if spot < need:
            free_futures = self.broker.free_balance(self.asset, "futures")
            move = min(need - spot, max(free_futures, 0.0))
            if move > 1e-12:
                self.broker.transfer(self.asset, move, "futures", "spot")
            spot = self.broker.free_balance(self.asset, "spot")
        if spot > 1e-12:
            self.broker.sell_coins(self.asset, min(need, spot), price, fee_rate=self.p.spot_fee)
        return self.broker.get_cash() + 1e-9 >= usd

    def _insolvency(self, now: datetime, price: float, costs: float) -> None:
        """Record the ``insolvency`` event: the treasury cannot pay the bar's ``costs`` (USD) and the bills
        carried so far; mining stops until :meth:`_try_to_resume`."""
        if self.insolvent:
            return
        self.insolvent = True
        self._insolvent_from = len(self.data) - 1
        carried = sum(self._carried.values())
        owed = (f"{costs + carried:,.2f} USD of costs ({carried:,.2f} USD of them {self._carried_since()}: "
                f"{self._closed_reason()})" if self._carried else f"{costs:,.2f} USD of costs")
        paid = ("the carried bills, then the bar's power and hosting," if self._carried
                else "the bar's power and hosting")
        self.broker.add_event(MarginEvent(
            time=now, kind="insolvency", instrument="fleet", venue="", side="", size=0.0, price=price,
            equity_usd=self.broker.getvalue(), maintenance_margin_usd=0.0, margin_ratio=0.0,
            loss_usd=0.0, fee_usd=0.0,
            detail=f"could not pay {owed} with {self.broker.get_cash():,.2f} USD cash and "
                   f"{self.broker.get_coins(self.asset):.8f} {self.asset} after sales; mining stopped until "
                   f"the arrears can be paid, {paid} paid pro rata and the rest owed"))

    def add_hardware(self, name: str, cost_usd: float, i: int) -> None:
        """Count machines bought for ``cost_usd`` (USD) at bar ``i``'s open in equity from that bar on, under
        the broker asset ``name``: their book value at each bar's end, written off straight-line over
        ``depreciation_years`` from the purchase (:func:`mining.fleet.straight_line_book_value`); with
        ``hardware_value='market'`` scaled by the trailing hashprice each bar sees / the one bar ``i`` sees
        (:func:`mining.fleet.hashprice_market_value`)."""
        ages = (self._bar_ends_ns[i:] - self._bar_opens_ns[i]) / DAY_NS
        book = straight_line_book_value(cost_usd, ages, self.p.depreciation_years * DAYS_PER_YEAR)
        if self._hashprice_seen is not None:
            book = hashprice_market_value(book, self._hashprice_seen[i:], self._hashprice_seen[i])
        self._hardware[name] = [0.0] * i + book.tolist()

    # --- loans ----------------------------------------------------------------------------------------
    def step_loans(self, now: datetime, price: float) -> None:
        """Service every loan (:attr:`loans`: the debt owed at the first bar, then those the policy drew), one
        after the other, at this bar: pay what each asks (an equipment loan's instalments, a coin loan's month
        of interest) and book its lender's steps; loan events go to the broker. A payment the treasury cannot
        raise on a bar during which the hedge's market does not trade, that closing the hedge would have paid,
        waits for the first bar the market trades (:meth:`carry_loan_payment`) and is paid there first, or
        missed there; any other is missed now."""
        for loan in self.loans:
            if isinstance(loan, EquipmentLoan):
                self._step_equipment_loan(loan, now, price)
            else:
                self._step_coin_loan(loan, now, price)

    def _step_coin_loan(self, loan: CoinLoan, now: datetime, price: float) -> None:
        """The lender's step at this bar's close (calls, liquidations: :meth:`CoinLoan.step`, watching the
        bar's low), the months of interest carried over a closure, this month's interest at the first bar of
        a new calendar month (USD, drawing on the hedge if need be; else carried or missed: it stays in the
        debt), then a top-up of an open call under ``on_margin_call='top_up_from_treasury'``
        (:meth:`_meet_loan_call`); the loan's liability is its debt."""
        step = loan.step(now, price, bar_low=self.data.low[0], bar_open=self.data.open[0],
                         # a call is known at the close: its deadline runs from there
                         bar_end=now + self.bar_length)
        self._book_coin_loan_step(step, price)
        if self.carried_loan_usd(loan) and (loan.closed or self.hedge_market_traded()):
            self._pay_carried_interest(loan, now, price)
        month = (now.year, now.month)
        last = self._interest_months.get(loan.instrument)
        if last is None:
            self._interest_months[loan.instrument] = month
        elif month != last and not loan.closed:
            self._interest_months[loan.instrument] = month
            interest = loan.accrued_interest_usd - self.carried_loan_usd(loan)  # what waits is due already
            if interest > 0 and self.raise_usd(interest, price, draw_on_hedge=True):
                self.broker.debit_usd(interest, "loan_interest", note=loan.instrument)
                self._book_coin_loan_step(loan.repay(now, interest, price), price)
            elif interest > 0 and not self.carry_loan_payment(
                    loan, interest, f"interest of {interest:,.2f} USD due {now:%Y-%m-%d %H:%M} UTC", now,
                    price):
                self.broker.add_event(loan.missed_interest(now, price, self.raisable_usd(price), interest))
        if self.p.on_margin_call == "top_up_from_treasury":
            self._meet_loan_call(loan, now, price)
        # a liquidation's shortfall stays owed after the loan closes (debt_usd is 0 once repaid in full)
        self.broker.set_liability(loan.instrument, loan.liability_usd)

    def _step_equipment_loan(self, loan: EquipmentLoan, now: datetime, price: float) -> None:
        """Pay the instalments due, oldest first (those carried over a closure first), from what
        :meth:`raise_usd` can deliver, then judge each one left unpaid (:meth:`_judge_unpaid_instalments`).
        While the hedge's market has not traded again (:meth:`hedge_market_traded`), those carried wait, and
        those falling due after them wait behind them; each carried one is booked on its own when paid (its
        ``carried from`` note and ``loan_payment_carried_paid`` event)."""
        # what raise_usd can deliver: USD cash, the spot and free futures coins sold at the close less the
        # spot fee, and what closing the hedge frees (less 1e-12 of it, so the sale's float rounding cannot
        # leave a booked instalment nanodollars short)
        available = (self.raisable_usd(price) + self.hedge_release_usd(price)) * (1.0 - 1e-12)
        carried = self.carried_loan_payments(loan)
        waits = bool(carried) and not self.hedge_market_traded()
        # the loan reports nothing itself: each instalment it cannot pay is judged below, on its own
        step = loan.step(now, 0.0 if waits else available, defer_missed=True)
        for event in step.events:
            self.broker.add_event(event)
        if step.paid_usd > 0:  # paid here and now, so an instalment the loan books as paid is paid
            self.raise_usd(step.paid_usd, price, draw_on_hedge=True)
            settled = [p for p in carried if p.instalment <= loan.instalments_paid]
            parts = [(p.usd, self.carried_loan_note(loan, p)) for p in settled]
            parts.append((step.paid_usd - sum(p.usd for p in settled), loan.instrument))
            for usd, note in parts:
                if usd > 0 and not self.broker.debit_usd(usd, "loan_payment", note=note):
                    raise RuntimeError(f"{now}: loan instalment of {step.paid_usd:.2f} USD booked as paid "
                                       f"but only {self.broker.get_cash():.2f} USD could be raised")
            for _ in settled:
                self.settle_carried_loan_payment(loan, now, price, paid=True)
        if step.deferred_usd > 0:
            self._judge_unpaid_instalments(loan, now, price, available - step.paid_usd, waits)
        self.broker.set_liability(loan.instrument, loan.liability_usd)

    def _judge_unpaid_instalments(self, loan: EquipmentLoan, now: datetime, price: float, cash: float,
                                  waits: bool) -> None:
        """Each instalment due and unpaid after the bar's step, oldest first, on its own: one carried waits
        while the market has not traded again (``waits``), else it could not be paid at the first bar the
        market trades and is missed there; one neither carried nor reported is carried
        (:meth:`carry_loan_payment`) if it can wait, else it is missed here. Those due after a missed one
        stay unpaid behind it (the loan is paid oldest first) and cannot wait: each is missed, and reported,
        on the bar it falls due. ``cash``: USD the treasury had left for them, for the ``missed_payment``
        events."""
        carried = {p.instalment for p in self.carried_loan_payments(loan)}
        behind_missed = False
        for instalment in loan.instalments_due(now):
            if instalment.number in carried:
                if waits:
                    continue
                self.settle_carried_loan_payment(loan, now, price, paid=False)  # the oldest still carried
                for event in loan.report_missed(now, cash, instalment.number):
                    self.broker.add_event(event)
                continue
            if not behind_missed and not instalment.reported and self.carry_loan_payment(
                    loan, instalment.payment_usd, instalment.what, now, price,
                    due=instalment.due.tz_localize(None).to_pydatetime(), instalment=instalment.number):
                continue
            for event in loan.report_missed(now, cash, instalment.number):  # [] if it was reported before
                self.broker.add_event(event)
            behind_missed = True

    def _pay_carried_interest(self, loan: CoinLoan, now: datetime, price: float) -> None:
        """A coin loan's months of interest carried over a closure of the hedge's market, at the first bar the
        market trades, oldest first, each on its own: paid first (drawing on the hedge at the close if need
        be), the interest accrued since staying for the next month; else a ``missed_payment`` here (it stays
        in the debt). When the lender has closed the loan meanwhile (a liquidation), the sale settled the debt
        that held it: a run note says so."""
        for payment in self.carried_loan_payments(loan):  # settled oldest first, as they are listed
            usd, since = payment.usd, payment.since
            if loan.closed:
                self.settle_carried_loan_payment(loan, now, price, paid=False)
                self.notes.append(f"{now:%Y-%m-%d %H:%M}: the {usd:,.2f} USD of interest carried from "
                                  f"{since:%Y-%m-%d %H:%M} UTC ({self._closed_reason()}) was in the debt "
                                  "the lender's liquidation sold collateral against; any shortfall stays "
                                  "owed with the loan.")
            elif self.raise_usd(usd, price, draw_on_hedge=True):
                self.broker.debit_usd(usd, "loan_interest", note=self.carried_loan_note(loan, payment))
                self.settle_carried_loan_payment(loan, now, price, paid=True)
                self._book_coin_loan_step(loan.repay(now, usd, price), price)
            else:
                self.settle_carried_loan_payment(loan, now, price, paid=False)
                self.broker.add_event(loan.missed_interest(now, price, self.raisable_usd(price), usd,
                                                           due=payment.due))

    def _meet_loan_call(self, loan: CoinLoan, now: datetime, price: float) -> None:
        """While ``loan``'s call is open, each bar, pledge the spot coins that bring the LTV back to the cure
        level, if the coins the treasury can spare cover all of it: the coins a day's power, hosting and
        purchases from this bar on need (what the USD cash cannot pay) stay in the treasury. A top-up that
        cannot cure the call is not made: the lender sells only the debt's worth of collateral at a
        liquidation, so pledging part saves no coin and only locks coins the bills need. Later bars try again
        with their production and price."""
        if loan.closed or loan.call_due is None:
            return
        need = loan.required_top_up_coin(price)
        if need <= 1e-12:
            return
        bills = self.day_costs_usd(len(self.data) - 1)
        reserve = rules.coins_for_shortfall(bills, self.broker.get_cash(), price, self.p.spot_fee)
        if self.broker.free_balance(self.asset, "spot") - reserve < need:
            return
        self.broker.transfer(self.asset, need, "spot", "collateral")
        self._book_coin_loan_step(loan.top_up(now, need, price), price)

    def _book_coin_loan_step(self, step, price: float) -> None:
        """Book a coin loan's step: its events, the collateral its lender sold (out of the ``collateral``
        wallet, at the sale's price) and the collateral it released (back to spot)."""
        for event in step.events:
            self.broker.add_event(event)
        if step.collateral_sold_coin > 0:
            sold_at = step.collateral_sale_usd / step.collateral_sold_coin
            self.broker.debit_coins(self.asset, step.collateral_sold_coin, "collateral_sale",
                                    note=f"lender sold at {sold_at:.2f}", wallet="collateral")
        if step.collateral_released_coin > 0:
            self.broker.transfer(self.asset, step.collateral_released_coin, "collateral", "spot")

    # --- hooks for subclasses ---------------------------------------------------------------------------

    def after_mining(self, now: datetime, price: float) -> None:
        """Called after the treasury step, before the hedge (financing uses it)."""

    def rebalance(self, now: datetime, price: float) -> None:
        """Set the futures position (subclasses). Called every ``rebalance_days``."""

    def rebalance_interval_days(self) -> float:
        """Days between calls to :meth:`rebalance` (policies with another name for it override this)."""
        return getattr(self.p, "rebalance_days", math.inf)

    def _rebalance_due(self, now: datetime) -> bool:
        if self.hedge_order is not None:
            return False
        if self._last_rebalance is None:
            return True
        elapsed = (now - self._last_rebalance).total_seconds()
        return elapsed >= self.rebalance_interval_days() * 86400.0 - 1.0

    # --- futures helpers --------------------------------------------------------------------------------
    def production_per_day(self) -> float:
        """Expected coins per day (net of pool fee) at the current bar, from published data; 0 once the miner
        is insolvent (mining has stopped, so there is no production left to hedge)."""
        if self.insolvent:
            return 0.0
        return float(self._production_per_day[len(self.data) - 1])

    def breakeven_price(self) -> float:
        """The fleet's cash break-even price (USD/coin) at the current bar; NaN when not mining."""
        return float(self._breakeven[len(self.data) - 1])

    def coins_to_size(self, coins: float, price: float) -> float:
        """Order size for a position of ``coins`` (signed): coins for linear contracts (in lots of the
        contract multiplier), whole contracts of ``face`` USD for inverse ones."""
        ci = self.comminfo
        if ci is None:
            raise ConfigError("this policy has no futures leg.")
        if ci.is_inverse:
            return float(math.trunc(coins * price / ci.p.face))
        units = coins / ci.qty(1.0)
        return self._round_size(units)

    def position_size(self) -> float:
        return self.getposition(self.hedge_data).size

    def set_futures_target(self, target_size: float, price: float) -> None:
        """Move the futures position to ``target_size`` (order units), funding the initial margin first."""
        current = self.position_size()
        delta = target_size - current
        if abs(delta) < 1e-12:
            return
        grows = abs(target_size) > abs(current) or (target_size * current < 0)
        if grows:
            target_size = self._fund_margin(current, target_size, price)
            delta = target_size - current
            if abs(delta) < 1e-12:
                return
        data = self.hedge_data
        self.hedge_order = self.buy(data=data, size=delta) if delta > 0 else self.sell(data=data, size=-delta)

    def _fund_margin(self, current: float, target: float, price: float) -> float:
        """Move collateral to the futures wallet for the position's growth; shrink the target to what
        the collateral allows (a miner does not borrow to hedge)."""
        ci = self.comminfo
        added = abs(target) - (abs(current) if target * current > 0 else 0.0)
        # what the broker checks at submission: initial margin plus the opening fee of the added size
        if ci.is_inverse:
            need = ci.posted_margin(added, price) + ci.coin_fee(added, price)
            have = self.broker.free_balance(self.asset, "futures")
            if have < need * CUT_CUSHION:  # move the cushion's worth of coins when the treasury has them
                self.buy_margin_coins(need * MARGIN_CUSHION - have)
                move = min(need * MARGIN_CUSHION - have, self.broker.free_balance(self.asset, "spot"))
                if move > 1e-12:
                    self.broker.transfer(self.asset, move, "spot", "futures")
                have = self.broker.free_balance(self.asset, "futures")
        else:
            need = ci.get_margin(price) * added + ci.getcommission(added, price)
            have = self.broker.free_balance("USD", "futures")
            if have < need * CUT_CUSHION:  # the treasury posts margin and cushion, selling coins if short
                self.raise_usd(need * MARGIN_CUSHION, self.data.close[0])
                move = min(need * MARGIN_CUSHION - have, self.broker.free_balance("USD", "spot"))
                if move > 1e-9:
                    self.broker.transfer("USD", move, "spot", "futures")
                have = self.broker.free_balance("USD", "futures")
        if have >= need * CUT_CUSHION or need <= 0:  # room for the re-check at the next open
            return target
        allowed = added * max(have, 0.0) / (need * CUT_CUSHION)  # room for the re-check at the next open
        sign = 1.0 if target > 0 else -1.0
        base = abs(current) if target * current > 0 else 0.0
        cut = self._round_size(sign * (base + allowed))
        self._cuts.append((self.broker.bar_time(self.data), target, cut))
        return cut

    def _round_size(self, size: float) -> float:
        if self.comminfo.whole_units:  # inverse and multi-coin contracts (CME) trade whole units
            return float(math.trunc(size))
        return size

    # --- notifications ----------------------------------------------------------------------------------
    def _notify(self, qorders=[], qtrades=[]) -> None:  # noqa: B006  (backtrader's own signature)
        """backtrader's notification step (before each ``next``), without its cash/value part when nothing
        listens to it.

        ``bt.Strategy._notify`` reads the broker's cash, value and fund figures on every bar, for
        ``notify_cashvalue``/``notify_fund`` of the strategy and its analyzers. minehedge's analyzers read the
        broker themselves, and reading the value here would make the MarginBroker value the account twice
        per bar (the strategy changes it before they record it). So unless this strategy or an analyzer
        overrides those hooks (see :func:`listens_to_cashvalue`), only the order and trade notifications
        are delivered, exactly as backtrader delivers them.
        """
        listened = self._cashvalue_listened
        if listened is None:
            listened = self._cashvalue_listened = (
                type(self).notify_cashvalue is not bt.Strategy.notify_cashvalue
                or type(self).notify_fund is not bt.Strategy.notify_fund
                or any(listens_to_cashvalue(a) for a in (*self.analyzers, *self._slave_analyzers)))
        if listened:
            super()._notify(qorders=qorders, qtrades=qtrades)
            return
        if self.cerebro.p.quicknotify:
            orders, trades = qorders, qtrades
        else:
            orders, trades = self._orderspending, self._tradespending
        analyzers = (*self.analyzers, *self._slave_analyzers) if orders or trades else ()
        for order in orders:
            if order.exectype != order.Historical or order.histnotify:
                self.notify_order(order)
            for analyzer in analyzers:
                analyzer._notify_order(order)
        for trade in trades:
            self.notify_trade(trade)
            for analyzer in analyzers:
                analyzer._notify_trade(trade)

    def notify_order(self, order) -> None:
        # backtrader notifies clones of orders: match them by ref, not identity
        if order.status in (order.Submitted, order.Accepted):
            return
        if self.hedge_order is not None and order.ref == self.hedge_order.ref:
            self.hedge_order = None
            if order.status in (order.Margin, order.Rejected):
                self._last_rebalance = None  # the fill price moved past the collateral: re-size next bar
                self._record_refusal(order)
            elif order.status == order.Completed:
                self._hedge_fills += 1
            if order.status == order.Completed and getattr(self.p, "stop_loss", None):
                self._place_stop()
        if self.stop_order is not None and order.ref == self.stop_order.ref:
            self._stops_fired += order.status == order.Completed
            self.stop_order = None
        if order.info.get("reason") == "liquidation" and self.stop_order is not None:
            self.cancel(self.stop_order)
            self.stop_order = None

    def _record_refusal(self, order) -> None:
        """Keep a refused futures order for the run notes (see :meth:`stop`)."""
        kind = order.info.get("refusal") or order.getstatusname().lower()
        reason = order.info.get("refused") or f"order {order.getstatusname()}"
        size = order.created.size
        unit = self._order_unit()
        symbol = self.comminfo.spec.symbol if self.comminfo is not None else order.data._name
        side = "buy" if size > 0 else "sell"
        self._refusals.append((self.broker.bar_time(self.data), kind,
                               f"{side} {abs(size):,.6g} {unit} of {symbol}: {reason}"))
        if order.info.get("bracket"):
            self._bracket_refusals.append(order.info["bracket"])

    def leverage_warning(self) -> str:
        """"" unless the venue's brackets refused hedge orders for their leverage: then what the user must
        see beside the run notes (a run asked for 125x may have run unhedged): how many hedge orders were
        refused, the highest leverage the brackets allow at the largest notional refused, and what to set."""
        if not self._bracket_refusals:
            return ""
        notional, unit, allowed = max(self._bracket_refusals, key=lambda refusal: refusal[0])
        refused, total = len(self._bracket_refusals), len(self._bracket_refusals) + self._hedge_fills
        outcome = ", so the run is unhedged" if not self._hedge_fills else ""
        return (f"leverage={self.comminfo.p.leverage:g}x is more than {self.comminfo.venue.name}'s brackets "
                f"allow for this hedge: {refused} of {total} hedge orders were refused{outcome}; at a "
                f"notional of {notional:,.0f} {unit} (the largest refused) the bracket allows at most "
                f"{allowed:g}x. Set leverage={allowed:g} or less to hedge.")

    def _order_unit(self) -> str:
        """What a futures order's size counts: contracts (inverse, and multi-coin contracts such as CME's) or
        coins."""
        ci = self.comminfo
        if ci is not None and (ci.is_inverse or ci.qty(1.0) != 1.0):
            return "contracts"
        return self.asset

    def stop(self) -> None:
        """Summarise the treasury's draws on the hedge, futures targets cut to the collateral, and refused
        futures orders, in the run notes: how many of each kind, and the first; and say so when bills carried
        over a closure of the hedge's market (:meth:`_carry`) are still owed at the end (USD; equity counts
        them as the liability ``bills_carried``), or loan payments carried over it
        (:meth:`carry_loan_payment`) are still due."""
        self._deliver_last_notifications()
        unit = self._order_unit()
        tallies = [("time(s) the treasury closed part of the hedge at the close to pay costs or loans",
                    [(when, f"{size_text(abs(closed))} of {size_text(abs(held))} {unit} closed")
                     for when, closed, held in self._draws]),
                   (f"futures target(s) cut to the collateral the treasury could post (margin, fee and a "
                    f"{CUT_CUSHION - 1:.0%} cushion)",
                    [(when, f"position {size_text(wanted)} {unit} wanted, {size_text(placed)} placed")
                     for when, wanted, placed
                     in self._cuts]),
                   (f"purchase(s) of {self.asset} with spot USD for the hedge's margin (buy_coin_margin), "
                    f"{sum(c for _, c, _ in self._margin_buys):,.6g} {self.asset} for "
                    f"{sum(u for _, _, u in self._margin_buys):,.2f} USD in all",
                    [(when, f"{size_text(coins)} {self.asset} for {usd:,.2f} USD")
                     for when, coins, usd in self._margin_buys])]
        by_kind: dict[str, list[tuple[datetime, str]]] = {}
        for when, kind, text in self._refusals:
            by_kind.setdefault(kind, []).append((when, text))
        tallies += [(f"futures order(s) refused by the broker ({kind})", records)
                    for kind, records in by_kind.items()]
        for what, records in tallies:
            if records:
                when, detail = records[0]
                self.notes.append(f"{len(records)} {what}; the first at {when:%Y-%m-%d %H:%M} UTC: {detail}.")
        if self._carried:
            self.notes.append(f"{sum(self._carried.values()):,.2f} USD of bills {self._carried_since()} "
                              f"({self._closed_reason()}) were still owed when the run ended: equity counts "
                              "them as the liability bills_carried.")
        for instrument, waiting in self._loans_carried.items():
            for payment in waiting:
                since = f"{payment.since:%Y-%m-%d %H:%M} UTC ({self._closed_reason()})"
                self.notes.append(f"{instrument}: the {payment.what}, carried from {since}, was still due "
                                  "when the run ended.")
        self._note_tight_stop()
        self._note_idle_fleet()

    def _note_idle_fleet(self) -> None:
        """A run note when the fleet mined nothing over the run (:func:`mining.fleet.idle_fleet_note` says
        why: curtailed every day, or no machine installed), which would otherwise show only as zeros in the
        summary."""
        if any(coins > 0.0 for coins in self._coins_gross):
            return
        text = idle_fleet_note(self.fleet.simulate(self._daily_lines(self.data.p.dataname)))
        if text:
            self.notes.append(text)

    def _note_tight_stop(self) -> None:
        """A run note, also a warning (:attr:`run_warnings`), when ``stop_loss`` is closer to the entry than
        the median move against the position from a bar's open over the hedge's bars
        (:func:`rules.median_adverse_move`): such a stop fires on an ordinary bar, which a stop distance
        typed wrong (basis points for a fraction, a typo) would do. A warning, not an error: a tight stop may
        be meant, and the bars are known only once the run has them."""
        stop_loss = getattr(self.p, "stop_loss", None)
        if not stop_loss or not self._stop_sides:
            return
        frame = self.hedge_data.p.dataname
        for long in sorted(self._stop_sides, reverse=True):
            median = rules.median_adverse_move(frame["open"].to_numpy(), frame["high"].to_numpy(),
                                               frame["low"].to_numpy(), long)
            if stop_loss < median:
                text = (f"stop_loss={stop_loss:g} is closer to the entry than the median move against a "
                        f"{'long' if long else 'short'} from a bar's open over the run's {len(frame):,} bars "
                        f"({median:.4g}, {median:.2%}): a stop that close fires on most bars; this run's "
                        f"stop orders fired {self._stops_fired} time(s). stop_loss is a fraction of the "
                        "entry price: 0.05 = 5 %.")
                self.notes.append(text)
                self.run_warnings.append(text)

    def _deliver_last_notifications(self) -> None:
        """Hand this strategy and its analyzers the order notifications still in the broker's queue.

        cerebro delivers a bar's notifications after the broker's step of the next bar, so an order the broker
        fills at once inside the strategy's step (:meth:`MarginBroker.close_now`: a treasury draw at the
        close) on the last bar would reach no one: not ``notify_order``, not the fills list. Delivered here as
        cerebro would have, orders and trades only (no extra cash/value notification); other strategies'
        notifications stay queued."""
        queue = getattr(self.broker, "notifs", None)
        if not queue:
            return
        first = self.cerebro.runningstrats[0] if self.cerebro.runningstrats else self
        mine = [order for order in queue if (order.owner or first) is self]
        if not mine:
            return
        kept = [order for order in queue if (order.owner or first) is not self]
        queue.clear()
        queue.extend(kept)
        for order in mine:
            self._addnotification(order)
        if self._orderspending:  # a non-empty qorders makes _notify skip the cash/value notification
            self._notify(qorders=list(self._orderspending), qtrades=list(self._tradespending))
        self.clear()

    def _place_stop(self) -> None:
        """A real backtrader stop order ``stop_loss`` (fraction) away from the average entry price."""
        if self.stop_order is not None:
            self.cancel(self.stop_order)
            self.stop_order = None
        position = self.getposition(self.hedge_data)
        if not position.size:
            return
        self._stop_sides.add(position.size > 0)
        if position.size > 0:
            self.stop_order = self.sell(data=self.hedge_data, size=position.size, exectype=bt.Order.Stop,
                                        price=position.price * (1.0 - self.p.stop_loss))
        else:
            self.stop_order = self.buy(data=self.hedge_data, size=-position.size, exectype=bt.Order.Stop,
                                       price=position.price * (1.0 + self.p.stop_loss))
        self.stop_order.addinfo(reason="stop_loss")

    def notify_margin_call(self, event: MarginEvent) -> None:
        """Apply ``on_margin_call`` before the next bar: add margin, halve the position, or nothing."""
        if self.comminfo is None or not self.position_size():
            return
        response = self.p.on_margin_call
        if response == "ignore":
            return
        if response == "reduce_position":
            if self.hedge_order is None:
                self.set_futures_target(self._round_size(self.position_size() / 2.0), event.price)
            return
        self.top_up(event)

    def _check_margin_buffer(self, now: datetime) -> None:
        """The desk's own margin call (``margin_buffer``), at the close after the bar's rebalance: when the
        hedge's liquidation price (:meth:`MarginBroker.get_liquidation_price`) is nearer than
        ``margin_buffer`` of its close (:func:`strategies.rules.liquidation_distance`), a ``desk_margin_call``
        event opens a call and ``on_margin_call`` answers it: ``top_up_from_treasury`` brings the margin back
        to notional / leverage at the close (:meth:`restore_leverage`, as a roll does; retried at each close
        while the call stays open, since the treasury may lack the cash at first); ``reduce_position`` halves
        the position once per call; ``ignore`` only records it. The call closes at the first close outside
        the buffer.

        Why: the venue's margin call comes at its warning level of the margin ratio, which a position reaches
        a fraction of a percent before its liquidation price, so on daily bars it is liquidated within a bar
        without a call at any close; a desk watching its hedge acts well before."""
        size = self.position_size() if self.comminfo is not None else 0.0
        if not size:
            self._desk_call_open = False
            return
        close = self.hedge_data.close[0]
        liquidation = self.broker.get_liquidation_price(self.hedge_data)
        distance = rules.liquidation_distance(close, liquidation, size)
        if distance >= self.p.margin_buffer:
            self._desk_call_open = False
            return
        response = self.p.on_margin_call
        if not self._desk_call_open:
            self._desk_call_open = True
            ratio, maintenance, balance = self.broker.get_position_margin(self.hedge_data)
            unit = close if self.comminfo.is_inverse else 1.0  # margin currency -> USD
            answer = {"top_up_from_treasury": "margin topped up to notional / leverage",
                      "reduce_position": "position halved",
                      "ignore": "no action (on_margin_call=ignore)"}[response]
            self.broker.add_event(MarginEvent(
                time=now, kind="desk_margin_call", instrument=self.comminfo.spec.symbol,
                venue=self.comminfo.venue.name, side="long" if size > 0 else "short",
                size=float(self.comminfo.qty(size, close)), price=float(close),
                equity_usd=float(balance * unit), maintenance_margin_usd=float(maintenance * unit),
                margin_ratio=float(ratio), loss_usd=0.0, fee_usd=0.0,
                detail=f"liquidation price {liquidation:,.2f} within {distance:.2%} of the close "
                       f"{close:,.2f} (margin_buffer {self.p.margin_buffer:g}): {answer}"))
            if response == "reduce_position" and self.hedge_order is None:
                self.set_futures_target(self._round_size(size / 2.0), close)
        if response == "top_up_from_treasury":
            self.restore_leverage(close)

    def top_up(self, event: MarginEvent) -> None:
        """Add margin from the treasury so the position's margin ratio falls to ``top_up_target``."""
        ratio, maintenance, _ = self.broker.get_position_margin(self.hedge_data)
        self.add_collateral(rules.top_up_amount(maintenance, ratio, self.p.top_up_target))

    def restore_leverage(self, price: float) -> None:
        """At a roll, bring the position's margin balance back to notional / leverage at ``price`` (what
        closing and re-opening it at the chosen leverage would post). Never withdraws margin."""
        if self.comminfo is None or not self.position_size():
            return
        _, _, balance = self.broker.get_position_margin(self.hedge_data)
        ci = self.comminfo
        size = abs(self.position_size())
        notional = (inverse_notional_coin(size, ci.p.face, price) if ci.is_inverse  # coin
                    else size * ci.qty(1.0) * price)  # USD: coins x price
        self.add_collateral(initial_margin(notional, self.p.leverage) - balance)

    def add_collateral(self, amount: float) -> None:
        """Move ``amount`` (USD for linear, coins for inverse contracts) from the treasury to the futures
        position: spot USD first, selling spot coins at the spot close if USD is short (linear; a dated
        contract's price carries its basis and is not what coins sell for), or spot coins (inverse)."""
        if amount <= 1e-9:
            return
        ci = self.comminfo
        if ci.is_inverse:
            self.buy_margin_coins(amount)
            move = min(amount, self.broker.free_balance(self.asset, "spot"))
            if move > 1e-12:
                self.broker.transfer(self.asset, move, "spot", "futures")
                if ci.p.margin_mode == "isolated":
                    self.broker.add_margin(self.hedge_data, move)
            return
        if not self.raise_usd(amount, self.data.close[0]):
            amount = self.broker.get_cash()
        move = min(amount, self.broker.free_balance("USD", "spot"))
        if move > 1e-9:
            self.broker.transfer("USD", move, "spot", "futures")
        futures_cash = self.broker.free_balance("USD", "futures")
        if ci.p.margin_mode == "isolated" and futures_cash > 1e-9:
            self.broker.add_margin(self.hedge_data, min(amount, futures_cash))

    def buy_margin_coins(self, coins: float) -> None:
        """With ``buy_coin_margin``, buy with spot USD, at the spot close less ``spot_fee``, the coins that
        bring the spot wallet's free coins up to ``coins`` (coin: margin an inverse contract needs), as far
        as the spot USD goes. A miner's USD then backs a coin-margined hedge as it backs a linear one; the
        coins bought are a long exposure of the margin's size, as any coin margin is."""
        if not self.p.buy_coin_margin:
            return
        short = coins - self.broker.free_balance(self.asset, "spot")
        if short <= 1e-12:
            return
        price = self.data.close[0]
        usd = min(rules.usd_to_buy_coins(short, price, self.p.spot_fee),
                  self.broker.free_balance("USD", "spot"))
        if usd > 1e-9:
            coins = self.broker.buy_coins(self.asset, usd, price, self.p.spot_fee)
            self._margin_buys.append((self.broker.bar_time(self.data), coins, usd))

    def notify_liquidation(self, event: MarginEvent) -> None:
        """A liquidation closed the position; the next rebalance may open a new one."""
        self._last_rebalance = None
