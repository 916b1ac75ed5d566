"""analyzers.metrics, event_stats and ledger_stats: hand-computed paths and empyrical-style properties."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analyzers import event_stats, ledger_stats, metrics
from brokers.events import EVENT_KINDS, MarginEvent
from brokers.ledger import Ledger


def daily(values, start="2021-01-01"):
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float)


def day(n: int) -> pd.Timestamp:
    return pd.Timestamp("2021-01-01", tz="UTC") + pd.Timedelta(days=n)


# ------------------------------------------------------------------------------------------------ drawdown


def test_drawdown_on_hand_computed_path():
    # peaks 100,120,120,120,130,130 -> drawdown 0,0,25,50,0,20 %; amounts 0,0,30,60,0,26 USD.
    equity = daily([100, 120, 90, 60, 130, 104])
    assert metrics.drawdown_pct(equity).tolist() == [0.0, 0.0, 25.0, 50.0, 0.0, 20.0]
    assert metrics.drawdown_amount(equity).tolist() == [0.0, 0.0, 30.0, 60.0, 0.0, 26.0]
    stats = metrics.drawdown_stats(equity)
    assert stats.max_drawdown_pct == 50.0
    assert stats.max_drawdown_amount == 60.0
    assert (stats.peak_time, stats.trough_time, stats.recovery_time) == (day(1), day(3), day(4))
    # under water from the Jan 2 peak to the Jan 5 recovery (3 days), then Jan 5 -> end (1 day, open).
    assert stats.longest_underwater_days == 3.0
    assert not stats.ruined and stats.ruin_time is None
    assert stats.min_equity == 60.0


def test_a_curve_that_opens_below_zero_has_a_drawdown_amount_only_from_above_zero():
    # debts beyond the assets: below zero counts as zero, so -50 -> -30 -> -80 is no amount at all, and a
    # rise to 20 then a fall to -10 is a drawdown of 20 (the 10 below zero is min_equity's business)
    equity = daily([-50, -30, -80, 20, -10])
    assert metrics.drawdown_amount(equity).tolist() == [0.0, 0.0, 0.0, 0.0, 20.0]
    stats = metrics.drawdown_stats(equity)
    assert (stats.max_drawdown_amount, stats.min_equity) == (20.0, -80.0)
    assert metrics.drawdown_stats(daily([-50, -30, -80])).max_drawdown_amount == 0.0


def test_drawdown_never_recovered_runs_to_last_bar():
    stats = metrics.drawdown_stats(daily([100, 80, 90, 95]))
    assert stats.max_drawdown_pct == 20.0
    assert stats.recovery_time is None
    assert stats.longest_underwater_days == 3.0


def test_drawdown_recovers_on_the_first_bar_back_at_the_peak():
    # the docstring: recovery is the first bar at or above the peak, so equality recovers (the 3rd bar, not the 4th)
    stats = metrics.drawdown_stats(daily([100, 80, 100, 110]))
    assert (stats.peak_time, stats.trough_time, stats.recovery_time) == (day(0), day(1), day(2))


def test_drawdown_peak_is_the_last_bar_at_the_peak_before_the_trough():
    # 100 is touched on day 1 and day 3; the 50 % drawdown to day 4 runs from the later touch
    stats = metrics.drawdown_stats(daily([100, 90, 100, 50]))
    assert stats.max_drawdown_pct == 50.0
    assert (stats.peak_time, stats.trough_time, stats.recovery_time) == (day(2), day(3), None)


def longest_underwater_by_loop(series: pd.Series) -> float:
    """Oracle: walk the bars; an episode runs from the bar before the first one under the running peak to the
    first bar back at or above it (or to the last bar)."""
    values, times = series.to_numpy(), series.index
    peak, longest, start = values[0], pd.Timedelta(0), None
    for i in range(1, len(values)):
        peak = max(peak, values[i])
        if values[i] < peak:
            start = i - 1 if start is None else start
        elif start is not None:
            longest, start = max(longest, times[i] - times[start]), None
    if start is not None:
        longest = max(longest, times[-1] - times[start])
    return longest / pd.Timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-3, 3), min_size=1, max_size=50),
       gaps=st.lists(st.integers(1, 10_000), min_size=50, max_size=50),
       unit=st.sampled_from(["s", "ms", "us", "ns"]))
def test_longest_underwater_days_equals_a_bar_by_bar_walk(values, gaps, unit):
    # Irregular bar times in any index unit; small integer steps make ties with the peak (recoveries) common.
    seconds = np.cumsum([0, *gaps[: len(values) - 1]]) * 37
    times = pd.DatetimeIndex(pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s")).as_unit(unit)
    series = pd.Series(np.cumsum(values).astype(float) + 100.0, index=times)
    assert metrics.drawdown_stats(series).longest_underwater_days == longest_underwater_by_loop(series)


def test_equity_through_zero_is_a_100_pct_drawdown_and_ruin():
    equity = daily([100, 50, -20, 10])
    assert metrics.drawdown_pct(equity).tolist() == [0.0, 50.0, 100.0, 90.0]
    stats = metrics.drawdown_stats(equity)
    assert stats.max_drawdown_pct == 100.0  # never 120 %
    assert stats.max_drawdown_amount == 100.0  # capped at the peak; the depth below zero is min_equity
    assert stats.ruined and stats.ruin_time == day(2)
    assert stats.trough_time == day(2)
    assert stats.min_equity == -20.0
    assert metrics.total_return_pct(daily([100, 50, -20])) == -100.0
    assert metrics.cagr_pct(daily([100, 50, -20])) == -100.0
    # daily returns stop at ruin, whose day is -100 %
    assert metrics.daily_returns(equity).tolist() == [-0.5, -1.0]


def test_drawdown_of_empty_and_constant_series():
    empty = metrics.drawdown_stats(daily([]))
    assert math.isnan(empty.max_drawdown_pct) and not empty.ruined and empty.peak_time is None
    flat = metrics.drawdown_stats(daily([5.0] * 4))
    assert (flat.max_drawdown_pct, flat.max_drawdown_amount, flat.longest_underwater_days) == (0.0, 0.0, 0.0)
    assert flat.peak_time is None


# ------------------------------------------------------------------------------------------------ returns


def test_total_return_and_cagr_exact():
    # 2021-01-01 00:00 -> 2023-01-01 12:00 is 730.5 days = 2 years of 365.25 days; 100 -> 121 is 10 %/yr.
    equity = pd.Series([100.0, 121.0], index=pd.DatetimeIndex(["2021-01-01", "2023-01-01 12:00"], tz="UTC"))
    assert metrics.total_return_pct(equity) == pytest.approx(21.0, abs=1e-12)
    assert metrics.cagr_pct(equity) == pytest.approx(10.0, abs=1e-12)
    assert math.isnan(metrics.cagr_pct(daily([100.0])))  # zero days
    assert math.isnan(metrics.total_return_pct(daily([])))


def test_daily_returns_take_the_last_bar_of_each_day():
    hourly = pd.Series([100.0, 105.0, 110.0, 99.0],
                       index=pd.DatetimeIndex(["2021-01-01 00:00", "2021-01-01 23:00", "2021-01-02 08:00",
                                               "2021-01-02 16:00"], tz="UTC"))
    assert metrics.daily_returns(hourly).tolist() == [pytest.approx(99.0 / 105.0 - 1.0, abs=1e-15)]


def test_sharpe_and_sortino_closed_form():
    returns = pd.Series([0.01, -0.01, 0.02, 0.0])
    # mean 0.005, sample std sqrt(5e-4 / 3): Sharpe = 0.005 * sqrt(6000) * sqrt(365) = sqrt(0.15 * 365)
    assert metrics.sharpe_ratio(returns) == pytest.approx(math.sqrt(0.15 * 365), rel=1e-12)
    # downside deviation sqrt(mean([0, 1e-4, 0, 0])) = 0.005: Sortino = 0.005 / 0.005 * sqrt(365)
    assert metrics.sortino_ratio(returns) == pytest.approx(math.sqrt(365), rel=1e-12)
    # a daily risk-free rate shifts every return: excess [0, -0.02, 0.01, -0.01], mean -0.005
    assert metrics.sharpe_ratio(returns, risk_free_daily=0.01) == pytest.approx(-math.sqrt(0.15 * 365), rel=1e-12)


def test_ratios_undefined_cases_are_nan():
    assert math.isnan(metrics.sharpe_ratio(pd.Series([0.01, 0.01, 0.01])))  # zero dispersion
    assert math.isnan(metrics.sharpe_ratio(pd.Series([0.01])))
    assert math.isnan(metrics.sortino_ratio(pd.Series([0.01])))
    assert metrics.daily_returns(daily([])).empty


def test_sortino_without_a_down_day_is_inf_by_empyricals_convention():
    # no day below 0: nothing to divide by; a positive mean makes it +inf (empyrical's sortino_ratio divides
    # by the zero downside risk; its tests expect np.inf for all-positive returns)
    assert metrics.sortino_ratio(pd.Series([0.01, 0.03])) == math.inf
    assert metrics.sortino_ratio(pd.Series([0.02, 0.0, 0.01])) == math.inf  # a flat day is not a down day
    # every day exactly at the required return: 0 / 0
    assert math.isnan(metrics.sortino_ratio(pd.Series([0.01, 0.01]), required_daily=0.01))
    # one down day: mean 0.01, downside deviation sqrt(mean([0, 0.01 ** 2])) = 0.01 / sqrt(2), so the ratio
    # is sqrt(2) per day, sqrt(2) x sqrt(365) = sqrt(730) a year
    assert metrics.sortino_ratio(pd.Series([0.03, -0.01])) == pytest.approx(math.sqrt(730), rel=1e-12)
    # the required return moves the line: [0.03, -0.01] less 0.01 is [0.02, -0.02], mean 0 -> 0
    assert metrics.sortino_ratio(pd.Series([0.03, -0.01]), required_daily=0.01) == pytest.approx(0.0, abs=1e-12)
    assert metrics.sortino_note(math.inf).startswith("sortino is inf: no daily return was below 0 (the required")
    assert metrics.sortino_note(math.sqrt(730)) == "" and metrics.sortino_note(math.nan) == ""


def test_sortino_downside_is_measured_against_the_required_return():
    # r - t = [0.015, -0.015, 0.005, -0.001]: mean 0.001, downside sqrt((0.015^2 + 0.001^2) / 4); a day that
    # beat 0 but not t (0.004) counts in the downside
    r, t = [0.02, -0.01, 0.01, 0.004], 0.005
    expected = 0.001 / math.sqrt((0.015**2 + 0.001**2) / 4) * math.sqrt(365)
    assert metrics.sortino_ratio(pd.Series(r), required_daily=t) == pytest.approx(expected, rel=1e-12)


def test_the_last_bar_lasts_the_median_spacing_of_irregular_bars():
    times = pd.DatetimeIndex(["2021-01-01 00:00", "2021-01-01 01:00", "2021-01-01 02:00", "2021-01-01 06:00"],
                             tz="UTC")
    # spacings 1, 1, 4 hours; the last bar takes their median, 1 hour (not the last spacing, 4)
    assert metrics.bar_durations_days(times).tolist() == pytest.approx([1 / 24, 1 / 24, 4 / 24, 1 / 24], rel=1e-12)
    assert event_stats.time_above_level(times, [0.0, 0.0, 0.0, 0.9], 0.8)[0] == pytest.approx(1 / 24, rel=1e-12)


def test_variance_reduction_exact():
    production = daily([100, 110, 90, 120])  # changes +10, -20, +30
    hedge = daily([0, -5, 5, -10])  # changes -5, +10, -15: hedged changes are half -> variance x 1/4
    assert metrics.variance_reduction_pct(production, production + hedge) == pytest.approx(75.0, abs=1e-12)
    assert metrics.variance_reduction_pct(production, daily([100] * 4)) == pytest.approx(100.0, abs=1e-12)
    assert math.isnan(metrics.variance_reduction_pct(daily([5, 5, 5]), daily([0, 1, 2])))


def test_hedge_variance_reduction_counts_the_coins_held_at_each_sample():
    price = daily([100, 110, 90, 120])  # moves +10, -20, +30
    two = daily([2, 2, 2, 2])  # unhedged changes +20, -40, +60
    assert metrics.hedge_variance_reduction_pct(two, price, daily([0, -10, 10, -20])) == pytest.approx(75.0, abs=1e-12)
    short_two = daily([0, -20, 20, -40])  # a short of exactly the coins held
    assert metrics.hedge_variance_reduction_pct(two, price, short_two) == pytest.approx(100.0, abs=1e-12)
    assert metrics.hedge_variance_reduction_pct(two, price, daily([0] * 4)) == 0.0  # no hedge
    # the same short after the coins were sold on day 1: exposure +20, 0, 0; the hedge alone moves after
    sold = daily([2, 0, 0, 0])
    changes = np.array([20.0, 0.0, 0.0])
    hedged = changes + np.array([-20.0, 40.0, -60.0])
    expected = (1.0 - np.var(hedged, ddof=1) / np.var(changes, ddof=1)) * 100.0
    assert metrics.hedge_variance_reduction_pct(sold, price, short_two) == pytest.approx(expected, rel=1e-12)
    # no coins held at any sample: nothing to hedge, undefined (not a huge negative number)
    assert math.isnan(metrics.hedge_variance_reduction_pct(daily([0] * 4), price, short_two))
    # a sample held no coins at an unknown price (an account opened without coins): a zero change
    opening = daily([0, 2, 2, 2], start="2020-12-31")
    unpriced = daily([math.nan, 100, 110, 90], start="2020-12-31")
    hedge = daily([0, 0, -20, 20], start="2020-12-31")
    assert metrics.hedge_variance_reduction_pct(opening, unpriced, hedge) == pytest.approx(100.0, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(moves=st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=2, max_size=40),
       coins=st.floats(min_value=0.01, max_value=1e4), ratio=st.floats(min_value=0.0, max_value=2.0))
def test_hedging_a_fixed_share_of_the_exposure_reduces_variance_by_one_minus_the_rest_squared(moves, coins, ratio):
    assume(np.var(moves, ddof=1) > 1e-6)
    price = daily(np.concatenate([[1e5], 1e5 + np.cumsum(moves)]))
    held = daily([coins] * len(price))
    hedge = daily(np.concatenate([[0.0], -ratio * coins * np.cumsum(moves)]))
    expected = (1.0 - (1.0 - ratio) ** 2) * 100.0
    assert metrics.hedge_variance_reduction_pct(held, price, hedge) == pytest.approx(expected, abs=1e-6)


def test_non_datetime_index_is_a_clear_error():
    with pytest.raises(TypeError, match="DatetimeIndex"):
        metrics.drawdown_pct(pd.Series([1.0, 2.0]))


# -------------------------------------------------------------------------------------------- properties

returns_lists = st.lists(st.floats(min_value=-0.9, max_value=2.0, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(returns=returns_lists, shift=st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_adding_a_constant_to_returns_cannot_deepen_max_drawdown(returns, shift):
    base = metrics.drawdown_stats(daily(100.0 * np.cumprod(1.0 + np.asarray(returns)))).max_drawdown_pct
    shifted = metrics.drawdown_stats(daily(100.0 * np.cumprod(1.0 + np.asarray(returns) + shift)))
    assert shifted.max_drawdown_pct <= base + 1e-9


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=60))
def test_rising_equity_has_zero_drawdown(steps):
    stats = metrics.drawdown_stats(daily(1.0 + np.cumsum(steps)))
    assert stats.max_drawdown_pct == 0.0
    assert stats.max_drawdown_amount == 0.0
    assert stats.longest_underwater_days == 0.0


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=60))
def test_drawdown_is_between_0_and_100_pct(values):
    under = metrics.drawdown_pct(daily(values))
    assert ((under >= 0.0) & (under <= 100.0)).all()
    stats = metrics.drawdown_stats(daily(values))
    assert 0.0 <= stats.max_drawdown_pct <= 100.0
    assert stats.ruined == (min(values) <= 0.0)


# ---------------------------------------------------------------------------------------- event_stats


def event(kind: str, n: int, loss: float = 0.0, fee: float = 0.0, ratio: float = 0.5) -> MarginEvent:
    return MarginEvent(datetime(2021, 1, 1 + n), kind, "BTCUSDT-PERP", "binance", "long", 1.0, 30000.0,
                       1000.0, 500.0, ratio, loss, fee)


def test_event_counts_and_totals():
    log = [event("margin_call", 0), event("liquidation", 1, loss=900.0, fee=15.0),
           event("partial_liquidation", 2, loss=100.0, fee=5.0), event("cme_margin_call", 3),
           event("cme_margin_call_missed", 4), event("loan_call", 5), event("insurance_fund", 6, loss=42.0)]
    counts = event_stats.count_events(log)
    assert set(counts) == set(EVENT_KINDS)
    assert counts["liquidation"] == 1 and counts["ruin"] == 0
    totals = event_stats.event_totals(log)
    assert totals["margin_calls"] == 2 and totals["liquidations"] == 3  # incl. the missed CME call
    assert totals["liquidation_loss_usd"] == 1000.0 and totals["liquidation_fee_usd"] == 20.0
    assert totals["cme_calls_missed"] == 1 and totals["loan_calls"] == 1
    assert totals["insurance_shortfall_usd"] == 42.0 and totals["insolvency"] is False
    frame = event_stats.events_frame(log)
    assert list(frame.columns) == list(event_stats.EVENT_COLUMNS)
    assert str(frame["datetime"].dt.tz) == "UTC" and len(frame) == 7


def test_time_above_warning_level():
    times = pd.date_range("2021-01-01", periods=4, freq="D", tz="UTC")
    assert event_stats.time_above_level(times, [0.5, 0.85, 0.9, 0.7], 0.8) == (2.0, 50.0)
    # 6-hourly bars: each bar counts 0.25 day; the last bar the median spacing
    times = pd.date_range("2021-01-01", periods=4, freq="6h", tz="UTC")
    assert event_stats.time_above_level(times, [0.9, 0.1, float("nan"), 0.95], 0.8) == (0.5, 50.0)


def test_time_above_level_counts_a_ratio_exactly_at_the_level():
    # the docstring: time with ratio >= level; 0.8 at level 0.8 counts (2 of 3 daily bars)
    times = pd.date_range("2021-01-01", periods=3, freq="D", tz="UTC")
    days, pct = event_stats.time_above_level(times, [0.5, 0.8, 0.9], 0.8)
    assert days == 2.0 and pct == pytest.approx(200 / 3, rel=1e-12)


# ---------------------------------------------------------------------------------------- ledger_stats


def test_futures_leg_and_mining_from_ledger():
    ledger = Ledger()
    t0, t1 = datetime(2021, 1, 1), datetime(2021, 1, 2)
    ledger.add(t0, "deposit", "USD", "futures", 10_000.0)
    ledger.add(t0, "fee", "USD", "futures", -4.0, "BTCUSDT-PERP")
    ledger.add(t0, "funding", "USD", "futures", -3.0, "BTCUSDT-PERP")
    ledger.add(t1, "funding", "USD", "futures", 1.0, "BTCUSDT-PERP")
    ledger.add(t1, "realized_pnl", "USD", "futures", 250.0, "BTCUSDT-PERP")
    ledger.add(t1, "fee", "USD", "spot", -2.0)
    ledger.add(t0, "mining_credit", "BTC", "spot", 0.01, "fleet")
    ledger.add(t0, "pool_fee", "BTC", "spot", -0.0002, "fleet")
    ledger.add(t0, "power_cost", "USD", "spot", -120.0, "fleet")
    ledger.add(t1, "mining_credit", "BTC", "spot", 0.02, "fleet")
    ledger.add(t1, "hosting_cost", "USD", "spot", -30.0, "fleet")
    frame = ledger_stats.ledger_frame(ledger)
    assert list(frame.columns) == list(ledger_stats.LEDGER_COLUMNS)

    leg = ledger_stats.futures_leg_totals(frame)
    assert leg["funding_paid_usd"] == 3.0 and leg["funding_received_usd"] == 1.0
    assert leg["fees_paid_usd"] == 4.0 and leg["realized_total_usd"] == 244.0
    assert ledger_stats.fees_paid_usd(frame) == 6.0 and ledger_stats.funding_paid_usd(frame) == 3.0
    times = pd.DatetimeIndex(["2020-12-31", "2021-01-01", "2021-01-02"], tz="UTC")
    cumulative = ledger_stats.cumulative_by_time(frame, ledger_stats.FUTURES_PNL_KINDS, times, wallet="futures")
    assert cumulative.tolist() == [0.0, -7.0, 244.0]

    prices = daily([20_000.0, 25_000.0])
    mining = ledger_stats.mining_frame(frame, "BTC", prices)
    assert mining["revenue_usd"].tolist() == [pytest.approx(200.0), pytest.approx(500.0)]
    assert mining["pool_fee_usd"].iloc[0] == pytest.approx(4.0)
    assert mining["coins_net"].iloc[0] == pytest.approx(0.0098)
    assert mining["break_even_price_usd"].tolist() == [pytest.approx(120.0 / 0.0098), pytest.approx(1500.0)]
    assert mining["net_cash_flow_usd"].sum() == pytest.approx(200.0 - 120.0 - 4.0 + 500.0 - 30.0)
