"""The hedge policies users compare. Each is a small :class:`~strategies.base.MinerStrategy` subclass whose
docstring states its rule; parameters (with units) are its ``specs``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from minehedge.config import ParamSpec
from minehedge.errors import ConfigError
from mining.fleet import Fleet
from mining.hardware import resolve_spec
from mining.loans import CoinLoan, EquipmentLoan, ltv_from_collateral_ratio
from strategies import rules
from strategies.base import (
    BASE_SPECS,
    MARGIN_CALL_RESPONSES,
    MinerStrategy,
    check_coin_loan_ratios,
    params_from_specs,
)

#: The longest look-back (days) a policy may ask for; load_market loads this much price history before the
#: first bar, so a window is full from the first bar on.
MAX_HISTORY_DAYS = 365.0


def merge_specs(base: Sequence[ParamSpec], add: Iterable[ParamSpec] = (),
                drop: Iterable[str] = ()) -> tuple[ParamSpec, ...]:
    """``base`` without the names in ``drop``, with ``add`` replacing same-named specs or appended."""
    added = {spec.name: spec for spec in add}
    dropped = set(drop)
    merged = [added.pop(spec.name, spec) for spec in base if spec.name not in dropped]
    return (*merged, *added.values())


_NO_FUTURES = ("venue", "symbol", "contract", "annual_basis", "expiry_cycle", "leverage", "margin_mode",
               "buy_coin_margin", "top_up_target", "margin_buffer", "rebalance_days", "stop_loss")
#: ``on_margin_call`` of a policy without futures: it answers a coin loan's calls alone (the debt owed at the
#: first bar, financed_expansion's loan).
LOAN_CALL_RESPONSE = ParamSpec(
    "on_margin_call", str, "top_up_from_treasury", "",
    "response to a coin loan's call: top_up_from_treasury pledges spare spot coins; reduce_position and "
    "ignore leave it to its deadline", choices=MARGIN_CALL_RESPONSES)


class Unhedged(MinerStrategy):
    """``unhedged``: keep every mined coin (treasury ``hodl``: coins are sold only when USD cash cannot pay
    the bar's costs); no futures."""

    specs = merge_specs(BASE_SPECS, add=(LOAN_CALL_RESPONSE,), drop=_NO_FUTURES)
    params = params_from_specs(specs)


class SellDaily(MinerStrategy):
    """``sell_daily``: sell each UTC day's production at the close of the day's last bar (spot, less
    ``spot_fee``); the natural benchmark for a full hedge. No futures."""

    specs = merge_specs(BASE_SPECS, add=(LOAN_CALL_RESPONSE,),
                        drop=(*_NO_FUTURES, "treasury", "sell_fraction"))
    params = params_from_specs(specs)

    def __init__(self) -> None:
        self.p.treasury = "hodl"  # the daily sale below replaces the per-bar treasury rule
        super().__init__()
        index = self.mining_schedule.index
        closes = index + self.bar_length  # a bar's close; the day's last bar closes on or after next midnight
        self._last_of_day = np.asarray(closes.normalize() > index.normalize())
        self._unsold = 0.0

    def _credit_mining(self, i: int, now: datetime, price: float) -> float:
        produced = super()._credit_mining(i, now, price)
        self._unsold += produced
        return produced

    def after_mining(self, now: datetime, price: float) -> None:
        i = len(self.data) - 1
        if not self._last_of_day[i] or self._unsold <= 0:
            return
        spot = self.broker.free_balance(self.asset, "spot")
        sale = min(self._unsold, spot)
        if sale > 0:
            self.broker.sell_coins(self.asset, sale, price, fee_rate=self.p.spot_fee)
        self._unsold = 0.0


HEDGE_RATIO = ParamSpec("hedge_ratio", float, 0.5, "fraction", "share of the hedged amount sold short",
                        minimum=0.0, maximum=2.0)


class StaticHedge(MinerStrategy):
    """``static_hedge``: hold a short futures position of ``hedge_ratio`` x the expected production over the
    next ``horizon_days`` (coins, from the published hashprice and the fleet), re-sized every ``roll_days``,
    at ``leverage`` on the chosen venue."""

    specs = merge_specs(BASE_SPECS, add=(
        HEDGE_RATIO,
        ParamSpec("horizon_days", float, 30.0, "days", "production horizon hedged", minimum=0.0),
        ParamSpec("roll_days", float, 30.0, "days", "how often the hedge is re-sized", minimum=0.0),
    ), drop=("rebalance_days",))
    params = params_from_specs(specs)
    uses_futures = True
    restores_leverage_on_roll = True

    def rebalance_interval_days(self) -> float:
        return self.p.roll_days

    def target_coins(self, now: datetime, price: float) -> float:
        return -rules.static_hedge_coins(self.p.hedge_ratio, self.production_per_day(), self.p.horizon_days)

    def rebalance(self, now: datetime, price: float) -> None:
        self.set_futures_target(self.coins_to_size(self.target_coins(now, price), price), price)


class CollateralShort(MinerStrategy):
    """``collateral_short``: short inverse (coin-margined) contracts worth ``hedge_ratio`` x the coin
    treasury (its coins plus the short's unrealised coin PnL:
    :func:`strategies.rules.collateral_short_coins`), with the mined coins moved to the futures wallet as
    collateral; re-sized every ``rebalance_days``. At 1x and ratio 1 the short's coin PnL offsets the
    treasury's price moves, locking its USD value (up to funding and fees), and it cannot be liquidated: its
    liquidation price is where the coins backing it would be worth nothing more than the short's loss, which a
    falling price never reaches and a rising one reaches only if fees and funding ate the margin."""

    specs = merge_specs(BASE_SPECS, add=(
        ParamSpec("hedge_ratio", float, 1.0, "fraction", "share of the coin treasury hedged", minimum=0.0,
                  maximum=1.0),
        ParamSpec("venue", str, "binance_coinm", "", "inverse futures venue", choices=("binance_coinm",
                                                                                       "bitmex",
                                                                                      "generic")),
        ParamSpec("leverage", float, 1.0, "x", "futures leverage", minimum=1.0, maximum=125.0),
        ParamSpec("margin_mode", str, "cross", "", "futures margin mode", choices=("isolated", "cross")),
    ))
    params = params_from_specs(specs)
    uses_futures = True
    restores_leverage_on_roll = True
    required_contract_type = "inverse"

    def rebalance(self, now: datetime, price: float) -> None:
        coins = rules.collateral_short_coins(self.p.hedge_ratio, self.broker.get_coins(self.asset),
                                             self.broker.get_unrealized_pnl_coin(self.hedge_data))
        self.set_futures_target(self.coins_to_size(-coins, price), price)


class DynamicHedge(StaticHedge):
    """``dynamic_hedge``: like ``static_hedge``, but the ratio follows
    :func:`strategies.rules.dynamic_hedge_ratio` from state known at the bar: realised volatility over
    ``vol_window_days`` of past closes, and the profit margin of price over the fleet's cash break-even;
    bounded by [min_ratio, max_ratio]. Re-sized every ``rebalance_days``."""

    specs = merge_specs(StaticHedge.specs, add=(
        ParamSpec("min_ratio", float, 0.0, "fraction", "hedge ratio in calm, profitable times", minimum=0.0,
                  maximum=2.0),
        ParamSpec("max_ratio", float, 1.0, "fraction", "hedge ratio under full stress", minimum=0.0,
                  maximum=2.0),
        ParamSpec("vol_window_days", float, 30.0, "days", "realised-volatility window", minimum=2.0,
                  maximum=MAX_HISTORY_DAYS),
        ParamSpec("vol_low", float, 0.4, "fraction/yr", "annualised volatility with no stress", minimum=0.0),
        ParamSpec("vol_high", float, 1.0, "fraction/yr", "annualised volatility of full stress", minimum=0.0),
        ParamSpec("margin_low", float, 0.1, "fraction", "price/break-even - 1 of full stress"),
        ParamSpec("margin_high", float, 0.5, "fraction", "price/break-even - 1 with no stress"),
        ParamSpec("rebalance_days", float, 7.0, "days", "how often the ratio is re-evaluated", minimum=0.0),
    ), drop=("hedge_ratio", "roll_days"))
    params = params_from_specs(specs)

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """min_ratio <= max_ratio, vol_low < vol_high and margin_low < margin_high."""
        super().check_params(values)
        if values["min_ratio"] > values["max_ratio"]:
            raise ConfigError(f"min_ratio={values['min_ratio']} must be <= max_ratio={values['max_ratio']}.")
        for low, high, unit in (("vol_low", "vol_high", "annualised volatility, fraction/yr"),
                                ("margin_low", "margin_high", "price/break-even - 1, fraction")):
            if values[low] >= values[high]:
                raise ConfigError(f"dynamic_hedge needs {low} < {high}; got {low}={values[low]:g} and "
                                  f"{high}={values[high]:g} ({unit}).")

    def __init__(self) -> None:
        super().__init__()
        index = self.mining_schedule.index
        seconds = pd.Series(index).diff().median().total_seconds() if len(index) > 1 else 86400.0
        self._bars_per_day = 86400.0 / seconds
        self.ratio_history: list[tuple[datetime, float]] = []

    def rebalance_interval_days(self) -> float:
        return self.p.rebalance_days

    def past_closes(self, count: int) -> np.ndarray:
        """The last ``count`` spot closes up to this bar (USD per coin, oldest first), reaching into the
        feed's ``history_close`` (the bars before the run's first) when the run is younger; fewer when neither
        has them."""
        size = min(count, len(self.data))
        closes = np.asarray(self.data.close.get(size=size), dtype=float)
        history = getattr(self.data.p, "history_close", ()) or ()
        if size < count and len(history):
            closes = np.concatenate((np.asarray(history[-(count - size):], dtype=float), closes))
        return closes

    def current_ratio(self) -> float:
        """The hedge ratio at this bar, from the spot closes and the spot price over the fleet's break-even
        (spot, not the hedge contract, whose price holds a basis for dated contracts)."""
        window = int(round(self.p.vol_window_days * self._bars_per_day)) + 1
        volatility = rules.realised_volatility(self.past_closes(window), 365.0 * self._bars_per_day)
        breakeven = self.breakeven_price()
        spot = self.data.close[0]
        margin = (spot / breakeven - 1.0 if breakeven and math.isfinite(breakeven) and breakeven > 0
                  else math.nan)
        return rules.dynamic_hedge_ratio(volatility, margin, min_ratio=self.p.min_ratio,
                                         max_ratio=self.p.max_ratio,
                                         vol_low=self.p.vol_low, vol_high=self.p.vol_high,
                                         margin_low=self.p.margin_low, margin_high=self.p.margin_high)

    def target_coins(self, now: datetime, price: float) -> float:
        ratio = self.current_ratio()
        self.ratio_history.append((now, ratio))
        return -rules.static_hedge_coins(ratio, self.production_per_day(), self.p.horizon_days)


_SPECULATION = (
    ParamSpec("leverage", float, 3.0, "x", "futures leverage", minimum=1.0, maximum=125.0),
    ParamSpec("capital_usd", float, 500_000.0, "USD", "margin committed to the trade", minimum=0.0),
    ParamSpec("entry_date", date, None, "date", "decide the entry at this day's close (none: first bar)",
              nullable=True),
)


class LeveragedLong(MinerStrategy):
    """``leveraged_long``: at the close of ``entry_date`` (or the first bar) buy futures worth
    ``capital_usd`` x ``leverage`` (the order fills at the next bar's open), with an optional stop-loss
    ``stop_loss`` below the entry; hold until stopped or liquidated. The mining stream continues beside it.
    One entry only: if the broker refuses it (the venue's bracket for that notional does not allow the
    leverage, or the margin is short), the run holds no position and its run notes say why."""

    specs = merge_specs(BASE_SPECS, add=_SPECULATION, drop=("rebalance_days",))
    params = params_from_specs(specs)
    uses_futures = True
    direction = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._entered = False
        self.note_event_date("entry_date", self.p.entry_date,
                             "the entry was decided at the first bar's close instead, as with no entry_date",
                             "no position was opened")

    def rebalance_interval_days(self) -> float:
        return math.inf

    def _rebalance_due(self, now: datetime) -> bool:
        if self._entered or self.hedge_order is not None:
            return False
        # at the close of entry_date: on the first bar that closes at or after the next midnight (the day's
        # last bar on 1h and 4h bars; the day's own bar on daily ones)
        return self.p.entry_date is None or (now + self.bar_length).date() > self.p.entry_date

    def rebalance(self, now: datetime, price: float) -> None:
        self._entered = True
        coins = self.direction * self.p.capital_usd * self.p.leverage / price
        self.set_futures_target(self.coins_to_size(coins, price), price)


class LeveragedShort(LeveragedLong):
    """``leveraged_short``: as ``leveraged_long``, short (the stop-loss sits ``stop_loss`` above the
    entry)."""

    direction = -1.0


class FinancedExpansion(MinerStrategy):
    """``financed_expansion``: on ``loan_date`` borrow ``principal_usd`` and buy ``expansion_model`` machines
    at ``unit_price_usd`` each (they hash from that day), then service the loan; no futures.

    ``loan_type='coin'``: a coin-collateralised loan; the collateral is pledged from the treasury at
    ``collateral_ratio`` x the principal (1.43 in the public filing of issue 4), a loan call comes when the
    collateral falls below ``call_ratio`` x the debt (1.33), and the lender sells the collateral at
    ``liquidation_ltv`` or when the call is not met within ``call_deadline_days``. With
    ``on_margin_call='top_up_from_treasury'`` an open call is met from the spot coins a day's bills leave,
    all of it or nothing, each bar until the deadline (:meth:`_meet_loan_call`). Accrued
    interest is paid monthly in USD. If the treasury cannot pledge the full collateral, the principal is
    cut to what it can back (reported in the event log's detail and the run's assumptions).
    ``loan_type='equipment'``: an amortising USD loan over ``term_months``; a missed instalment is an event.
    """

    specs = merge_specs(BASE_SPECS, add=(
        ParamSpec("loan_type", str, "coin", "", "kind of loan", choices=("coin", "equipment")),
        ParamSpec("loan_date", date, date(2021, 12, 31), "date", "day the loan is drawn and machines bought"),
        ParamSpec("principal_usd", float, 20_000_000.0, "USD", "loan principal", minimum=0.0),
        ParamSpec("annual_rate", float, 0.1075, "fraction/yr", "loan interest rate", minimum=0.0,
                  maximum=1.0),
        ParamSpec("term_months", int, 36, "months", "equipment-loan term", minimum=1),
        ParamSpec("collateral_ratio", float, 1.43, "x", "coin loan: collateral value / principal at drawdown",
                  minimum=1.0),
        ParamSpec("call_ratio", float, 1.33, "x", "coin loan: collateral / debt that triggers a loan call",
                  minimum=1.0),
        ParamSpec("liquidation_ltv", float, 0.85, "fraction", "coin loan: LTV at which collateral is sold",
                  minimum=0.0, maximum=1.0),
        ParamSpec("call_deadline_days", float, 3.0, "days", "coin loan: time to meet a loan call",
                  minimum=0.0),
        ParamSpec("expansion_model", str, "S19XP", "", "machine bought with the loan"),
        ParamSpec("unit_price_usd", float, 6_000.0, "USD", "price per machine", minimum=1.0),
        LOAN_CALL_RESPONSE,
    ), drop=_NO_FUTURES)
    params = params_from_specs(specs)

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """The machine bought mines the run's coin; a coin loan's call LTV (1 / call_ratio) below its
        liquidation LTV, and drawn above its call level."""
        super().check_params(values)
        asset, machine = str(values["asset"]).upper(), resolve_spec(values["expansion_model"])
        if machine.asset != asset:
            example = "180MH/1000W" if asset == "ETH" else "S19XP"
            raise ConfigError(f"expansion_model={values['expansion_model']!r} mines {machine.asset}, not "
                              f"{asset}; give a machine for {asset}: --set expansion_model={example} (a "
                              "catalog model, or a hash rate/power such as 110TH/3250W or 500MH/1200W).")
        if values["loan_type"] == "coin":
            check_coin_loan_ratios(("call_ratio", values["call_ratio"]),
                                   ("liquidation_ltv", values["liquidation_ltv"]),
                                   ("collateral_ratio", values["collateral_ratio"]),
                                   "a loan drawn at or below its call level is called at once")

    def __init__(self) -> None:
        super().__init__()
        self._loan_day = pd.Timestamp(self.p.loan_date)
        # Per-bar flows of ONE expansion machine; scaled by the machines actually bought at drawdown.
        unit = Fleet.from_shorthand(f"{self.p.expansion_model}:1@{self._loan_day.date()}",
                                    asset=self.asset, uptime=self.p.uptime,
                                    power_price_usd_per_kwh=self.p.power_usd_per_kwh,
                                    hosting_usd_per_kwh=self.p.hosting_usd_per_kwh, pool_fee=self.p.pool_fee,
                                    curtail=self.p.curtail)
        base_fleet = self.fleet
        self.fleet = unit
        unit_bars = self._bar_schedule(self.data.p.dataname)
        self.fleet = base_fleet
        self._unit = {c: unit_bars[c].to_numpy(dtype=float)
                      for c in ("coins_gross", "pool_fee_coin", "power_cost_usd", "hosting_usd",
                                "production_coin_per_day")}
        self.units_bought = 0
        self.loan: CoinLoan | EquipmentLoan | None = None
        self._loan_decided = False
        # a loan_date before the first bar is noted when the loan is decided there (_early_loan_outcome)
        self.note_event_date("loan_date", self.p.loan_date, None,
                             "no loan was taken and no machines were bought")

    def _add_expansion_flows(self, i: int) -> None:
        """Add the bought machines' per-bar coins and costs to the base fleet's, from bar ``i`` on, and their
        expected production (coins per day, net of the pool fee) to what :meth:`production_per_day` reads,
        so a production hedge (``financed_hedge``) sizes on the whole fleet."""
        n = self.units_bought
        for name, column in (("_coins_gross", "coins_gross"), ("_pool_fee_coin", "pool_fee_coin"),
                             ("_power_usd", "power_cost_usd"), ("_hosting_usd", "hosting_usd"),
                             ("_production_per_day", "production_coin_per_day")):
            values = getattr(self, name)
            values[i:] = (np.asarray(values[i:]) + n * self._unit[column][i:]).tolist()
        self._costs_usd[i:] = (np.asarray(self._power_usd[i:]) + np.asarray(self._hosting_usd[i:])).tolist()

    def next(self) -> None:
        now = self.broker.bar_time(self.data)
        if not self._loan_decided and now >= self._loan_day.to_pydatetime().replace(tzinfo=None):
            self._draw(now, self.data.close[0])
            self.note_event_date("loan_date", self.p.loan_date, self._early_loan_outcome(), "")
        super().next()

    def _early_loan_outcome(self) -> str:
        """What happened at the first bar to a loan dated before it (the loan_date warning's end): drawn and
        machines bought, drawn without a machine, or not drawn."""
        if self.loan is None:
            return ("the loan was decided at the first bar instead, where there were no coins to pledge: the "
                    "coin loan was not drawn and no machines were bought")
        if not self.units_bought:
            return (f"the loan was drawn at the first bar instead, and bought no machines (its principal, "
                    f"{self.loan.principal_usd:,.0f} USD, is less than unit_price_usd="
                    f"{self.p.unit_price_usd:,.0f} USD)")
        return "the loan was drawn and the machines bought at the first bar instead"

    def _draw(self, now: datetime, price: float) -> None:
        self._loan_decided = True
        principal = self.p.principal_usd
        if self.p.loan_type == "coin":
            need = principal * self.p.collateral_ratio / price
            # the coins a day's bills need (with the machines about to be bought) stay in the treasury
            i = len(self.data) - 1
            end = self.day_end_bar(i)
            bills = self.day_costs_usd(i) + int(principal // self.p.unit_price_usd) * float(
                self._unit["power_cost_usd"][i:end].sum() + self._unit["hosting_usd"][i:end].sum())
            reserve = rules.coins_for_shortfall(bills, self.broker.get_cash(), price, self.p.spot_fee)
            spot = max(self.broker.free_balance(self.asset, "spot") - reserve, 0.0)
            pledge = min(need, spot)
            if pledge <= 1e-12:
                self.notes.append(f"{now:%Y-%m-%d}: no coins to pledge; the coin loan was not drawn.")
                self._loan_decided = True
                return
            if pledge < need:
                principal = pledge * price / self.p.collateral_ratio
                self.notes.append(f"{now:%Y-%m-%d}: treasury pledged {pledge:.4f} {self.asset}; principal "
                                  f"cut to {principal:,.0f} USD.")
            self.broker.transfer(self.asset, pledge, "spot", "collateral")
            self.loan = CoinLoan(principal, pledge, self.p.annual_rate,
                                 margin_call_ltv=ltv_from_collateral_ratio(self.p.call_ratio),
                                 liquidation_ltv=self.p.liquidation_ltv,
                                 call_deadline=pd.Timedelta(days=self.p.call_deadline_days),
                                 start=now, asset=self.asset, lender="coin lender")
        else:
            self.loan = EquipmentLoan(principal, self.p.annual_rate, self.p.term_months, now,
                                      lender="equipment lender")
        self.add_loan(self.loan)
        self.broker.credit_usd(principal, "loan_draw", note=self.loan.instrument)
        self.broker.set_liability(self.loan.instrument, principal)
        self.units_bought = int(principal // self.p.unit_price_usd)
        cost = self.units_bought * self.p.unit_price_usd
        self.broker.debit_usd(cost, "hardware_purchase",
                              note=f"{self.units_bought} x {self.p.expansion_model}")
        if cost > 0:
            self.add_hardware("hardware:expansion", cost, len(self.data) - 1)
            self._add_expansion_flows(len(self.data) - 1)


class FinancedHedge(FinancedExpansion, StaticHedge):
    """``financed_hedge``: ``financed_expansion``'s loan and purchase (on ``loan_date`` borrow
    ``principal_usd``, coin-collateralised or an equipment loan, and buy ``expansion_model`` machines) with
    ``static_hedge``'s production short: ``hedge_ratio`` x the whole fleet's expected production over the next
    ``horizon_days``, the machines bought included from the purchase bar on (the short is re-sized at that
    bar, and every ``roll_days`` from there), at ``leverage``. ``on_margin_call`` answers the hedge's margin
    calls and the coin loan's calls alike: ``top_up_from_treasury`` adds margin to the hedge and pledges
    spare spot coins to the lender; ``reduce_position`` halves the hedge and leaves a loan call to its
    deadline; ``ignore`` answers neither.

    One method resolution order: FinancedHedge, FinancedExpansion, StaticHedge, MinerStrategy. So
    :meth:`FinancedExpansion.next` draws the loan, then MinerStrategy's bar runs (loans, treasury, hedge);
    ``check_params`` checks the loan's terms and the hedge's venue and leverage. The coins pledged to the
    lender sit in the ``collateral`` wallet, apart from the spot coins the treasury sells and the hedge's
    ``futures`` wallet: neither the hedge's margin nor the bills can spend them, and equity counts each coin
    once. Loan payments and bills draw on the hedge when the treasury is short, as in every policy.
    """

    specs = merge_specs(StaticHedge.specs, add=(
        *(spec for spec in FinancedExpansion.specs if spec.name not in {s.name for s in BASE_SPECS}),
        ParamSpec("on_margin_call", str, "top_up_from_treasury", "",
                  "response to a hedge margin call and to a coin-loan call: top_up_from_treasury adds "
                  "margin and pledges spare spot coins; reduce_position halves the hedge, the loan call "
                  "runs to its deadline; ignore answers neither", choices=MARGIN_CALL_RESPONSES),
    ))
    params = params_from_specs(specs)
    uses_futures = True

    def _draw(self, now: datetime, price: float) -> None:
        super()._draw(now, price)
        if self.units_bought:
            self._last_rebalance = None  # re-size at this bar's hedge step, on the fleet with its machines


POLICIES: dict[str, type[MinerStrategy]] = {
    "unhedged": Unhedged,
    "sell_daily": SellDaily,
    "static_hedge": StaticHedge,
    "collateral_short": CollateralShort,
    "dynamic_hedge": DynamicHedge,
    "leveraged_long": LeveragedLong,
    "leveraged_short": LeveragedShort,
    "financed_expansion": FinancedExpansion,
    "financed_hedge": FinancedHedge,
}
