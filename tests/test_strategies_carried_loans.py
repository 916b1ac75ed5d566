"""Loan payments over a CME closure: an equipment instalment or a coin loan's month of interest that falls due on
a bar during which CME Globex does not trade, and that only a draw on the hedge could pay, waits for the first
bar the market trades (the lender's next business day) instead of being missed. Closed forms on synthetic bars.

The runs use ``financed_expansion`` with ``leveraged_long``'s futures leg, as a user's own policy would combine
them (``financed_hedge``, and any hedged policy with ``debt_usd``, hold a loan and a hedge too:
tests/test_strategies_debt.py carries the debt owed at the first bar the same way).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from minehedge import api
from strategies.base import params_from_specs
from strategies.policies import POLICIES, FinancedExpansion, LeveragedLong, merge_specs
from tests.test_strategies_policies import synthetic_market  # no mining revenue, no funding


class HedgedExpansion(FinancedExpansion, LeveragedLong):
    """``financed_expansion`` plus ``leveraged_long``'s one futures entry (``capital_usd`` x ``leverage``)."""

    specs = merge_specs(LeveragedLong.specs, add=FinancedExpansion.specs)
    params = params_from_specs(specs)


@pytest.fixture(autouse=True)
def hedged_expansion(monkeypatch):
    monkeypatch.setitem(POLICIES, "hedged_expansion", HedgedExpansion)


# One S19 Pro (3.25 kW) always on, plus the one the loan buys: power 2 x 78 = 156 USD and hosting 2 x 39 = 78 USD a
# day, 234 USD (39 per 4h bar). The futures leg buys one CME BTC contract (5 BTC) at 2x at the close of the first
# bar: 25,000 USD of margin and a 10 USD fee, filled at the next bar whose open is in a CME session. The dated
# contract is priced at spot (basis 0), so closing it at a close C frees 25,000 + 5 x (C - 10,000) - 10 USD.
BASE = {"fleet": "S19Pro:1@2021-01-01", "expansion_model": "S19Pro", "power_usd_per_kwh": 1.0,
        "hosting_usd_per_kwh": 0.5, "uptime": 1.0, "curtail": False, "pool_fee": 0.0, "spot_fee": 0.0,
        "capital_usd": 25_000.0, "leverage": 2.0, "venue": "cme", "contract": "dated", "annual_basis": 0.0,
        "on_margin_call": "ignore"}
# 1,000 USD at 12 %/yr over one month: one instalment of 1,000 x 1.01 = 1,010 USD, due a month after the draw.
EQUIPMENT = {**BASE, "loan_type": "equipment", "loan_date": "2021-02-06", "principal_usd": 1_000.0,
             "unit_price_usd": 1_000.0, "annual_rate": 0.12, "term_months": 1}
PAYS, CRASHES = (9_900.0, 10_200.0, 9_900.0, 10_200.0), (9_900.0, 9_900.0, 5_000.0, 5_000.0)


def _month_to_saturday(sunday: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """Daily bars from Saturday 2021-02-06 at 10,000 to Monday 2021-03-08 (10,200): Saturday 03-06 closes at
    9,900, then ``sunday``'s bar."""
    return [(10_000.0,) * 4] * 28 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0), sunday, (10_200.0,) * 4]


def _rows(strategy, kinds: tuple[str, ...]) -> list[tuple[str, str, float, str]]:
    return [(str(e.time)[:16], e.kind, e.amount, e.note) for e in strategy.broker.ledger.entries if e.kind in kinds]


@pytest.mark.parametrize("sunday", ["pays", "crashes"])
def test_an_instalment_due_on_a_cme_saturday_that_only_the_hedge_could_pay_waits_for_sunday(sunday):
    # The loan is drawn, and the machine bought, at Saturday 02-06's bar; the instalment falls due on Saturday
    # 03-06. 32,062 USD leave the treasury 32,062 - 28 x 234 - 25,010 = 500 USD then: short of 1,010, and CME does
    # not trade on Saturday. Closing the contract at 9,900 would free 25,000 - 500 - 10 = 24,490 USD had it traded,
    # which covers the 510 missing, so the instalment waits; Saturday's bill is paid from the 500 (266 left).
    # Sunday trades (CME Globex opens 23:00 UTC). Closing at 10,200 frees 25,990 USD: the instalment is paid
    # first (25,246 left), then Sunday's bill (25,012). If Sunday closes at 5,000 the contract frees nothing: the
    # instalment is missed there, with 266 USD available, and stays due (no penalty); Monday's draw pays it.
    # Before, it was a missed_payment on Saturday (and paid on Sunday by the retry, or on Monday).
    m = synthetic_market(_month_to_saturday(PAYS if sunday == "pays" else CRASHES), start="2021-02-06")
    strategy, _, _ = api._run_cerebro(m, "hedged_expansion", {**EQUIPMENT, "start_usd": 32_062.0}, None)
    result = api.build_run_result(strategy, {})
    events = [(str(e.time)[:10], e.kind) for e in strategy.broker.events]
    carried = strategy.broker.events[0]
    assert (carried.kind, carried.instrument, carried.venue) == ("loan_payment_carried", "loan:equipment_loan",
                                                                 "equipment lender")
    assert carried.detail == (
        "instalment 1/1 of 1,010.00 USD due 2021-03-06 carried: CME closed, so the hedge cannot be drawn on (closing "
        "it would free 24,490.00 USD had the market traded; 500.00 USD in the treasury); 1,010.00 USD waiting in "
        "all, paid at the first bar the market trades")
    payments = _rows(strategy, ("loan_payment",))
    cash = result.equity["cash_usd"].tolist()[27:]
    if sunday == "pays":
        assert events == [("2021-03-06", "loan_payment_carried"), ("2021-03-07", "loan_payment_carried_paid")]
        assert strategy.broker.events[1].detail == ("paid instalment 1/1 of 1,010.00 USD due 2021-03-06, carried from "
                                                    "2021-03-06 00:00 UTC: CME closed")
        assert payments == [("2021-03-07 00:00", "loan_payment", -1_010.0,
                             "loan:equipment_loan; carried from 2021-03-06 00:00 UTC: CME closed")]
        assert cash == [500.0, 266.0, 25_012.0, 24_778.0]
        # the machine at book value (3 years) a day after Sunday's close: 30 days old, and the loan paid off
        assert result.equity["equity_usd"].iloc[29] == pytest.approx(25_012.0 + 1_000.0 * (1 - 30 / 1_095.75),
                                                                     rel=1e-12)
        assert [(str(t["datetime"])[:10], t["size"], t["price"], t["reason"]) for t in result.trades] == [
            ("2021-02-08", 5.0, 10_000.0, ""), ("2021-03-07", -5.0, 10_200.0, "treasury")]
    else:
        assert events == [("2021-03-06", "loan_payment_carried"), ("2021-03-07", "cme_margin_call"),
                          ("2021-03-07", "missed_payment"), ("2021-03-08", "cme_margin_call_met")]
        assert strategy.broker.events[2].detail == ("instalment 1/1 of 1,010.00 USD due 2021-03-06 unpaid; cash "
                                                    "available 266.00 USD")
        assert payments == [("2021-03-08 00:00", "loan_payment", -1_010.0, "loan:equipment_loan")]
        assert cash == [500.0, 266.0, 32.0, 24_778.0]
    assert strategy.loan.paid_off and strategy.broker.get_liabilities_usd() == 0.0
    assert not result.summary["insolvent"] and result.summary["ledger_residual_usd"] == 0.0


def test_an_instalment_still_carried_when_the_run_ends_is_in_the_run_notes():
    # The run above, ending on Saturday 03-06: the instalment is still due, not missed.
    m = synthetic_market(_month_to_saturday(PAYS)[:29], start="2021-02-06")
    outcome = api.run_policy(m, "hedged_expansion", {**EQUIPMENT, "start_usd": 32_062.0})
    assert [e["kind"] for e in outcome.result.events] == ["loan_payment_carried"]
    assert outcome.result.assumptions["run notes"] == [
        "loan:equipment_loan: the instalment 1/1 of 1,010.00 USD due 2021-03-06, carried from 2021-03-06 00:00 UTC "
        "(CME closed), was still due when the run ended."]


def test_on_4h_bars_a_carried_instalment_waits_all_weekend_and_is_paid_before_the_bills_carried_after_it():
    # 4h bars at 10,000 from Saturday 2021-02-06; the instalment falls due at Saturday 03-06 00:00, the first of
    # the eleven bars (to Sunday 16:00) during which CME does not trade. 31,900 USD leave 338 USD in the treasury
    # then: the instalment waits (1,010 - 338 <= 24,990, what closing the contract would free). The 338 USD pay
    # the bills (39 USD a bar) of eight bars, then 26 of Sunday 08:00's; 13, 39 and 39 USD are carried, the
    # instalment counted in the test (1,010 + 91 - 0 <= 24,990). Only one event for the instalment. At Sunday
    # 20:00, in which CME Globex opens, the draw frees 24,990: the instalment first, then the 91 USD of bills, then
    # the bar's 39: 23,850 USD left.
    m = synthetic_market([(10_000.0,) * 4] * 192, start="2021-02-06", freq="4h")
    strategy, _, _ = api._run_cerebro(m, "hedged_expansion", {**EQUIPMENT, "start_usd": 31_900.0}, None)
    result = api.build_run_result(strategy, {})
    assert [(str(e.time)[:16], e.kind) for e in strategy.broker.events] == [
        ("2021-03-06 00:00", "loan_payment_carried"), ("2021-03-07 08:00", "bill_carried"),
        ("2021-03-07 12:00", "bill_carried"), ("2021-03-07 16:00", "bill_carried"),
        ("2021-03-07 20:00", "loan_payment_carried_paid"), ("2021-03-07 20:00", "bill_carried_paid")]
    assert "338.00 USD in the treasury" in strategy.broker.events[0].detail
    note = "carried from 2021-03-07 08:00 to 2021-03-07 16:00 UTC (3 bars): CME closed"
    paid = [(kind, round(amount, 9), text) for when, kind, amount, text in
            _rows(strategy, ("loan_payment", "power_cost", "hosting_cost")) if when == "2021-03-07 20:00"]
    assert paid == [("loan_payment", -1_010.0, "loan:equipment_loan; carried from 2021-03-06 00:00 UTC: CME closed"),
                    ("power_cost", -60.666666667, note), ("hosting_cost", -30.333333333, note),
                    ("power_cost", -26.0, ""), ("hosting_cost", -13.0, "")]
    reopened = pd.Timestamp("2021-03-07 20:00", tz="UTC")
    assert result.equity["cash_usd"].loc[reopened] == pytest.approx(23_850.0, rel=1e-12)
    assert not result.summary["insolvent"] and result.summary["ledger_residual_usd"] < 1e-9


# 10,000 USD against 3 BTC (collateral_ratio 3 at 10,000) at 73 %/yr: 20 USD of interest a day (act/365), paid on
# the first bar of each month. Drawn at Monday 2021-04-26's bar, buying the second S19 Pro for 10,000 USD;
# 2021-05-01 is a Saturday: 5 days' interest, 100 USD, fall due then.
COIN = {**BASE, "loan_type": "coin", "loan_date": "2021-04-26", "principal_usd": 10_000.0,
        "unit_price_usd": 10_000.0, "annual_rate": 0.73, "collateral_ratio": 3.0, "start_coins": 3.0,
        "start_usd": 26_230.0}


@pytest.mark.parametrize("sunday", ["pays", "crashes", "liquidates"])
def test_a_coin_loans_interest_due_on_a_cme_saturday_waits_for_sunday_and_is_paid_before_the_carried_bills(sunday):
    # 26,230 USD leave 26,230 - 25,010 - 5 x 234 = 50 USD on Saturday 05-01: short of the 100 USD of interest, which
    # waits (closing the contract would free 24,490). Saturday's bill is then paid pro rata from the 50 USD and the
    # rest, 184 USD, carried: the interest waiting is counted in the test (234 + 100 - 50 <= 24,490). On Sunday,
    # the draw at 10,200 frees 25,990 USD: the interest first (the day accrued since, 20 USD, stays for June), then
    # the carried bills, then Sunday's 234 USD: 25,472 USD left. If Sunday closes at 5,000 the interest is missed
    # there and stays in the debt (10,000 + 7 x 20 on Monday), and the carried bills make the miner insolvent. With
    # 1.43 BTC pledged instead (collateral_ratio 1.43), Sunday's low of 5,000 reaches the lender's liquidation
    # price (10,120 / (1.43 x 0.85) = 8,325.79): the sale repays the debt, the carried 100 USD with it.
    rows = [(10_000.0,) * 4] * 5 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0), PAYS if sunday == "pays" else CRASHES,
                                    (10_200.0,) * 4]
    params = {**COIN, **({"collateral_ratio": 1.43, "start_coins": 1.43} if sunday == "liquidates" else {})}
    strategy, _, _ = api._run_cerebro(synthetic_market(rows, start="2021-04-26"), "hedged_expansion", params, None)
    result = api.build_run_result(strategy, {})
    events = [(str(e.time)[:10], e.kind) for e in strategy.broker.events]
    assert events[:2] == [("2021-05-01", "loan_payment_carried"), ("2021-05-01", "bill_carried")]
    assert strategy.broker.events[0].detail == (
        "interest of 100.00 USD due 2021-05-01 00:00 UTC carried: CME closed, so the hedge cannot be drawn on "
        "(closing it would free 24,490.00 USD had the market traded; 50.00 USD in the treasury); 100.00 USD waiting "
        "in all, paid at the first bar the market trades")
    assert strategy.broker.events[1].detail.startswith("carried 184.00 USD of the bar's 234.00 USD of costs (50.00 "
                                                       "USD paid)")
    interest = _rows(strategy, ("loan_interest",))
    cash = result.equity["cash_usd"].tolist()[4:]
    if sunday == "pays":
        assert events[2:] == [("2021-05-02", "loan_payment_carried_paid"), ("2021-05-02", "bill_carried_paid")]
        assert strategy.broker.events[2].detail == ("paid interest of 100.00 USD due 2021-05-01 00:00 UTC, carried "
                                                    "from 2021-05-01 00:00 UTC: CME closed")
        assert interest == [("2021-05-02 00:00", "loan_interest", pytest.approx(-100.0, rel=1e-12),
                             "loan:coin_loan; carried from 2021-05-01 00:00 UTC: CME closed")]
        assert cash == pytest.approx([50.0, 0.0, 25_472.0, 25_238.0], rel=1e-12, abs=1e-9)
        assert strategy.loan.debt_usd == pytest.approx(10_040.0, rel=1e-12)  # Sunday's and Monday's interest
        assert not result.summary["insolvent"]
    elif sunday == "crashes":
        assert events[2:] == [("2021-05-02", "cme_margin_call"), ("2021-05-02", "missed_payment"),
                              ("2021-05-02", "insolvency"), ("2021-05-03", "cme_margin_call_met"),
                              ("2021-05-03", "insolvency_cured")]
        assert strategy.broker.events[3].detail == ("interest of 100.00 USD due 2021-05-01 00:00 UTC unpaid; cash "
                                                    "available 0.00 USD; it stays in the debt (LTV 0.6747)")
        assert interest == []
        assert strategy.loan.debt_usd == pytest.approx(10_140.0, rel=1e-12)
    else:
        assert events[2:] == [("2021-05-02", "cme_margin_call"), ("2021-05-02", "loan_liquidation"),
                              ("2021-05-02", "bill_carried_paid"), ("2021-05-03", "cme_margin_call_met")]
        liquidation = strategy.broker.events[3]
        assert liquidation.detail.startswith("LTV reached the liquidation LTV 0.8500 at 8325.79 (bar low 5000.00); "
                                             "sold 1.215500 BTC for 10120.00 USD; shortfall 0.00 USD")
        assert interest == [] and strategy.loan.closed
        assert strategy.notes[-1] == ("2021-05-02 00:00: the 100.00 USD of interest carried from 2021-05-01 00:00 UTC "
                                      "(CME closed) was in the debt the lender's liquidation sold collateral "
                                      "against; any shortfall stays owed with the loan.")
    assert not [e for e in strategy.broker.events if e.kind == "missed_payment" and str(e.time)[:10] == "2021-05-01"]
    assert result.summary["ledger_residual_usd"] < 1e-9


def test_two_months_of_coin_loan_interest_carried_over_a_feed_gap_are_paid_one_by_one_when_cme_reopens():
    # The feed has no bars from 2021-05-02 to 06-04, so the bars after Saturday 05-01 are Saturday 06-05 (CME
    # closed again) and Sunday 06-06. Interest is 10,000 x 0.73 / 365 = 20 USD a day: 5 days (04-26 to 05-01),
    # 100 USD, due on 05-01 and carried there (the treasury holds 50 USD); 35 days (05-01 to 06-05), 700 USD, due
    # on 06-05 and carried behind it (its 234 USD of bills too). Sunday's draw pays each record by itself, oldest
    # first, with its own event and ledger row, then the bills carried from both Saturdays. The debt is left with
    # the interest accrued since 06-05: 10,000 + 3 x 20 on 06-08. Nothing waits at the end; no money is lost.
    rows = ([(10_000.0,) * 4] * 5 + [(10_000.0, 10_000.0, 9_900.0, 9_900.0)] + [(10_000.0,) * 4] * 34
            + [(10_000.0, 10_000.0, 9_900.0, 9_900.0)] + [(10_200.0,) * 4] * 3)
    market = synthetic_market(rows, start="2021-04-26")
    index = market.frame.index
    gap = (index > pd.Timestamp("2021-05-01", tz="UTC")) & (index < pd.Timestamp("2021-06-05", tz="UTC"))
    market = dataclasses.replace(market, frame=market.frame[~gap])
    strategy, _, _ = api._run_cerebro(market, "hedged_expansion", dict(COIN), None)
    result = api.build_run_result(strategy, {})
    day = 10_000.0 * 0.73 / 365  # USD of interest a day
    may, june = day * 5, day * 35  # due 05-01 and 06-05
    bill = 234.0  # USD of power and hosting a day; the 05-01 bar lasts 35 days, to the next bar
    treasury = 50.0  # USD left on 05-01, after the machine and the futures margin
    events = [(str(e.time)[:10], e.kind, e.detail) for e in strategy.broker.events]
    expected = [
        ("2021-05-01", "loan_payment_carried", f"interest of {may:,.2f} USD due 2021-05-01 00:00 UTC carried"),
        ("2021-05-01", "bill_carried", f"carried {bill * 35 - treasury:,.2f} USD of the bar's {bill * 35:,.2f} USD"),
        ("2021-06-05", "loan_payment_carried", f"interest of {june:,.2f} USD due 2021-06-05 00:00 UTC carried"),
        ("2021-06-05", "bill_carried", f"carried {bill:,.2f} USD of the bar's {bill:,.2f} USD"),
        ("2021-06-06", "loan_payment_carried_paid", f"paid interest of {may:,.2f} USD due 2021-05-01 00:00 UTC"),
        ("2021-06-06", "loan_payment_carried_paid", f"paid interest of {june:,.2f} USD due 2021-06-05 00:00 UTC"),
        ("2021-06-06", "bill_carried_paid",
         f"paid {bill * 36 - treasury:,.2f} USD of bills carried from 2021-05-01 00:00 to 2021-06-05 00:00 UTC")]
    assert [(time, kind, detail[:len(start)]) for (time, kind, detail), (_, _, start) in zip(events, expected,
                                                                                            strict=True)] == expected
    assert _rows(strategy, ("loan_interest",)) == [
        ("2021-06-06 00:00", "loan_interest", -may, "loan:coin_loan; carried from 2021-05-01 00:00 UTC: CME closed"),
        ("2021-06-06 00:00", "loan_interest", -june, "loan:coin_loan; carried from 2021-06-05 00:00 UTC: CME closed")]
    assert strategy.loan.debt_usd == 10_000.0 + 3 * day
    assert strategy.carried_loan_payments(strategy.loan) == []
    assert result.summary["ledger_residual_usd"] == 0.0 and not result.summary["insolvent"]
