"""Hardware financing: amortising equipment loans and coin-collateralised loans, as state machines.

Both are stepped by the caller (the backtrader strategy, once per bar) with the bar's time and what it
needs (USD cash available, coin price); each step returns the cash flows and the
:class:`brokers.events.MarginEvent` records it caused (kinds ``missed_payment``, ``loan_call``,
``loan_call_met``, ``loan_liquidation``), so loan events go through the same log as futures margin calls.
Money in USD, collateral in coins, rates are annual fractions (0.1075 = 10.75%), LTV = debt / collateral
value.

Equipment loan (standard annuity): payment = P x r / (1 - (1 + r)^-n), r = annual rate / 12, n = months;
each instalment pays the month's interest (balance x r) first, the rest reduces the balance.

A loan the borrower already owes when the caller starts (``existing=True``: debt drawn before ``start``) is
drawn from the outset: its steps report no draw and add no cash; an equipment loan's first instalment is due
a month after ``start``, a coin loan accrues interest from ``start`` and its lender watches the price from the
first step's bar on.

Coin-collateralised loan: debt = principal + accrued interest (simple, actual/365 on the principal);
LTV = debt / (collateral coins x price). LTV >= margin-call LTV opens a call: top up (or repay) to bring LTV
back to ``cure_ltv`` (default the initial LTV) before ``call_deadline``; a call still open at its deadline
sells collateral at the price then (the open of the bar that starts at or after it) to repay the debt and
releases the rest. The lender watches the price
continuously, as lenders' terms allow: a bar whose low reaches the liquidation LTV sells at that price (at
the open when the bar opens beyond it), as a venue liquidates futures at the bar's worst price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from brokers.events import MarginEvent
from brokers.formulas import liquidation_fill_price
from minehedge.errors import ConfigError, check_positive

DAYS_PER_YEAR_ACT365: float = 365.0
# Time to cure a loan call when the terms do not say (an assumption; lenders state 1-5 business days).
DEFAULT_CALL_DEADLINE = pd.Timedelta(days=3)


def _naive_utc(time) -> datetime:
    """A naive UTC datetime (the MarginEvent convention) from a Timestamp/datetime, aware or naive."""
    ts = pd.Timestamp(time)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _utc(time) -> pd.Timestamp:
    ts = pd.Timestamp(time)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def annuity_payment(principal_usd: float, annual_rate: float, term_months: int) -> float:
    """Level monthly payment (USD) that repays ``principal_usd`` over ``term_months`` at ``annual_rate``/12
    per month: P r / (1 - (1 + r)^-n); P / n when the rate is 0. Below a monthly rate of 1e-6, 1 + r keeps
    too few of r's digits (at 1e-300 none: a division by zero), so 1 - (1 + r)^-n is taken as
    -expm1(-n log1p(r)), which tends to n r, and the payment to P / n."""
    r = annual_rate / 12.0
    if r == 0:
        return principal_usd / term_months
    if r < 1e-6:
        return principal_usd * r / -math.expm1(-term_months * math.log1p(r))
    return principal_usd * r / (1.0 - (1.0 + r) ** -term_months)


def amortisation_schedule(principal_usd: float, annual_rate: float, term_months: int, start) -> pd.DataFrame:
    """Monthly schedule: index ``number`` 1..n; columns due (UTC, ``start`` + k months), payment_usd,
    interest_usd, principal_usd, balance_usd (after the payment). The last payment clears the balance
    exactly (it absorbs floating-point residue), so principal_usd sums to the principal."""
    payment = annuity_payment(principal_usd, annual_rate, term_months)
    r = annual_rate / 12.0
    start_ts = _utc(start)
    rows = []
    balance = principal_usd
    for k in range(1, term_months + 1):
        interest = balance * r
        repaid = balance if k == term_months else payment - interest
        balance = balance - repaid
        rows.append((start_ts + pd.DateOffset(months=k), interest + repaid, interest, repaid, balance))
    frame = pd.DataFrame(rows, columns=["due", "payment_usd", "interest_usd", "principal_usd", "balance_usd"])
    frame.index = pd.RangeIndex(1, term_months + 1, name="number")
    return frame


@dataclass
class LoanStep:
    """What one step did. paid_usd: USD the borrower paid (interest + principal, >= 0); interest_usd: the
    interest part; drawn_usd: USD received; collateral_sold_coin / collateral_sale_usd: collateral sold by
    the lender; collateral_released_coin: collateral returned to the borrower; deferred_usd: USD of
    instalments due and unpaid whose ``missed_payment`` the step did not report (``EquipmentLoan.step`` with
    ``defer_missed``); events: MarginEvent list."""

    paid_usd: float = 0.0
    interest_usd: float = 0.0
    drawn_usd: float = 0.0
    collateral_sold_coin: float = 0.0
    collateral_sale_usd: float = 0.0
    collateral_released_coin: float = 0.0
    deferred_usd: float = 0.0
    events: list[MarginEvent] = field(default_factory=list)


class Instalment(NamedTuple):
    """One instalment of an :class:`EquipmentLoan` due and unpaid: its ``number`` (1-based), ``payment_usd``
    (USD), ``due`` (UTC), ``what`` it is for people (``"instalment 3/36 of 1,010.00 USD due 2021-03-06"``),
    and whether its ``missed_payment`` was ``reported``."""

    number: int
    payment_usd: float
    due: pd.Timestamp
    what: str
    reported: bool


class EquipmentLoan:
    """An amortising USD loan (e.g. to buy machines), stepped with ``step(time, cash_available_usd)``.

    Each step pays every instalment due by ``time`` (oldest first) while ``cash_available_usd`` covers it
    in full; an instalment that cannot be paid when due raises one ``missed_payment`` event and stays in
    arrears, retried at every later step (no penalty interest modelled). A caller that lets an instalment wait
    (a lender's next business day) steps with ``defer_missed``, reads the instalments due and unpaid with
    :meth:`instalments_due` and reports one that cannot wait with :meth:`report_missed`; until reported it is
    not missed.
    """

    def __init__(self, principal_usd: float, annual_rate: float, term_months: int, start, *,
                 name: str = "equipment_loan", lender: str = "", existing: bool = False) -> None:
        self.principal_usd = check_positive("principal_usd", principal_usd, unit="USD")
        self.annual_rate = check_positive("annual_rate", annual_rate, allow_zero=True,
                                          unit="fraction per year")
        if isinstance(term_months, bool) or not isinstance(term_months, (int, np.integer)) or term_months < 1:
            raise ConfigError(f"term_months={term_months!r} must be a whole number of months >= 1.")
        self.term_months = int(term_months)
        self.name, self.lender = name, lender
        self.schedule = amortisation_schedule(self.principal_usd, self.annual_rate, self.term_months, start)
        self._due_ns = pd.DatetimeIndex(self.schedule["due"]).as_unit("ns").asi8
        self._next = 0  # first unpaid instalment
        self._missed_reported: set[int] = set()
        #: ``existing``: owed before ``start`` (no draw, no cash); the schedule still runs from ``start``.
        self.existing = bool(existing)
        self.drawn = self.existing
        self.start = _utc(start)

    @property
    def instrument(self) -> str:
        return f"loan:{self.name}"

    @property
    def balance_usd(self) -> float:
        """Outstanding principal (USD) after the instalments paid so far."""
        return (self.principal_usd if self._next == 0
                else float(self.schedule["balance_usd"].iloc[self._next - 1]))

    @property
    def paid_off(self) -> bool:
        return self._next >= self.term_months

    @property
    def liability_usd(self) -> float:
        """What the borrower's books owe (USD): the outstanding principal, 0 once paid off."""
        return self.balance_usd if not self.paid_off else 0.0

    @property
    def initial_principal_usd(self) -> float:
        """USD owed at ``start`` (drawn there, or owed from before: ``existing``)."""
        return self.principal_usd

    @property
    def interest_paid_usd(self) -> float:
        """USD of interest in the instalments paid so far (the schedule's ``interest_usd`` of each)."""
        return float(self.schedule["interest_usd"].iloc[:self._next].sum())

    @property
    def principal_paid_usd(self) -> float:
        """USD of principal repaid by the instalments paid so far: principal - balance."""
        return self.principal_usd - self.balance_usd

    @property
    def instalments_paid(self) -> int:
        """How many instalments are paid (they are paid oldest first: numbers 1 to this)."""
        return self._next

    def arrears_usd(self, time) -> float:
        """USD of instalments due by ``time`` and not paid."""
        due = int(np.searchsorted(self._due_ns, _ts_ns(time), side="right"))
        return float(self.schedule["payment_usd"].iloc[self._next:due].sum()) if due > self._next else 0.0

    def step(self, time, cash_available_usd: float, *, defer_missed: bool = False) -> LoanStep:
        """Draw the principal on the first step at/after the start; pay what is due by ``time`` (oldest first)
        while ``cash_available_usd`` (USD) covers each instalment in full. With ``defer_missed`` an instalment
        it cannot pay and has not yet reported is not reported now: it stays due, ``deferred_usd`` says how
        much is due and unpaid (the caller lets it wait, e.g. for a market that is closed, and reports it with
        :meth:`report_missed` if it cannot), and a later step pays it or reports it missed. Without it, each
        instalment due and unpaid is reported (a ``missed_payment`` event) once, at the first step that finds
        it unpaid, also those behind an older one already reported."""
        result = LoanStep()
        now = _ts_ns(time)
        if not self.drawn and now >= _ts_ns(self.start):
            self.drawn = True
            result.drawn_usd = self.principal_usd
            cash_available_usd += self.principal_usd
        due = int(np.searchsorted(self._due_ns, now, side="right"))
        while self._next < due:
            row = self.schedule.iloc[self._next]
            if cash_available_usd + 1e-9 < row["payment_usd"]:
                unreported = [k for k in range(self._next, due) if k not in self._missed_reported]
                if defer_missed and unreported:
                    result.deferred_usd = float(self.schedule["payment_usd"].iloc[self._next:due].sum())
                else:  # every instalment due and unpaid is missed, each reported once
                    for k in unreported:
                        result.events.extend(self.report_missed(time, cash_available_usd, k + 1))
                break
            cash_available_usd -= row["payment_usd"]
            result.paid_usd += float(row["payment_usd"])
            result.interest_usd += float(row["interest_usd"])
            self._next += 1
        return result

    def report_missed(self, time, cash_available_usd: float, number: int | None = None) -> list[MarginEvent]:
        """The ``missed_payment`` event of instalment ``number`` (1-based; default: the first unpaid), unpaid
        at ``time`` (``cash_available_usd``: USD the borrower had for it), once per instalment: [] when it was
        reported before, is paid, or is not due by ``time``."""
        k = self._next if number is None else number - 1
        if (not self._next <= k < self.term_months or k in self._missed_reported
                or self._due_ns[k] > _ts_ns(time)):
            return []
        self._missed_reported.add(k)
        return [MarginEvent(
            time=_naive_utc(time), kind="missed_payment", instrument=self.instrument,
            venue=self.lender, side="", size=self.balance_usd, price=0.0, equity_usd=0.0,
            maintenance_margin_usd=0.0, margin_ratio=0.0, loss_usd=0.0, fee_usd=0.0,
            detail=f"{self._what(k + 1, k + 1)} unpaid; cash available {cash_available_usd:.2f} USD",
        )]

    def instalments_due(self, time) -> list[Instalment]:
        """The instalments due by ``time`` and unpaid, oldest first, each with its own identity."""
        due = int(np.searchsorted(self._due_ns, _ts_ns(time), side="right"))
        return [Instalment(k + 1, float(self.schedule["payment_usd"].iloc[k]), self.schedule["due"].iloc[k],
                           self._what(k + 1, k + 1), k in self._missed_reported)
                for k in range(self._next, due)]

    def unpaid_instalments(self, time) -> str:
        """The instalments due by ``time`` and unpaid, for people: ``"instalment 3/36 of 1,010.00 USD due
        2021-03-06"`` (or ``"instalments 3-4/36 of 2,020.00 USD due 2021-03-06 to
        2021-04-06"``); "" if none."""
        due = int(np.searchsorted(self._due_ns, _ts_ns(time), side="right"))
        return self._what(self._next + 1, due) if due > self._next else ""

    def _what(self, first: int, last: int) -> str:
        """Instalments ``first`` to ``last`` (1-based, inclusive), for people: the one text of an instalment
        in every note and event (:meth:`unpaid_instalments`, :meth:`instalments_due`,
        :meth:`report_missed`)."""
        rows = self.schedule.iloc[first - 1:last]
        usd, start, end = float(rows["payment_usd"].sum()), rows["due"].iloc[0], rows["due"].iloc[-1]
        start, end = start.date(), end.date()
        if first == last:
            return f"instalment {first}/{self.term_months} of {usd:,.2f} USD due {start}"
        return f"instalments {first}-{last}/{self.term_months} of {usd:,.2f} USD due {start} to {end}"


def ltv_from_collateral_ratio(collateral_ratio: float) -> float:
    """LTV (fraction) from collateral value / loan (e.g. 1.43 -> 0.6993)."""
    return 1.0 / check_positive("collateral_ratio", collateral_ratio)


class CoinLoan:
    """A USD loan against coin collateral, stepped with ``step(time, price)`` (price: USD per coin).

    principal_usd: USD lent; collateral_coin: coins pledged; annual_rate: simple interest on the principal,
    actual/365, accrued at each step into ``accrued_interest_usd`` (pay it with :meth:`repay`);
    margin_call_ltv: LTV at which a call opens; liquidation_ltv: LTV at which collateral is sold;
    call_deadline: time allowed to cure a call; cure_ltv: LTV a call must get back to (default: the LTV at
    the first step, i.e. the initial LTV, or the call LTV if that is lower); liquidation_fee_rate: fraction
    of the collateral sold charged by the lender; start: when the loan is drawn (first step at/after it).

    A liquidation whose sale does not cover the debt leaves the shortfall owed: ``debt_usd`` keeps it after
    the loan is closed (no further interest accrues), and the borrower's books must keep it as a liability.

    ``existing``: the loan was drawn before ``start`` (which it then needs) and ``principal_usd`` is owed
    there with no interest accrued: it counts as drawn through the first step's bar (the lender watches its
    low there), accrues from ``start`` and reports no draw. Its cure level is ``cure_ltv``, else the call LTV
    (no drawdown LTV is seen).
    """

    def __init__(self, principal_usd: float, collateral_coin: float, annual_rate: float, *,
                 margin_call_ltv: float, liquidation_ltv: float, call_deadline=DEFAULT_CALL_DEADLINE,
                 cure_ltv: float | None = None, liquidation_fee_rate: float = 0.0, start=None,
                 name: str = "coin_loan", lender: str = "", asset: str = "BTC",
                 existing: bool = False) -> None:
        self.principal_usd = check_positive("principal_usd", principal_usd, unit="USD")
        self.collateral_coin = check_positive("collateral_coin", collateral_coin, unit="coins")
        self.annual_rate = check_positive("annual_rate", annual_rate, allow_zero=True,
                                          unit="fraction per year")
        if not 0.0 < margin_call_ltv < liquidation_ltv:
            raise ConfigError(f"margin_call_ltv={margin_call_ltv!r} must be > 0 and below "
                              f"liquidation_ltv={liquidation_ltv!r} (fractions, e.g. 0.752 < 0.85).")
        self.margin_call_ltv, self.liquidation_ltv = float(margin_call_ltv), float(liquidation_ltv)
        if cure_ltv is not None and not 0.0 < cure_ltv <= margin_call_ltv:
            raise ConfigError(f"cure_ltv={cure_ltv!r} must be in (0, margin_call_ltv={margin_call_ltv}].")
        self.cure_ltv = cure_ltv
        self.call_deadline = pd.Timedelta(call_deadline)
        if self.call_deadline < pd.Timedelta(0):
            raise ConfigError(f"call_deadline={call_deadline!r} must be >= 0.")
        self.liquidation_fee_rate = check_positive("liquidation_fee_rate", liquidation_fee_rate,
                                                   allow_zero=True)
        self.start = None if start is None else pd.Timestamp(start)
        self.name, self.lender, self.asset = name, lender, asset
        self.initial_principal_usd = self.principal_usd  # USD owed when drawn (or at ``start``, existing)
        self.accrued_interest_usd = 0.0
        #: USD the borrower paid (:meth:`repay`): interest, and principal; and the debt the lender's sale of
        #: collateral repaid (:meth:`_liquidate`).
        self.interest_paid_usd = self.principal_paid_usd = self.collateral_repaid_usd = 0.0
        self.initial_ltv: float | None = None
        self.call_due: pd.Timestamp | None = None
        self.closed = False
        self.existing = bool(existing)
        if self.existing and self.start is None:
            raise ConfigError("CoinLoan(existing=True) needs start: the time from which the debt is owed.")
        self.drawn = self.existing
        self._last_ns: int | None = _ts_ns(self.start) if self.existing else None

    @property
    def instrument(self) -> str:
        return f"loan:{self.name}"

    @property
    def debt_usd(self) -> float:
        """Principal + accrued interest (USD)."""
        return self.principal_usd + self.accrued_interest_usd

    @property
    def liability_usd(self) -> float:
        """What the borrower's books owe (USD): :attr:`debt_usd`, a liquidation's shortfall included."""
        return self.debt_usd

    def ltv(self, price: float) -> float:
        """debt / (collateral x price), a fraction."""
        value = self.collateral_coin * price
        return float("inf") if value <= 0 else self.debt_usd / value

    def required_top_up_coin(self, price: float) -> float:
        """Coins to add now to bring the LTV down to the cure level that meets a call (0 if already there)."""
        return max(0.0, self.debt_usd / (self._cure_level() * price) - self.collateral_coin)

    def _event(self, time, kind: str, price: float, detail: str, loss: float = 0.0, fee: float = 0.0,
               ltv: float | None = None) -> MarginEvent:
        return MarginEvent(
            time=_naive_utc(time), kind=kind, instrument=self.instrument, venue=self.lender, side="",
            size=self.debt_usd, price=float(price), equity_usd=self.collateral_coin * price - self.debt_usd,
            maintenance_margin_usd=0.0, margin_ratio=self.ltv(price) if ltv is None else ltv,
            loss_usd=loss, fee_usd=fee, detail=detail,
        )

    def missed_interest(self, time, price: float, cash_available_usd: float,
                        interest_usd: float | None = None, due=None) -> MarginEvent:
        """The ``missed_payment`` event of a month's interest the borrower could not pay: it stays in the debt
        (no penalty interest modelled), so the LTV rises. ``interest_usd`` (USD; default: all the interest
        accrued) and ``due`` (when it fell due, if not at ``time``): a payment that waited for a closed market
        and is missed later."""
        usd = self.accrued_interest_usd if interest_usd is None else interest_usd
        when = "" if due is None else f" due {pd.Timestamp(due):%Y-%m-%d %H:%M} UTC"
        return self._event(time, "missed_payment", price,
                           f"interest of {usd:.2f} USD{when} unpaid; cash available "
                           f"{cash_available_usd:.2f} USD; it stays in the debt (LTV {self.ltv(price):.4f})")

    def liquidation_price(self) -> float:
        """The coin price (USD) at which the LTV reaches ``liquidation_ltv``: debt / (collateral x LTV)."""
        value = self.collateral_coin * self.liquidation_ltv
        return float("inf") if value <= 0 else self.debt_usd / value

    def step(self, time, price: float, bar_low: float | None = None, bar_open: float | None = None,
             bar_end=None) -> LoanStep:
        """Accrue interest to the close (``bar_end``, else ``time``), then check the LTV at ``price`` (the
        bar's close): open, cure or liquidate. A loan drawn at a step accrues from its close; one owed from
        before (``existing``) from ``start``.

        The lender watches the price all the time: with the bar's ``bar_low`` (and ``bar_open``), a loan that
        was already drawn through the bar is liquidated when the low reaches :meth:`liquidation_price`, at
        that price, or at the open when the bar opens beyond it, even if the close is back above; a call whose
        deadline had passed by the bar's open (``time``) is judged at the open's price, and if not met there
        the collateral is sold at the open. Without them only the close is checked. ``bar_end``: when the
        close ``price`` is known (the bar's end; default ``time``); a call opened at it is due
        ``call_deadline`` after it. ``bar_low`` needs ``bar_open`` (USD per coin, both): where the low reaches
        the liquidation price the sale is there or at an open beyond it, so a low alone is a ConfigError (a
        ValueError) naming both, never a sale at the trigger price of a bar that may have gapped past it."""
        if bar_low is not None and bar_open is None:
            raise ConfigError(f"CoinLoan.step: bar_low={bar_low!r} needs bar_open (the bar's open, USD per "
                              "coin): the lender sells at the liquidation price, or at the open when the bar "
                              "opens beyond it. Pass both, or neither to check the close alone.")
        result = LoanStep()
        if self.closed:
            return result
        now = _ts_ns(time)
        # interest runs to the close, when ``price`` is known (``bar_end``; ``time`` without it)
        close_ns = now if bar_end is None else _ts_ns(bar_end)
        through_bar = self.drawn  # the loan existed during the whole bar (a draw happens at its close)
        if not self.drawn:
            if self.start is not None and now < _ts_ns(self.start):
                return result
            self.drawn = True
            self._last_ns = close_ns
            result.drawn_usd = self.principal_usd
            if self.initial_ltv is None:
                self.initial_ltv = self.ltv(price)
        elif self._last_ns is not None and close_ns > self._last_ns:
            days = (close_ns - self._last_ns) / 86_400e9
            self.accrued_interest_usd += self.principal_usd * self.annual_rate * days / DAYS_PER_YEAR_ACT365
            self._last_ns = close_ns
        ltv = self.ltv(price)
        if (through_bar and bar_open is not None and self.call_due is not None
                and pd.Timestamp(now) >= self.call_due):
            # the deadline passed by the bar's open: the lender acts then, at the open's price
            if not self._cured(self.ltv(bar_open)):
                self._liquidate(time, bar_open, f"loan call not met by {self.call_due}", result)
                return result
            self.call_due = None
            result.events.append(self._event(time, "loan_call_met", bar_open,
                                             f"LTV back to {self.ltv(bar_open):.4f} at the "
                                             "deadline (price moved)"))
        if through_bar and bar_low is not None and bar_low <= (trigger := self.liquidation_price()):
            sale = liquidation_fill_price(1, trigger, bar_open)
            self._liquidate(time, sale, f"LTV reached the liquidation LTV {self.liquidation_ltv:.4f} at "
                                        f"{trigger:.2f} (bar low {bar_low:.2f})", result)
        elif ltv >= self.liquidation_ltv:
            self._liquidate(time, price, f"LTV {ltv:.4f} >= liquidation LTV {self.liquidation_ltv:.4f}",
                            result)
        elif self.call_due is not None:
            if self._cured(ltv):
                self.call_due = None
                result.events.append(self._event(time, "loan_call_met", price,
                                                 f"LTV back to {ltv:.4f} (price moved)"))
            elif pd.Timestamp(now) >= self.call_due:
                self._liquidate(time, price, f"loan call not met by {self.call_due}", result)
        elif ltv >= self.margin_call_ltv:
            self.call_due = pd.Timestamp(now if bar_end is None else _ts_ns(bar_end)) + self.call_deadline
            result.events.append(self._event(
                time, "loan_call", price,
                f"LTV {ltv:.4f} >= call LTV {self.margin_call_ltv:.4f}; top up "
                f"{self.required_top_up_coin(price):.6f} {self.asset} by {self.call_due}"))
        return result

    def _cure_level(self) -> float:
        """The LTV a call must get back to: ``cure_ltv``, else the initial LTV, capped at the call LTV (a
        loan drawn above its call LTV is called at once and cured at the call LTV)."""
        if self.cure_ltv is not None:
            return self.cure_ltv
        if self.initial_ltv is None:
            return self.margin_call_ltv
        return min(self.initial_ltv, self.margin_call_ltv)

    def _cured(self, ltv: float) -> bool:
        # Relative slack of 1e-12: collateral + required_top_up_coin(price) gives back the cure LTV only to
        # a few ulps, and about one exact top-up in five would otherwise land one ulp above it.
        return ltv <= self._cure_level() * (1.0 + 1e-12)

    def top_up(self, time, coins: float, price: float) -> LoanStep:
        """Pledge ``coins`` more collateral; meets an open call if the LTV gets back to the cure level."""
        check_positive("coins", coins, unit="coins")
        self.collateral_coin += coins
        return self._check_cured(time, price, f"topped up {coins:.6f} {self.asset}")

    def repay(self, time, amount_usd: float, price: float) -> LoanStep:
        """Pay ``amount_usd``: accrued interest first, then principal; fully repaid -> collateral released."""
        amount = min(check_positive("amount_usd", amount_usd, unit="USD"), self.debt_usd)
        interest = min(amount, self.accrued_interest_usd)
        self.accrued_interest_usd -= interest
        self.principal_usd -= amount - interest
        self.interest_paid_usd += interest
        self.principal_paid_usd += amount - interest
        if self.principal_usd <= 1e-9 and self.accrued_interest_usd <= 1e-9:
            self.principal_usd = self.accrued_interest_usd = 0.0
            result = LoanStep(paid_usd=amount, interest_usd=interest,
                              collateral_released_coin=self.collateral_coin)
            if self.call_due is not None:
                result.events.append(self._event(time, "loan_call_met", price, "loan repaid in full",
                                                 ltv=0.0))
            self.collateral_coin = 0.0
            self.closed = True
            self.call_due = None
            return result
        result = self._check_cured(time, price, f"repaid {amount:.2f} USD")
        result.paid_usd, result.interest_usd = amount, interest
        return result

    def _check_cured(self, time, price: float, what: str) -> LoanStep:
        result = LoanStep()
        ltv = self.ltv(price)
        if self.call_due is not None and self._cured(ltv):
            self.call_due = None
            result.events.append(self._event(time, "loan_call_met", price, f"{what}; LTV now {ltv:.4f}"))
        return result

    def _liquidate(self, time, price: float, why: str, result: LoanStep) -> None:
        """Sell collateral at ``price`` to repay the debt plus the fee; release the rest; close the loan."""
        debt = self.debt_usd
        ltv = self.ltv(price)
        gross_needed = debt / (1.0 - self.liquidation_fee_rate) / price
        sold = min(self.collateral_coin, gross_needed)
        proceeds = sold * price
        fee = proceeds * self.liquidation_fee_rate
        repaid = min(debt, proceeds - fee)
        shortfall = debt - repaid
        result.events.append(self._event(
            time, "loan_liquidation", price,
            f"{why}; sold {sold:.6f} {self.asset} for {proceeds:.2f} USD; shortfall {shortfall:.2f} USD "
            "(remains owed)", loss=shortfall, fee=fee, ltv=ltv))
        result.collateral_sold_coin = sold
        result.collateral_sale_usd = proceeds
        result.paid_usd = repaid
        interest = min(repaid, self.accrued_interest_usd)
        result.interest_usd = interest
        result.collateral_released_coin = self.collateral_coin - sold
        self.collateral_repaid_usd += repaid
        self.collateral_coin = 0.0
        self.accrued_interest_usd -= interest
        self.principal_usd -= repaid - interest
        self.call_due = None
        self.closed = True


def loan_statement(loan: EquipmentLoan | CoinLoan) -> dict[str, object]:
    """One loan's account for a report: ``loan`` (instrument), ``lender``, ``type`` (``equipment`` |
    ``coin``), ``drawn`` (``before the run`` for debt owed from ``start`` on, else the draw's date),
    ``debt_start_usd`` (USD owed when drawn or at ``start``), ``debt_end_usd`` (USD owed now:
    ``liability_usd``), ``interest_paid_usd`` and ``principal_paid_usd`` (USD the borrower paid),
    ``collateral_repaid_usd`` (USD of debt the lender's sale of collateral repaid; 0 for an equipment loan)
    and ``collateral_end_coin`` (coins still pledged). For an equipment loan debt_start - principal_paid =
    debt_end; for a coin loan debt_start + interest accrued - interest_paid - principal_paid -
    collateral_repaid = debt_end."""
    coin = isinstance(loan, CoinLoan)
    start = None if loan.start is None else pd.Timestamp(loan.start)
    return {"loan": loan.instrument, "lender": loan.lender, "type": "coin" if coin else "equipment",
            "drawn": "before the run" if loan.existing or start is None else f"{start:%Y-%m-%d %H:%M}",
            "debt_start_usd": float(loan.initial_principal_usd), "debt_end_usd": float(loan.liability_usd),
            "interest_paid_usd": float(loan.interest_paid_usd),
            "principal_paid_usd": float(loan.principal_paid_usd),
            "collateral_repaid_usd": float(loan.collateral_repaid_usd) if coin else 0.0,
            "collateral_end_coin": float(loan.collateral_coin) if coin else 0.0}


def _ts_ns(time) -> int:
    ts = pd.Timestamp(time)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns").value


def filing_example_loan(start=None, *, liquidation_ltv: float = 0.85,
                        call_deadline=DEFAULT_CALL_DEADLINE) -> CoinLoan:
    """The coin loan of issue 4's filing example: 100M USD against 3,064 BTC worth 143% of the loan
    (initial LTV 1/1.43 = 69.93%), call when collateral < 133% of the loan (LTV 1/1.33 = 75.19%), 10.75%
    a year, cured back to 143%. The implied BTC price at drawdown is 143M / 3,064 = 46,671.02 USD.
    ``liquidation_ltv`` and ``call_deadline`` are NOT from the filing: assumptions to set per lender."""
    return CoinLoan(100e6, 3_064.0, 0.1075, margin_call_ltv=ltv_from_collateral_ratio(1.33),
                    liquidation_ltv=liquidation_ltv, call_deadline=call_deadline,
                    cure_ltv=ltv_from_collateral_ratio(1.43), start=start, name="filing_example",
                    lender="filing example", asset="BTC")
