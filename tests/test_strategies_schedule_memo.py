"""The per-bar mining schedule depends only on the data's network lines and the fleet, so a process computes it
once per (data, fleet) pair (``strategies.base._memo_schedule``): a sweep over hedge settings simulates the
fleet once. These tests check that the memo is hit only when the answer cannot differ, and that a run served
from it is identical to a run computed from cold."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from minehedge import api
from mining.fleet import Fleet
from strategies import base
from strategies.base import forget_mining_schedules


@pytest.fixture
def simulations(monkeypatch) -> list[int]:
    """Counts Fleet.simulate calls (one element per call), starting from an empty memo."""
    calls: list[int] = []
    simulate = Fleet.simulate

    def counted(self, *args, **kwargs):
        calls.append(1)
        return simulate(self, *args, **kwargs)

    monkeypatch.setattr(Fleet, "simulate", counted)
    forget_mining_schedules()
    yield calls
    forget_mining_schedules()


def _strategy(market, **params):
    return api._run_cerebro(market, "static_hedge", params, None)[0]


def _summary(market, **params) -> dict:
    return dict(_strategy(market, **params).analyzers.summary.get_analysis())


def test_fleet_cache_key_tells_apart_every_setting_simulate_reads():
    def fleet(**overrides) -> Fleet:
        settings = {"asset": "BTC", "uptime": 0.97, "power_price_usd_per_kwh": 0.05, "hosting_usd_per_kwh": 0.01,
                    "pool_fee": 0.02, "curtail": True}
        return Fleet.from_shorthand(overrides.pop("text", "S19Pro:1000@2020-06-01"), **{**settings, **overrides})

    days = pd.date_range("2020-01-01", periods=3, freq="D", tz="UTC")
    series = pd.Series([0.05, 0.06, 0.07], index=days)
    assert fleet().cache_key() == fleet().cache_key()
    assert fleet(power_price_usd_per_kwh=series).cache_key() == fleet(power_price_usd_per_kwh=series.copy()).cache_key()
    variants = [fleet(text="S19Pro:1001@2020-06-01"), fleet(text="S19Pro:1000@2020-06-02"),
                fleet(text="S19Pro:1000@2020-06-01,-S19Pro:10@2021-01-01"), fleet(text="S9:1000@2020-06-01"),
                fleet(uptime=0.96), fleet(power_price_usd_per_kwh=0.051), fleet(hosting_usd_per_kwh=0.0),
                fleet(pool_fee=0.025), fleet(curtail=False), fleet(hosting_usd_per_unit_month=1.0),
                fleet(depreciation_years=4.0), fleet(market_value=True),
                fleet(market_value=True, market_value_window_days=7),
                fleet(power_price_usd_per_kwh=series),
                fleet(power_price_usd_per_kwh=series.set_axis(days + pd.Timedelta(days=1))),
                fleet(power_price_usd_per_kwh=pd.Series([0.05, 0.06, 0.08], index=days))]
    keys = [fleet().cache_key(), *(f.cache_key() for f in variants)]
    assert len(set(keys)) == len(keys)
    hash(keys[-1])  # a dict key


def test_a_sweep_over_hedge_settings_simulates_the_fleet_once_and_matches_cold_runs(btc_daily_2021, simulations):
    configs = [{"hedge_ratio": 0.5, "leverage": 3.0}, {"hedge_ratio": 1.0, "leverage": 10.0, "margin_mode": "cross"}]
    served = [_summary(btc_daily_2021, **config) for config in configs]
    assert len(simulations) == 1
    for config, summary in zip(configs, served, strict=True):
        forget_mining_schedules()
        assert _summary(btc_daily_2021, **config) == summary  # every figure, bit for bit
    assert len(simulations) == 3


def test_another_fleet_or_power_price_is_simulated_afresh(btc_daily_2021, simulations):
    first = _strategy(btc_daily_2021).mining_schedule
    dearer = _strategy(btc_daily_2021, power_usd_per_kwh=0.08).mining_schedule
    assert len(simulations) == 2
    running = (first["power_cost_usd"] > 0) & (dearer["power_cost_usd"] > 0)  # not curtailed in either
    assert running.sum() > 300
    default = api._policy_params("static_hedge", {"asset": "BTC"}, None)["power_usd_per_kwh"]
    np.testing.assert_allclose(dearer["power_cost_usd"][running] / first["power_cost_usd"][running],
                               0.08 / default, rtol=1e-12)  # energy x price: the same energy, the new price
    assert _strategy(btc_daily_2021).mining_schedule.equals(first)
    assert len(simulations) == 2  # the first fleet is still remembered


def test_data_changed_in_place_is_simulated_afresh(btc_daily_2021, simulations):
    market = dataclasses.replace(btc_daily_2021, frame=btc_daily_2021.frame.copy())
    before = _strategy(market).mining_schedule
    market.frame["coins_per_unit_day"] *= 2.0  # the same frame object, other network data
    after = _strategy(market).mining_schedule
    assert len(simulations) == 2
    mined = before["coins_gross"] > 0
    assert mined.any()
    np.testing.assert_array_equal(after["coins_gross"][mined], 2.0 * before["coins_gross"][mined])


def test_a_run_changing_its_schedule_leaves_the_next_run_alone(btc_daily_2021, simulations):
    schedule = _strategy(btc_daily_2021).mining_schedule
    untouched = schedule.copy(deep=True)
    schedule["coins_gross"] = 0.0
    schedule.iloc[0, schedule.columns.get_loc("power_cost_usd")] = -1.0
    again = _strategy(btc_daily_2021).mining_schedule
    assert len(simulations) == 1
    pd.testing.assert_frame_equal(again, untouched)


def test_the_memo_keeps_a_bounded_number_of_schedules(btc_daily_2021, simulations):
    for k in range(base._SCHEDULES_KEPT + 2):
        _strategy(btc_daily_2021, power_usd_per_kwh=0.04 + 0.001 * k)
    assert len(base._SCHEDULES) == base._SCHEDULES_KEPT
    _strategy(btc_daily_2021, power_usd_per_kwh=0.04)  # the oldest was dropped: simulated again
    assert len(simulations) == base._SCHEDULES_KEPT + 3
