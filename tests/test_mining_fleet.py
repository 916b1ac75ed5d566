"""mining.hardware and mining.fleet: catalog, shorthand, daily economics in closed form, pro-rata bars,
curtailment and hash-rate properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minehedge.errors import ConfigError, DataError
from mining.fleet import (
    FLOW_COLUMNS,
    Fleet,
    breakeven_coin_price,
    breakeven_power_price,
    deploy,
    parse_fleet,
    per_bar,
    retire,
    straight_line_book_value,
)
from mining.hardware import custom_spec, get_model, known_models, resolve_spec

CATALOG = {  # name: (TH/s, W, year) as the issue lists them
    "S9": (13.5, 1323, 2016), "S17Pro": (53, 2094, 2019), "S19": (95, 3250, 2020),
    "S19Pro": (110, 3250, 2020), "S19XP": (140, 3010, 2022), "S21": (200, 3500, 2023),
}


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_models(name: str) -> None:
    spec = get_model(name)
    th, watts, year = CATALOG[name]
    assert (spec.hashrate_hs, spec.power_w, spec.year, spec.asset) == (th * 1e12, watts, year, "BTC")
    assert spec.source.startswith("Bitmain")
    assert spec.efficiency_j_per_th == pytest.approx(watts / th, rel=1e-15)
    assert known_models() == list(CATALOG)


@pytest.mark.parametrize("spelling", ["S19Pro", "S19 Pro", "s19_pro", "Antminer S19 Pro", "s19-pro", "S19PRO"])
def test_model_spellings(spelling: str) -> None:
    assert get_model(spelling).name == "S19Pro"


def test_unknown_model_lists_known_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        get_model("S19 Prox")
    message = str(info.value)
    assert "S19 Prox" in message and "S9, S17Pro, S19, S19Pro, S19XP, S21" in message
    assert "Did you mean 'S19Pro'?" in message


def test_custom_specs() -> None:
    rig = resolve_spec("500MH/1200W")
    assert (rig.asset, rig.hashrate_hs, rig.power_w) == ("ETH", 500e6, 1200.0)
    asic = resolve_spec("1.1PH/30000W")
    assert asic.asset == "BTC" and asic.hashrate_hs == pytest.approx(1.1e15, rel=1e-15)
    assert custom_spec("rig", 300, "MH/s", 900).hashrate_in_unit() == 300.0
    with pytest.raises(ConfigError, match="unit"):
        custom_spec("rig", 300, "KH", 900)
    with pytest.raises(ConfigError, match="power_w"):
        custom_spec("rig", 300, "MH/s", 0)


def test_parse_fleet_shorthand() -> None:
    deployments, retirements = parse_fleet(
        "S19Pro:1000@2020-06-01, S19 Pro:10@2021-01-01$2400.5, -s19_pro:300@2021-06-01, 500MH/1200W:4@2019-01-01")
    assert [(d.spec.name, d.units, str(d.date.date()), d.unit_price_usd) for d in deployments] == [
        ("S19Pro", 1000, "2020-06-01", 0.0), ("S19Pro", 10, "2021-01-01", 2400.5),
        ("500MH/1200W", 4, "2019-01-01", 0.0)]
    assert [(r.model, r.units, str(r.date.date())) for r in retirements] == [("S19Pro", 300, "2021-06-01")]
    assert deployments[0].date.tz is not None
    for bad in ["", "S19Pro:1000", "S19Pro@2020-01-01", "S19Pro:x@2020-01-01", "-S9:1@2020-01-01$5",
                "S19Pro:1@2020-13-45"]:
        with pytest.raises(ConfigError):
            parse_fleet(bad)


def _hashprice(coins_per_unit: list[float], price: list[float], start: str = "2021-01-01") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(price), freq="D", tz="UTC")
    return pd.DataFrame({"coins_per_unit_day": coins_per_unit, "price_usd": price}, index=index)


def test_one_machine_day_closed_form() -> None:
    """One S19 Pro at 5e-6 BTC/TH/day, 40,000 USD/BTC, 0.05 USD/kWh, 2% pool fee."""
    fleet = Fleet.from_shorthand("S19Pro:1@2021-01-01", power_price_usd_per_kwh=0.05, pool_fee=0.02)
    day = fleet.simulate(_hashprice([5e-6], [40_000.0])).iloc[0]
    assert day["hashrate_units"] == 110.0 and day["hashrate_hs"] == 110e12
    assert day["coins_gross"] == pytest.approx(5.5e-4, rel=1e-15)
    assert day["coins_mined"] == pytest.approx(5.5e-4 * 0.98, rel=1e-15)
    assert day["revenue_usd"] == pytest.approx(22.0, rel=1e-15)
    assert day["pool_fee_usd"] == pytest.approx(0.44, rel=1e-14)
    assert day["power_kwh"] == 78.0  # 3,250 W x 24 h
    assert day["power_cost_usd"] == pytest.approx(3.9, rel=1e-15)
    assert day["net_cash_flow_usd"] == pytest.approx(22.0 - 0.44 - 3.9, rel=1e-14)
    # Break-even coin price: 3.9 / (5.5e-4 x 0.98) = 7,235.62 USD; power price: 22 x 0.98 / 78 USD/kWh.
    assert day["breakeven_price_usd"] == pytest.approx(3.9 / (5.5e-4 * 0.98), rel=1e-14)
    assert round(day["breakeven_price_usd"], 2) == 7235.62
    assert day["breakeven_power_usd_per_kwh"] == pytest.approx(22.0 * 0.98 / 78.0, rel=1e-14)
    assert fleet.breakeven_at(fleet.simulate(_hashprice([5e-6], [40_000.0])), "2021-01-01 13:00")[
        "breakeven_price_usd"] == pytest.approx(day["breakeven_price_usd"], rel=1e-15)


def test_breakeven_functions_are_the_roots() -> None:
    price = breakeven_coin_price(3.9 + 1.0, 5.5e-4, 0.02)
    assert price * 5.5e-4 * 0.98 - 3.9 - 1.0 == pytest.approx(0.0, abs=1e-12)
    power = breakeven_power_price(22.0, 78.0, fixed_cost_usd_per_day=1.0, pool_fee=0.02, hosting_usd_per_kwh=0.01)
    assert 22.0 * 0.98 - 1.0 - 78.0 * (power + 0.01) == pytest.approx(0.0, abs=1e-12)


def test_curtailment_uptime_and_hosting() -> None:
    frame = _hashprice([5e-6, 5e-6], [40_000.0, 5_000.0])
    common = dict(power_price_usd_per_kwh=0.05, pool_fee=0.02, uptime=0.9, hosting_usd_per_unit_month=30.4375)
    on = Fleet.from_shorthand("S19Pro:2@2021-01-01", curtail=False, **common).simulate(frame)
    cut = Fleet.from_shorthand("S19Pro:2@2021-01-01", curtail=True, **common).simulate(frame)
    # Fixed hosting: 30.4375 USD per machine-month = 1 USD per machine-day, paid even when curtailed.
    assert on["hosting_usd"].tolist() == pytest.approx([2.0, 2.0], rel=1e-15)
    assert cut["hosting_usd"].tolist() == pytest.approx([2.0, 2.0], rel=1e-15)
    # Day 1 pays (revenue 2 x 0.9 x 22 x 0.98 > power 2 x 0.9 x 3.9): identical with and without curtailment.
    assert cut.iloc[0]["net_cash_flow_usd"] == pytest.approx(0.9 * 2 * (22 * 0.98 - 3.9) - 2.0, rel=1e-14)
    assert cut.iloc[0]["curtailed_fraction"] == 0.0
    # Day 2 at 5,000 USD: 2.75 x 0.98 < 3.9 per machine-day, so the machines stay off.
    assert cut.iloc[1]["curtailed_fraction"] == 1.0
    assert cut.iloc[1][["coins_mined", "revenue_usd", "power_cost_usd", "hashrate_hs"]].tolist() == [0, 0, 0, 0]
    assert cut.iloc[1]["net_cash_flow_usd"] == pytest.approx(-2.0, rel=1e-15)
    assert on.iloc[1]["net_cash_flow_usd"] == pytest.approx(0.9 * 2 * (2.75 * 0.98 - 3.9) - 2.0, rel=1e-14)


def test_curtailment_counts_the_per_kwh_hosting_as_a_running_cost() -> None:
    # 100 TH/s at 1e-6 BTC/TH/day and 45,000 USD: 4.5 USD, 4.41 after the 2 % pool fee. 3 kW x 24 h = 72 kWh:
    # power 72 x 0.05 = 3.60 USD is covered, power + hosting 72 x (0.05 + 0.02) = 5.04 USD is not: off.
    fleet = Fleet.from_shorthand("100TH/3000W:1@2021-01-01", power_price_usd_per_kwh=0.05, hosting_usd_per_kwh=0.02,
                                 pool_fee=0.02, curtail=True)
    assert 72 * 0.05 < 100 * 1e-6 * 45_000 * 0.98 < 72 * (0.05 + 0.02)
    day = fleet.simulate(_hashprice([1e-6], [45_000.0])).iloc[0]
    assert day["curtailed_fraction"] == 1.0
    assert day[["coins_mined", "revenue_usd", "power_kwh", "power_cost_usd", "net_cash_flow_usd"]].tolist() == [0] * 5


def test_a_machine_whose_revenue_exactly_covers_power_and_hosting_keeps_running() -> None:
    # Binary-exact: 128 TH/s x 2^-10 BTC/TH/day x 24 USD = 3 USD, no pool fee; 1 kW x 24 h x (0.0625 + 0.0625)
    # USD/kWh = 3 USD. The docstring curtails a cohort whose revenue is *below* its variable cost: it runs.
    fleet = Fleet.from_shorthand("128TH/1000W:1@2021-01-01", power_price_usd_per_kwh=0.0625,
                                 hosting_usd_per_kwh=0.0625, pool_fee=0.0, curtail=True)
    day = fleet.simulate(_hashprice([2.0**-10], [24.0])).iloc[0]
    assert day["revenue_usd"] == 128 * 2.0**-10 * 24 == 24 * (0.0625 + 0.0625)
    assert day["curtailed_fraction"] == 0.0 and day["coins_mined"] == 128 * 2.0**-10 and day["power_kwh"] == 24.0


def test_mixed_fleet_curtails_the_inefficient_cohort_only() -> None:
    # 1.2e-5 BTC/TH/day at 10,000 USD: S9 earns 1.6038 USD vs 1.5876 power; S17 Pro pays, S9 at 0.06 does not.
    frame = _hashprice([1.2e-5], [10_000.0])
    fleet = Fleet.from_shorthand("S9:10@2021-01-01,S17Pro:10@2021-01-01", power_price_usd_per_kwh=0.06,
                                 pool_fee=0.0)
    day = fleet.simulate(frame).iloc[0]
    assert day["hashrate_units"] == 530.0
    assert day["curtailed_fraction"] == pytest.approx(135.0 / 665.0, rel=1e-15)


def test_retirements_fifo_and_errors() -> None:
    frame = _hashprice([1e-5] * 4, [1e5] * 4)
    fleet = Fleet([deploy("S9", 10, "2021-01-01", 1000.0), deploy("S9", 5, "2021-01-02", 500.0)],
                  [retire("s9", 12, "2021-01-03")], power_price_usd_per_kwh=0.0, depreciation_years=1.0)
    out = fleet.simulate(frame)
    assert out["units"].tolist() == [10, 15, 3, 3]
    # The oldest cohort (10 at 1,000 USD) goes first, then 2 of the second: 3 at 500 USD remain, 3 days old
    # at the end of 2021-01-04.
    assert out["book_value_usd"].iloc[3] == pytest.approx(3 * 500 * (1 - 3 / 365.25), rel=1e-14)
    with pytest.raises(ConfigError, match="exceeds"):
        Fleet([deploy("S9", 10, "2021-01-01")], [retire("S9", 11, "2021-01-03")])
    with pytest.raises(ConfigError, match="exceeds"):  # cannot retire before deployment
        Fleet([deploy("S9", 10, "2021-01-05")], [retire("S9", 1, "2021-01-03")])


def test_depreciation_is_straight_line_over_life() -> None:
    days = 400
    frame = _hashprice([1e-5] * days, [1e5] * days)
    fleet = Fleet.from_shorthand("S21:4@2021-01-01$3650", depreciation_years=1.0, power_price_usd_per_kwh=0.0)
    out = fleet.simulate(frame)
    assert out["capex_usd"].iloc[0] == 4 * 3650 and out["capex_usd"].iloc[1:].sum() == 0
    assert out["depreciation_usd"].sum() == pytest.approx(4 * 3650, rel=1e-12)
    assert out["depreciation_usd"].iloc[0] == pytest.approx(4 * 3650 / 365.25, rel=1e-14)
    assert out["book_value_usd"].iloc[-1] == 0.0
    assert out["breakeven_price_all_in_usd"].iloc[0] > out["breakeven_price_usd"].iloc[0] == 0.0


def test_book_value_at_any_instant_counts_the_share_paid_and_retirements() -> None:
    # 3 S19 Pro at 1,200 USD deployed on 2021-01-02, a one-year life (365.25 days); one retired on 2021-07-01.
    fleet = Fleet.from_shorthand("S19Pro:3@2021-01-02$1200,-S19Pro:1@2021-07-01", depreciation_years=1.0)
    times = pd.DatetimeIndex([pd.Timestamp(t) for t in ("2021-01-01", "2021-01-02 04:00", "2021-01-03",
                                                         "2021-07-01", "2021-07-01 00:00:01", "2022-01-02 06:00")])
    got = fleet.book_value_at(times)
    age_july = (pd.Timestamp("2021-07-01") - pd.Timestamp("2021-01-02")).days  # 180 days
    assert got.tolist() == pytest.approx([
        0.0,  # before the deployment
        3 * 1200 / 6 * (1 - (1 / 6) / 365.25),  # a sixth of the price paid (per_bar's capex), 4 h old
        3 * 1200 * (1 - 1 / 365.25),  # the end of the purchase day: simulate's book_value_usd
        3 * 1200 * (1 - age_july / 365.25),  # the end of 06-30: the retirement takes effect after it
        2 * 1200 * (1 - (age_july + 1 / 86_400) / 365.25),
        0.0,  # past its life
    ], rel=1e-14, abs=1e-12)
    # an insolvent miner stops paying at 08:00 on the purchase day: a third of the price is all it owns
    frozen = fleet.book_value_at(times[1:3], paid_until=pd.Timestamp("2021-01-02 08:00"))
    assert frozen.tolist() == pytest.approx([3 * 1200 / 6 * (1 - (1 / 6) / 365.25),
                                             3 * 1200 / 3 * (1 - 1 / 365.25)], rel=1e-14)
    assert straight_line_book_value(1000.0, np.array([-1.0, 0.0, 36.525, 400.0]), 365.25).tolist() == \
        pytest.approx([1000.0, 1000.0, 900.0, 0.0], rel=1e-15)


def test_book_value_at_day_ends_is_the_schedules_book_value() -> None:
    frame = _hashprice([1e-5] * 5, [1e5] * 5)
    fleet = Fleet.from_shorthand("S9:2@2020-12-30$300,S19:1@2021-01-03$2000", depreciation_years=0.01)
    out = fleet.simulate(frame)  # 2021-01-01 .. 01-05; the S9 pair's 3.6525-day life ends on 01-02
    ends = out.index + pd.Timedelta(days=1)
    assert fleet.book_value_at(ends).tolist() == out["book_value_usd"].tolist()
    assert out["book_value_usd"].tolist() == pytest.approx(
        [600 * (1 - 3 / 3.6525), 0.0, 2000 * (1 - 1 / 3.6525), 2000 * (1 - 2 / 3.6525), 2000 * (1 - 3 / 3.6525)],
        rel=1e-14)


def test_market_value_scales_with_hashprice() -> None:
    frame = _hashprice([1e-5, 2e-5], [1e4, 1e4])
    fleet = Fleet.from_shorthand("S19:1@2021-01-01$1000", market_value=True, market_value_window_days=1,
                                 depreciation_years=10.0)
    out = fleet.simulate(frame)
    assert out["market_value_usd"].iloc[0] == pytest.approx(out["book_value_usd"].iloc[0], rel=1e-15)
    assert out["market_value_usd"].iloc[1] == pytest.approx(2 * out["book_value_usd"].iloc[1], rel=1e-14)


def test_power_price_series_applies_from_its_dates() -> None:
    frame = _hashprice([1e-5] * 4, [1e5] * 4)
    prices = pd.Series([0.04, 0.08], index=pd.DatetimeIndex(["2020-12-01", "2021-01-03"], tz="UTC"))
    out = Fleet.from_shorthand("S19:1@2021-01-01", power_price_usd_per_kwh=prices).simulate(frame)
    assert out["power_price_usd_per_kwh"].tolist() == [0.04, 0.04, 0.08, 0.08]
    late = pd.Series([0.05], index=pd.DatetimeIndex(["2021-01-02"], tz="UTC"))
    with pytest.raises(ConfigError, match="power_price_usd_per_kwh"):
        Fleet.from_shorthand("S19:1@2021-01-01", power_price_usd_per_kwh=late).simulate(frame)


def test_fleet_config_errors() -> None:
    with pytest.raises(ConfigError, match="uptime"):
        Fleet.from_shorthand("S19:1@2021-01-01", uptime=1.5)
    with pytest.raises(ConfigError, match="pool_fee"):
        Fleet.from_shorthand("S19:1@2021-01-01", pool_fee=2)
    with pytest.raises(ConfigError, match="mixes"):
        Fleet.from_shorthand("S19:1@2021-01-01,500MH/1200W:1@2021-01-01")
    with pytest.raises(ConfigError, match="asset"):
        Fleet.from_shorthand("S19:1@2021-01-01", asset="ETH")
    with pytest.raises(DataError, match="2021-01-02"):
        Fleet.from_shorthand("S19:1@2021-01-01").simulate(_hashprice([1e-5, np.nan], [1e4, 1e4]))


def test_per_bar_pro_rata_sums_to_daily() -> None:
    frame = _hashprice([1e-5, 2e-5, 3e-5], [1e4, 2e4, 3e4])
    daily = Fleet.from_shorthand("S19:3@2021-01-01", power_price_usd_per_kwh=0.05).simulate(frame)
    four_hour = pd.date_range("2021-01-01", periods=18, freq="4h", tz="UTC")
    bars = per_bar(daily, four_hour)
    for column in FLOW_COLUMNS:
        np.testing.assert_allclose(bars[column].to_numpy().reshape(3, 6).sum(axis=1), daily[column], rtol=1e-12)
    assert bars["coins_mined"].iloc[0] == pytest.approx(daily["coins_mined"].iloc[0] / 6, rel=1e-12)
    assert (bars["hashrate_hs"].to_numpy() == np.repeat(daily["hashrate_hs"].to_numpy(), 6)).all()
    # 8h bars opening at 20:00 straddle midnight: 4 h of one day and 4 h of the next.
    shifted = pd.date_range("2021-01-01 20:00", periods=2, freq="8h", tz="UTC")
    straddle = per_bar(daily, shifted)
    want = daily["coins_mined"].iloc[0] / 6 + daily["coins_mined"].iloc[1] / 6
    assert straddle["coins_mined"].iloc[0] == pytest.approx(want, rel=1e-12)
    assert straddle["price_usd"].iloc[0] == daily["price_usd"].iloc[0]  # level of the opening day


@settings(max_examples=60, deadline=None)
@given(
    coins=st.lists(st.floats(1e-7, 1e-4), min_size=1, max_size=8),
    price=st.floats(100.0, 200_000.0),
    power=st.floats(0.0, 0.3),
    hosting_kwh=st.floats(0.0, 0.05),
    hosting_month=st.floats(0.0, 100.0),
    uptime=st.floats(0.05, 1.0),
    models=st.lists(st.sampled_from(list(CATALOG)), min_size=1, max_size=3),
)
def test_curtailment_never_lowers_net_cash_flow(coins, price, power, hosting_kwh, hosting_month, uptime,
                                                models) -> None:
    frame = _hashprice(coins, [price] * len(coins))
    text = ",".join(f"{m}:{10 + i}@2021-01-01" for i, m in enumerate(models))
    kwargs = dict(power_price_usd_per_kwh=power, hosting_usd_per_kwh=hosting_kwh,
                  hosting_usd_per_unit_month=hosting_month, uptime=uptime)
    with_curtail = Fleet.from_shorthand(text, curtail=True, **kwargs).simulate(frame)
    without = Fleet.from_shorthand(text, curtail=False, **kwargs).simulate(frame)
    assert (with_curtail["net_cash_flow_usd"].to_numpy() >= without["net_cash_flow_usd"].to_numpy() - 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(
    coins=st.floats(1e-7, 1e-4),
    price=st.floats(100.0, 200_000.0),
    power=st.floats(0.0, 0.3),
    units=st.integers(1, 5_000),
    extra=st.integers(1, 5_000),
    model=st.sampled_from(list(CATALOG)),
    curtail=st.booleans(),
)
def test_more_hashrate_never_earns_fewer_coins(coins, price, power, units, extra, model, curtail) -> None:
    frame = _hashprice([coins], [price])
    small = Fleet.from_shorthand(f"{model}:{units}@2021-01-01", power_price_usd_per_kwh=power,
                                 curtail=curtail).simulate(frame)
    big = Fleet.from_shorthand(f"{model}:{units + extra}@2021-01-01", power_price_usd_per_kwh=power,
                               curtail=curtail).simulate(frame)
    assert big["coins_mined"].iloc[0] >= small["coins_mined"].iloc[0]
    assert big["hashrate_hs"].iloc[0] >= small["hashrate_hs"].iloc[0]


def test_issue_check_through_the_fleet() -> None:
    """A 1 PH/s machine for 14 days at D = 21.3876e12, 6.25 BTC, no fees, no pool fee: 0.0823 BTC (4 dp)."""
    index = pd.date_range("2020-06-01", periods=14, freq="D", tz="UTC")
    network = pd.DataFrame({"price_usd": 9_500.0, "hashrate_hs": np.nan, "difficulty": 21.3876e12,
                            "block_count": 144.0, "issuance_coin": 900.0, "fees_coin": 0.0,
                            "miner_income_coin": 900.0, "subsidy_per_block": 6.25, "fees_per_block": 0.0,
                            "supply_coin": np.nan, "source": "synthetic"}, index=index)
    fleet = Fleet.from_shorthand("1PH/3000W:1@2020-06-01", pool_fee=0.0, power_price_usd_per_kwh=0.0)
    schedule = fleet.simulate(network)
    assert round(schedule["coins_mined"].sum(), 4) == 0.0823
    with_fee = Fleet.from_shorthand("1PH/3000W:1@2020-06-01", power_price_usd_per_kwh=0.0).simulate(network)
    assert with_fee["coins_mined"].sum() == pytest.approx(0.98 * schedule["coins_mined"].sum(), rel=1e-14)
    assert Fleet.per_bar is per_bar


@pytest.mark.parametrize(("text", "item", "reason"), [
    ("S9:10@2018-01-01,S9X:10@2019-01-01", "S9X:10@2019-01-01", "model='S9X' is not in the hardware catalog"),
    ("S19Pro:1000@2020-13-01", "S19Pro:1000@2020-13-01", "date='2020-13-01' is not a date (use YYYY-MM-DD)."),
    ("S19Pro:10@2020-01-01,S19Pro:0@2020-12-01", "S19Pro:0@2020-12-01",
     "units=0 must be a whole number of machines > 0."),
    ("S9:10@2018-01-01,-S9:10@2019-02-30", "-S9:10@2019-02-30", "date='2019-02-30' is not a date"),
])
def test_a_bad_model_units_or_date_names_the_fleet_item_it_is_in(text, item, reason):
    with pytest.raises(ConfigError) as caught:
        parse_fleet(text)
    assert str(caught.value).startswith(f"fleet item {item!r}: {reason}")


def test_an_idle_fleet_note_says_why_nothing_was_mined() -> None:
    """One S19 Pro at 5e-6 BTC/TH/day, at 40,000 then 20,000 USD/BTC, 2 % pool fee, power at 1.20 USD/kWh: the
    coins pay 22 x 0.98 / 78 = 0.2764 then 0.1382 USD per kWh drawn, so it is curtailed on both days."""
    from mining.fleet import idle_fleet_note

    frame = _hashprice([5e-6, 5e-6], [40_000.0, 20_000.0])
    fleet = Fleet.from_shorthand("S19Pro:1@2021-01-01", power_price_usd_per_kwh=1.2, pool_fee=0.02)
    assert idle_fleet_note(fleet.simulate(frame)) == (
        "the fleet mined nothing: it was curtailed on every day of the run (curtail=true), as its power and hosting "
        f"cost more than its coins paid on each: the break-even power price (after hosting) was at most "
        f"{22.0 * 0.98 / 78.0:.4g} USD/kWh (2021-01-01), the power price at least 1.2 USD/kWh. Prices are in USD "
        "per kWh: 0.045 is 4.5 cents.")
    assert f"{22.0 * 0.98 / 78.0:.4g}" == "0.2764"
    uncurtailed = Fleet.from_shorthand("S19Pro:1@2021-01-01", power_price_usd_per_kwh=1.2, curtail=False)
    assert idle_fleet_note(uncurtailed.simulate(frame)) == ""  # it mined, at a loss
    later = Fleet.from_shorthand("S19Pro:1@2021-02-01", power_price_usd_per_kwh=0.05)
    assert idle_fleet_note(later.simulate(frame)) == (
        "the fleet mined nothing: none of its machines was installed on any day of the run.")
    # machines from the second of three days, at a dollar price (0.5 USD/kWh, plausible): the days it had
    # machines are counted, and no cents hint; 20,000 USD/BTC pays 11 x 0.98 / 78 = 0.1382 USD per kWh
    frame3 = _hashprice([5e-6] * 3, [40_000.0, 20_000.0, 20_000.0])
    part = Fleet.from_shorthand("S19Pro:1@2021-01-02", power_price_usd_per_kwh=0.5, pool_fee=0.02)
    assert idle_fleet_note(part.simulate(frame3)) == (
        "the fleet mined nothing: it was curtailed on each of the 2 days it had machines and the network paid (of "
        "3 in the run) (curtail=true), as its power and hosting cost more than its coins paid on each: the "
        f"break-even power price (after hosting) was at most {11.0 * 0.98 / 78.0:.4g} USD/kWh (2021-01-02), the "
        "power price at least 0.5 USD/kWh.")
    merged = Fleet.from_shorthand("500MH/1200W:1@2021-01-01", asset="ETH", power_price_usd_per_kwh=0.05)
    assert idle_fleet_note(merged.simulate(_hashprice([0.0, 0.0], [1_500.0, 1_400.0]))) == ""  # no reward: no setting
