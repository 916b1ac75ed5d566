"""What waits for CME to trade again is settled at one moment: the first bar during which the market trades
(``MinerStrategy.hedge_market_traded``), for bills and loan payments alike, whether or not the hedge is
still held. Closed forms on synthetic daily bars with a gap in the feed (an outage).

The runs use ``financed_expansion`` with ``leveraged_long``'s futures leg (one CME BTC contract, 5 BTC,
long at 10,000 at 2x: 25,000 USD of margin and a 10 USD fee a side), as ``test_strategies_carried_loans``.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from minehedge import api
from strategies.policies import POLICIES
from tests.test_strategies_carried_loans import EQUIPMENT, HedgedExpansion, _rows
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
