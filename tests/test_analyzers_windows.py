"""Per-window statistics of one run (``analyzers.windows``) and the window syntax (``minehedge.config``):
closed forms on synthetic equity, events and ledgers; properties over random partitions (returns chain, a
window's drawdown is at most the run's, counts and days add up); a synthetic run whose insolvencies other
tests pin; and a real 2018-2022 comparison over the stress presets, recomputed from each run's own tables.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers import event_stats, ledger_stats, metrics
from analyzers.windows import WINDOW_COLUMNS, run_window_stats, window_stats
from minehedge import api
from minehedge.config import (
    WINDOW_GROUPS,
    WINDOW_PRESETS,
    Window,
    clip_windows,
    load_config_file,
    parse_window,
    parse_windows,
)
from minehedge.errors import ConfigError

DAY = pd.Timedelta(days=1)
EMPTY_LEDGER = ledger_stats.ledger_frame([])


def days(first: str, count: int, freq: str = "1D") -> pd.DatetimeIndex:
    return pd.date_range(first, periods=count, freq=freq, tz="UTC")


def window(name: str, first: str, last: str) -> Window:
    return Window(name, dt.date.fromisoformat(first), dt.date.fromisoformat(last))


def event(when: str, kind: str, loss: float = 0.0, fee: float = 0.0) -> dict[str, object]:
    return {"datetime": pd.Timestamp(when, tz="UTC"), "kind": kind, "loss_usd": loss, "fee_usd": fee}


def entry(when: str, kind: str, amount: float, wallet: str = "futures") -> dict[str, object]:
    return {"datetime": pd.Timestamp(when, tz="UTC"), "kind": kind, "currency": "USD", "wallet": wallet,
            "amount": amount, "instrument": "", "note": "", "amount_usd": amount}


# Ten daily bars from 2021-01-01 and an opening of 100 (the close of 2020-12-31).
EQUITY = pd.Series([100.0, 120.0, 90.0, 60.0, 150.0, 150.0, 75.0, 100.0, 100.0, 50.0], index=days("2021-01-01", 10))
OPENING = {"time": pd.Timestamp("2020-12-31", tz="UTC"), "equity_usd": 100.0}
FIRST, SECOND = window("first", "2021-01-01", "2021-01-04"), window("second", "2021-01-05", "2021-01-10")


def test_returns_and_drawdowns_count_from_the_close_before_the_window():
    frame = window_stats(EQUITY, [], EMPTY_LEDGER, [FIRST, SECOND], OPENING)
    assert list(frame.columns) == list(WINDOW_COLUMNS)
    first, second = frame.to_dict("records")
    # first: from the opening 100 through 100, 120, 90, 60: -40 %; peak 120 to trough 60: 50 %
    assert (first["start"], first["end"], first["bars"]) == (dt.date(2021, 1, 1), dt.date(2021, 1, 4), 4)
    assert (first["equity_start_usd"], first["equity_end_usd"], first["equity_change_usd"]) == (100.0, 60.0, -40.0)
    assert first["return_pct"] == pytest.approx(-40.0, abs=1e-12)
    assert first["max_drawdown_pct"] == pytest.approx(50.0, abs=1e-12)
    assert first["worst_equity_usd"] == 60.0
    # second: from the first window's last close, 60, through 150, 150, 75, 100, 100, 50: 50/60 - 1; 150 -> 50
    assert (second["equity_start_usd"], second["equity_end_usd"], second["bars"]) == (60.0, 50.0, 6)
    assert second["return_pct"] == pytest.approx(-100.0 / 6.0, abs=1e-12)
    assert second["max_drawdown_pct"] == pytest.approx(200.0 / 3.0, abs=1e-12)
    assert second["worst_equity_usd"] == 50.0
    # chained: 0.6 x (50 / 60) = 0.5, the whole run's -50 %
    assert (1 + first["return_pct"] / 100) * (1 + second["return_pct"] / 100) == pytest.approx(0.5, rel=1e-12)


def test_a_rise_before_the_window_is_not_its_peak_and_a_window_can_start_mid_run():
    # 01-07 to 01-08 starts from the close of 01-06 (150), the bar before it, not from the run's peak
    (row,) = window_stats(EQUITY, [], EMPTY_LEDGER, [window("mid", "2021-01-07", "2021-01-08")],
                          OPENING).to_dict("records")
    assert (row["equity_start_usd"], row["equity_end_usd"], row["bars"]) == (150.0, 100.0, 2)
    assert row["return_pct"] == pytest.approx(-100.0 / 3.0, abs=1e-12)
    assert row["max_drawdown_pct"] == pytest.approx(50.0, abs=1e-12)  # 150 -> 75 within the window
    assert row["worst_equity_usd"] == 75.0


def test_without_an_opening_the_first_window_starts_from_the_first_bar():
    (row,) = window_stats(EQUITY, [], EMPTY_LEDGER, [FIRST]).to_dict("records")
    assert row["equity_start_usd"] == 100.0  # the first bar's value: its own move is not counted
    assert row["return_pct"] == pytest.approx(-40.0, abs=1e-12)
    shifted = pd.Series([80.0, *EQUITY.iloc[1:]], index=EQUITY.index)
    (row,) = window_stats(shifted, [], EMPTY_LEDGER, [FIRST], {"time": None, "equity_usd": 0.0}).to_dict("records")
    # an account opened with nothing starts from nothing (its change is the whole 60), while its return, as the
    # summary's (metrics.with_opening leaves out an opening that is not positive), counts from the first bar
    assert (row["equity_start_usd"], row["equity_change_usd"]) == (0.0, 60.0)
    assert row["return_pct"] == metrics.total_return_pct(shifted.iloc[:4]) == pytest.approx(-25.0, abs=1e-12)
    # so does a debt beyond the assets that a first day's mining lifts above zero (README, Stress windows)
    (row,) = window_stats(shifted, [], EMPTY_LEDGER, [FIRST], {"time": None, "equity_usd": -100.0}).to_dict("records")
    assert (row["equity_start_usd"], row["equity_change_usd"]) == (-100.0, 160.0)
    assert row["return_pct"] == metrics.total_return_pct(shifted.iloc[:4])


def test_a_run_opening_below_zero_starts_its_first_window_at_the_opening_and_the_changes_add_up():
    # debt beyond the assets: opened at -500, first bar -480 (its +20 belongs to the first window)
    owed = EQUITY - 580.0
    opening = {"time": OPENING["time"], "equity_usd": -500.0}
    frame = window_stats(owed, [], EMPTY_LEDGER, [FIRST, SECOND, window("all", "2021-01-01", "2021-01-10")],
                         opening)
    first, second, whole = frame.to_dict("records")
    assert first["equity_start_usd"] == -500.0 and first["equity_change_usd"] == owed.iloc[3] - (-500.0)
    assert first["equity_change_usd"] + second["equity_change_usd"] == owed.iloc[-1] - (-500.0) == -30.0
    assert (whole["equity_start_usd"], whole["equity_change_usd"]) == (-500.0, -30.0)
    assert all(math.isnan(row["return_pct"]) for row in (first, second, whole))
    # the drawdown is the summary's on the same curve (from the first bar; at or below zero throughout: 100 %)
    curve = metrics.with_opening(owed, opening["time"], opening["equity_usd"])
    assert whole["max_drawdown_pct"] == metrics.drawdown_stats(curve).max_drawdown_pct == 100.0


def test_a_whole_run_window_has_the_summary_formulas_figures():
    whole = window("all", "2021-01-01", "2021-01-10")
    (row,) = window_stats(EQUITY, [], EMPTY_LEDGER, [whole], OPENING).to_dict("records")
    curve = metrics.with_opening(EQUITY, OPENING["time"], OPENING["equity_usd"])
    assert row["return_pct"] == metrics.total_return_pct(curve) == pytest.approx(-50.0)
    assert row["max_drawdown_pct"] == pytest.approx(100 * (1 - 50 / 150))  # the peak 150 on 01-05, 50 on 01-10


def test_a_window_opening_ruined_has_no_return_and_a_gap_has_no_bars():
    ruined = pd.Series([100.0, -20.0, 10.0, 30.0], index=days("2021-01-01", 4))
    (row,) = window_stats(ruined, [], EMPTY_LEDGER, [window("after", "2021-01-03", "2021-01-04")],
                          OPENING).to_dict("records")
    assert row["equity_start_usd"] == -20.0 and math.isnan(row["return_pct"])
    assert row["max_drawdown_pct"] == 0.0  # from its first bar, 10, up to 30
    gappy = EQUITY.drop(EQUITY.index[4:6])  # no bars on 01-05 and 01-06
    (row,) = window_stats(gappy, [event("2021-01-03", "liquidation", 7.0, 1.0)], EMPTY_LEDGER,
                          [window("gap", "2021-01-05", "2021-01-06")], OPENING).to_dict("records")
    assert row["bars"] == 0 and row["liquidations"] == 0 and row["insolvent_days"] == 0.0
    assert math.isnan(row["return_pct"]) and math.isnan(row["equity_start_usd"])


def test_events_are_counted_in_the_window_of_their_bar():
    events = [event("2021-01-02", "margin_call"), event("2021-01-03", "liquidation", 7.0, 1.0),
              event("2021-01-05", "loan_call"), event("2021-01-06 00:00", "desk_margin_call"),
              event("2021-01-06", "partial_liquidation", 3.0), event("2021-01-08", "loan_liquidation", 40.0),
              event("2021-01-04 23:59", "cme_margin_call_missed", 2.0)]  # on the 01-04 bar: the first window
    first, second = window_stats(EQUITY, events, EMPTY_LEDGER, [FIRST, SECOND], OPENING).to_dict("records")
    assert {k: first[k] for k in ("margin_calls", "liquidations", "liquidation_loss_usd", "loan_calls",
                                  "loan_liquidations")} == {"margin_calls": 1, "liquidations": 2,
                                                            "liquidation_loss_usd": 9.0, "loan_calls": 0,
                                                            "loan_liquidations": 0}
    assert {k: second[k] for k in ("margin_calls", "liquidations", "liquidation_loss_usd", "loan_calls",
                                   "loan_liquidations")} == {"margin_calls": 1, "liquidations": 1,
                                                             "liquidation_loss_usd": 3.0, "loan_calls": 1,
                                                             "loan_liquidations": 1}


@pytest.mark.parametrize(("marks", "first_days", "second_days", "counts"), [
    ([("2021-01-07", "insolvency"), ("2021-01-09", "insolvency_cured")], 0.0, 2.0, (0, 1)),  # 01-07, 01-08
    ([("2021-01-03", "insolvency"), ("2021-01-06", "insolvency_cured")], 2.0, 1.0, (1, 0)),  # across the edge
    ([("2021-01-09", "insolvency")], 0.0, 2.0, (0, 1)),  # never cured: 01-09 and the last bar, 01-10
    ([("2021-01-02", "insolvency")], 3.0, 6.0, (1, 0)),  # from 01-02 to the end of the run
])
def test_insolvent_days_are_the_spells_clipped_to_the_window(marks, first_days, second_days, counts):
    events = [event(when, kind) for when, kind in marks]
    first, second = window_stats(EQUITY, events, EMPTY_LEDGER, [FIRST, SECOND], OPENING).to_dict("records")
    assert (first["insolvent_days"], second["insolvent_days"]) == (first_days, second_days)
    assert (first["insolvencies"], second["insolvencies"]) == counts
    assert first_days + second_days == event_stats.insolvent_days(events, EQUITY.index)


def test_intraday_insolvency_counts_hours_over_24_on_each_side_of_midnight():
    bars = pd.Series(100.0, index=days("2021-01-01 00:00", 12, "4h"))  # two days of six 4h bars
    events = [event("2021-01-01 16:00", "insolvency"), event("2021-01-02 08:00", "insolvency_cured")]
    first, second = window_stats(bars, events, EMPTY_LEDGER, [window("d1", "2021-01-01", "2021-01-01"),
                                                              window("d2", "2021-01-02", "2021-01-02")],
                                 {"time": bars.index[0] - pd.Timedelta(hours=4), "equity_usd": 100.0}
                                 ).to_dict("records")
    assert (first["bars"], second["bars"]) == (6, 6)
    assert (first["insolvent_days"], second["insolvent_days"]) == (8 / 24, 8 / 24)


def test_funding_and_futures_pnl_are_the_ledger_and_unrealized_changes_within_the_window():
    ledger = ledger_stats.ledger_frame([
        entry("2021-01-02", "funding", 10.0), entry("2021-01-03", "power_cost", -100.0, wallet="spot"),
        entry("2021-01-06", "funding", -4.0), entry("2021-01-07", "realized_pnl", 50.0),
        entry("2021-01-07", "fee", -2.0), entry("2021-01-08", "funding", 3.0, wallet="spot")])
    table = pd.DataFrame({"equity_usd": EQUITY,
                          "unrealized_pnl_usd": [0.0, 0.0, 5.0, 5.0, 0.0, -10.0, 0.0, np.nan, 20.0, 20.0]})
    first, second = window_stats(table, [], ledger, [FIRST, SECOND], OPENING).to_dict("records")
    assert (first["funding_net_usd"], first["futures_pnl_usd"]) == (10.0, 15.0)  # 10 funding + 5 unrealized
    assert (second["funding_net_usd"], second["futures_pnl_usd"]) == (-4.0, 59.0)  # -4 + 50 - 2 + (20 - 5)
    totals = ledger_stats.futures_leg_totals(ledger)
    assert first["futures_pnl_usd"] + second["futures_pnl_usd"] == totals["realized_total_usd"] + 20.0


# ------------------------------------------------------------------------------------------ properties


@st.composite
def runs(draw):
    """A daily equity curve, events on its bars, a partition of its days and an opening value (or none)."""
    count = draw(st.integers(2, 60))
    values = draw(st.lists(st.floats(1.0, 1e6, allow_nan=False), min_size=count, max_size=count))
    kinds = st.sampled_from(["margin_call", "liquidation", "loan_call", "loan_liquidation", "insolvency",
                             "insolvency_cured", "desk_margin_call"])
    events = draw(st.lists(st.tuples(st.integers(0, count - 1), kinds), max_size=12))
    cuts = sorted(draw(st.sets(st.integers(1, count - 1), max_size=6)))
    opening = draw(st.one_of(st.none(), st.floats(1.0, 1e6, allow_nan=False)))
    return values, events, cuts, opening


@settings(max_examples=150, deadline=None)
@given(runs())
def test_windows_over_a_partition_chain_their_returns_and_add_up_their_counts(run):
    values, marks, cuts, opening_value = run
    index = days("2021-01-01", len(values))
    equity = pd.Series(values, index=index)
    events = [event(str(index[bar]), kind, loss=1.0) for bar, kind in sorted(marks)]
    opening = None if opening_value is None else {"time": index[0] - DAY, "equity_usd": opening_value}
    edges = [0, *cuts, len(values)]
    parts = [window(f"w{i}", str(index[a].date()), str(index[b - 1].date()))
             for i, (a, b) in enumerate(itertools.pairwise(edges))]
    whole = window("all", str(index[0].date()), str(index[-1].date()))
    frame = window_stats(equity, events, EMPTY_LEDGER, [*parts, whole], opening)
    pieces, total = frame.iloc[:-1], frame.iloc[-1]
    chained = float(np.prod(1.0 + pieces["return_pct"].to_numpy() / 100.0))
    assert chained == pytest.approx(1.0 + total["return_pct"] / 100.0, rel=1e-9)
    assert (pieces["max_drawdown_pct"] <= total["max_drawdown_pct"] + 1e-9).all()
    assert total["worst_equity_usd"] == pieces["worst_equity_usd"].min() == min(values)
    assert pieces["bars"].sum() == len(values)
    totals = event_stats.event_totals(events)
    for key in ("margin_calls", "liquidations", "loan_calls", "loan_liquidations", "insolvencies"):
        assert pieces[key].sum() == total[key] == totals[key]
    assert pieces["insolvent_days"].sum() == pytest.approx(event_stats.insolvent_days(events, index), abs=1e-9)
    assert total["insolvent_days"] == event_stats.insolvent_days(events, index)


# ------------------------------------------------------------------------------------ window syntax


def test_presets_and_the_stress_group():
    assert [w.spec() for w in parse_window("stress")] == [
        "2018=2018-01-01:2018-12-31", "covid-crash=2020-03-01:2020-03-31", "2021=2021-01-01:2021-12-31",
        "2022=2022-01-01:2022-12-31"]
    assert WINDOW_GROUPS["stress"] == tuple(WINDOW_PRESETS)
    assert parse_window(" crash = 2020-03-12 : 2020-03-13 ") == [window("crash", "2020-03-12", "2020-03-13")]
    assert parse_windows(["2021", "q=2019-01-01:2019-03-31"]) == [WINDOW_PRESETS["2021"],
                                                                   window("q", "2019-01-01", "2019-03-31")]


@pytest.mark.parametrize(("spec", "says"), [
    ("2019", "'2019' is not a window; allowed: NAME=START:END"),
    ("covid", "Did you mean 'covid-crash'?"),
    ("x=2020-03-31:2020-03-01", "START 2020-03-31 is after END 2020-03-01"),
    ("x=2020-03-01", "'2020-03-01' is not START:END"),
    ("x=2020-3-1:2020-03-02", "is not START:END"),
    ("x=2020-02-30:2020-03-01", "day is out of range for month"),
    ("a b=2020-01-01:2020-01-02", "the name 'a b' is not allowed"),
    ("=2020-01-01:2020-01-02", "the name '' is not allowed"),
])
def test_malformed_windows_are_refused_naming_the_value_and_what_is_allowed(spec, says):
    with pytest.raises(ConfigError, match="--window") as caught:
        parse_window(spec)
    assert says in str(caught.value) and spec in str(caught.value)


def test_a_window_given_twice_is_refused():
    with pytest.raises(ConfigError, match="window '2021' is given twice"):
        parse_windows(["stress", "2021"])
    with pytest.raises(ConfigError, match="window 'a' is given twice"):
        parse_windows(["a=2020-01-01:2020-01-02", "a=2021-01-01:2021-01-02"])


def test_windows_outside_the_run_are_refused_and_partly_outside_clipped_with_a_note():
    first, last = dt.date(2020, 1, 1), dt.date(2021, 12, 31)
    with pytest.raises(ConfigError, match=r"window 2018=2018-01-01:2018-12-31 is outside the run \(2020-01-01 "
                                          r"to 2021-12-31\)"):
        clip_windows(parse_window("stress"), first, last)
    fitted, notes = clip_windows([window("a", "2019-06-01", "2020-06-30"), WINDOW_PRESETS["2021"]], first,
                                 dt.date(2021, 6, 30))
    assert fitted == [window("a", "2020-01-01", "2020-06-30"), window("2021", "2021-01-01", "2021-06-30")]
    assert notes == ["window a=2019-06-01:2020-06-30 is clipped to 2020-01-01:2020-06-30, its part within the "
                     "run (2020-01-01 to 2021-06-30)",
                     "window 2021=2021-01-01:2021-12-31 is clipped to 2021-01-01:2021-06-30, its part within the "
                     "run (2020-01-01 to 2021-06-30)"]
    assert clip_windows(parse_window("stress"), None, None) == (parse_window("stress"), [])  # bounds unknown


def test_a_config_file_takes_windows_as_a_list_or_one_string(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('windows = ["covid-crash", "h2=2020-07-01:2020-12-31"]\n')
    assert load_config_file(path)["windows"] == [WINDOW_PRESETS["covid-crash"],
                                                 window("h2", "2020-07-01", "2020-12-31")]
    path.write_text('windows = "stress"\n')
    assert len(load_config_file(path)["windows"]) == 4
    path.write_text("windows = [2020]\n")
    with pytest.raises(ConfigError, match=r"w.toml: windows=2020 is not a window"):
        load_config_file(path)


# ----------------------------------------------------------------------------------------- runs


def test_a_synthetic_run_with_two_insolvencies_splits_them_between_windows():
    # the cured-then-never-cured case of tests/test_analyzers_insolvency.py: insolvent on 06-02 (cured 06-03)
    # and from 09-24 to the end of the last bar (10-10): 1 + 17 days
    from tests.test_strategies_policies import synthetic_market

    bills, fee = 7.512, 0.001
    m = synthetic_market([(100.0,) * 4] * 2 + [(80.0,) * 4] * 130)
    params = {"fleet": "S19Pro:1@2021-01-01", "loan_type": "coin", "loan_date": "2021-06-01",
              "principal_usd": 6_000.0, "unit_price_usd": 6_000.0, "expansion_model": "S19XP",
              "power_usd_per_kwh": 0.05, "uptime": 1.0, "curtail": False, "spot_fee": fee, "start_usd": 0.0,
              "start_coins": 85.8 + bills / (100.0 * (1 - fee)) + 0.01, "on_margin_call": "ignore"}
    outcome = api.run_policy(m, "financed_expansion", params)
    parts = parse_windows(["june=2021-06-01:2021-06-30", "summer=2021-07-01:2021-09-30",
                           "october=2021-10-01:2021-10-10"])
    frame = run_window_stats(outcome.result, parts)
    assert list(frame["insolvencies"]) == [1, 1, 0] and list(frame["loan_liquidations"]) == [1, 0, 0]
    assert list(frame["insolvent_days"]) == [1.0, 7.0, 10.0]  # 06-02; 09-24 to 09-30; 10-01 to 10-10's end
    assert frame["insolvent_days"].sum() == outcome.summary["insolvent_days"] == 18.0


STRESS_POLICIES = ["unhedged", "sell_daily", "static_hedge", "collateral_short", "leveraged_long",
                   "financed_expansion"]


@pytest.fixture(scope="module")
def stress_comparison(data_dir):
    configs = [{"asset": "BTC", "timeframe": "1d", "start": "2018-01-01", "end": "2022-12-31",
                "data_dir": str(data_dir), "policy": policy, "params": {}} for policy in STRESS_POLICIES]
    whole = "all=2018-01-01:2022-12-31"
    return api.compare_runs(configs, None, windows=["stress", whole])


def test_real_stress_windows_are_recomputed_from_each_runs_own_tables(stress_comparison):
    table = stress_comparison.windows
    assert list(table.columns) == ["policy", *WINDOW_COLUMNS]
    assert len(table) == len(STRESS_POLICIES) * 5
    for policy, outcome in stress_comparison.outcomes.items():
        result = outcome.result
        equity = result.equity["equity_usd"]
        rows = table[table["policy"] == policy].set_index("window")
        assert rows.index.tolist() == ["2018", "covid-crash", "2021", "2022", "all"]
        for name, row in rows.iterrows():
            inside = equity[(equity.index >= pd.Timestamp(row["start"], tz="UTC"))
                            & (equity.index < pd.Timestamp(row["end"], tz="UTC") + DAY)]
            before = equity[equity.index < inside.index[0]]
            start = float(before.iloc[-1]) if len(before) else result.opening["equity_usd"]
            assert row["bars"] == len(inside) == {"2018": 365, "covid-crash": 31, "2021": 365, "2022": 365,
                                                  "all": 1826}[name]
            assert row["equity_start_usd"] == start and row["equity_end_usd"] == float(inside.iloc[-1])
            assert row["return_pct"] == pytest.approx((inside.iloc[-1] / start - 1.0) * 100.0, rel=1e-12)
            curve = np.array([start, *inside])
            peak = np.maximum.accumulate(curve)
            assert row["max_drawdown_pct"] == pytest.approx(100.0 * np.max(1.0 - curve / peak), abs=1e-9)
            assert row["worst_equity_usd"] == inside.min()
            stamps = [pd.Timestamp(e["datetime"]) for e in result.events]
            within = [e for e, t in zip(result.events, stamps, strict=True)
                      if inside.index[0] <= t < inside.index[-1] + DAY]
            assert row["liquidations"] == sum(e["kind"] in event_stats.LIQUIDATION_KINDS for e in within)
            assert row["margin_calls"] == sum(e["kind"] in event_stats.MARGIN_CALL_KINDS for e in within)
            assert row["loan_calls"] == sum(e["kind"] == "loan_call" for e in within)
        # the treasury carries: March 2020 starts from the close of 2020-02-29, not from start_usd
        covid = rows.loc["covid-crash"]
        assert covid["equity_start_usd"] == equity[pd.Timestamp("2020-02-29", tz="UTC")] > 2_000_000.0
        # the years chain into the whole run, and the whole-run window is the summary's
        summary = outcome.summary
        whole = rows.loc["all"]
        assert whole["return_pct"] == pytest.approx(summary["total_return_pct"], rel=1e-12)
        assert whole["max_drawdown_pct"] == pytest.approx(summary["max_drawdown_pct"], rel=1e-12)
        for key in ("liquidations", "margin_calls", "loan_calls", "loan_liquidations", "insolvencies"):
            assert whole[key] == summary[key]
        assert whole["insolvent_days"] == summary["insolvent_days"]
        assert whole["futures_pnl_usd"] == pytest.approx(summary["futures_pnl_usd"], abs=1e-6)
        assert whole["funding_net_usd"] == pytest.approx(
            summary["funding_received_usd"] - summary["funding_paid_usd"], abs=1e-6)
        assert (rows.loc[["2018", "covid-crash", "2021", "2022"], "max_drawdown_pct"]
                <= whole["max_drawdown_pct"] + 1e-9).all()


def test_real_windows_of_a_run_opened_below_zero_add_up_to_final_minus_initial(data_dir):
    # the audit's case at small scale: an equipment debt beyond the assets opens the run at about -22 M USD
    params = {"debt_usd": 30_000_000.0, "debt_term_months": 24, "start_coins": 100.0}
    configs = [{"asset": "BTC", "timeframe": "1d", "start": "2021-12-01", "end": "2022-01-31",
                "data_dir": str(data_dir), "policy": policy, "params": params}
               for policy in ("unhedged", "sell_daily")]
    comparison = api.compare_runs(configs, None, windows=["a=2021-12-01:2021-12-31", "b=2022-01-01:2022-01-31",
                                                          "all=2021-12-01:2022-01-31"])
    for policy, outcome in comparison.outcomes.items():
        summary, equity = outcome.summary, outcome.result.equity["equity_usd"]
        a, b, whole = comparison.windows[comparison.windows["policy"] == policy].to_dict("records")
        initial, final = summary["initial_equity_usd"], summary["final_equity_usd"]
        assert initial == outcome.result.opening["equity_usd"] < 0.0 < equity.iloc[0] - initial
        assert a["equity_start_usd"] == whole["equity_start_usd"] == initial
        assert b["equity_start_usd"] == equity[pd.Timestamp("2021-12-31", tz="UTC")]
        assert a["equity_change_usd"] + b["equity_change_usd"] == pytest.approx(final - initial, abs=1e-6)
        assert whole["equity_change_usd"] == final - initial
        assert all(math.isnan(row["return_pct"]) for row in (a, b, whole))
        assert math.isnan(summary["total_return_pct"])
        assert whole["max_drawdown_pct"] == summary["max_drawdown_pct"]


def test_real_stress_windows_say_who_was_liquidated_and_when(stress_comparison):
    table = stress_comparison.windows.set_index(["policy", "window"])
    # static_hedge's liquidations of the run were all in the 2021 run-up; the unhedged treasury lost most of
    # its value in 2022 while the 1x coin-margined short of it gained
    liquidations = stress_comparison.outcomes["static_hedge"].summary["liquidations"]
    assert table.loc[("static_hedge", "2021"), "liquidations"] == liquidations > 0  # all of them in 2021
    # the unhedged treasury holds only coins (no cash at the year ends): its 2022 return is the coins held
    # times the price, end over start; mining added coins, so it lost less than BTC's own 2022 fall
    unhedged = stress_comparison.outcomes["unhedged"].result
    ends = [pd.Timestamp(day, tz="UTC") for day in ("2021-12-31", "2022-12-31")]
    coins, price = unhedged.equity.loc[ends, "coins"], unhedged.prices.loc[ends]
    assert abs(unhedged.equity.loc[ends, "cash_usd"]).max() < 1e-6
    held = (coins.iloc[1] * price.iloc[1]) / (coins.iloc[0] * price.iloc[0]) - 1.0
    assert table.loc[("unhedged", "2022"), "return_pct"] == pytest.approx(held * 100.0, rel=1e-9)
    assert (price.iloc[1] / price.iloc[0] - 1.0) * 100.0 < table.loc[("unhedged", "2022"), "return_pct"] < 0.0
    assert table.loc[("collateral_short", "2022"), "return_pct"] > 0
    calls = stress_comparison.outcomes["financed_expansion"].summary["loan_calls"]
    assert table.loc[("financed_expansion", "2022"), "loan_calls"] == calls > 0  # every call in the 2022 fall
