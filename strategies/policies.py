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
from strategies.base import BASE_SPECS, MARGIN_CALL_RESPONSES, MinerStrategy, params_from_specs

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


_NO_FUTURES = ("venue", "contract", "leverage", "margin_mode", "buy_coin_margin", "on_margin_call",
               "top_up_target", "margin_buffer", "rebalance_days", "stop_loss")


class Unhedged(MinerStrategy):
    """``unhedged``: keep every mined coin (treasury ``hodl``: coins are sold only when USD cash cannot pay
    the bar's costs); no futures."""

    specs = merge_specs(BASE_SPECS, drop=_NO_FUTURES)
    params = params_from_specs(specs)


class SellDaily(MinerStrategy):
    """``sell_daily``: sell each UTC day's production at the close of the day's last bar (spot, less
    ``spot_fee``); the natural benchmark for a full hedge. No futures."""

    specs = merge_specs(BASE_SPECS, drop=(*_NO_FUTURES, "treasury", "sell_fraction"))
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
    ), drop=tuple(n for n in _NO_FUTURES if n != "on_margin_call"))
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
        if values["loan_type"] != "coin":
            return
        if 1.0 / values["call_ratio"] >= values["liquidation_ltv"]:
            raise ConfigError(f"liquidation_ltv={values['liquidation_ltv']} must exceed the call LTV "
                              f"1/call_ratio={1.0 / values['call_ratio']:.4f}.")
        if values["collateral_ratio"] <= values["call_ratio"]:
            raise ConfigError(f"collateral_ratio={values['collateral_ratio']} must exceed call_ratio="
                              f"{values['call_ratio']}: a loan drawn at or below its call "
                              "level is called at once.")

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
        self._last_interest_month: tuple[int, int] | None = None
        self.note_event_date("loan_date", self.p.loan_date,
                             "the loan was drawn and the machines bought at the first bar instead",
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
        super().next()

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
        self.broker.credit_usd(principal, "loan_draw", note=self.loan.instrument)
        self.broker.set_liability(self.loan.instrument, principal)
        self.units_bought = int(principal // self.p.unit_price_usd)
        cost = self.units_bought * self.p.unit_price_usd
        self.broker.debit_usd(cost, "hardware_purchase",
                              note=f"{self.units_bought} x {self.p.expansion_model}")
        if cost > 0:
            self.add_hardware("hardware:expansion", cost, len(self.data) - 1)
            self._add_expansion_flows(len(self.data) - 1)

    def step_loans(self, now: datetime, price: float) -> None:
        """Pay what the loan asks at this bar (an equipment loan's instalments, a coin loan's month of
        interest) and book the lender's steps. A payment the treasury cannot raise on a bar during which the
        hedge's market does not trade, that closing the hedge would have paid, waits for the first bar the
        market trades (:meth:`carry_loan_payment`) and is paid there first, or missed there; any other is
        missed now."""
        loan = self.loan
        if loan is None:
            return
        if isinstance(loan, EquipmentLoan):
            self._step_equipment_loan(loan, now, price)
            return
        step = loan.step(now, price, bar_low=self.data.low[0], bar_open=self.data.open[0],
                         # a call is known at the close: its deadline runs from there
                         bar_end=now + self.bar_length)
        self._book_coin_loan_step(step, price)
        if self.carried_loan_usd(loan) and (loan.closed or self.hedge_market_traded()):
            self._pay_carried_interest(loan, now, price)
        month = (now.year, now.month)
        if self._last_interest_month is None:
            self._last_interest_month = month
        elif month != self._last_interest_month and not loan.closed:
            self._last_interest_month = month
            interest = loan.accrued_interest_usd - self.carried_loan_usd(loan)  # what waits is due already
            if interest > 0 and self.raise_usd(interest, price, draw_on_hedge=True):
                self.broker.debit_usd(interest, "loan_interest", note=loan.instrument)
                self._book_coin_loan_step(loan.repay(now, interest, price), price)
            elif interest > 0 and not self.carry_loan_payment(
                    loan, interest, f"interest of {interest:,.2f} USD due {now:%Y-%m-%d %H:%M} UTC", now,
                    price):
                self.broker.add_event(loan.missed_interest(now, price, self.raisable_usd(price), interest))
        if self.p.on_margin_call == "top_up_from_treasury":
            self._meet_loan_call(now, price)
        # a liquidation's shortfall stays owed after the loan closes (debt_usd is 0 once repaid in full)
        self.broker.set_liability(loan.instrument, loan.debt_usd)

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
        self.broker.set_liability(loan.instrument, loan.balance_usd if not loan.paid_off else 0.0)

    def _judge_unpaid_instalments(self, loan: EquipmentLoan, now: datetime, price: float, cash: float,
                                  waits: bool) -> None:
        """Each instalment due and unpaid after the bar's step, oldest first, on its own: one carried waits
        while the market has not traded again (``waits``), else it could not be paid at the first bar the
        market trades and is missed there; one neither carried nor reported is carried
        (:meth:`carry_loan_payment`) if it can wait, else it is missed here, and those due after it stay
        unpaid behind it (as behind any missed one: the loan is paid oldest first). ``cash``: USD the
        treasury had left for them, for the ``missed_payment`` events."""
        carried = {p.instalment for p in self.carried_loan_payments(loan)}
        for instalment in loan.instalments_due(now):
            if instalment.number in carried:
                if waits:
                    continue
                self.settle_carried_loan_payment(loan, now, price, paid=False)  # the oldest still carried
                for event in loan.report_missed(now, cash, instalment.number):
                    self.broker.add_event(event)
                continue
            if not instalment.reported and self.carry_loan_payment(
                    loan, instalment.payment_usd, instalment.what, now, price,
                    due=instalment.due.tz_localize(None).to_pydatetime(), instalment=instalment.number):
                continue
            for event in loan.report_missed(now, cash, instalment.number):  # [] if it was reported before
                self.broker.add_event(event)
            return

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

    def _meet_loan_call(self, now: datetime, price: float) -> None:
        """While a loan call is open, each bar, pledge the spot coins that bring the LTV back to the cure
        level, if the coins the treasury can spare cover all of it: the coins a day's power, hosting and
        purchases from this bar on need (what the USD cash cannot pay) stay in the treasury. A top-up that
        cannot cure the call is not made: the lender sells only the debt's worth of collateral at a
        liquidation, so pledging part saves no coin and only locks coins the bills need. Later bars try again
        with their production and price."""
        loan = self.loan
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
        for event in step.events:
            self.broker.add_event(event)
        if step.collateral_sold_coin > 0:
            sold_at = step.collateral_sale_usd / step.collateral_sold_coin
            self.broker.debit_coins(self.asset, step.collateral_sold_coin, "collateral_sale",
                                    note=f"lender sold at {sold_at:.2f}", wallet="collateral")
        if step.collateral_released_coin > 0:
            self.broker.transfer(self.asset, step.collateral_released_coin, "collateral", "spot")


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
