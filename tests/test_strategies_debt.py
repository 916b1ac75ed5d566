"""Debt owed at the first bar (``debt_usd``, every policy): an equipment debt's annuity and a coin debt's calls
and liquidation, derived here from the inputs (the annuity and LTV formulas) on the shared data; the liability
from the opening; the same servicing as financed_expansion's loan (carried over a CME closure, two loans side
by side); a hypothesis property of the money; bad parameters; the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers import ledger_stats
from analyzers.windows import run_window_stats
from minehedge import api, cli
from minehedge.config import parse_windows
from minehedge.errors import ConfigError
from strategies.registry import POLICIES
from tests.test_strategies_policies import synthetic_market

RATE = 0.1075
LOAN = "loan:existing_debt"


def _market(data_dir, start: str, end: str) -> api.Market:
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": start, "end": end, "data_dir": str(data_dir)})


@pytest.fixture(scope="module")
def btc_2022(data_dir):
    return _market(data_dir, "2022-01-01", "2022-12-31")


@pytest.fixture(scope="module")
def btc_june_2022(data_dir):
    return _market(data_dir, "2022-06-01", "2022-06-30")


def _ledger(outcome) -> pd.DataFrame:
    return ledger_stats.ledger_frame(outcome.result.ledger)


def _events(outcome, instrument: str = LOAN) -> list[dict]:
    return [e for e in outcome.result.events if e["instrument"] == instrument]


def _annuity(principal: float, annual_rate: float, months: int) -> tuple[float, float]:
    """(payment, r): the level monthly payment P r / (1 - (1 + r)^-n), r = rate / 12 (P / n at no interest)."""
    r = annual_rate / 12
    return (principal * r / (1 - (1 + r) ** -months) if r else principal / months), r


def _balance(principal: float, payment: float, r: float, k: int) -> float:
    """Principal left after k level payments: P (1 + r)^k - payment ((1 + r)^k - 1) / r."""
    return principal * (1 + r) ** k - payment * ((1 + r) ** k - 1) / r


# --- equipment debt: the annuity, and equity lower by what is owed ------------------------------------------
def test_an_equipment_debts_instalments_are_the_annuity_payments_due_within_the_run(btc_2022):
    # 20M USD over 24 months at 10.75 %/yr from 2022-01-01: the first instalment is due 2022-02-01, the eleventh
    # 2022-12-01; the twelfth (2023-01-01) is after the run. 50M USD of cash pays each one when due.
    debt, months = 20e6, 24
    outcome = api.run_policy(btc_2022, "unhedged", {"debt_usd": debt, "debt_term_months": months,
                                                    "debt_rate": RATE, "start_usd": 50e6})
    payment, r = _annuity(debt, RATE, months)
    first, last = btc_2022.frame.index[0], btc_2022.frame.index[-1]
    due = [first + pd.DateOffset(months=k) for k in range(1, months + 1) if first + pd.DateOffset(months=k) <= last]
    book = _ledger(outcome)
    paid = book[(book["kind"] == "loan_payment") & (book["note"] == LOAN)]
    assert list(pd.to_datetime(paid["datetime"])) == due and len(due) == 11
    assert paid["amount"].to_numpy() == pytest.approx(-payment, rel=1e-12)
    k = len(due)
    left = _balance(debt, payment, r, k)
    (row,) = outcome.result.loans
    assert (row["loan"], row["lender"], row["type"], row["drawn"]) == (LOAN, "existing lender", "equipment",
                                                                       "before the run")
    assert row["debt_start_usd"] == debt and row["debt_end_usd"] == pytest.approx(left, rel=1e-12)
    assert row["principal_paid_usd"] == pytest.approx(debt - left, rel=1e-12)
    assert row["interest_paid_usd"] == pytest.approx(k * payment - (debt - left), rel=1e-12)
    assert row["missed_payments"] == row["payments_carried"] == 0
    assert _events(outcome) == []


def test_equity_is_lower_by_the_debt_at_the_first_bar_and_by_the_balance_and_payments_after(btc_2022):
    # No cash is credited: the same run without the debt holds the same coins (50M USD pays every bill and
    # instalment, so no coin is sold for them), and its equity is higher by what the debt took: the balance
    # still owed plus the instalments paid so far, k x payment + balance after k; before the first instalment,
    # by exactly the debt. The opening value is start_usd - debt (the default fleet's machines have no price).
    debt, months = 20e6, 24
    base = {"start_usd": 50e6}
    plain = api.run_policy(btc_2022, "unhedged", base)
    owed = api.run_policy(btc_2022, "unhedged", {**base, "debt_usd": debt, "debt_term_months": months})
    assert owed.summary["initial_equity_usd"] == 50e6 - debt
    assert plain.summary["initial_equity_usd"] - owed.summary["initial_equity_usd"] == debt
    payment, r = _annuity(debt, RATE, months)
    first = btc_2022.frame.index[0]
    index = owed.result.equity.index
    paid = np.array([sum(first + pd.DateOffset(months=k) <= t for k in range(1, months + 1)) for t in index])
    expected = np.array([k * payment + _balance(debt, payment, r, k) for k in paid])
    gap = plain.result.equity["equity_usd"].to_numpy() - owed.result.equity["equity_usd"].to_numpy()
    assert gap == pytest.approx(expected, rel=1e-12)
    assert gap[0] == pytest.approx(debt, rel=1e-15) and (paid[:31] == 0).all()
    assert (plain.result.equity["coins"] == owed.result.equity["coins"]).all()


# --- coin debt: the lender's call and sale where the LTV formula puts them --------------------------------
def test_a_coin_debts_call_and_liquidation_fall_where_the_ltv_says_june_2022(btc_june_2022):
    # 10M USD against coins worth twice as much at the 2022-06-01 open (629.2 BTC at 31,784.18), 10.75 %/yr
    # accrued from the 06-01 open to each bar's close (the month's interest is due 07-01, after the run); a sale
    # inside a bar repays the debt of its close. Called at the first close where
    # debt / (coins x close) >= 1/1.33 (06-16, 20,372); on_margin_call=ignore; the lender sells at the first
    # bar whose low reaches debt / (coins x 0.85) (06-18: low 17,567 under ~18,790), before the 3-day deadline.
    # The lender's steps depend on the price and the debt alone, so every policy meets them on the same bars.
    frame = btc_june_2022.frame
    debt = 10e6
    coins = 2.0 * debt / frame["open"].iloc[0]
    days = ((frame.index - frame.index[0]) / pd.Timedelta(days=1)).to_numpy() + 1.0  # to each bar's close
    owed = debt * (1 + RATE * days / 365)
    ltv = owed / (coins * frame["close"].to_numpy())
    call = int(np.argmax(ltv >= 1 / 1.33))
    assert ltv[call] >= 1 / 1.33 and (ltv[:call] < 1 / 1.33).all()
    trigger = owed / (coins * 0.85)
    sale = int(np.argmax((frame["low"].to_numpy() <= trigger) & (np.arange(len(frame)) > call)))
    deadline = frame.index[call] + pd.Timedelta(days=1) + pd.Timedelta(days=3)  # from the call's close
    assert frame.index[sale] < deadline and (ltv[call:sale] > 1 / 1.43).all()  # not cured by the price either
    price = min(trigger[sale], frame["open"].iloc[sale])  # at the trigger, or at an open beyond it
    params = {"debt_usd": debt, "debt_type": "coin", "debt_collateral_coins": coins, "on_margin_call": "ignore",
              "start_usd": 5e6}
    for policy in ("unhedged", "sell_daily", "static_hedge"):
        outcome = api.run_policy(btc_june_2022, policy, params)
        events = _events(outcome)
        assert [(e["kind"], e["datetime"]) for e in events] == [("loan_call", frame.index[call]),
                                                                ("loan_liquidation", frame.index[sale])], policy
        assert events[0]["margin_ratio"] == pytest.approx(ltv[call], rel=1e-12)
        assert events[1]["price"] == pytest.approx(price, rel=1e-12)
        assert events[1]["size"] == pytest.approx(owed[sale], rel=1e-12)  # the debt the sale repaid
        book = _ledger(outcome)
        sold = book[book["kind"] == "collateral_sale"]["amount"].sum()
        assert -sold == pytest.approx(owed[sale] / price, rel=1e-12)
        (row,) = outcome.result.loans
        assert row["collateral_repaid_usd"] == pytest.approx(owed[sale], rel=1e-12)
        assert row["debt_end_usd"] == row["collateral_end_coin"] == row["interest_paid_usd"] == 0.0
        assert (row["loan_calls"], row["loan_calls_met"], row["loan_liquidations"]) == (1, 0, 1)
        # the summary and a window count the existing lender's events as any loan's
        assert (outcome.summary["loan_calls"], outcome.summary["loan_liquidations"]) == (1, 1)
        (window,) = run_window_stats(outcome.result, parse_windows("june=2022-06-01:2022-06-30")).to_dict("records")
        assert (window["loan_calls"], window["loan_liquidations"]) == (1, 1)
        # at the first bar: the pledged coins are held beside the treasury, and the debt is owed
        first = outcome.result.equity.iloc[0]
        plain = api.run_policy(btc_june_2022, policy, {"start_usd": 5e6}).result.equity.iloc[0]
        assert first["coins"] - plain["coins"] == pytest.approx(coins, rel=1e-12)
        assert first["equity_usd"] - plain["equity_usd"] == pytest.approx(
            coins * frame["close"].iloc[0] - owed[0], rel=1e-9)  # owed[0]: the debt and a day's interest


def test_both_loans_of_a_financed_expansion_with_debt_are_serviced_each_on_its_own(btc_june_2022):
    # financed_expansion draws its coin loan (20M USD at 1.43x) at the first bar, beside the existing coin debt
    # of the run above. Each lender acts on its own loan, as it does alone: the existing lender's events are the
    # unhedged run's, the new lender's those of financed_expansion without the debt; each loan has its own
    # liability and row.
    frame = btc_june_2022.frame
    debt = {"debt_usd": 10e6, "debt_type": "coin", "debt_collateral_coins": 2.0 * 10e6 / frame["open"].iloc[0],
            "on_margin_call": "ignore"}
    loan = {"loan_date": "2022-06-01", "start_coins": 2_000.0, "start_usd": 5e6, "on_margin_call": "ignore"}
    both = api.run_policy(btc_june_2022, "financed_expansion", {**loan, **debt})
    alone = api.run_policy(btc_june_2022, "financed_expansion", loan)
    existing = api.run_policy(btc_june_2022, "unhedged", {**debt, "start_usd": 5e6})
    strip = ("equity_usd",)  # the whole account's equity differs; the lender's figures do not

    def kinds(outcome, instrument):
        return [{k: v for k, v in e.items() if k not in strip} for e in _events(outcome, instrument)]

    assert kinds(both, LOAN) == kinds(existing, LOAN) and kinds(both, LOAN)
    assert kinds(both, "loan:coin_loan") == kinds(alone, "loan:coin_loan") and kinds(alone, "loan:coin_loan")
    assert {e["venue"] for e in _events(both, LOAN)} == {"existing lender"}
    assert {e["venue"] for e in _events(both, "loan:coin_loan")} == {"coin lender"}
    rows = {row["loan"]: row for row in both.result.loans}
    assert list(rows) == [LOAN, "loan:coin_loan"]
    assert rows[LOAN] == existing.result.loans[0]
    assert rows["loan:coin_loan"] == alone.result.loans[0]
    assert both.summary["loan_calls"] == existing.summary["loan_calls"] + alone.summary["loan_calls"]


# --- the same servicing as financed_expansion's: an instalment carried over a CME closure ------------------
CME_LONG = {"fleet": "S19Pro:1@2021-01-01", "power_usd_per_kwh": 1.0, "hosting_usd_per_kwh": 0.5, "uptime": 1.0,
            "curtail": False, "pool_fee": 0.0, "spot_fee": 0.0, "capital_usd": 25_000.0, "leverage": 2.0,
            "venue": "cme", "contract": "dated", "annual_basis": 0.0, "on_margin_call": "ignore",
            "debt_usd": 1_000.0, "debt_rate": 0.12, "debt_term_months": 1}


@pytest.mark.parametrize("sunday", ["pays", "crashes"])
def test_an_existing_debts_instalment_due_on_a_cme_saturday_waits_for_the_market(sunday):
    # Daily bars from Saturday 2021-02-06 at 10,000; 1,000 USD owed over one month at 12 %/yr: one instalment of
    # 1,010 USD due Saturday 03-06. One S19 Pro costs 78 + 39 = 117 USD a day; leveraged_long buys one CME
    # contract (5 BTC) at 2x: 25,000 USD of margin and a 10 USD fee. 28,786 USD leave 28,786 - 25,010 - 28 x 117
    # = 500 USD at Saturday's loan step: short of 1,010, and CME does not trade on Saturday, while closing the
    # contract at 9,900 would free 25,000 - 500 - 10 = 24,490 USD: the instalment waits. Saturday's bill leaves
    # 383. Sunday trades: at 10,200 the draw frees 25,990, pays the instalment first, then Sunday's bill:
    # 383 + 25,990 - 1,010 - 117 = 25,246. At 5,000 it frees nothing: the instalment is missed on Sunday.
    closes = (9_900.0, 10_200.0, 10_200.0) if sunday == "pays" else (9_900.0, 5_000.0, 5_000.0)
    rows = [(10_000.0,) * 4] * 28 + [(10_000.0, 10_000.0, closes[0], closes[0]),
                                     (closes[0], max(closes[:2]), min(closes[:2]), closes[1]), (closes[2],) * 4]
    outcome = api.run_policy(synthetic_market(rows, start="2021-02-06"), "leveraged_long",
                             {**CME_LONG, "start_usd": 28_786.0})
    mine = [(str(e["datetime"])[:10], e["kind"]) for e in _events(outcome)]
    carried = _events(outcome)[0]
    assert carried["venue"] == "existing lender" and "500.00 USD in the treasury" in carried["detail"]
    assert "closing it would free 24,490.00 USD had the market traded" in carried["detail"]
    book = _ledger(outcome)
    paid = book[book["kind"] == "loan_payment"]
    cash = outcome.result.equity["cash_usd"]
    if sunday == "pays":
        assert mine == [("2021-03-06", "loan_payment_carried"), ("2021-03-07", "loan_payment_carried_paid")]
        assert list(zip(paid["amount"], paid["note"], strict=True)) == [
            (-1_010.0, "loan:existing_debt; carried from 2021-03-06 00:00 UTC: CME closed")]
        assert cash.iloc[28:30].tolist() == [383.0, 25_246.0]
    else:
        assert mine == [("2021-03-06", "loan_payment_carried"), ("2021-03-07", "missed_payment")]
        assert paid.empty or str(paid["datetime"].iloc[0])[:10] > "2021-03-07"
    (row,) = outcome.result.loans
    assert row["payments_carried"] == 1 and row["missed_payments"] == (sunday == "crashes")


# --- money is conserved with debt ----------------------------------------------------------------------
@st.composite
def _debt_runs(draw):
    moves = draw(st.lists(st.floats(-0.15, 0.12), min_size=20, max_size=70))
    rows, price = [], 10_000.0
    for move in moves:
        new = price * (1 + move)
        rows.append((price, max(price, new) * 1.01, min(price, new) * 0.99, new))
        price = new
    kind = draw(st.sampled_from(["equipment", "coin"]))
    debt = draw(st.floats(1e4, 1e6))
    params = {"fleet": "S19Pro:1@2030-01-01", "debt_usd": debt, "debt_type": kind,
              "debt_rate": draw(st.sampled_from([0.0]) | st.floats(0.01, 0.3)), "start_usd": draw(st.floats(0.0, 2e6)),
              "start_coins": draw(st.floats(0.0, 50.0)), "spot_fee": draw(st.sampled_from([0.0, 0.001])),
              "on_margin_call": draw(st.sampled_from(["top_up_from_treasury", "ignore"]))}
    if kind == "equipment":
        params["debt_term_months"] = draw(st.integers(1, 12))
    else:  # collateral worth 1.4 to 4 times the debt at the first open: below the call LTV (1/1.33)
        params["debt_collateral_coins"] = draw(st.floats(1.4, 4.0)) * debt / rows[0][0]
    return rows, params


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_debt_runs())
def test_money_is_conserved_with_debt(run):
    # No mining (zero hashprice, no machine deployed): the only flows are the lender's. Every USD paid to it is
    # a ledger row and pays interest or principal; the debt left is what was owed, plus what accrued, less what
    # was paid and what the lender's sale repaid; equity is cash + coins x price - debt at every bar; the
    # ledger reconciles with the wallets.
    rows, params = run
    market = synthetic_market(rows)
    outcome = api.run_policy(market, "unhedged", params)
    (row,) = outcome.result.loans
    debt = params["debt_usd"]
    book = _ledger(outcome)
    to_lender = book[book["kind"].isin(["loan_payment", "loan_interest"]) & book["note"].astype(str).str.startswith(LOAN)]
    assert -to_lender["amount"].sum() == pytest.approx(row["interest_paid_usd"] + row["principal_paid_usd"],
                                                        rel=1e-9, abs=1e-6)
    if params["debt_type"] == "equipment":
        payment, r = _annuity(debt, params["debt_rate"], params["debt_term_months"])
        k = len(to_lender)
        left = _balance(debt, payment, r, k) if r else debt - k * payment
        assert row["debt_end_usd"] == pytest.approx(max(left, 0.0), rel=1e-9, abs=1e-6)
        assert row["principal_paid_usd"] == pytest.approx(debt - row["debt_end_usd"], rel=1e-12, abs=1e-6)
    else:
        sales = [e for e in _events(outcome) if e["kind"] == "loan_liquidation"]
        closed = sales[0]["datetime"] if sales else market.frame.index[-1]
        # accrued from the first bar's open to the close of the last bar it was owed on (daily bars)
        accrued = debt * params["debt_rate"] * ((closed - market.frame.index[0]) / pd.Timedelta(days=365) + 1 / 365)
        assert row["debt_end_usd"] == pytest.approx(
            debt + accrued - row["interest_paid_usd"] - row["principal_paid_usd"] - row["collateral_repaid_usd"],
            rel=1e-9, abs=1e-6)
    # at the first close nothing is due yet: the debt is owed, a coin debt with a day's interest; at the last,
    # what the loan says
    close, equity = market.frame["close"], outcome.result.equity
    first = debt * (1 + params["debt_rate"] / 365) if params["debt_type"] == "coin" else debt
    for bar, owed in ((0, first), (-1, row["debt_end_usd"])):
        held = equity.iloc[bar]
        assert held["equity_usd"] == pytest.approx(held["cash_usd"] + held["coins"] * close.iloc[bar] - owed,
                                                   rel=1e-9, abs=1e-6)
    assert outcome.summary["ledger_residual_usd"] < 1e-6


# --- debt_usd=0 changes nothing ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_no_debt_is_the_run_without_it_bit_for_bit(policy, btc_june_2022):
    from benchmarks.fingerprint import fingerprint

    params = {"venue": "binance_coinm"} if policy == "collateral_short" else {}
    ignored = {"debt_usd": 0.0, "debt_type": "coin", "debt_collateral_coins": 3_064.0, "debt_rate": 0.5,
               "debt_call_ratio": 1.1, "debt_cure_ratio": 1.2}
    assert fingerprint(btc_june_2022, policy, {**params, **ignored}) == fingerprint(btc_june_2022, policy, params)


# A value other than the default for each debt_ parameter but debt_usd (each valid on its own).
IGNORED = {"debt_type": "coin", "debt_rate": 0.12, "debt_term_months": 24, "debt_collateral_coins": 3_064.0,
           "debt_call_ratio": 1.5, "debt_cure_ratio": 1.6, "debt_liquidation_ltv": 0.9,
           "debt_call_deadline_days": 1.0}
IGNORED_TAIL = (" nothing here: debt_usd is 0, so no debt is owed at the first bar and the other debt_ parameters "
                "are ignored; give debt_usd > 0 for the debt they describe, or leave them out.")


def test_every_debt_parameter_but_debt_usd_is_in_the_ignored_table():
    from strategies.base import BASE_SPECS

    debt_specs = {s.name: s.default for s in BASE_SPECS if s.name.startswith("debt_") and s.name != "debt_usd"}
    assert set(IGNORED) == set(debt_specs)
    assert all(IGNORED[name] != default for name, default in debt_specs.items())


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_a_debt_parameter_set_without_debt_usd_is_a_run_note(name):
    # Before: the run ignored it without a word. Each parameter alone, and all of them together, are named.
    market = synthetic_market([(100.0,) * 4] * 3)
    base = {"fleet": "S19Pro:1@2030-01-01"}
    shown = f"{IGNORED[name]:g}" if isinstance(IGNORED[name], float) else str(IGNORED[name])
    outcome = api.run_policy(market, "unhedged", {**base, name: IGNORED[name]})
    assert f"{name}={shown} changes{IGNORED_TAIL}" in outcome.notes
    assert outcome.warnings == []  # a note: a sweep over debt_usd including 0 runs as before
    every = api.run_policy(market, "unhedged", {**base, "debt_usd": 0.0, **IGNORED})
    names = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                      for key, value in IGNORED.items())  # in the policies listing's order, as IGNORED
    assert f"{names} change{IGNORED_TAIL}" in every.notes


@pytest.mark.parametrize("params", [{}, {"debt_usd": 0.0}, {"debt_rate": RATE, "debt_type": "equipment"},
                                    {"debt_usd": 1_000.0, "debt_rate": 0.12, "debt_term_months": 24}],
                         ids=["nothing", "debt_usd-0", "defaults-given", "with-debt"])
def test_no_ignored_debt_note_when_debt_usd_is_given_or_the_others_keep_their_defaults(params):
    market = synthetic_market([(100.0,) * 4] * 3)
    outcome = api.run_policy(market, "unhedged", {"fleet": "S19Pro:1@2030-01-01", "start_usd": 10_000.0, **params})
    assert not [note for note in outcome.notes if IGNORED_TAIL in note]


# --- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "message"), [
    ({"debt_type": "coin"}, "debt_type='coin' needs debt_collateral_coins > 0: the coins pledged for "
                            "debt_usd=1,000,000 USD at the first bar"),
    ({"debt_collateral_coins": 10.0}, "debt_collateral_coins=10 pledges coins, but debt_type='equipment' is an "
                                      "amortising loan without coin collateral"),
    ({"debt_type": "coin", "debt_collateral_coins": 50.0, "debt_call_ratio": 1.1},
     "debt_liquidation_ltv=0.85 must exceed the call LTV 1/debt_call_ratio=0.9091."),
    ({"debt_type": "coin", "debt_collateral_coins": 50.0, "debt_cure_ratio": 1.3},
     "debt_cure_ratio=1.3 must exceed debt_call_ratio=1.33: a call must restore more collateral than the level "
     "that raised it."),
    ({"debt_type": "bond"}, "debt_type"),
    ({"debt_term_months": 0}, "debt_term_months"),
])
@pytest.mark.parametrize("policy", ["unhedged", "static_hedge", "financed_hedge"])
def test_bad_debt_parameters_are_refused_before_any_data_is_read(policy, params, message):
    with pytest.raises(ConfigError) as caught:
        api.check_config({"policy": policy, "params": {"debt_usd": 1e6, **params}})
    assert message in str(caught.value)


def test_a_coin_debt_past_its_liquidation_ltv_at_the_first_open_is_an_error(btc_june_2022):
    # The filing's loan (100M USD against 3,064 BTC) on 2022-06-01: LTV 100M / (3,064 x 31,784.18) = 1.0268, past
    # 0.85: the lender would have sold before the run.
    open0 = btc_june_2022.frame["open"].iloc[0]
    with pytest.raises(ConfigError) as caught:
        api.run_policy(btc_june_2022, "static_hedge", {"debt_usd": 100e6, "debt_type": "coin",
                                                       "debt_collateral_coins": 3_064.0})
    text = str(caught.value)
    assert f"is an LTV of {100e6 / (3_064 * open0):.4f}" in text and "at or past debt_liquidation_ltv=0.85" in text
    assert f"pledge debt_cure_ratio x debt / price = {100e6 * 1.43 / open0:,.4f} BTC" in text


def test_a_coin_debt_past_its_call_at_the_first_open_is_a_warning_and_called_at_the_first_close():
    # 1,000 USD against 12 coins at 100: LTV 0.8333, past the call LTV 0.7519, short of 0.85. The close stays
    # at 100, so the lender calls there; 2 coins more (to 1/1.43 LTV: 1,000 x 1.43 / 100 - 12 = 2.3) meet it.
    market = synthetic_market([(100.0,) * 4] * 3)
    params = {"fleet": "S19Pro:1@2030-01-01", "debt_usd": 1_000.0, "debt_type": "coin", "debt_collateral_coins": 12.0,
              "start_coins": 5.0, "start_usd": 100.0, "spot_fee": 0.0}
    outcome = api.run_policy(market, "unhedged", params)
    (warning,) = outcome.warnings
    assert "is an LTV of 0.8333" in warning and "past its call LTV 0.7519" in warning
    assert warning in outcome.notes
    assert [(str(e["datetime"])[:10], e["kind"]) for e in _events(outcome)] == [("2021-06-01", "loan_call"),
                                                                                  ("2021-06-01", "loan_call_met")]
    (row,) = outcome.result.loans
    # the top-up restores 1.43 x the debt at the first close: 1,000 USD and a day's interest at 10.75 %/yr
    assert row["collateral_end_coin"] == pytest.approx(1_000.0 * (1 + RATE / 365) * 1.43 / 100.0, rel=1e-12)


def test_a_debt_larger_than_the_balance_sheet_is_a_warning_the_run_opens_ruined():
    market = synthetic_market([(100.0,) * 4] * 3)
    outcome = api.run_policy(market, "unhedged", {"fleet": "S19Pro:1@2030-01-01", "debt_usd": 5_000.0,
                                                  "start_usd": 1_000.0})
    (warning,) = outcome.warnings
    assert warning.startswith("the opening equity is -4,000.00 USD: the debt owed at the first bar (5,000.00 USD)")
    assert outcome.summary["ruined"] and outcome.result.equity["equity_usd"].iloc[0] == -4_000.0
    # the summary opens at the opening value, even below zero, and a curve never above zero has no drawdown
    # amount (the part below zero is the run's min equity, not a drawdown)
    assert outcome.summary["initial_equity_usd"] == 1_000.0 - 5_000.0
    assert outcome.summary["max_drawdown_usd"] == 0.0


def test_every_instalment_the_treasury_cannot_pay_is_missed_on_the_bar_it_falls_due(btc_2022):
    # 30M USD over 12 months, no cash: 2,000 S19 Pro cannot earn an instalment of about 2.65M USD a month.
    # Each instalment due in the run is reported once, on its due bar (an instalment paid late was still
    # missed when due), including those behind an older one already missed.
    debt, months = 30e6, 12
    outcome = api.run_policy(btc_2022, "unhedged", {"debt_usd": debt, "debt_term_months": months,
                                                    "start_usd": 0.0, "fleet": "S19Pro:2000@2021-01-01$3000"})
    payment, _ = _annuity(debt, RATE, months)
    first, last = btc_2022.frame.index[0], btc_2022.frame.index[-1]
    due = [first + pd.DateOffset(months=k) for k in range(1, months + 1) if first + pd.DateOffset(months=k) <= last]
    missed = [e for e in _events(outcome) if e["kind"] == "missed_payment"]
    assert [pd.Timestamp(e["datetime"]) for e in missed] == due
    assert [e["detail"].split(" of ")[0] for e in missed] == [f"instalment {k}/{months}" for k in
                                                               range(1, len(due) + 1)]
    (row,) = outcome.result.loans
    assert row["missed_payments"] == len(due) == 11
    book = _ledger(outcome)
    paid = book[(book["kind"] == "loan_payment") & (book["note"] == LOAN)]
    assert len(paid) < len(due) and paid["amount"].to_numpy() == pytest.approx(-payment, rel=1e-12)


# --- the command line -----------------------------------------------------------------------------------------
RANGE = ["--start", "2022-01-01", "--end", "2022-03-31"]
DEBT = ["--set", "debt_usd=15000000", "--set", "debt_term_months=24", "--set", "start_usd=30000000"]


def _main(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("policy", ["unhedged", "static_hedge", "financed_hedge"])
def test_run_with_debt_on_the_command_line(policy, data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    code, out, _ = _main(["run", "--policy", policy, *RANGE, *DEBT, "--json"], capsys)
    assert code == 0
    owed = json.loads(out)
    code, out, _ = _main(["run", "--policy", policy, *RANGE, "--set", "start_usd=30000000", "--json"], capsys)
    plain = json.loads(out)
    assert plain["initial_equity_usd"] - owed["initial_equity_usd"] == pytest.approx(15e6, rel=1e-15)
    existing = owed["loans"][0]
    assert (existing["loan"], existing["debt_start_usd"], existing["type"]) == (LOAN, 15e6, "equipment")
    payment, r = _annuity(15e6, RATE, 24)
    assert existing["debt_end_usd"] == pytest.approx(_balance(15e6, payment, r, 2), rel=1e-12)  # 02-01, 03-01
    assert "loans" not in plain
    code, out, _ = _main(["run", "--policy", policy, *RANGE, *DEBT, "--out", str(tmp_path / "r")], capsys)
    assert code == 0
    assert out.split("\nloans\n", 1)[1].splitlines()[0].split()[:2] == ["metric", "existing"]
    assert (tmp_path / "r" / "loans.csv").read_text().splitlines()[1].startswith(f"{LOAN},existing lender,equipment")
    assert "## Loans" in (tmp_path / "r" / "summary.md").read_text()


def test_compare_two_policies_with_the_same_debt(data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    folder = tmp_path / "cmp"
    code, out, _ = _main(["compare", "--policies", "unhedged,static_hedge", *RANGE, *DEBT, "--json", "--out",
                          str(folder)], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [row["initial_equity_usd"] for row in rows] == [30e6 - 15e6] * 2
    (first,), (second,) = (row["loans"] for row in rows)
    assert first == second  # the same instalments, paid the same days, whatever the hedge
    assert first["principal_paid_usd"] + first["interest_paid_usd"] == pytest.approx(2 * _annuity(15e6, RATE, 24)[0],
                                                                                     rel=1e-12)
    table = pd.read_csv(folder / "loans.csv")
    assert list(table["policy"]) == ["unhedged", "static_hedge"] and set(table["loan"]) == {LOAN}
    summary = (folder / "summary.md").read_text()
    assert "| metric | unhedged: existing lender | static_hedge: existing lender |" in summary
    assert "- **debt** (all runs): 15,000,000.00 USD owed at the first bar" in summary


WEEK = ["--start", "2022-01-01", "--end", "2022-01-10"]


def test_run_and_compare_print_the_ignored_debt_note(data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    setting = ["--set", "debt_rate=0.12", "--set", "debt_type=coin"]
    note = f"debt_type=coin, debt_rate=0.12 change{IGNORED_TAIL}"
    code, _, err = _main(["run", "--policy", "unhedged", *WEEK, *setting, "--out", str(tmp_path / "r")], capsys)
    assert code == 0 and f"\nnote: {note}\n" in f"\n{err}"
    assert f"  - {note}" in (tmp_path / "r" / "summary.md").read_text()
    code, _, err = _main(["compare", "--policies", "unhedged,static_hedge", *WEEK, *setting], capsys)
    assert code == 0 and f"\nnote (unhedged and static_hedge): {note}\n" in f"\n{err}"
    code, _, err = _main(["run", "--policy", "unhedged", *WEEK, *setting, "--set", "debt_usd=0"], capsys)
    assert code == 0 and note in err
    code, _, err = _main(["run", "--policy", "unhedged", *WEEK, "--set", "debt_rate=0.1075"], capsys)
    assert code == 0 and "debt_usd is 0" not in err


def test_a_data_dependent_debt_error_is_one_line_on_the_command_line(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    code, out, err = _main(["run", "--policy", "unhedged", "--start", "2022-06-01", "--end", "2022-06-30", "--set",
                            "debt_usd=100000000", "--set", "debt_type=coin", "--set", "debt_collateral_coins=3064"],
                           capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("run_backtest.py: error: debt_usd=100,000,000 USD against debt_collateral_coins=3,064.0000 "
                           "BTC at the first bar's open (31,784.18 USD on 2022-06-01)")
    assert math.isfinite(float(line.split("is an LTV of ")[1].split()[0]))


def test_the_loans_section_speaks_of_debt_owed_only_for_a_run_that_owed_it(btc_june_2022):
    from analyzers.loan_stats import loans_markdown

    drawn = api.run_policy(btc_june_2022, "financed_expansion", {"loan_date": "2022-06-01"}).result.loans
    owed = api.run_policy(btc_june_2022, "unhedged", {"debt_usd": 1e6, "start_usd": 5e6}).result.loans
    assert [row["drawn"] for row in owed] == ["before the run"] and "before the run" not in [
        row["drawn"] for row in drawn]
    assert "debt_usd" not in loans_markdown({"financed_expansion": drawn})
    assert "Debt owed at the first bar (debt_usd) was spent before the run" in loans_markdown({"unhedged": owed})
