"""What waits for CME to trade again is settled at one moment: the first bar during which the market trades
(``MinerStrategy.hedge_market_traded``), for bills and loan payments alike, whether or not the hedge is
still held; and each equipment instalment carried keeps its own identity (what, due date, amount, since)
until it is paid or missed. Closed forms on synthetic daily bars with a gap in the feed (an outage).

The runs use ``financed_expansion`` with ``leveraged_long``'s futures leg (one CME BTC contract, 5 BTC,
long at 10,000 at 2x: 25,000 USD of margin and a 10 USD fee a side), as ``test_strategies_carried_loans``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pandas as pd
import pytest

from minehedge import api
from strategies.policies import POLICIES
from tests.test_strategies_carried_loans import BASE, EQUIPMENT, HedgedExpansion, _rows
from tests.test_strategies_policies import synthetic_market

CONTRACT_BTC, ENTRY, FEE = 5.0, 10_000.0, 10.0
MARGIN = CONTRACT_BTC * ENTRY / 2.0  # 2x


@pytest.fixture(autouse=True)
def hedged_expansion(monkeypatch):
    monkeypatch.setitem(POLICIES, "hedged_expansion", HedgedExpansion)


def _release(close: float) -> float:
    """USD that closing the contract at ``close`` frees (basis 0: the dated price is spot's)."""
    return MARGIN + CONTRACT_BTC * (close - ENTRY) - FEE


def _outage(rows: list[tuple[float, float, float, float]], start: str, gap: tuple[str, str]) -> api.Market:
    """Daily bars from ``start``, without those from gap[0] to gap[1] (inclusive): a feed outage."""
    market = synthetic_market(rows, start=start)
    index = market.frame.index
    first, last = (pd.Timestamp(day, tz="UTC") for day in gap)
    return dataclasses.replace(market, frame=market.frame[(index < first) | (index > last)])


def _run(market: api.Market, params: dict):
    strategy, _, _ = api._run_cerebro(market, "hedged_expansion", params, None)
    return strategy, api.build_run_result(strategy, {})


def _cash(result, days: list[str]) -> list[float]:
    cash = result.equity["cash_usd"]
    return [cash.loc[pd.Timestamp(day, tz="UTC")] for day in days]


def _trades(result) -> list[tuple[str, float, float, str]]:
    return [(str(t["datetime"])[:10], t["size"], t["price"], t["reason"]) for t in result.trades]


def test_a_hedge_gone_flat_on_a_closed_bar_pays_nothing_that_waits_before_the_market_trades():
    # Daily bars from Saturday 2021-02-20; the feed has no bars from Sunday 03-21 to Friday 03-26, so the
    # March contract, which expires on Friday 03-26 08:00 UTC, is cash-settled at the first bar after it:
    # Saturday 03-27, a bar during which CME does not trade. The hedge is flat there, with an instalment and
    # bills carried from Saturday 03-20 still waiting; both wait for Sunday 03-28, the first bar the market
    # trades. Before, the instalment was paid on Saturday 03-27 (the loan step asked whether the hedge was
    # held and its market closed; the bills, whether the market traded) while the bills waited for Sunday.
    power_day, hosting_day = 2 * 3.25 * 24 * 1.0, 2 * 3.25 * 24 * 0.5  # two S19 Pro (3.25 kW), USD a day
    bill = power_day + hosting_day
    instalment = 1_000.0 * (1 + 0.12 / 12)  # 1,000 USD at 12 %/yr over one month
    cash_before = 546.0  # on Saturday 03-20 before anything is paid: start - margin - fee - 28 days' bills
    start_usd = cash_before + MARGIN + FEE + 28 * bill
    week = 7 * bill  # Saturday 03-20's bar covers [03-20, 03-27): a week of power and hosting
    paid_share = cash_before / week  # the cash pays the week's bill pro rata (1/3)
    carried_power, carried_hosting = 7 * power_day * (1 - paid_share), 7 * hosting_day * (1 - paid_share)
    carried_bills = week - cash_before
    assert instalment - cash_before <= _release(9_900.0)  # the instalment waits
    assert week + instalment - cash_before <= _release(9_900.0)  # then the bill, counted with it
    rows = [(10_000.0,) * 4] * 28 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0)] + [(10_000.0,) * 4] * 9
    market = _outage(rows, "2021-02-20", ("2021-03-21", "2021-03-26"))
    strategy, result = _run(market, {**EQUIPMENT, "loan_date": "2021-02-20", "start_usd": start_usd})

    assert _trades(result) == [("2021-02-22", 5.0, 10_000.0, ""),
                               ("2021-03-27", -5.0, 10_000.0, "expiry")]  # flat on Saturday 03-27
    assert [(str(e.time)[:10], e.kind) for e in strategy.broker.events] == [
        ("2021-03-20", "loan_payment_carried"), ("2021-03-20", "bill_carried"),
        ("2021-03-28", "loan_payment_carried_paid"), ("2021-03-28", "bill_carried_paid")]
    carried_note = "carried from 2021-03-20 00:00 UTC: CME closed"
    assert [e.detail for e in strategy.broker.events[2:]] == [
        f"paid instalment 1/1 of 1,010.00 USD due 2021-03-20, {carried_note}",
        f"paid {carried_bills:,.2f} USD of bills {carried_note}"]
    paid = [(when[:10], kind, amount, note) for when, kind, amount, note in
            _rows(strategy, ("loan_payment", "power_cost", "hosting_cost")) if when >= "2021-03-27"]
    assert paid == [
        ("2021-03-27", "power_cost", -power_day, ""), ("2021-03-27", "hosting_cost", -hosting_day, ""),
        ("2021-03-28", "loan_payment", -instalment, f"loan:equipment_loan; {carried_note}"),
        ("2021-03-28", "power_cost", pytest.approx(-carried_power, rel=1e-12), carried_note),
        ("2021-03-28", "hosting_cost", pytest.approx(-carried_hosting, rel=1e-12), carried_note),
        ("2021-03-28", "power_cost", -power_day, ""), ("2021-03-28", "hosting_cost", -hosting_day, ""),
        ("2021-03-29", "power_cost", -power_day, ""), ("2021-03-29", "hosting_cost", -hosting_day, "")]
    settled = _release(10_000.0)  # the settlement at Saturday's close returns the margin less the fee
    sunday = settled - 2 * bill - instalment - carried_bills
    assert _cash(result, ["2021-03-20", "2021-03-27", "2021-03-28", "2021-03-29"]) == pytest.approx(
        [0.0, settled - bill, sunday, sunday - bill], rel=1e-12, abs=1e-9)
    assert strategy.loan.paid_off and strategy.broker.get_liabilities_usd() == 0.0
    assert not result.summary["insolvent"] and result.summary["ledger_residual_usd"] < 1e-9


# Two instalments of 1,000 USD (2,000 USD at 0 % over two months, drawn Thursday 2021-04-08), due Saturday
# 05-08 and Tuesday 06-08; no power or hosting to pay, so the treasury holds 500 USD from the hedge's entry
# on. The feed's gap lies inside the June contract's life (it expires on 06-25), so the hedge is held.
TWO_INSTALMENTS = {**BASE, "power_usd_per_kwh": 0.0, "hosting_usd_per_kwh": 0.0, "loan_type": "equipment",
                   "loan_date": "2021-04-08", "principal_usd": 2_000.0, "unit_price_usd": 2_000.0,
                   "annual_rate": 0.0, "term_months": 2}
CASH, PAYMENT = 500.0, 1_000.0
START_USD = CASH + MARGIN + FEE  # the loan's 2,000 USD buy the machine


def _carried(number: int, due: str, release: float, waiting: float) -> str:
    return (f"instalment {number}/2 of 1,000.00 USD due {due} carried: CME closed, so the hedge cannot be "
            f"drawn on (closing it would free {release:,.2f} USD had the market traded; {CASH:,.2f} USD in "
            f"the treasury); {waiting:,.2f} USD waiting in all, paid at the first bar the market trades")


def _missed(number: int, due: str, left: float) -> str:
    return f"instalment {number}/2 of 1,000.00 USD due {due} unpaid; cash available {left:.2f} USD"


@pytest.mark.parametrize("saturday_close", [9_900.0, 5_200.0])
def test_each_carried_instalment_keeps_its_own_identity_through_a_partial_payment(saturday_close):
    # The feed has no bars from Sunday 05-09 to Friday 06-11, so instalment 2 falls due while instalment 1
    # is still waiting for CME to trade. Saturday 05-08 closes at 9,900: instalment 1 waits (1,000 - 500 <=
    # 24,490 that closing would free). On Saturday 06-12, closing at ``saturday_close``, instalment 2 falls
    # due: at 9,900 it waits behind the first (1,000 + 1,000 - 500 <= 24,490); at 5,200 it cannot (1,500 >
    # 990), so it is missed there, named as itself, and the first keeps waiting. Sunday 06-13 trades and
    # closes at 5,200: the draw frees 990 USD, which with the 500 pays instalment 1 alone, with its own note
    # and event (carried from 05-08); instalment 2 is missed there if it was still carried (490 USD left).
    # Before, the two were one record: the first was paid with no note and no event when carried with the
    # second ("instalments 1-2/2"), and at 5,200 the report on Saturday 06-12 named instalment 1, missed.
    behind = 2 * PAYMENT - CASH <= _release(saturday_close)
    assert PAYMENT - CASH <= _release(9_900.0) and behind == (saturday_close == 9_900.0)
    assert PAYMENT - CASH <= _release(5_200.0) < 2 * PAYMENT - CASH  # Sunday pays one
    rows = ([(10_000.0,) * 4] * 30 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0)] + [(10_000.0,) * 4] * 34
            + [(10_000.0, 10_000.0, saturday_close, saturday_close)] + [(5_200.0,) * 4] * 2)
    market = _outage(rows, "2021-04-08", ("2021-05-09", "2021-06-11"))
    strategy, result = _run(market, {**TWO_INSTALMENTS, "start_usd": START_USD})

    first = ("2021-05-08", "loan_payment_carried", _carried(1, "2021-05-08", _release(9_900.0), PAYMENT))
    paid = ("2021-06-13", "loan_payment_carried_paid", "paid instalment 1/2 of 1,000.00 USD due 2021-05-08, "
                                                       "carried from 2021-05-08 00:00 UTC: CME closed")
    left = CASH + _release(5_200.0) - PAYMENT
    events = [(str(e.time)[:10], e.kind, e.detail) for e in strategy.broker.events
              if e.instrument.startswith("loan:")]
    if behind:
        second = _carried(2, "2021-06-08", _release(9_900.0), 2 * PAYMENT)
        assert events == [first, ("2021-06-12", "loan_payment_carried", second), paid,
                          ("2021-06-13", "missed_payment", _missed(2, "2021-06-08", left))]
    else:
        assert events == [first, ("2021-06-12", "missed_payment", _missed(2, "2021-06-08", CASH)), paid]
    note = "loan:equipment_loan; carried from 2021-05-08 00:00 UTC: CME closed"
    assert _rows(strategy, ("loan_payment",)) == [("2021-06-13 00:00", "loan_payment", -PAYMENT, note)]
    assert _cash(result, ["2021-05-08", "2021-06-12", "2021-06-13", "2021-06-14"]) == [CASH, CASH, left, left]
    assert _trades(result) == [("2021-04-09", 5.0, 10_000.0, ""), ("2021-06-13", -5.0, 5_200.0, "treasury")]
    assert strategy.loan.instalments_paid == 1 and strategy.carried_loan_payments(strategy.loan) == []
    assert strategy.broker.get_liabilities_usd() == PAYMENT  # instalment 2 stays due (no penalty)
    assert result.summary["ledger_residual_usd"] < 1e-9


def test_two_instalments_due_at_one_closed_bar_are_carried_one_by_one():
    # The feed has no bars from Saturday 05-08 to Friday 06-11: both instalments fall due by Saturday 06-12
    # (close 9,900), each carried on its own (its own event, the second counted behind the first), then both
    # are paid on Sunday 06-13 at 10,000 (the draw frees 24,990), each with its own note and event. Before:
    # one record, "instalments 1-2/2 of 2,000.00 USD due 2021-05-08 to 2021-06-08".
    rows = [(10_000.0,) * 4] * 65 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0)] + [(10_000.0,) * 4] * 2
    market = _outage(rows, "2021-04-08", ("2021-05-08", "2021-06-11"))
    strategy, result = _run(market, {**TWO_INSTALMENTS, "start_usd": START_USD})
    assert [(str(e.time)[:10], e.kind, e.detail) for e in strategy.broker.events] == [
        ("2021-06-12", "loan_payment_carried", _carried(1, "2021-05-08", _release(9_900.0), PAYMENT)),
        ("2021-06-12", "loan_payment_carried", _carried(2, "2021-06-08", _release(9_900.0), 2 * PAYMENT))] + [
        ("2021-06-13", "loan_payment_carried_paid", f"paid instalment {number}/2 of 1,000.00 USD due {due}, "
                                                    "carried from 2021-06-12 00:00 UTC: CME closed")
        for number, due in ((1, "2021-05-08"), (2, "2021-06-08"))]
    note = "loan:equipment_loan; carried from 2021-06-12 00:00 UTC: CME closed"
    assert _rows(strategy, ("loan_payment",)) == [("2021-06-13 00:00", "loan_payment", -PAYMENT, note)] * 2
    assert _cash(result, ["2021-06-12", "2021-06-13"]) == [CASH, CASH + _release(10_000.0) - 2 * PAYMENT]
    assert strategy.loan.paid_off and strategy.broker.get_liabilities_usd() == 0.0
    # The same run ending on Saturday 06-12: both still wait, each as itself, and the run notes name each.
    ended = dataclasses.replace(market, frame=market.frame.iloc[:-2])
    strategy, _ = _run(ended, {**TWO_INSTALMENTS, "start_usd": START_USD})
    dues = (datetime(2021, 5, 8), datetime(2021, 6, 8))
    waiting = strategy.carried_loan_payments(strategy.loan)
    assert [(p.what, p.usd, p.due, p.since, p.instalment) for p in waiting] == [
        (f"instalment {n}/2 of 1,000.00 USD due {due:%Y-%m-%d}", PAYMENT, due, datetime(2021, 6, 12), n)
        for n, due in enumerate(dues, 1)]
    assert strategy.notes == [
        f"loan:equipment_loan: the instalment {n}/2 of 1,000.00 USD due {due:%Y-%m-%d}, carried from "
        "2021-06-12 00:00 UTC (CME closed), was still due when the run ended."
        for n, due in enumerate(dues, 1)]
