"""The summary's cash-insolvency keys: ``insolvencies`` (the run's ``insolvency`` events, one at the first bar of
each spell) and ``insolvent_days`` (calendar days from each spell's ``insolvency`` bar to its ``insolvency_cured``
bar, or to the end of the run's last bar). Closed forms on synthetic bars (no mining revenue, no funding), on
daily and intraday bars, and two runs on the shared data whose insolvency other tests pin.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analyzers import event_stats
from analyzers.comparison import comparison_markdown
from analyzers.report import write_report
from minehedge import api
from minehedge.sweep import LocalExecutor, expand_grid, rank_results, run_sweep
from tests.test_strategies_policies import CME_CARRY, CME_DRAW, market, synthetic_market


def spells_from_events(result) -> float:
    """Days insolvent, from the event list and the equity index alone: each ``insolvency`` to the next
    ``insolvency_cured``, or to the end of the last bar (its time plus the bar spacing)."""
    index = result.equity.index
    end = index[-1] + (index[1] - index[0])
    days, start = 0.0, None
    for record in result.events:
        if record["kind"] == "insolvency" and start is None:
            start = pd.Timestamp(record["datetime"])
        elif record["kind"] == "insolvency_cured" and start is not None:
            days += (pd.Timestamp(record["datetime"]) - start) / pd.Timedelta(days=1)
            start = None
    return days + ((end - start) / pd.Timedelta(days=1) if start is not None else 0.0)


@pytest.mark.parametrize(("freq", "bars"), [("1D", 6), ("4h", 24), ("1h", 72)])
def test_bills_unpaid_to_the_end_of_the_run_count_one_insolvency_lasting_to_the_end_of_the_last_bar(freq, bars):
    # One S19 Pro (3.25 kW) always on at 0.05 USD/kWh, no revenue: 3.25 x h x 0.05 USD a bar of h hours. 10 USD pay
    # the first floor(10 / bill) bars (2 daily, 15 of 4h, 61 of 1h); the next bar's bill cannot be paid: the one
    # insolvency, never cured. The miner is insolvent from that bar's open to the end of the last bar.
    hours = pd.Timedelta(freq) / pd.Timedelta(hours=1)
    bill = 3.25 * hours * 0.05
    paid = math.floor(10.0 / bill)
    m = synthetic_market([(100.0,) * 4] * bars, freq=freq)
    params = {"fleet": "S19Pro:1@2021-01-01", "power_usd_per_kwh": 0.05, "uptime": 1.0, "curtail": False,
              "start_usd": 10.0, "pool_fee": 0.0}
    outcome = api.run_policy(m, "unhedged", params)
    first = pd.Timestamp("2021-06-01", tz="UTC") + paid * pd.Timedelta(freq)
    assert [(e["datetime"], e["kind"]) for e in outcome.result.events] == [(first, "insolvency")]
    assert outcome.summary["insolvencies"] == 1
    assert outcome.summary["insolvent_days"] == (bars - paid) * hours / 24  # 4, 1.5 and 11 / 24 days
    assert outcome.summary["insolvent"] is True  # unchanged: an insolvency event


def test_a_cured_insolvency_and_a_later_one_never_cured_are_two_insolvencies():
    # The resume case of tests/test_strategies_policies.py run on: bills of 7.512 USD a day, no revenue. On 06-02
    # the 0.01 spare BTC (at 100) cannot pay the bill: insolvent. At 80 on 06-03 the lender liquidates the 85.8
    # BTC pledged and returns what is beyond the debt; the treasury pays the arrears and the day's bill from it:
    # cured, after one day. It then pays a day's bill a day at 80 until its coins run out: after 06-04's bill it
    # holds `coins`, which pay floor(coins x 80 x 0.999 / 7.512) = 111 more days from 06-05; the day after them,
    # 09-24, is the second insolvency, never cured: to the end of the last bar (10-10), 17 days.
    bills, fee, days = 7.512, 0.001, 132
    m = synthetic_market([(100.0,) * 4] * 2 + [(80.0,) * 4] * (days - 2))
    params = {"fleet": "S19Pro:1@2021-01-01", "loan_type": "coin", "loan_date": "2021-06-01",
              "principal_usd": 6_000.0, "unit_price_usd": 6_000.0, "expansion_model": "S19XP",
              "power_usd_per_kwh": 0.05, "uptime": 1.0, "curtail": False, "spot_fee": fee, "start_usd": 0.0,
              "start_coins": 85.8 + bills / (100.0 * (1 - fee)) + 0.01, "on_margin_call": "ignore"}
    outcome = api.run_policy(m, "financed_expansion", params)
    arrears = bills - 0.01 * 100.0 * (1 - fee)
    debt = 6_000 * (1 + 2 * 0.1075 / 365)
    coins = 85.8 - debt / 80.0 - (arrears + 2 * bills) / (80.0 * (1 - fee))
    second = pd.Timestamp("2021-06-05") + pd.Timedelta(days=math.floor(coins * 80.0 * (1 - fee) / bills))
    end = pd.Timestamp("2021-06-01") + pd.Timedelta(days=days)  # the end of the last bar, 10-10
    kinds = [(str(e["datetime"])[:10], e["kind"]) for e in outcome.result.events]
    assert kinds == [("2021-06-02", "insolvency"), ("2021-06-03", "loan_liquidation"),
                     ("2021-06-03", "insolvency_cured"), (f"{second:%Y-%m-%d}", "insolvency")]
    assert f"{second:%Y-%m-%d}" == "2021-09-24"
    assert outcome.summary["insolvencies"] == 2  # the cure is not an insolvency
    assert outcome.summary["insolvent_days"] == 1.0 + (end - second).days == 18.0
    # bills went unpaid, yet the machine the loan bought keeps book equity above zero: insolvent, not ruined
    assert outcome.summary["insolvent"] is True and outcome.summary["ruined"] is False


def test_on_4h_bars_an_insolvency_cured_when_cme_reopens_lasts_its_hours_over_24():
    # The crash case of tests/test_strategies_policies.py: 4h bars from Monday 2021-03-01, one CME contract long,
    # 19.50 USD of bills a bar. The price falls to 5,000 from bar 33 (Saturday 12:00) to Sunday 16:00: closing
    # the contract would free nothing, so the bills carried since Saturday 00:00 and that bar's own cannot be
    # paid: insolvent at Saturday 12:00. CME reopens Sunday 23:00 UTC, within the 20:00 bar, at 10,000: the draw
    # pays the arrears and mining resumes there. Insolvent 32 hours: 32 / 24 days.
    rows = [(10_000.0,) * 4] * 48
    rows[33:41] = [(5_000.0,) * 4] * 8
    m = synthetic_market(rows, start="2021-03-01", freq="4h")
    outcome = api.run_policy(m, "leveraged_long", {**CME_CARRY, "start_usd": 25_604.75})
    crash = pd.Timestamp("2021-03-01", tz="UTC") + 33 * pd.Timedelta(hours=4)
    reopen = pd.Timestamp("2021-03-07 20:00", tz="UTC")
    spells = [(e["datetime"], e["kind"]) for e in outcome.result.events if e["kind"].startswith("insolvency")]
    assert spells == [(crash, "insolvency"), (reopen, "insolvency_cured")]
    assert outcome.summary["insolvencies"] == 1
    assert outcome.summary["insolvent_days"] == (reopen - crash) / pd.Timedelta(days=1) == 32 / 24


def test_spells_from_a_hand_made_log_on_4h_bars():
    # 12 bars of 4h from 2021-03-01. An insolvency at bar 1 (stamped mid-bar: placed on its bar), cured at bar 4;
    # a cure with no spell open is ignored; a new insolvency on bar 4 itself, a second event for it on bar 6 (the
    # miner raises none: counted as an event, but the clock runs from bar 4), never cured: to the end of bar 11.
    times = pd.date_range("2021-03-01", periods=12, freq="4h", tz="UTC")
    log = [{"datetime": times[0], "kind": "insolvency_cured"},
           {"datetime": times[1] + pd.Timedelta(minutes=30), "kind": "insolvency"},
           {"datetime": times[4], "kind": "insolvency_cured"}, {"datetime": times[4], "kind": "insolvency"},
           {"datetime": times[6], "kind": "insolvency"}]
    log = [{**r, **{k: 0.0 for k in ("size", "price", "equity_usd", "loss_usd", "fee_usd")}} for r in log]
    assert event_stats.insolvency_spells(log, times) == [(1, 4), (4, None)]
    assert event_stats.insolvent_days(log, times) == (3 + 8) * 4 / 24
    assert event_stats.event_totals(log)["insolvencies"] == 3
    assert event_stats.insolvent_days([], times) == 0.0 and event_stats.insolvency_spells(log, times[:0]) == []
    # one bar alone counts a day, as bar_durations_days does
    assert event_stats.insolvent_days(log[1:2], times[1:2]) == 1.0
    # a log out of time order is read in time order: the cure at bar 4 ends the spell from bar 1 (the cure, read
    # first, was ignored and the spell ran to the end); a cure logged after a later insolvency precedes it (the
    # spell (5, 2) read -3 bars)
    assert event_stats.insolvency_spells([log[2], log[1]], times) == [(1, 4)]
    assert event_stats.insolvent_days([log[2], log[1]], times) == 3 * 4 / 24
    late = [{**log[1], "datetime": times[5]}, {**log[2], "datetime": times[2]}]
    assert event_stats.insolvency_spells(late, times) == [(5, None)]
    assert event_stats.insolvent_days(late, times) == 7 * 4 / 24


def test_on_1h_real_data_the_cme_weekends_insolvency_lasts_from_sunday_17_00_to_the_end(data_dir):
    # The run of test_on_1h_bars_a_cme_weekends_carried_bills_outgrow_the_hedge_and_the_miner_becomes_insolvent:
    # insolvent at Sunday 2019-01-06 17:00 and not cured before the end of the week loaded (Monday 23:00): 31 hours.
    m = market(data_dir, "2019-01-01", "2019-01-07", timeframe="1h")
    outcome = api.run_policy(m, "static_hedge", {**CME_DRAW, "power_usd_per_kwh": 0.14})
    starts = [e["datetime"] for e in outcome.result.events if e["kind"] == "insolvency"]
    assert starts == [pd.Timestamp("2019-01-06 17:00", tz="UTC")]
    assert outcome.summary["insolvencies"] == len(starts) == 1
    assert outcome.summary["insolvent_days"] == spells_from_events(outcome.result) == 31 / 24


def test_on_daily_real_data_a_purchase_the_miner_cannot_pay_leaves_it_insolvent_to_the_years_end(data_dir):
    # The run of test_the_hedge_is_closed_once_the_miner_is_insolvent: 1,000 S19 XP for 10M USD on 2022-03-01
    # with 2M USD; never cured: from 03-01 to the end of 12-31, 306 days.
    m = market(data_dir, "2022-01-01", "2022-12-31")
    outcome = api.run_policy(m, "static_hedge", {"fleet": "S19Pro:2000@2020-06-01,S19XP:1000@2022-03-01$10000"})
    kinds = [e["kind"] for e in outcome.result.events]
    assert outcome.summary["insolvencies"] == kinds.count("insolvency") == 1
    assert "insolvency_cured" not in kinds
    assert outcome.summary["insolvent_days"] == spells_from_events(outcome.result) == (
        pd.Timestamp("2023-01-01") - pd.Timestamp("2022-03-01")).days == 306


def test_the_keys_reach_a_sweeps_results_its_ranking_the_report_and_a_comparison(tmp_path):
    # The uncured daily case swept over the opening cash: 10 USD pay 2 of the 6 days' 3.90 USD bills (4 days
    # insolvent), 12 USD pay 3 (3 days), 1,000 USD all (none). Ranked by insolvent_days, less first.
    m = synthetic_market([(100.0,) * 4] * 6)
    params = {"fleet": "S19Pro:1@2021-01-01", "power_usd_per_kwh": 0.05, "uptime": 1.0, "curtail": False,
              "pool_fee": 0.0}
    points = expand_grid({"policy": "unhedged", "params": params}, {"start_usd": [10.0, 12.0, 1_000.0]})
    with LocalExecutor(1) as executor:
        run_sweep(points, api.run_summary, m, data_fingerprint="synthetic", out_dir=tmp_path / "sweep",
                  executor=executor)
    results = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert results[["start_usd", "insolvencies", "insolvent_days"]].values.tolist() == [
        [10.0, 1, 4.0], [12.0, 1, 3.0], [1_000.0, 0, 0.0]]
    assert rank_results(results, "insolvent_days", top=3)["start_usd"].tolist() == [1_000.0, 12.0, 10.0]
    assert rank_results(results, "insolvencies", top=1)["start_usd"].tolist() == [1_000.0]

    outcome = api.run_policy(m, "unhedged", {**params, "start_usd": 10.0})
    write_report(outcome.result, tmp_path / "report", with_charts=False)
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())["summary"]
    assert (saved["insolvencies"], saved["insolvent_days"]) == (1, 4.0)
    markdown = (tmp_path / "report" / "summary.md").read_text()
    assert "| insolvencies | 1 |" in markdown and "| insolvent_days | 4.0 days |" in markdown
    table = comparison_markdown({"unhedged": outcome.result}, [{"policy": "unhedged", **outcome.summary}])
    assert "| insolvencies | 1 |" in table and "| insolvent_days | 4.0 days |" in table
