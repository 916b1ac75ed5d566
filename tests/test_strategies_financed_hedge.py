"""``financed_hedge``: ``financed_expansion``'s loan and machines with ``static_hedge``'s production short.

Closed forms on synthetic bars with a constant network rate (the short's size before and after the purchase,
the loan's draw, pledge, purchase and interest, the wallets), the policy's class and parameters, and real runs
over 2021-06-01..2022-12-31 with a coin loan drawn on 2021-12-31, whose figures are recomputed from their own
ledger and events; with ``hedge_ratio=0`` it is ``financed_expansion`` figure for figure.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from minehedge import api
from minehedge.errors import ConfigError
from mining.hardware import resolve_spec
from strategies.policies import FinancedExpansion, FinancedHedge, StaticHedge
from strategies.registry import policy_class, policy_specs
from tests.test_strategies_policies import market, synthetic_market

# --- the class ----------------------------------------------------------------------------------------------


def test_one_mro_futures_on_and_the_parameters_of_both_parents():
    assert policy_class("financed_hedge") is FinancedHedge
    assert FinancedHedge.__mro__[:4] == (FinancedHedge, FinancedExpansion, StaticHedge,
                                         FinancedExpansion.__mro__[1])
    assert FinancedHedge.uses_futures and FinancedHedge.restores_leverage_on_roll
    names = [spec.name for spec in policy_specs()["financed_hedge"]]
    expansion = {spec.name for spec in FinancedExpansion.specs}
    hedge = {spec.name for spec in StaticHedge.specs}
    assert set(names) == expansion | hedge and len(names) == len(set(names))
    (answer,) = [spec for spec in FinancedHedge.specs if spec.name == "on_margin_call"]
    assert "margin call" in answer.doc and "coin-loan call" in answer.doc


def test_both_parents_checks_run():
    # FinancedExpansion.check_params (the loan's terms) and MinerStrategy's futures checks (venue, leverage),
    # through one cooperative super() chain
    values = {spec.name: spec.default for spec in FinancedHedge.specs}
    FinancedHedge.check_params(values)
    with pytest.raises(ConfigError, match=r"collateral_ratio=1.3 must exceed call_ratio=1.33"):
        FinancedHedge.check_params({**values, "collateral_ratio": 1.3})
    with pytest.raises(ConfigError, match=r"venue='cme' lists dated contracts only"):
        FinancedHedge.check_params({**values, "venue": "cme"})
    with pytest.raises(ConfigError, match=r"margin_buffer=0.9 is not below"):
        FinancedHedge.check_params({**values, "margin_buffer": 0.9})
    with pytest.raises(ConfigError, match=r"expansion_model='S19XP' mines BTC, not ETH"):
        FinancedHedge.check_params({**values, "asset": "ETH", "venue": "binance_coinm"})


# --- closed forms on synthetic bars ---------------------------------------------------------------------------
COINS_PER_TH_DAY = 1e-5  # BTC per TH/s per day, every day
PRICE = 10_000.0


def mining_market(days: int, start: str = "2021-06-20"):
    """``days`` daily bars at 10,000 USD from ``start``, no funding, and a constant network rate: a machine of
    H TH/s mines H x 1e-5 BTC a day (published as it is on every day, so the lag does not matter)."""
    m = synthetic_market([(PRICE,) * 4] * days, start=start)
    frame = m.frame.assign(coins_per_unit_day=COINS_PER_TH_DAY, hashprice=COINS_PER_TH_DAY * PRICE)
    return dataclasses.replace(m, frame=frame, fingerprint="mining synthetic")


# 10 S19 Pro (110 TH/s) mine 10 x 110 x 1e-5 = 0.011 BTC a day; the coin loan of 5,000 USD drawn at the 06-24
# bar buys 5 S19 XP (140 TH/s) at 1,000 USD, 5 x 140 x 1e-5 = 0.007 BTC a day more. No pool fee, no downtime,
# no power bill: the production is the hash rate times the rate. It pledges 5,000 x 1.43 / 10,000 BTC.
SYNTH = {"fleet": "S19Pro:10@2021-01-01", "expansion_model": "S19XP", "uptime": 1.0, "pool_fee": 0.0,
         "power_usd_per_kwh": 0.0, "curtail": False, "spot_fee": 0.0, "start_usd": 10_000.0, "start_coins": 2.0,
         "loan_type": "coin", "loan_date": "2021-06-24", "principal_usd": 5_000.0, "unit_price_usd": 1_000.0,
         "annual_rate": 0.1075, "hedge_ratio": 0.8, "horizon_days": 30.0, "roll_days": 30.0, "leverage": 2.0}


def _th(model: str) -> float:
    return resolve_spec(model).hashrate_hs / 1e12


@pytest.fixture(scope="module")
def synthetic_run():
    m = mining_market(15)  # 2021-06-20 .. 07-04: a month boundary after the draw
    strategy, _, _ = api._run_cerebro(m, "financed_hedge", dict(SYNTH), None)
    return m, strategy, api.build_run_result(strategy, {})


def test_the_short_covers_the_base_fleet_then_the_bought_machines_from_the_purchase_bar(synthetic_run):
    m, strategy, result = synthetic_run
    base = 10 * _th("S19Pro") * COINS_PER_TH_DAY
    units = int(SYNTH["principal_usd"] // SYNTH["unit_price_usd"])
    bought = units * _th("S19XP") * COINS_PER_TH_DAY
    purchase = m.frame.index.get_loc(pd.Timestamp(SYNTH["loan_date"], tz="UTC"))
    assert strategy.units_bought == units == 5
    assert strategy._production_per_day == pytest.approx([base] * purchase + [base + bought] * (15 - purchase),
                                                          rel=1e-12)
    # the first bar's roll sizes on the base fleet (filled at the next open); the purchase bar re-sizes on the
    # whole fleet (filled at the next open); the next roll is 30 days after it, past the run
    hedged = SYNTH["hedge_ratio"] * SYNTH["horizon_days"]
    fills = [(str(t["datetime"])[:10], t["size"], t["price"]) for t in result.trades]
    assert fills == [("2021-06-21", pytest.approx(-hedged * base, rel=1e-12), PRICE),
                     ("2021-06-25", pytest.approx(-hedged * bought, rel=1e-12), PRICE)]
    assert strategy.position_size() == pytest.approx(-hedged * (base + bought), rel=1e-12)
    # the coins mined are the production: the machines hash from the purchase bar on
    mined = sum(e.amount for e in strategy.broker.ledger.entries if e.kind == "mining_credit")
    assert mined == pytest.approx(15 * base + (15 - purchase) * bought, rel=1e-12)


def test_the_loan_is_drawn_pledged_spent_and_charged_as_financed_expansions(synthetic_run):
    m, strategy, result = synthetic_run
    rows = [(str(e.time)[:10], e.kind, e.currency, e.wallet, e.amount) for e in strategy.broker.ledger.entries
            if e.kind in ("loan_draw", "hardware_purchase", "loan_interest")
            or (e.kind == "transfer" and e.wallet == "collateral")]
    principal, rate = SYNTH["principal_usd"], SYNTH["annual_rate"]
    pledge = principal * 1.43 / PRICE
    interest = principal * rate * 7 / 365  # 06-24 to 07-01, actual/365, paid on the month's first bar
    assert rows == [("2021-06-24", "transfer", "BTC", "collateral", pytest.approx(pledge, rel=1e-12)),
                    ("2021-06-24", "loan_draw", "USD", "spot", principal),
                    ("2021-06-24", "hardware_purchase", "USD", "spot", -5 * SYNTH["unit_price_usd"]),
                    ("2021-07-01", "loan_interest", "USD", "spot", pytest.approx(-interest, rel=1e-12))]
    assert strategy.loan.collateral_coin == pytest.approx(pledge, rel=1e-12)
    assert strategy.loan.debt_usd == pytest.approx(principal * (1 + rate * 3 / 365), rel=1e-12)  # 07-01..07-04
    assert result.summary["ledger_residual_usd"] < 1e-9 and not result.summary["insolvent"]


def test_the_pledged_coins_are_counted_once_and_never_raised(synthetic_run):
    # wallets: spot (the treasury), futures (the linear hedge's USD margin) and collateral (the lender's): each
    # coin is in one; the treasury can raise cash and spot coins only
    m, strategy, result = synthetic_run
    broker, pledged = strategy.broker, strategy.loan.collateral_coin
    wallets = {w: broker.free_balance("BTC", w) for w in ("spot", "futures")}
    assert wallets["futures"] == 0.0
    assert broker.get_coins("BTC") == pytest.approx(wallets["spot"] + pledged, rel=1e-15)
    assert strategy.raisable_usd(PRICE) == pytest.approx(broker.get_cash() + wallets["spot"] * PRICE, rel=1e-15)
    assert result.equity["coins"].iloc[-1] == pytest.approx(broker.get_coins("BTC"), rel=1e-15)
    # equity: cash, coins (collateral included), the machines, the futures margin, less the debt
    assert result.summary["final_equity_coin"] * PRICE == pytest.approx(result.summary["final_equity_usd"],
                                                                        rel=1e-12)


def test_financed_expansion_on_the_same_bars_is_unchanged_by_the_production_it_now_records():
    # financed_expansion has no hedge: it records the same production, and its run equals financed_hedge's at
    # hedge_ratio 0
    m = mining_market(15)
    params = {k: v for k, v in SYNTH.items() if k not in ("hedge_ratio", "horizon_days", "roll_days", "leverage")}
    expansion, _, _ = api._run_cerebro(m, "financed_expansion", params, None)
    hedge, _, _ = api._run_cerebro(m, "financed_hedge", {**SYNTH, "hedge_ratio": 0.0}, None)
    assert expansion._production_per_day == hedge._production_per_day
    a, b = api.build_run_result(expansion, {}), api.build_run_result(hedge, {})
    assert a.equity.equals(b.equity) and a.ledger == b.ledger and a.events == b.events and b.trades == []


# --- real data: a coin loan at the end of 2021, hedged or not, through 2022 -----------------------------------
# The test module's LOAN terms: 100 S19 Pro, 2M USD and 600 BTC, 10M USD borrowed at the default terms
# (collateral 1.43, call 1.33, liquidation LTV 0.85, 10.75 %/yr) on 2021-12-31 for S19 XP at 6,000 USD; the
# short is static_hedge's default, half of 30 days' production at 2x. The treasury backs the whole principal
# in both runs, so both pledge the same coins.
LOAN = {"fleet": "S19Pro:100@2019-06-01", "loan_type": "coin", "loan_date": "2021-12-31", "principal_usd": 10e6,
        "start_usd": 2e6, "start_coins": 600.0, "expansion_model": "S19XP", "unit_price_usd": 6_000.0}
HEDGE_ONLY = ("hedge_ratio", "horizon_days", "roll_days", "leverage", "margin_buffer")


@pytest.fixture(scope="module")
def btc_21_22(data_dir):
    return market(data_dir, "2021-06-01", "2022-12-31")


def _loan_events(outcome) -> list[tuple]:
    return [(e["datetime"], e["kind"], e["detail"]) for e in outcome.result.events if "loan" in e["kind"]]


@pytest.mark.parametrize("answer", ["top_up_from_treasury", "reduce_position", "ignore"])
def test_one_on_margin_call_answers_the_hedges_calls_and_the_loans(btc_21_22, answer):
    # At 10x with the desk's own call 5 % from the liquidation price, the short is called in 2021's rallies and
    # gets static_hedge's answer. The loan's calls get financed_expansion's: reduce_position and ignore leave
    # them to the lender, who acts on the price and the collateral alone, so its calls (and any liquidation)
    # come at the same bars with the same figures as financed_expansion's with on_margin_call=ignore. A top-up
    # pledges spare spot coins, all or nothing, and the hedge changes how many the treasury has (its gains pay
    # bills that coin sales paid, its losses the other way round): every call is met, not always at the same
    # bar as without the hedge (here the treasury has more spare coins in November 2022 and meets the call at
    # once, a bar earlier).
    hedge = {"leverage": 10.0, "margin_buffer": 0.05, "on_margin_call": answer}
    hedged = api.run_policy(btc_21_22, "financed_hedge", {**LOAN, **hedge})
    kinds = [kind for _, kind, _ in _loan_events(hedged)]
    if answer == "top_up_from_treasury":
        assert kinds.count("loan_call") == kinds.count("loan_call_met") >= 1 and "loan_liquidation" not in kinds
    else:
        alone = api.run_policy(btc_21_22, "financed_expansion", {**LOAN, "on_margin_call": "ignore"})
        assert _loan_events(hedged) == _loan_events(alone) and "loan_call_met" not in kinds
    calls = [e for e in hedged.result.events if e["kind"] == "desk_margin_call"]
    said = {"top_up_from_treasury": "margin topped up to notional / leverage", "reduce_position": "position halved",
            "ignore": "no action (on_margin_call=ignore)"}[answer]
    assert calls and all(e["detail"].endswith(said) for e in calls)
    if answer == "reduce_position":  # each call halves the short: a buy of half of it at the next open
        fills = pd.DataFrame(hedged.result.trades)
        held = fills["size"].cumsum()
        for call in calls:
            after = fills.index[pd.to_datetime(fills["datetime"]) > pd.Timestamp(call["datetime"])][0]
            before = held.iloc[after - 1] if after else 0.0
            assert fills["size"].iloc[after] == pytest.approx(-before / 2.0, rel=1e-12)


@pytest.fixture(scope="module")
def real_runs(btc_21_22):
    strategy, _, _ = api._run_cerebro(btc_21_22, "financed_hedge", dict(LOAN), None)
    hedged = api.build_run_result(strategy, {})
    alone = api.run_policy(btc_21_22, "financed_expansion", dict(LOAN)).result
    return strategy, hedged, alone


def test_a_real_run_sizes_the_short_on_the_whole_fleet_from_the_purchase(btc_21_22, real_runs):
    strategy, hedged, _ = real_runs
    index = btc_21_22.frame.index
    purchase = index.get_loc(pd.Timestamp(LOAN["loan_date"], tz="UTC"))
    # the production the short reads: the base fleet's, then that of the fleet with the machines bought
    # deployed on the loan date, as static_hedge computes either from its own fleet
    units = int(LOAN["principal_usd"] // LOAN["unit_price_usd"])
    base, _, _ = api._run_cerebro(btc_21_22, "static_hedge", {"fleet": LOAN["fleet"]}, None)
    whole, _, _ = api._run_cerebro(btc_21_22, "static_hedge",
                                   {"fleet": f"{LOAN['fleet']},S19XP:{units}@{LOAN['loan_date']}"}, None)
    assert strategy.units_bought == units
    assert strategy._production_per_day[:purchase] == base._production_per_day[:purchase]
    assert strategy._production_per_day[purchase:] == pytest.approx(whole._production_per_day[purchase:], rel=1e-12)
    assert whole._production_per_day[purchase] > 1.5 * base._production_per_day[purchase]
    # every re-size fill brings the short to half of 30 days' production at the bar before it (daily bars);
    # the re-sizes: the first bar, every 30 days, the purchase bar and every 30 days from it
    fills = pd.DataFrame(hedged.trades)
    held = fills["size"].cumsum()
    resized = fills.index[fills["reason"] == ""]
    bars = [index.get_loc(pd.Timestamp(fills["datetime"].iloc[k])) - 1 for k in resized]
    for k, bar in zip(resized, bars, strict=True):
        assert held.iloc[k] == pytest.approx(-0.5 * 30 * strategy._production_per_day[bar], rel=1e-9)
    assert [str(index[b])[:10] for b in bars if b >= purchase][0] == LOAN["loan_date"]
    assert set(fills["reason"]) <= {"", "treasury"}
    assert not [n for n in hedged.assumptions.get("run notes", []) if "cut to the collateral" in n]


def test_a_real_run_pays_the_loan_monthly_and_the_hedge_its_funding(btc_21_22, real_runs):
    strategy, hedged, alone = real_runs
    book = pd.DataFrame(hedged.ledger)
    when = pd.to_datetime(book["datetime"])
    # funding and futures P&L are there, and the summary's funding is the ledger's
    funding = book[book["kind"] == "funding"]["amount"]
    assert len(funding) > 1000 and (funding > 0).any() and (funding < 0).any()
    assert hedged.summary["funding_received_usd"] == pytest.approx(funding[funding > 0].sum(), rel=1e-9)
    assert hedged.summary["funding_paid_usd"] == pytest.approx(-funding[funding < 0].sum(), rel=1e-9)
    assert (book["kind"] == "realized_pnl").any() and hedged.summary["futures_pnl_usd"] != 0.0
    # interest, 10.75 %/yr actual/365 on 10M USD, paid on the first bar of each month (from whichever wallet
    # holds the cash) until the lender's liquidation closes the loan
    closed = [e["datetime"] for e in hedged.events if e["kind"] == "loan_liquidation"]
    interest = book[book["kind"] == "loan_interest"].groupby(when.dt.normalize())["amount"].sum()
    last = pd.Timestamp(closed[0] if closed else btc_21_22.frame.index[-1])
    months = pd.date_range(pd.Timestamp("2022-01-01", tz=last.tz), last, freq="MS")
    assert interest.index.tolist() == months.tolist()
    starts = [pd.Timestamp(LOAN["loan_date"], tz="UTC"), *months[:-1]]
    expected = [-LOAN["principal_usd"] * 0.1075 * (end - start).days / 365 for start, end in zip(starts, months,
                                                                                                 strict=True)]
    assert interest.tolist() == pytest.approx(expected, rel=1e-9)
    # the lender sees the same collateral, hedged or not: the same calls, top-ups and liquidation, at the
    # same bars, with the same figures
    assert [e for e in hedged.events if "loan" in e["kind"]] == [e for e in alone.events if "loan" in e["kind"]]
    assert hedged.summary["loan_calls"] == alone.summary["loan_calls"] >= 1
    # the ledger adds up, and equity is what the ledger says: the hedge's figures are the difference
    assert hedged.summary["ledger_residual_usd"] < 1e-6 and not hedged.summary["insolvent"]


@pytest.mark.parametrize(("start", "end", "loan"), [
    ("2018-01-01", "2018-12-31", {"loan_date": "2018-03-01", "principal_usd": 2e6}),
    ("2020-01-01", "2020-06-30", {"loan_date": "2020-02-14", "principal_usd": 2e6}),
    ("2021-06-01", "2022-12-31", {}),
    ("2021-06-01", "2022-12-31", {"loan_type": "equipment"}),
    ("2021-06-01", "2022-12-31", {"start_coins": 0.0, "fleet": "S19Pro:2000@2020-06-01"}),  # principal cut
])
def test_hedge_ratio_zero_is_financed_expansion_figure_for_figure(data_dir, start, end, loan):
    m = market(data_dir, start, end)
    params = {**LOAN, **loan}
    alone = api.run_policy(m, "financed_expansion", params)
    zero = api.run_policy(m, "financed_hedge", {**params, "hedge_ratio": 0.0})
    assert zero.summary == alone.summary
    assert zero.result.equity.equals(alone.result.equity)
    assert zero.result.ledger == alone.result.ledger and zero.result.events == alone.result.events
    assert zero.result.trades == []
    # the run notes too, but for the venue profile's dates before its first schedule (a hedge's venue)
    venue = [n for n in zero.result.assumptions.get("run notes", []) if n.startswith("binance_usdm")]
    assert [n for n in zero.result.assumptions.get("run notes", []) if n not in venue] == \
        alone.result.assumptions.get("run notes", [])
    assert bool(venue) == (pd.Timestamp(start) < pd.Timestamp("2019-09-10"))
