"""``hardware_value``: machines bought at a price in equity at book value (the default) or at market value,
book x trailing hashprice / trailing hashprice on the purchase day (:func:`mining.fleet.hashprice_market_value`),
on closed forms and on the 2022 BTC data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minehedge import api
from minehedge.cli import main
from minehedge.errors import ConfigError
from mining.fleet import DAYS_PER_YEAR, Fleet, hashprice_market_value, trailing_hashprice

LIFE = DAYS_PER_YEAR  # depreciation_years=1.0, in days


def synthetic_market(rows: list[tuple[float, float, float, float]], hashprice: list[float],
                     start: str = "2021-06-01", timeframe: str = "1d") -> api.Market:
    """Bars (daily unless told) with no mining revenue (no coins per TH/s) and no funding, and a hashprice line
    (USD per TH/s per day) as the bars see it: the bars of day D carry day D-1's published value."""
    index = pd.date_range(start, periods=len(rows), freq={"1d": "D", "4h": "4h"}[timeframe], tz="UTC")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(volume=1.0)
    for column in ("difficulty", "hashrate", "subsidy", "fees_per_block", "hashprice", "coins_per_unit_day",
                   "funding_rate", "funding_paid"):
        frame[column] = 0.0
    frame["hashprice"] = hashprice
    return api.Market("BTC", timeframe, frame, "binance", {"data files": ["synthetic"]}, "synthetic")


# --- the formula ------------------------------------------------------------------------------------------
def test_trailing_hashprice_and_market_value_closed_form():
    # a 2-day trailing mean: (4 + 2) / 2 = 3 on the first day of the halving; nothing later enters a day
    assert trailing_hashprice([4.0, 4.0, 4.0, 2.0, 2.0, 2.0], 2).tolist() == [4.0, 4.0, 4.0, 3.0, 2.0, 2.0]
    assert trailing_hashprice([4.0, np.nan, 2.0], 30).tolist() == [4.0, 4.0, 3.0]  # NaN days left out
    assert hashprice_market_value(1_000.0, 3.0, 4.0) == 750.0  # USD x (USD/TH/day) / (USD/TH/day)
    assert hashprice_market_value(np.array([0.0, 500.0, 500.0]), 3.0, np.array([4.0, 0.0, np.nan])).tolist() == [
        0.0, 500.0, 500.0]  # nothing owned: 0; no purchase reference: the book value
    with pytest.raises(ConfigError, match="market_value_window_days=0"):
        trailing_hashprice([1.0], 0)


def test_fleet_market_value_is_the_book_value_scaled_by_the_hashprice_of_the_day_seen():
    # 1 machine at 3,652.50 USD bought 2021-06-02, life 1 year (10 USD a day); a 1-day window. The hashprice
    # halves on 2021-06-04: the day's end (06-05 00:00) is valued with 06-04's 0.05, the end of 06-03 (06-04
    # 00:00) still with 06-03's 0.1: a time is valued with the hashprice of the day of its ``seen`` instant.
    days = pd.date_range("2021-06-01", periods=5, freq="D", tz="UTC")
    hashprice = pd.Series([0.1, 0.1, 0.1, 0.05, 0.05], index=days)
    fleet = Fleet.from_shorthand("S19:1@2021-06-02$3652.5", depreciation_years=1.0, market_value_window_days=1)
    ends = days + pd.Timedelta(days=1)
    book = fleet.book_value_at(ends)
    assert book.tolist() == pytest.approx([0.0, 3_642.5, 3_632.5, 3_622.5, 3_612.5], rel=1e-15)
    market = fleet.market_value_at(ends, hashprice, seen=days)
    assert market.tolist() == pytest.approx([0.0, 3_642.5, 3_632.5, 3_622.5 / 2, 3_612.5 / 2], rel=1e-15)
    # valued at the ends themselves, the end of 06-03 would see 06-04's halving a day early
    assert fleet.market_value_at(ends, hashprice)[2] == pytest.approx(3_632.5 / 2, rel=1e-15)
    # a 2-day mean: (0.1 + 0.05) / 2 on 06-04; bought on 06-02 at a mean of 0.1
    two = fleet.market_value_at(ends, hashprice, seen=days, window_days=2)
    assert two.tolist() == pytest.approx([0.0, 3_642.5, 3_632.5, 3_622.5 * 0.75, 3_612.5 / 2], rel=1e-15)
    # Fleet.simulate's market_value_usd (book at each day's end, the day's own hashprice) is the same function
    frame = pd.DataFrame({"coins_per_unit_day": 1e-5, "hashprice_usd_per_unit_day": hashprice}, index=days)
    daily = Fleet.from_shorthand("S19:1@2021-06-02$3652.5", depreciation_years=1.0, market_value=True,
                                 market_value_window_days=1, power_price_usd_per_kwh=0.0).simulate(frame)
    assert daily["market_value_usd"].tolist() == pytest.approx(market.tolist(), rel=1e-15)


def test_machines_deployed_before_the_hashprice_series_start_at_book_value():
    # 2020 machines in a series from 2021-06-01: scaled from its first day (they used to make the whole
    # market_value_usd column NaN)
    days = pd.date_range("2021-06-01", periods=3, freq="D", tz="UTC")
    hashprice = pd.Series([0.2, 0.1, 0.1], index=days)
    fleet = Fleet.from_shorthand("S19:2@2020-06-01$1000", depreciation_years=2.0, market_value_window_days=1)
    book = fleet.book_value_at(days)
    assert fleet.market_value_at(days, hashprice).tolist() == pytest.approx(
        [book[0], book[1] / 2, book[2] / 2], rel=1e-15)
    frame = pd.DataFrame({"coins_per_unit_day": 1e-5, "hashprice_usd_per_unit_day": hashprice}, index=days)
    daily = Fleet.from_shorthand("S19:2@2020-06-01$1000", depreciation_years=2.0, market_value=True,
                                 market_value_window_days=1, power_price_usd_per_kwh=0.0).simulate(frame)
    assert np.isfinite(daily["market_value_usd"]).all()


# --- the strategy, closed forms ---------------------------------------------------------------------------
FLAT = [(100.0,) * 4] * 6
# the bars see 0.1 USD/TH/day until 06-03 and 0.05 from the bar of 06-04 on (network day 06-03's halving)
HALVING = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05]
PRICED = {"fleet": "S19Pro:10@2021-05-01$1000,S19Pro:5@2021-06-04$2000", "power_usd_per_kwh": 0.0,
          "curtail": False, "start_usd": 100_000.0, "depreciation_years": 1.0}


def test_market_value_in_equity_each_bar_with_the_hashprice_it_sees():
    # Window 2: the bars' trailing means are 0.1, 0.1, 0.1, 0.075, 0.05, 0.05. 10 machines at 1,000 USD from
    # 2021-05-01 (before the first bar: scaled from its 0.1, so they open at book value); 5 at 2,000 USD bought
    # on 06-04, whose mean is 0.075. Each bar's end is valued with the mean of the day it opens in: the bar of
    # 06-03 ends at 06-04 00:00 but does not see the halving.
    m = synthetic_market(FLAT, HALVING)
    params = {**PRICED, "hardware_value": "market", "market_value_window_days": 2}
    outcome = api.run_policy(m, "unhedged", params)
    trailing = [0.1, 0.1, 0.1, 0.075, 0.05, 0.05]
    old = [10_000 * (1 - (32 + i) / LIFE) * trailing[i] / 0.1 for i in range(6)]
    new = [0.0] * 3 + [10_000 * (1 - (i - 2) / LIFE) * trailing[i] / 0.075 for i in range(3, 6)]
    cash = [100_000.0] * 3 + [90_000.0] * 3
    assert outcome.summary["initial_equity_usd"] == pytest.approx(100_000 + 10_000 * (1 - 31 / LIFE), rel=1e-15)
    assert outcome.result.equity["equity_usd"].tolist() == pytest.approx(
        [c + o + n for c, o, n in zip(cash, old, new, strict=True)], rel=1e-15)
    assert outcome.result.equity["equity_usd"].iloc[3] == pytest.approx(
        90_000 + 10_000 * (1 - 35 / LIFE) * 0.75 + 10_000 * (1 - 1 / LIFE), rel=1e-15)
    machines = outcome.result.assumptions["machines"]
    assert "market value (hardware_value=market)" in machines and "2-day trailing mean of hashprice" in machines
    assert any("10 priced machine(s) deployed before the first bar (2021-06-01" in n for n in outcome.notes)
    book = api.run_policy(m, "unhedged", PRICED)  # the default: book value, the hashprice changes nothing
    assert book.result.equity["equity_usd"].tolist() == pytest.approx(
        [c + 10_000 * (1 - (32 + i) / LIFE) + (10_000 * (1 - (i - 2) / LIFE) if i >= 3 else 0.0)
         for i, c in enumerate(cash)], rel=1e-15)
    assert book.result.assumptions["machines"].startswith(
        "machines bought at a price are in equity at straight-line book value over 1 years")
    assert not book.notes


def test_on_4h_bars_a_purchase_is_paid_over_its_day_and_each_bar_sees_the_hashprice_of_its_own_day():
    # 6 machines at 1,000 USD due on 06-02 (1-year life), paid 1,000 USD a bar over that day's six 4h bars; the
    # bars of 06-03 see half the hashprice (1-day window). The 20:00 bar of 06-02 ends at 06-03 00:00 but is
    # valued with 06-02's hashprice: only 06-03's bars see the fall.
    m = synthetic_market([(100.0,) * 4] * 18, [0.1] * 12 + [0.05] * 6, timeframe="4h")
    params = {"fleet": "S19Pro:6@2021-06-02$1000", "power_usd_per_kwh": 0.0, "curtail": False,
              "start_usd": 100_000.0, "depreciation_years": 1.0, "hardware_value": "market",
              "market_value_window_days": 1}
    outcome = api.run_policy(m, "unhedged", params)
    equity = outcome.result.equity
    machines = (equity["equity_usd"] - equity["cash_usd"]).tolist()
    paid = [0.0] * 6 + [(k + 1) / 6 for k in range(6)] + [1.0] * 6  # share of the 6,000 USD paid by each end
    ratio = [1.0] * 12 + [0.5] * 6
    expected = [6_000 * p * (1 - max(k - 5, 0) / 6 / LIFE) * r for k, (p, r) in enumerate(zip(paid, ratio,
                                                                                              strict=True))]
    assert machines == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert machines[11] == pytest.approx(6_000 * (1 - 1 / LIFE), rel=1e-12)  # 06-02 20:00, ending 06-03 00:00


def test_an_insolvent_miner_counts_only_the_machines_it_paid_for_at_market_value():
    # the 06-04 purchase of 10,000 USD cannot be paid from 5,000 USD: the insolvency bar rewrites the machines
    # to those paid before it, still at market value (a 1-day window: half from the bar of 06-04 on)
    m = synthetic_market(FLAT, HALVING)
    params = {**PRICED, "start_usd": 5_000.0, "hardware_value": "market", "market_value_window_days": 1}
    outcome = api.run_policy(m, "unhedged", params)
    assert [str(e["datetime"])[:10] for e in outcome.result.events if e["kind"] == "insolvency"] == ["2021-06-04"]
    ratio = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    assert outcome.result.equity["equity_usd"].tolist() == pytest.approx(
        [5_000 + 10_000 * (1 - (32 + i) / LIFE) * ratio[i] for i in range(6)], rel=1e-15)


def test_machines_bought_late_after_an_insolvency_count_at_market_value():
    # The insolvency-and-resume run of tests/test_strategies_policies.py (bills of 7.512 USD a day, no revenue,
    # 85.8 BTC pledged to a coin loan on 06-01 that buys one S19 XP at 6,000 USD), with priced machines: one
    # S19 Pro at 1,000 USD owned since 2021-01-01 and one at 300 USD due on 06-02. On 06-02 the miner is
    # insolvent (the 300 USD machine is not bought); at 80 on 06-03 the lender liquidates, the returned coins
    # pay the arrears and the delayed purchase, and mining resumes. The bars of 06-03 on see half the
    # hashprice (1-day window). Hardware moves no money: equity differs from the book-value run's by (book -
    # market) of the machines alone: the insolvency bar's rewrite (06-02: the late machine not counted) and
    # the resume's (06-03: counted from its scheduled date) are at market value too.
    m = synthetic_market([(100.0,) * 4, (100.0,) * 4, (80.0,) * 4, (80.0,) * 4], [0.1, 0.1, 0.05, 0.05])
    bills, fee = 7.512, 0.001
    params = {"fleet": "S19Pro:1@2021-01-01$1000,S19Pro:1@2021-06-02$300", "loan_type": "coin",
              "loan_date": "2021-06-01", "principal_usd": 6_000.0, "unit_price_usd": 6_000.0,
              "expansion_model": "S19XP", "power_usd_per_kwh": 0.05, "uptime": 1.0, "curtail": False,
              "spot_fee": fee, "start_usd": 0.0, "start_coins": 85.8 + bills / (100.0 * (1 - fee)) + 0.01,
              "on_margin_call": "ignore", "depreciation_years": 1.0, "market_value_window_days": 1}
    book = api.run_policy(m, "financed_expansion", params)
    market = api.run_policy(m, "financed_expansion", {**params, "hardware_value": "market"})
    for outcome in (book, market):
        assert [(str(e["datetime"])[:10], e["kind"]) for e in outcome.result.events] == [
            ("2021-06-02", "insolvency"), ("2021-06-03", "loan_liquidation"), ("2021-06-03", "insolvency_cured")]
        assert outcome.summary["ledger_residual_usd"] == pytest.approx(0.0, abs=1e-9)
    for column in ("cash_usd", "coins", "unrealized_pnl_usd"):
        assert market.result.equity[column].tolist() == book.result.equity[column].tolist(), column
    owned = [1_000 * (1 - (152 + i) / LIFE) for i in range(4)]  # 151 days old at the first bar's open
    expansion = [6_000 * (1 - (1 + i) / LIFE) for i in range(4)]  # bought at 06-01's bar
    late = [0.0, 0.0, 300 * (1 - 2 / LIFE), 300 * (1 - 3 / LIFE)]  # scheduled 06-02, bought on 06-03
    ratio = [1.0, 1.0, 0.5, 0.5]
    gap = (book.result.equity["equity_usd"] - market.result.equity["equity_usd"]).tolist()
    assert gap == pytest.approx([(o + e + n) * (1 - r) for o, e, n, r in zip(owned, expansion, late, ratio,
                                                                             strict=True)], rel=1e-12, abs=1e-9)
    assert gap[2] == pytest.approx(3_413.72, abs=0.01)


def test_financed_expansion_machines_at_market_value():
    # a 60,000 USD equipment loan on 06-02 buys 10 machines at 6,000 USD (3-year life); the bars of 06-03 on
    # see half the hashprice of 06-02 (1-day window): the machines are worth half their book value
    m = synthetic_market(FLAT[:5], [0.1, 0.1, 0.05, 0.05, 0.05])
    params = {"fleet": "S19Pro:1@2030-01-01", "loan_type": "equipment", "loan_date": "2021-06-02",
              "principal_usd": 60_000.0, "unit_price_usd": 6_000.0, "power_usd_per_kwh": 0.0, "curtail": False,
              "start_usd": 1_000.0, "hardware_value": "market", "market_value_window_days": 1}
    outcome = api.run_policy(m, "financed_expansion", params)
    life = 3 * DAYS_PER_YEAR
    ratio = [1.0, 1.0, 0.5, 0.5, 0.5]
    assert outcome.result.equity["equity_usd"].tolist() == pytest.approx(
        [1_000.0] + [1_000.0 - 60_000 + 60_000 * (1 - day / life) * ratio[day] for day in range(1, 5)],
        rel=0, abs=1e-9)


# --- real data ----------------------------------------------------------------------------------------------
def test_market_value_on_2022_btc_is_below_book_by_the_machines_gap(data_dir):
    # 300 S19 XP bought on 2022-01-10 at 10,000 USD each (3-year life) beside 100 unpriced S19 Pro, through
    # 2022 (hashprice fell by about three quarters): equity at market value is below the book-value run's at
    # 2022-12-31 by exactly (book - market) of those machines, and no money moved differently.
    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2022-01-01", "end": "2022-12-31",
                         "data_dir": str(data_dir), "data_venue": "binance"})
    fleet_text = "S19Pro:100@2019-06-01,S19XP:300@2022-01-10$10000"
    params = {"fleet": fleet_text, "start_usd": 5_000_000.0}
    book = api.run_policy(m, "unhedged", params)
    market = api.run_policy(m, "unhedged", {**params, "hardware_value": "market"})
    assert str(book.result.equity.index[-1])[:10] == "2022-12-31"
    for column in book.result.equity.columns:
        if column not in ("equity_usd", "equity_coin", "drawdown_pct"):  # the valuation moves no money
            assert market.result.equity[column].tolist() == book.result.equity[column].tolist(), column
    # the machines at the last bar's end (2023-01-01 00:00), 356 days old, from the bars' own hashprice line
    # (each day's the day before's): the 30-day means of the last bar's day and of the purchase day
    seen = m.frame["hashprice"]
    trailing = seen.rolling(30, min_periods=1).mean()
    book_value = 300 * 10_000 * (1 - 356 / (3 * DAYS_PER_YEAR))
    market_value = book_value * trailing["2022-12-31"] / trailing["2022-01-10"]
    fleet = Fleet.from_shorthand(fleet_text, depreciation_years=3.0)
    end = pd.DatetimeIndex([pd.Timestamp("2023-01-01", tz="UTC")])
    assert fleet.book_value_at(end)[0] == pytest.approx(book_value, rel=1e-12)
    assert fleet.market_value_at(end, seen.set_axis(seen.index.normalize()), seen=end - pd.Timedelta(days=1))[0] \
        == pytest.approx(market_value, rel=1e-12)
    assert 0.2 < market_value / book_value < 0.4  # hashprice fell ~70 % between the two means
    gap = book.result.equity["equity_usd"].iloc[-1] - market.result.equity["equity_usd"].iloc[-1]
    assert gap == pytest.approx(book_value - market_value, rel=1e-9)
    assert market.summary["max_drawdown_pct"] > book.summary["max_drawdown_pct"]
    for outcome in (book, market):
        assert abs(outcome.summary["ledger_residual_usd"]) < 1e-6


# --- configuration --------------------------------------------------------------------------------------------
def _config(tmp_path, **params) -> dict:
    return {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-01-31", "venue": None,
            "seed": 0, "data_dir": str(tmp_path), "policy": "unhedged", "params": params}


@pytest.mark.parametrize(("params", "message"), [
    ({"hardware_value": "fair"}, "hardware_value='fair' is not allowed; allowed: one of: book, market."),
    ({"hardware_value": "markte"}, "hardware_value='markte' is not allowed; allowed: one of: book, market. "
                                   "Did you mean 'market'?"),
    ({"market_value_window_days": 0}, "market_value_window_days=0 is out of range; allowed: int >= 1 days."),
    ({"market_value_window_days": 2.5}, "market_value_window_days=2.5 is not an int; allowed: int >= 1 days."),
])
def test_bad_hardware_value_settings_name_the_parameter_and_what_is_allowed(tmp_path, params, message):
    # checked before any data is read (tmp_path holds none)
    with pytest.raises(ConfigError) as caught:
        api.check_config(_config(tmp_path, **params))
    assert str(caught.value) == f"policy 'unhedged': {message}"


@pytest.mark.parametrize(("setting", "message"), [
    ("hardware_value=fair", "hardware_value='fair' is not allowed; allowed: one of: book, market."),
    ("market_value_window_days=0", "market_value_window_days='0' is out of range; allowed: int >= 1 days."),
])
def test_the_cli_reports_bad_hardware_value_settings_without_a_traceback(capsys, tmp_path, setting, message):
    code = main(["run", "--data-dir", str(tmp_path), "--set", setting])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err


def test_every_policy_lists_the_hardware_value_parameters():
    for policy, specs in api.policy_specs().items():
        by_name = {spec.name: spec for spec in specs}
        assert by_name["hardware_value"].default == "book", policy
        assert by_name["hardware_value"].choices == ("book", "market"), policy
        assert (by_name["market_value_window_days"].default, by_name["market_value_window_days"].unit,
                by_name["market_value_window_days"].minimum) == (30, "days", 1), policy


def test_readme_book_and_market_figures_are_what_the_runs_give(data_dir):
    # the README's "Machines at market value" example, read back from its table and text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("* **Machines at market value**", 1)[1].split("\n* ", 1)[0]
    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-12-01", "end": "2022-12-31",
                         "data_dir": str(data_dir)})
    runs = {hv: api.run_policy(m, "financed_expansion", {"loan_type": "equipment", "hardware_value": hv})
            for hv in ("book", "market")}
    for hv, outcome in runs.items():
        equity = outcome.result.equity["equity_usd"]
        s = outcome.summary
        row = (f"| `{hv}` | {equity.iloc[-1]:,.0f} | {s['total_return_pct']:+.1f} % | {s['max_drawdown_pct']:.2f} % | "
               f"{equity.min():,.0f} ({equity.idxmin():%Y-%m-%d}) | {s['insolvent']} | {s['insolvencies']} |")
        assert row in section, row
        assert abs(s["ledger_residual_usd"]) < 1e-6
    gap = runs["book"].result.equity["equity_usd"].iloc[-1] - runs["market"].result.equity["equity_usd"].iloc[-1]
    assert f"{gap:,.0f} USD" in section
    trailing = m.frame["hashprice"].rolling(30, min_periods=1).mean()
    start, end = trailing["2021-12-31"], trailing["2022-12-31"]
    assert f"{start:.4f} USD" in section and f"to {end:.4f} on 2022-12-31 ({(end / start - 1) * 100:.1f} %)" in section
    market = runs["market"].result.equity["equity_usd"]
    under = market[market <= 0]
    assert (f"{len(under)} days between {under.index[0]:%Y-%m-%d} and {under.index[-1]:%Y-%m-%d}"
            in " ".join(section.split()))
    assert not [e for e in runs["market"].result.events if e["kind"] == "insolvency"]
    # balance-sheet insolvency (equity below 0) without cash insolvency: no bill missed, no day insolvent
    s = runs["market"].summary
    assert (s["ruined"], s["insolvent"], s["insolvencies"], s["insolvent_days"]) == (True, True, 0, 0.0)
    assert "`insolvencies` reads 0 and `insolvent_days` 0: no bill was missed" in " ".join(section.split())
