"""mining.loans: amortisation schedules, missed payments, and the coin-loan state machine on the filing
example (100M USD against 3,064 BTC at 143% collateral, call at 133%, 10.75% a year)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.events import EVENT_KINDS
from minehedge.errors import ConfigError
from mining.loans import (
    CoinLoan,
    EquipmentLoan,
    amortisation_schedule,
    annuity_payment,
    filing_example_loan,
    ltv_from_collateral_ratio,
)

T0 = pd.Timestamp("2021-12-31", tz="UTC")


@pytest.mark.parametrize(
    ("principal", "rate", "months", "payment"),
    [
        (100_000.0, 0.12, 12, 8_884.88),  # r = 1%/month: 100,000 x 0.01 / (1 - 1.01^-12)
        (1_000_000.0, 0.06, 36, 30_421.94),  # r = 0.5%/month
        (120_000.0, 0.0, 24, 5_000.00),  # no interest: principal / months
    ],
)
def test_annuity_payment_table(principal: float, rate: float, months: int, payment: float) -> None:
    assert round(annuity_payment(principal, rate, months), 2) == payment
    r = rate / 12
    if r:
        assert annuity_payment(principal, rate, months) == pytest.approx(
            principal * r / (1 - (1 + r) ** -months), rel=1e-15)


@pytest.mark.parametrize("monthly", [1e-300, 1e-12, 1e-9])
def test_annuity_payment_at_a_rate_too_small_for_one_plus_r(monthly: float) -> None:
    # 1 + 1e-300 is 1.0: 1 - (1 + r)^-n was 0 and the payment a ZeroDivisionError. For small r the payment is
    # P / n x (1 + r (n + 1) / 2 + O(r^2)); the schedule still repays the principal.
    principal, months = 120_000.0, 24
    expected = principal / months * (1 + monthly * (months + 1) / 2)
    assert annuity_payment(principal, 12 * monthly, months) == pytest.approx(expected, rel=1e-14)
    schedule = amortisation_schedule(principal, 12 * monthly, months, "2022-01-15")
    assert schedule["principal_usd"].sum() == pytest.approx(principal, rel=1e-12)
    assert schedule["balance_usd"].iloc[-1] == 0.0


@pytest.mark.parametrize(("principal", "rate", "months"), [(100_000.0, 0.12, 12), (5e6, 0.1075, 36),
                                                              (250_000.0, 0.0, 18)])
def test_schedule_sums_to_principal_plus_interest(principal: float, rate: float, months: int) -> None:
    schedule = amortisation_schedule(principal, rate, months, "2022-01-15")
    assert len(schedule) == months
    assert schedule["principal_usd"].sum() == pytest.approx(principal, rel=1e-12)
    assert schedule["payment_usd"].sum() == pytest.approx(principal + schedule["interest_usd"].sum(), rel=1e-12)
    assert schedule["balance_usd"].iloc[-1] == 0.0
    # Interest is each month's opening balance x r.
    opening = pd.concat([pd.Series([principal]), schedule["balance_usd"].iloc[:-1]]).to_numpy()
    assert schedule["interest_usd"].to_numpy() == pytest.approx(opening * rate / 12, rel=1e-12)
    assert schedule["due"].iloc[0] == pd.Timestamp("2022-02-15", tz="UTC")
    assert schedule["due"].iloc[-1] == pd.Timestamp("2022-01-15", tz="UTC") + pd.DateOffset(months=months)


def test_first_month_interest_closed_form() -> None:
    schedule = amortisation_schedule(100_000.0, 0.12, 12, "2022-01-01")
    assert schedule["interest_usd"].iloc[0] == pytest.approx(1_000.0, rel=1e-15)
    assert schedule["interest_usd"].sum() == pytest.approx(12 * annuity_payment(100_000.0, 0.12, 12) - 100_000.0,
                                                           rel=1e-12)


def test_equipment_loan_pays_misses_once_and_catches_up() -> None:
    loan = EquipmentLoan(100_000.0, 0.12, 12, "2022-01-01", name="s19_purchase", lender="bank")
    payment = annuity_payment(100_000.0, 0.12, 12)
    drawn = loan.step(pd.Timestamp("2022-01-01", tz="UTC"), 0.0)
    assert drawn.drawn_usd == 100_000.0 and drawn.paid_usd == 0.0
    paid = loan.step(pd.Timestamp("2022-02-01", tz="UTC"), 1e6)
    assert paid.paid_usd == pytest.approx(payment, rel=1e-15)
    assert paid.interest_usd == pytest.approx(1_000.0, rel=1e-15)
    assert loan.balance_usd == pytest.approx(100_000.0 - (payment - 1_000.0), rel=1e-15)
    missed = loan.step(pd.Timestamp("2022-03-01 12:00", tz="UTC"), payment - 1.0)
    assert [e.kind for e in missed.events] == ["missed_payment"]
    event = missed.events[0]
    assert event.instrument == "loan:s19_purchase" and event.venue == "bank"
    assert event.time == datetime(2022, 3, 1, 12, 0)
    assert loan.step(pd.Timestamp("2022-03-02", tz="UTC"), 0.0).events == []  # reported once
    assert loan.arrears_usd(pd.Timestamp("2022-04-01", tz="UTC")) == pytest.approx(2 * payment, rel=1e-15)
    catch_up = loan.step(pd.Timestamp("2022-04-01", tz="UTC"), 1e6)
    assert catch_up.paid_usd == pytest.approx(2 * payment, rel=1e-15) and catch_up.events == []
    loan.step(pd.Timestamp("2023-01-01", tz="UTC"), 1e7)
    assert loan.paid_off and loan.balance_usd == 0.0


def test_an_equipment_instalment_deferred_is_not_reported_until_a_step_that_cannot_pay_it_without_deferring() -> None:
    # 12,000 USD at 12 %/yr over 12 months: 1,066.19 USD a month (annuity). Deferred, the instalment due on
    # 2022-02-01 stays due and unreported (deferred_usd says how much, with the one due 03-01 too); the caller
    # reports it with report_missed, once; a step without defer_missed reports it, or pays it.
    payment = annuity_payment(12_000.0, 0.12, 12)
    loan = EquipmentLoan(12_000.0, 0.12, 12, "2022-01-01")
    loan.step(pd.Timestamp("2022-01-01", tz="UTC"), 0.0)
    deferred = loan.step(pd.Timestamp("2022-02-01", tz="UTC"), payment - 1.0, defer_missed=True)
    assert deferred.events == [] and deferred.paid_usd == 0.0 and deferred.deferred_usd == pytest.approx(payment,
                                                                                                          rel=1e-15)
    assert loan.unpaid_instalments(pd.Timestamp("2022-02-01", tz="UTC")) == (
        f"instalment 1/12 of {payment:,.2f} USD due 2022-02-01")
    two = loan.step(pd.Timestamp("2022-03-01", tz="UTC"), 0.0, defer_missed=True)
    assert two.events == [] and two.deferred_usd == pytest.approx(2 * payment, rel=1e-15)
    assert loan.unpaid_instalments(pd.Timestamp("2022-03-01", tz="UTC")) == (
        f"instalments 1-2/12 of {2 * payment:,.2f} USD due 2022-02-01 to 2022-03-01")
    [event] = loan.report_missed(pd.Timestamp("2022-03-01", tz="UTC"), 5.0)
    assert (event.kind, event.time, event.detail) == ("missed_payment", datetime(2022, 3, 1), (
        f"instalment 1/12 of {payment:,.2f} USD due 2022-02-01 unpaid; cash available 5.00 USD"))
    assert loan.report_missed(pd.Timestamp("2022-03-01", tz="UTC"), 5.0) == []  # once
    # reported: deferring no longer applies to it, but the one behind it (due 03-01, unreported) still defers,
    # so the caller judges it; both are due
    behind = loan.step(pd.Timestamp("2022-03-02", tz="UTC"), 0.0, defer_missed=True)
    assert behind.events == [] and behind.deferred_usd == pytest.approx(2 * payment, rel=1e-15)
    paid = loan.step(pd.Timestamp("2022-03-02", tz="UTC"), 1e6)
    assert paid.paid_usd == pytest.approx(2 * payment, rel=1e-15) and paid.events == []
    assert loan.unpaid_instalments(pd.Timestamp("2022-03-02", tz="UTC")) == ""
    # a deferred instalment that a later step without defer_missed cannot pay is reported there
    later = EquipmentLoan(12_000.0, 0.12, 12, "2022-01-01")
    later.step(pd.Timestamp("2022-01-01", tz="UTC"), 0.0)
    later.step(pd.Timestamp("2022-02-01", tz="UTC"), 0.0, defer_missed=True)
    [missed] = later.step(pd.Timestamp("2022-02-02", tz="UTC"), 7.0).events
    assert missed.time == datetime(2022, 2, 2) and missed.detail.endswith("due 2022-02-01 unpaid; cash available "
                                                                          "7.00 USD")


def test_each_instalment_due_and_unpaid_has_its_own_identity_and_its_own_missed_report() -> None:
    # 3,000 USD at 0 % over 3 months from 2022-01-01: 1,000 USD due 02-01, 03-01 and 04-01. At 03-01, the
    # first two are due and unpaid (deferred); instalment 2 is reported missed on its own, instalment 1 not.
    loan = EquipmentLoan(3_000.0, 0.0, 3, "2022-01-01")
    loan.step(pd.Timestamp("2022-01-01", tz="UTC"), 0.0)
    assert loan.step(pd.Timestamp("2022-03-01", tz="UTC"), 0.0, defer_missed=True).deferred_usd == 2_000.0
    feb, mar = pd.Timestamp("2022-02-01", tz="UTC"), pd.Timestamp("2022-03-01", tz="UTC")
    assert loan.instalments_due(mar) == [  # (number, payment_usd, due, what, reported)
        (1, 1_000.0, feb, "instalment 1/3 of 1,000.00 USD due 2022-02-01", False),
        (2, 1_000.0, mar, "instalment 2/3 of 1,000.00 USD due 2022-03-01", False)]
    [event] = loan.report_missed(mar, 5.0, number=2)
    assert (event.time, event.detail) == (datetime(2022, 3, 1), "instalment 2/3 of 1,000.00 USD due "
                                                                 "2022-03-01 unpaid; cash available 5.00 USD")
    assert loan.report_missed(mar, 5.0, number=2) == []  # once
    assert loan.report_missed(mar, 5.0, number=3) == []  # not due yet
    assert [i.reported for i in loan.instalments_due(mar)] == [False, True]
    # paid oldest first: instalment 1 alone, then nothing is due but the one reported
    assert loan.step(mar, 1_500.0, defer_missed=True).paid_usd == 1_000.0 and loan.instalments_paid == 1
    assert [i.number for i in loan.instalments_due(mar)] == [2]
    assert loan.report_missed(mar, 0.0, number=1) == []  # paid
    assert loan.unpaid_instalments(pd.Timestamp("2022-04-01", tz="UTC")) == (
        "instalments 2-3/3 of 2,000.00 USD due 2022-03-01 to 2022-04-01")


def test_a_months_interest_missed_after_it_waited_names_its_amount_and_due_time() -> None:
    loan = CoinLoan(1e6, 30.0, 0.0365, margin_call_ltv=0.75, liquidation_ltv=0.9)  # 100 USD of interest a day
    loan.step(T0, 50_000.0)
    loan.step(T0 + pd.Timedelta(days=2), 50_000.0)
    event = loan.missed_interest(T0 + pd.Timedelta(days=2), 50_000.0, 12.5, 100.0, due=T0 + pd.Timedelta(days=1))
    assert event.kind == "missed_payment" and event.detail == (
        "interest of 100.00 USD due 2022-01-01 00:00 UTC unpaid; cash available 12.50 USD; it stays in the debt "
        f"(LTV {1.0002e6 / 1.5e6:.4f})")
    assert loan.missed_interest(T0, 50_000.0, 0.0).detail.startswith("interest of 200.00 USD unpaid; ")


def test_filing_example_ltv_thresholds() -> None:
    assert ltv_from_collateral_ratio(1.43) == pytest.approx(0.6993007, abs=1e-7)  # "about 69.9%"
    assert ltv_from_collateral_ratio(1.33) == pytest.approx(0.7518797, abs=1e-7)  # "about 75.2%"
    loan = filing_example_loan(start=T0)
    price0 = 1.43e8 / 3_064  # collateral worth 143% of 100M USD
    assert round(price0, 2) == 46_671.02
    assert loan.step(T0, price0).drawn_usd == 100e6
    assert loan.ltv(price0) == pytest.approx(1 / 1.43, rel=1e-14)
    # The call fires when collateral < 133% of the debt: price < 1.33e8 / 3,064 = 43,407.31 USD.
    call_price = 1.33e8 / 3_064
    assert loan.step(T0, call_price * 1.0001).events == []
    events = loan.step(T0, call_price * 0.999).events
    assert [e.kind for e in events] == ["loan_call"]
    assert events[0].margin_ratio == pytest.approx(1 / 1.33 / 0.999, rel=1e-12)
    assert events[0].size == 100e6 and events[0].instrument == "loan:filing_example"
    # Top-up back to 143%: 100M / (price x 1/1.43) - 3,064 coins.
    need = loan.required_top_up_coin(call_price * 0.999)
    assert need == pytest.approx(1.43e8 / (call_price * 0.999) - 3_064, rel=1e-12)
    met = loan.top_up(T0, need, call_price * 0.999)
    assert [e.kind for e in met.events] == ["loan_call_met"]
    assert loan.ltv(call_price * 0.999) == pytest.approx(1 / 1.43, rel=1e-12)


def test_interest_accrues_act_365_and_counts_in_ltv() -> None:
    loan = filing_example_loan(start=T0)
    loan.step(T0, 50_000.0)
    loan.step(T0 + pd.Timedelta(days=365), 50_000.0)
    assert loan.accrued_interest_usd == pytest.approx(10.75e6, rel=1e-12)
    assert loan.ltv(50_000.0) == pytest.approx(110.75e6 / (3_064 * 50_000.0), rel=1e-12)
    paid = loan.repay(T0 + pd.Timedelta(days=365), 20e6, 50_000.0)
    assert paid.interest_usd == pytest.approx(10.75e6, rel=1e-12) and paid.paid_usd == 20e6
    assert loan.principal_usd == pytest.approx(90.75e6, rel=1e-12)


def test_missed_call_deadline_liquidates_at_the_bar_price() -> None:
    loan = filing_example_loan(start=T0, call_deadline=pd.Timedelta(days=2))
    loan.step(T0, 46_000.0)
    assert [e.kind for e in loan.step(T0, 42_000.0).events] == ["loan_call"]
    day1 = T0 + pd.Timedelta(days=1)
    assert loan.step(day1, 42_000.0).events == []  # still inside the deadline
    day2 = T0 + pd.Timedelta(days=2)
    result = loan.step(day2, 41_000.0)
    assert [e.kind for e in result.events] == ["loan_liquidation"]
    debt = 100e6 * (1 + 0.1075 * 2 / 365)
    assert result.collateral_sold_coin == pytest.approx(debt / 41_000.0, rel=1e-12)
    assert result.collateral_released_coin == pytest.approx(3_064 - debt / 41_000.0, rel=1e-12)
    assert result.paid_usd == pytest.approx(debt, rel=1e-12)
    assert loan.closed and loan.debt_usd == pytest.approx(0.0, abs=1e-6)
    assert loan.step(day2 + pd.Timedelta(days=1), 10_000.0).events == []


def test_liquidation_ltv_sells_immediately_with_shortfall() -> None:
    loan = CoinLoan(1_000_000.0, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9, liquidation_fee_rate=0.01,
                    name="l", lender="lender")
    loan.step(T0, 50_000.0)  # LTV 0.667
    result = loan.step(T0 + pd.Timedelta(hours=4), 30_000.0)  # LTV 1.11: collateral short of the debt
    event = result.events[0]
    assert event.kind == "loan_liquidation" and event.margin_ratio == pytest.approx(1e6 / 9e5, rel=1e-14)
    assert result.collateral_sold_coin == 30.0 and result.collateral_released_coin == 0.0
    assert event.fee_usd == pytest.approx(9_000.0, rel=1e-14)
    assert event.loss_usd == pytest.approx(1e6 - 891_000.0, rel=1e-12)  # shortfall stays owed
    assert loan.principal_usd == pytest.approx(109_000.0, rel=1e-12)
    assert {e.kind for e in result.events} <= set(EVENT_KINDS)


def test_a_liquidation_sells_enough_collateral_to_repay_the_debt_and_the_lenders_fee() -> None:
    # 80,000 USD against 10 BTC, fee 2 % of the collateral sold: drawn at 20,000 (LTV 0.4), closed at 9,000
    # (LTV 0.889 >= 0.85). The lender sells s with s x 9,000 x (1 - 0.02) = 80,000: s = 9.0702948 BTC.
    loan = CoinLoan(80_000.0, 10.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.85, liquidation_fee_rate=0.02)
    loan.step(T0, 20_000.0)
    result = loan.step(T0 + pd.Timedelta(days=1), 9_000.0)
    (event,) = result.events
    sold = 80_000 / (1 - 0.02) / 9_000
    assert event.kind == "loan_liquidation" and event.loss_usd == pytest.approx(0.0, abs=1e-9)
    assert result.collateral_sold_coin == pytest.approx(sold, rel=1e-14)
    assert result.collateral_released_coin == pytest.approx(10 - sold, rel=1e-14)
    assert event.fee_usd == pytest.approx(sold * 9_000 * 0.02, rel=1e-14)
    assert result.paid_usd == pytest.approx(80_000.0, rel=1e-14) and loan.debt_usd == pytest.approx(0.0, abs=1e-9)


# Binary-exact thresholds: 87.5 USD against 1 coin with liquidation LTV 0.875 is liquidated at 100.0 exactly.
def _exact_loan(principal: float) -> CoinLoan:
    loan = CoinLoan(principal, 1.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.875)
    loan.step(T0, 200.0)  # drawn at LTV <= 0.4375
    return loan


def test_a_close_exactly_at_the_liquidation_ltv_liquidates() -> None:
    loan = _exact_loan(87.5)
    assert loan.ltv(100.0) == 0.875
    assert [e.kind for e in loan.step(T0 + pd.Timedelta(days=1), 100.0).events] == ["loan_liquidation"]


def test_a_close_exactly_at_the_call_ltv_calls() -> None:
    loan = _exact_loan(75.0)
    assert loan.ltv(100.0) == 0.75
    assert [e.kind for e in loan.step(T0 + pd.Timedelta(days=1), 100.0).events] == ["loan_call"]


def test_a_bar_low_exactly_at_the_liquidation_price_liquidates_there() -> None:
    loan = _exact_loan(87.5)
    assert loan.liquidation_price() == 100.0  # 87.5 / (1 x 0.875)
    result = loan.step(T0 + pd.Timedelta(days=1), 150.0, bar_low=100.0, bar_open=180.0)
    (event,) = result.events
    assert event.kind == "loan_liquidation" and event.price == 100.0
    assert result.collateral_sold_coin == 87.5 / 100.0


def test_the_lender_sells_where_the_bar_low_reaches_the_liquidation_ltv_even_if_the_close_recovers() -> None:
    # 1M USD against 30 BTC, no interest: LTV 0.9 at 1e6 / (30 x 0.9) = 37,037.04. A bar opening at 50,000
    # that trades down to 36,000 and closes at 49,000 liquidates at 37,037.04: 27 BTC sold, 3 returned.
    trigger = 1e6 / (30.0 * 0.9)
    loan = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9)
    loan.step(T0, 50_000.0, bar_low=1_000.0, bar_open=50_000.0)  # the draw: the loan did not exist in that bar
    assert not loan.closed and loan.liquidation_price() == trigger
    result = loan.step(T0 + pd.Timedelta(days=1), 49_000.0, bar_low=36_000.0, bar_open=50_000.0)
    (event,) = result.events
    assert event.kind == "loan_liquidation" and event.price == trigger and event.loss_usd == 0.0
    assert result.collateral_sold_coin == pytest.approx(27.0, rel=1e-14)
    assert result.collateral_released_coin == pytest.approx(3.0, rel=1e-13)
    # the same bar opening beyond it (a gap) sells at the open: 30 BTC x 30,000 leaves 100,000 USD owed
    gapped = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9)
    gapped.step(T0, 50_000.0)
    result = gapped.step(T0 + pd.Timedelta(days=1), 49_000.0, bar_low=29_000.0, bar_open=30_000.0)
    assert result.events[0].price == 30_000.0 and result.collateral_sold_coin == 30.0
    assert gapped.debt_usd == pytest.approx(100_000.0, rel=1e-12)
    # a low above the trigger leaves the loan alone
    safe = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9)
    safe.step(T0, 50_000.0)
    assert safe.step(T0 + pd.Timedelta(days=1), 49_000.0, bar_low=37_100.0, bar_open=50_000.0).events == []



def test_a_bar_low_without_the_bar_open_is_refused_and_changes_nothing() -> None:
    # Before, the low alone sold at the trigger, 37,037.04, even for a bar that may have opened beyond it (a
    # bar opening at 30,000 sells there, above).
    loan = CoinLoan(1e6, 30.0, 0.1, margin_call_ltv=0.75, liquidation_ltv=0.9)
    loan.step(T0, 50_000.0)
    for low in (36_000.0, 49_000.0):  # reaching the trigger or not: the call is wrong either way
        with pytest.raises(ValueError) as error:
            loan.step(T0 + pd.Timedelta(days=1), 49_000.0, bar_low=low)
        assert isinstance(error.value, ConfigError) and str(error.value) == (
            f"CoinLoan.step: bar_low={low!r} needs bar_open (the bar's open, USD per coin): the lender sells at the "
            "liquidation price, or at the open when the bar opens beyond it. Pass both, or neither to check the "
            "close alone.")
    assert not loan.closed and loan.collateral_coin == 30.0 and loan.accrued_interest_usd == 0.0
    result = loan.step(T0 + pd.Timedelta(days=1), 49_000.0, bar_low=36_000.0, bar_open=30_000.0)
    assert result.events[0].price == 30_000.0 and result.collateral_sold_coin == 30.0

def test_a_call_whose_deadline_passed_by_the_open_is_judged_and_sold_at_the_open() -> None:
    # called at 44,000 (LTV 0.758 >= 0.75), deadline a day later; the next bar opens at 43,000, still short of
    # the cure LTV (the initial 0.667): sold at 43,000, not at the close of 38,000
    loan = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9, call_deadline=pd.Timedelta(days=1))
    loan.step(T0, 50_000.0)
    assert [e.kind for e in loan.step(T0 + pd.Timedelta(days=1), 44_000.0, 44_000.0, 44_000.0).events] == ["loan_call"]
    result = loan.step(T0 + pd.Timedelta(days=2), 38_000.0, bar_low=37_500.0, bar_open=43_000.0)
    (event,) = result.events
    assert event.kind == "loan_liquidation" and event.price == 43_000.0
    assert result.collateral_sold_coin == pytest.approx(1e6 / 43_000.0, rel=1e-14)
    # opening back at the cure LTV meets the call there
    met = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9, call_deadline=pd.Timedelta(days=1))
    met.step(T0, 50_000.0)
    met.step(T0 + pd.Timedelta(days=1), 44_000.0, 44_000.0, 44_000.0)
    result = met.step(T0 + pd.Timedelta(days=2), 45_000.0, bar_low=44_000.0, bar_open=50_000.0)
    assert [e.kind for e in result.events] == ["loan_call_met"] and not met.closed and met.call_due is None
    # with the bar's end given, the deadline runs from the close that raised the call: a day later, not
    # at the next bar's open
    late = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9, call_deadline=pd.Timedelta(days=1))
    late.step(T0, 50_000.0)
    day = pd.Timedelta(days=1)
    late.step(T0 + day, 44_000.0, 44_000.0, 44_000.0, bar_end=T0 + 2 * day)
    assert late.call_due == T0.tz_convert(None) + 3 * day
    assert late.step(T0 + 2 * day, 43_000.0, 42_500.0, 43_000.0, bar_end=T0 + 3 * day).events == []
    (event,) = late.step(T0 + 3 * day, 42_000.0, 41_500.0, 42_500.0, bar_end=T0 + 4 * day).events
    assert event.kind == "loan_liquidation" and event.price == 42_500.0


def test_price_recovery_meets_the_call() -> None:
    loan = CoinLoan(1e6, 30.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9)
    loan.step(T0, 50_000.0)
    assert [e.kind for e in loan.step(T0, 44_000.0).events] == ["loan_call"]
    assert [e.kind for e in loan.step(T0 + pd.Timedelta(hours=1), 52_000.0).events] == ["loan_call_met"]
    assert loan.call_due is None


@given(debt=st.floats(1e3, 1e10), price=st.floats(10.0, 1e6), cure=st.floats(0.2, 0.7),
       short=st.floats(0.01, 0.5), with_cure_ltv=st.booleans())
def test_the_required_top_up_always_meets_the_call(debt, price, cure, short, with_cure_ltv) -> None:
    # drawn at the cure LTV (or given it), called after the price falls: topping up exactly
    # required_top_up_coin must meet the call, however the floats round
    collateral = debt / (cure * price)
    loan = CoinLoan(debt, collateral, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.95,
                    cure_ltv=cure if with_cure_ltv else None)
    loan.step(T0, price)
    fallen = price * cure / 0.75 * (1.0 - short * 0.1)  # LTV between 0.75 and 0.95 / (1 - 0.05)
    if loan.ltv(fallen) >= 0.95:
        return
    assert [e.kind for e in loan.step(T0, fallen).events] == ["loan_call"]
    need = loan.required_top_up_coin(fallen)
    assert need > 0
    assert [e.kind for e in loan.top_up(T0, need, fallen).events] == ["loan_call_met"]
    assert loan.call_due is None


def test_a_loan_drawn_above_its_call_ltv_is_called_at_once_and_topped_up_to_the_call_ltv() -> None:
    loan = CoinLoan(100.0, 1.0, 0.0, margin_call_ltv=0.75, liquidation_ltv=0.9)
    assert [e.kind for e in loan.step(T0, 125.0).events] == ["loan_call"]  # LTV 0.8 at drawdown
    assert loan.initial_ltv == 0.8
    need = loan.required_top_up_coin(125.0)
    assert need == pytest.approx(1.0 / 15.0, rel=1e-14)  # 100 / (0.75 x 125) - 1 coin
    assert [e.kind for e in loan.top_up(T0, need, 125.0).events] == ["loan_call_met"]


def test_a_shortfall_stays_owed_after_the_loan_closes() -> None:
    loan = CoinLoan(1_000_000.0, 30.0, 0.1, margin_call_ltv=0.75, liquidation_ltv=0.9)
    loan.step(T0, 50_000.0)
    result = loan.step(T0 + pd.Timedelta(days=1), 30_000.0)  # LTV > 1: the sale of 30 coins pays 900,000
    assert [e.kind for e in result.events] == ["loan_liquidation"] and loan.closed
    owed = 1_000_000.0 * (1 + 0.1 / 365) - 900_000.0
    assert loan.debt_usd == pytest.approx(owed, rel=1e-12) and result.events[0].loss_usd == loan.debt_usd
    assert loan.step(T0 + pd.Timedelta(days=30), 30_000.0).events == []
    assert loan.debt_usd == pytest.approx(owed, rel=1e-12)  # no further interest once closed


def test_loan_config_errors() -> None:
    with pytest.raises(ConfigError, match="margin_call_ltv"):
        CoinLoan(1e6, 30.0, 0.1, margin_call_ltv=0.9, liquidation_ltv=0.8)
    with pytest.raises(ConfigError, match="term_months"):
        EquipmentLoan(1e6, 0.1, 0, "2022-01-01")
    with pytest.raises(ConfigError, match="principal_usd"):
        EquipmentLoan(-1.0, 0.1, 12, "2022-01-01")


def test_an_equipment_loan_reports_each_instalment_missed_once_also_behind_an_older_one():
    loan = EquipmentLoan(12_000.0, 0.12, 12, "2024-01-01")
    loan.step("2024-01-01", 0.0)
    first = loan.step("2024-02-01", 0.0).events
    assert [e.detail.split(" of ")[0] for e in first] == ["instalment 1/12"]
    # two months on, two more are due behind the first, which was reported already: each is reported once
    later = loan.step("2024-04-01", 0.0).events
    assert [e.detail.split(" of ")[0] for e in later] == ["instalment 2/12", "instalment 3/12"]
    assert loan.step("2024-04-15", 0.0).events == []
    # deferred: a step that finds an unreported instalment behind a reported one says how much is due
    deferred = loan.step("2024-05-01", 0.0, defer_missed=True)
    assert deferred.events == [] and deferred.deferred_usd == pytest.approx(4 * annuity_payment(12_000.0, 0.12, 12))
