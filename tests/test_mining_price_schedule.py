"""Dated price schedules (mining.price_schedule, data.price_schedule): the forms power_usd_per_kwh and
hosting_usd_per_kwh take besides a number, their one-line errors, and what a fleet pays with one: each day's
kWh at that day's price, in closed form from the machines' specification and the schedule."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from data.price_schedule import read_price_csv
from minehedge.config import parse_grid_values, spec_map
from minehedge.errors import ConfigError
from minehedge.sweep import config_hash
from mining.fleet import Fleet
from mining.hardware import resolve_spec
from mining.price_schedule import PriceSchedule, parse_price_schedule
from strategies.base import BASE_SPECS

POWER = spec_map(BASE_SPECS)["power_usd_per_kwh"]
HOSTING = spec_map(BASE_SPECS)["hosting_usd_per_kwh"]
ALLOWED = "allowed: float >= 0.0 USD/kWh, or a schedule PRICE,PRICE@YYYY-MM-DD,... or FILE.csv."


def days(start: str, periods: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=periods, freq="D", tz="UTC")


def network(start: str, periods: int, coins_per_unit: float = 5e-6, price: float = 40_000.0) -> pd.DataFrame:
    return pd.DataFrame({"coins_per_unit_day": coins_per_unit, "price_usd": price}, index=days(start, periods))


# --- the forms ----------------------------------------------------------------------------------------------
def test_the_inline_form_prices_each_day_from_its_date_on():
    schedule = POWER.coerce("0.045,0.07@2022-03-01,0.05@2023-01-01")
    assert isinstance(schedule, PriceSchedule) and schedule.name == "power_usd_per_kwh"
    assert schedule.opening == 0.045 and schedule.start is None  # the first price: from before any run
    when = pd.DatetimeIndex(["1990-01-01", "2022-02-28", "2022-03-01", "2022-12-31", "2023-01-01", "2030-01-01"],
                            tz="UTC")
    assert schedule.on(when).tolist() == [0.045, 0.045, 0.07, 0.07, 0.05, 0.05]
    assert str(schedule) == "0.045,0.07@2022-03-01,0.05@2023-01-01"
    assert POWER.coerce(str(schedule)) == schedule  # what reports and results.csv show reads back as itself
    assert POWER.coerce(schedule) is schedule  # a strategy re-checks its params: the object passes as it is
    assert POWER.coerce(" 0.045 , 0.07 @ 2022-03-01 ") == POWER.coerce("0.045,0.07@2022-03-01")
    assert POWER.coerce("0.045") == 0.045 and type(POWER.coerce("0.045")) is float  # a number stays a number


def test_a_table_a_series_and_a_csv_file_are_the_same_schedule(tmp_path):
    path = tmp_path / "power.csv"
    path.write_text("date,usd_per_kwh\n2021-06-01,0.04\n2022-03-01,0.07\n")
    from_file = POWER.coerce(str(path))
    from_table = POWER.coerce({"2021-06-01": 0.04, dt.date(2022, 3, 1): 0.07})
    from_series = POWER.coerce(pd.Series([0.04, 0.07], index=pd.to_datetime(["2021-06-01", "2022-03-01"])))
    assert from_file == from_table == from_series == POWER.coerce("0.04@2021-06-01,0.07@2022-03-01")
    assert from_file.start == pd.Timestamp("2021-06-01", tz="UTC")
    assert str(from_file) == str(path)  # a file is shown by its name
    assert from_file.on(days("2022-02-28", 2)).tolist() == [0.04, 0.07]


def test_a_schedule_that_starts_after_the_first_day_is_refused_naming_both_days(tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("date,usd_per_kwh\n2022-02-01,0.05\n")
    schedule = POWER.coerce(str(path))
    with pytest.raises(ConfigError) as info:
        schedule.on(days("2022-01-31", 3))
    assert str(info.value) == (
        f"power_usd_per_kwh={str(path)!r} starts on 2022-02-01, after the first day to price, 2022-01-31; give a "
        "price from 2022-01-31 or earlier (a CSV row or table entry dated then, or, inline, a first price without "
        "a date, which applies from before the run).")
    assert schedule.on(days("2022-02-01", 2)).tolist() == [0.05, 0.05]  # from its first day on it prices


@pytest.mark.parametrize(("value", "reason"), [
    ("0.07@2022-03-01", "is one dated price alone; give the price in force before it first (for example "
     "0.045,0.07@2022-03-01), none,0.07@2022-03-01 for none before it, or the number alone for a constant (in a "
     "--grid, separate schedules with ';')"),
    ("none,0.07", "is not a price schedule: item 2 '0.07' has no @YYYY-MM-DD (only the first price may have "
     "none: it applies from before the run)"),
    ("0.045,0.07", "is not a price schedule: item 2 '0.07' has no @YYYY-MM-DD (only the first price may have "
     "none: it applies from before the run)"),
    ("0.045,0.07@2022-03-01,0.05@2022-03-01",
     "is not a price schedule: dates must increase, and item 3 (2022-03-01) is not after 2022-03-01"),
    ("0.045,-0.07@2022-03-01", "has a price out of range (-0.07)"),
    ("0.045,x@2022-03-01", "is not a price schedule: 'x' (item 2) is not a number"),
    ("0.045,0.07@2022-13-01", "is not a price schedule: '2022-13-01' (item 2) is not a date YYYY-MM-DD"),
    ("0.045,0.07@1/3/2022", "is not a price schedule: '1/3/2022' (item 2) is not a date YYYY-MM-DD"),
    ("0.045,,0.07@2022-03-01", "is not a price schedule: item 2 is empty"),
    ("0.045,inf@2022-03-01", "is not a price schedule: 'inf' (item 2) is not a finite number"),
    ("cheap", "is not a number, a price schedule or a CSV file's name (ending in .csv)"),
    ("nan", "is not a finite number"),
    ("-0.01", "is out of range"),
])
def test_every_bad_inline_value_is_one_line_naming_the_parameter_value_and_forms(value, reason):
    with pytest.raises(ConfigError) as info:
        POWER.coerce(value, context="policy 'unhedged':")
    assert str(info.value) == f"policy 'unhedged': power_usd_per_kwh={value!r} {reason}; {ALLOWED}"


@pytest.mark.parametrize(("value", "reason"), [
    ({}, "is an empty table; give at least one date = price"),
    ({"2022-03-01": "cheap"}, "is not a price schedule: the price of 2022-03-01 is not a number"),
    ({"March": 0.05}, "is not a price schedule: date 'March' is not a date YYYY-MM-DD"),
    ({"2022-03-01": 0.05, "2022-01-01": 0.04},
     "is not a price schedule: dates must increase, and 2022-01-01 (2022-01-01) is not after 2022-03-01"),
    (True, "is not a number or a price schedule"),
])
def test_every_bad_table_is_one_line_too(value, reason):
    with pytest.raises(ConfigError) as info:
        HOSTING.coerce(value)
    assert str(info.value) == f"hosting_usd_per_kwh={value!r} {reason}; {ALLOWED}"


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot be read: price file '{p}' does not exist"),
    ("", "cannot be read: price file '{p}' is empty (0 bytes): no header line and no rows. Give a CSV file with "
     "a header line (date,usd_per_kwh) and data rows, or restore the file"),
    ("date,usd_per_kwh\n", "cannot be read: price file '{p}' has a header but no rows; give one row per price "
     "change"),
    ("date,price\n2022-01-01,0.04\n", "cannot be read: price file '{p}' has the columns date,price; it needs "
     "exactly date,usd_per_kwh"),
    ("date,usd_per_kwh\n2022-01-01,0.04,9\n", "cannot be read: price file '{p}' has more values on a line than "
     "its header has columns (date,usd_per_kwh); each row needs a date and a usd_per_kwh"),
    ("date,usd_per_kwh\n2022-01-01,0.04\n2022-02-30,0.05\n",
     "is not a price schedule: '2022-02-30' (line 3 of '{p}') is not a date YYYY-MM-DD"),
    ("date,usd_per_kwh\n2022-01-01,four\n", "is not a price schedule: 'four' (line 2 of '{p}') is not a number"),
    ("date,usd_per_kwh\n2022-03-01,0.04\n2022-01-01,0.05\n",
     "is not a price schedule: dates must increase, and line 3 of '{p}' (2022-01-01) is not after 2022-03-01"),
    ("date,usd_per_kwh\n2022-01-01,0.04\n2022-03-01,-1\n", "has a price out of range (-1.0)"),
])
def test_every_bad_csv_file_is_one_line_naming_the_file_and_line(tmp_path, content, reason):
    path = tmp_path / "power.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        POWER.coerce(str(path))
    assert str(info.value) == f"power_usd_per_kwh={str(path)!r} {reason.format(p=path)}; {ALLOWED}"


def test_read_price_csv_takes_spaces_and_header_case(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Date, USD_per_kWh\n2021-01-01, 0.04\n")
    assert read_price_csv(path, "x") == PriceSchedule(None, ((pd.Timestamp("2021-01-01", tz="UTC"), 0.04),))


# --- what a fleet pays ---------------------------------------------------------------------------------------
def test_each_day_pays_its_kwh_at_that_days_price_for_power_and_hosting():
    """1,000 S19 Pro at 97 % uptime, never curtailed: power = units x uptime x kWh/day x the day's price."""
    kwh = 1000 * 0.97 * resolve_spec("S19Pro").energy_kwh_per_day
    power, hosting = "0.045,0.07@2022-03-01,0.05@2022-03-03", "0.01,0.02@2022-03-02"
    fleet = Fleet.from_shorthand("S19Pro:1000@2021-01-01", uptime=0.97, curtail=False,
                                 power_price_usd_per_kwh=power, hosting_usd_per_kwh=hosting)
    out = fleet.simulate(network("2022-02-27", 6))  # 02-27 .. 03-04
    day_power = [0.045, 0.045, 0.07, 0.07, 0.05, 0.05]
    day_hosting = [0.01, 0.01, 0.01, 0.02, 0.02, 0.02]
    assert out["power_kwh"].tolist() == pytest.approx([kwh] * 6, rel=1e-15)
    assert out["power_price_usd_per_kwh"].tolist() == day_power
    assert out["power_cost_usd"].tolist() == pytest.approx([kwh * p for p in day_power], rel=1e-15)
    assert out["hosting_usd"].tolist() == pytest.approx([kwh * h for h in day_hosting], rel=1e-15)
    # the cash break-even coin price carries each day's power and hosting (USD/coin; 110 TH/s x 5e-6 BTC/TH)
    coins = 1000 * 0.97 * 110 * 5e-6
    expected = [kwh * (p + h) / (coins * 0.98) for p, h in zip(day_power, day_hosting, strict=True)]
    assert out["breakeven_price_usd"].tolist() == pytest.approx(expected, rel=1e-13)


def test_a_schedule_of_one_price_is_bit_identical_to_that_constant():
    frame = network("2022-02-20", 20, price=20_000.0)
    constant = Fleet.from_shorthand("S19Pro:1000@2021-01-01,S9:500@2022-02-25", power_price_usd_per_kwh=0.045,
                                    hosting_usd_per_kwh=0.01).simulate(frame)
    schedule = Fleet.from_shorthand("S19Pro:1000@2021-01-01,S9:500@2022-02-25",
                                    power_price_usd_per_kwh="0.045,0.045@2022-03-01",
                                    hosting_usd_per_kwh={"2022-01-01": 0.01}).simulate(frame)
    assert constant["curtailed_fraction"].max() > 0  # the S9s are switched off: the comparison covers curtailment
    pd.testing.assert_frame_equal(schedule, constant, check_exact=True)


def test_curtailment_decides_on_the_days_price():
    """A machine's revenue after the pool fee, over its kWh, is its break-even power price: a schedule from
    half of it to twice it runs the machines until the switch and stops them from that day on."""
    spec = resolve_spec("S19Pro")
    revenue = 110 * 5e-6 * 40_000.0 * 0.98  # USD per machine-day after the pool fee
    breakeven = revenue / spec.energy_kwh_per_day  # USD/kWh
    fleet = Fleet.from_shorthand("S19Pro:10@2021-01-01", uptime=1.0, curtail=True,
                                 power_price_usd_per_kwh={"2022-01-01": breakeven / 2, "2022-01-03": breakeven * 2})
    out = fleet.simulate(network("2022-01-01", 4))
    assert out["curtailed_fraction"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert out["power_cost_usd"].tolist() == pytest.approx([10 * spec.energy_kwh_per_day * breakeven / 2] * 2
                                                           + [0.0, 0.0], rel=1e-15)


def test_fleet_takes_the_forms_and_names_its_own_parameters():
    with pytest.raises(ConfigError, match=r"^power_price_usd_per_kwh='0.07@2022-03-01' is one dated price alone"):
        Fleet.from_shorthand("S19:1@2021-01-01", power_price_usd_per_kwh="0.07@2022-03-01")
    with pytest.raises(ConfigError, match=r"^hosting_usd_per_kwh='0.01,-0.02@2022-03-01' has a price below 0 "):
        Fleet.from_shorthand("S19:1@2021-01-01", hosting_usd_per_kwh="0.01,-0.02@2022-03-01")
    late = Fleet.from_shorthand("S19:1@2021-01-01", hosting_usd_per_kwh={"2021-01-02": 0.01})
    with pytest.raises(ConfigError, match=r"^hosting_usd_per_kwh='none,0.01@2021-01-02' starts on 2021-01-02, after "
                                          r"the first day to price, 2021-01-01"):
        late.simulate(network("2021-01-01", 2))


def test_fleets_with_equal_schedules_share_a_cache_key_and_others_do_not():
    def key(power) -> tuple:
        return Fleet.from_shorthand("S19:1@2021-01-01", power_price_usd_per_kwh=power).cache_key()

    assert key("0.04@2021-01-01,0.05@2022-01-01") == key({"2021-01-01": 0.04, "2022-01-01": 0.05})
    assert key("0.04,0.05@2022-01-01") != key("0.04,0.05@2022-01-02") != key(0.04)
    assert key("0.04,0.05@2022-01-01") != key("0.04,0.06@2022-01-01")


# --- grids and hashes ------------------------------------------------------------------------------------------
def test_a_grid_separates_schedules_with_semicolons():
    assert parse_grid_values("0.045,0.07@2022-03-01;0.05;power.csv") == ["0.045,0.07@2022-03-01", "0.05",
                                                                          "power.csv"]
    assert parse_grid_values("0.04,0.05") == ["0.04", "0.05"]  # without one, commas separate as before
    with pytest.raises(ConfigError, match="empty item in the semicolon-separated list"):
        parse_grid_values("0.045;")


def test_a_sweep_hashes_a_schedules_dates_and_prices_not_its_spelling(tmp_path):
    path = tmp_path / "power.csv"
    path.write_text("date,usd_per_kwh\n2021-01-01,0.04\n2022-03-01,0.07\n")

    def hashed(value) -> str:
        return config_hash({"policy": "unhedged", "params": {"power_usd_per_kwh": POWER.coerce(value)}}, "data")

    from_file = hashed(str(path))
    assert from_file == hashed("0.04@2021-01-01, 0.07@2022-03-01")  # the same prices from the same days
    assert from_file != hashed("0.04,0.07@2022-03-01")  # an opening price is another schedule
    path.write_text("date,usd_per_kwh\n2021-01-01,0.04\n2022-03-01,0.08\n")
    assert hashed(str(path)) != from_file  # an edited file is a new configuration
    assert hashed(0.04) == config_hash({"policy": "unhedged", "params": {"power_usd_per_kwh": 0.04}}, "data")


def test_describe_says_each_price_and_summarises_a_long_schedule():
    schedule = parse_price_schedule("p", "0.045,0.07@2022-03-01,0.05@2023-01-01")
    assert schedule.describe() == ("0.045 before 2022-03-01, 0.07 from 2022-03-01, 0.05 from 2023-01-01 "
                                   "(USD/kWh; each from 00:00 UTC of its day)")
    monthly = pd.Series(np.arange(24) / 1000 + 0.03, index=pd.date_range("2021-01-01", periods=24, freq="MS"))
    long = parse_price_schedule("p", monthly, label="monthly.csv")
    assert str(long) == "monthly.csv"
    assert long.describe() == ("24 prices from 2021-01-01 (0.03) to 2022-12-01 (0.053), between 0.03 and 0.053 "
                               "(USD/kWh; each from 00:00 UTC of its day)")


@pytest.mark.parametrize("value", [np.int64(0), np.float32(0.05), np.float64(0.05), "0.05", 0.05, 0])
def test_a_fleet_takes_any_real_number_or_a_number_as_text_as_0_5_0_did(value):
    fleet = Fleet.from_shorthand("S19Pro:1@2020-01-01", asset="BTC", power_price_usd_per_kwh=value)
    assert isinstance(fleet.power_price, float) and fleet.power_price == float(value)
    with pytest.raises(ConfigError, match=r"power_price_usd_per_kwh=-0.05 must be >= 0 \(USD/kWh\)"):
        Fleet.from_shorthand("S19Pro:1@2020-01-01", asset="BTC", power_price_usd_per_kwh="-0.05")


def test_one_dated_price_with_none_before_it_is_labelled_in_a_form_the_parser_takes_back():
    # Before: a one-entry table was labelled 0.05@2019-01-01, which the inline parser refuses as one dated
    # price alone (a run's report showed a value that --set then refused)
    for value in ({"2019-01-01": 0.05}, {dt.date(2019, 1, 1): 0.05},
                  pd.Series([0.05], index=pd.DatetimeIndex(["2019-01-01"]))):
        schedule = POWER.coerce(value)
        assert (schedule.opening, schedule.changes) == (None, ((pd.Timestamp("2019-01-01", tz="UTC"), 0.05),))
        again = POWER.coerce(str(schedule))
        assert (again.opening, again.changes) == (schedule.opening, schedule.changes)
        assert str(again) == str(schedule)
    assert POWER.coerce("NONE, 0.05@2019-01-01, 0.07@2022-03-01") == POWER.coerce({"2019-01-01": 0.05,
                                                                                   "2022-03-01": 0.07})


def test_a_one_entry_tables_label_in_a_run_report_pastes_back_into_set_with_the_same_result(data_dir, tmp_path,
                                                                                             capsys):
    from minehedge.cli import main

    config = tmp_path / "power.toml"
    config.write_text("[set.power_usd_per_kwh]\n2019-01-01 = 0.05\n")
    common = ["run", "--policy", "static_hedge", "--start", "2022-01-01", "--end", "2022-01-20", "--data-dir",
              str(data_dir)]
    assert main([*common, "--config", str(config), "--out", str(tmp_path / "table")]) == 0
    recorded = json.loads((tmp_path / "table" / "summary.json").read_text())["assumptions"]["power price"]
    label = recorded.removeprefix("power_usd_per_kwh=").split(": ", 1)[0]
    assert main([*common, "--set", f"power_usd_per_kwh={label}", "--out", str(tmp_path / "pasted")]) == 0
    capsys.readouterr()
    pasted = json.loads((tmp_path / "pasted" / "summary.json").read_text())
    assert pasted["assumptions"]["power price"] == recorded
    assert pasted["summary"] == json.loads((tmp_path / "table" / "summary.json").read_text())["summary"]
    for name in ("equity.csv", "ledger.csv", "fills.csv"):
        assert (tmp_path / "pasted" / name).read_bytes() == (tmp_path / "table" / name).read_bytes()


# --- plausibility (audit25 finding 4) ---------------------------------------------------------------------------
def test_a_price_above_1_usd_per_kwh_is_named_with_its_unit_and_the_cents_it_probably_was():
    from mining.price_schedule import PLAUSIBLE_USD_PER_KWH, implausible_price_warning, price_warnings

    assert PLAUSIBLE_USD_PER_KWH == 1.0
    tail = ", more than any industrial power price miners paid (even Europe's 2022 peaks): did you give cents?"
    assert implausible_price_warning("power_usd_per_kwh", 4.5) == (
        f"power_usd_per_kwh=4.5 USD/kWh is above 1 USD/kWh{tail} The price is in USD per kWh: 4.5 cents is 0.045.")
    assert implausible_price_warning("power_usd_per_kwh", 1.0) == ""  # the bound itself is taken
    assert implausible_price_warning("power_usd_per_kwh", 0.045) == ""
    schedule = parse_price_schedule("power_usd_per_kwh", "0.05,12@2022-03-01,0.3@2022-04-01")
    assert implausible_price_warning("power_usd_per_kwh", schedule) == (
        f"power_usd_per_kwh='0.05,12.0@2022-03-01,0.3@2022-04-01' has 1 price(s) above 1 USD/kWh, the highest 12 "
        f"USD/kWh{tail} The price is in USD per kWh: 12 cents is 0.12.")
    assert price_warnings({"power_usd_per_kwh": 0.05, "hosting_usd_per_kwh": 0.0, "pool_fee": 2.0}) == []
    assert price_warnings({"hosting_usd_per_kwh": 3.0, "power_usd_per_kwh": 5.0}) == [
        implausible_price_warning("power_usd_per_kwh", 5.0), implausible_price_warning("hosting_usd_per_kwh", 3.0)]
