"""A dated power price end to end on the shared data: what runs pay (the base fleet, the machines a loan buys,
data breakeven), that a schedule of one price changes nothing, and the command line: --set, a config file,
sweeps over schedules (labelled, resumed, re-run when a file changes), compare, and the errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from minehedge import api
from minehedge.cli import main
from mining.hardware import resolve_spec

START, SWITCH, END = "2022-02-20", "2022-03-01", "2022-03-10"
RANGE = ["--asset", "BTC", "--timeframe", "1d", "--start", START, "--end", END]
SCHEDULE = f"0.045,0.07@{SWITCH}"
SWITCH_DAY = pd.Timestamp(SWITCH, tz="UTC")
DESCRIBED = f"power_usd_per_kwh={SCHEDULE}: 0.045 before {SWITCH}, 0.07 from {SWITCH} (USD/kWh; each from 00:00 UTC of its day)"


@pytest.fixture(scope="module")
def btc(data_dir):
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": START, "end": END,
                            "data_dir": str(data_dir)})


def scheduled(days: pd.DatetimeIndex, before: float = 0.045, after: float = 0.07) -> np.ndarray:
    return np.where(days < SWITCH_DAY, before, after)


def per_day(ledger: pd.DataFrame, kind: str) -> pd.Series:
    """USD paid per UTC day under ledger ``kind`` (a positive number)."""
    rows = ledger[ledger["kind"] == kind]
    return -rows.groupby(pd.to_datetime(rows["datetime"]).dt.normalize())["amount"].sum()


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- what runs pay ------------------------------------------------------------------------------------------
def test_the_base_fleet_and_the_machines_a_loan_buys_pay_each_days_kwh_at_the_days_price(btc):
    """1,000 S19 Pro, and 500 S19 XP bought on 2022-02-25 with a 3,000,000 USD equipment loan at 6,000 USD each,
    never curtailed at 97 % uptime: each day's power bill is (their kWh that day) x (the day's price)."""
    params = {"fleet": "S19Pro:1000@2021-01-01", "curtail": False, "loan_type": "equipment",
              "loan_date": "2022-02-25", "principal_usd": 3e6, "unit_price_usd": 6000.0, "start_usd": 5e7,
              "power_usd_per_kwh": SCHEDULE}
    outcome = api.run_policy(btc, "financed_expansion", params)
    paid = per_day(pd.DataFrame(outcome.result.ledger), "power_cost")
    base = 1000 * 0.97 * resolve_spec("S19Pro").energy_kwh_per_day
    bought = 3e6 // 6000 * 0.97 * resolve_spec("S19XP").energy_kwh_per_day
    kwh = base + np.where(paid.index >= pd.Timestamp("2022-02-25", tz="UTC"), bought, 0.0)
    assert len(paid) == 19 and not outcome.summary["insolvent"]
    np.testing.assert_allclose(paid.to_numpy(), kwh * scheduled(paid.index), rtol=1e-13)
    assert outcome.summary["power_cost_usd"] == pytest.approx(float((kwh * scheduled(paid.index)).sum()), rel=1e-12)
    assert outcome.result.assumptions["power price"] == DESCRIBED
    assert f"power_usd_per_kwh={SCHEDULE}, hosting_usd_per_kwh=0.0," in outcome.result.assumptions["policy"]


def test_a_curtailing_fleet_pays_its_running_kwh_at_the_days_price_and_nothing_moves_before_the_switch(btc):
    """1,000 S19 Pro and 2,000 S9: at 0.10 USD/kWh the S9s cost more than they earn, so from the switch to it
    they stay off. Each day's bill is the kWh the run's own mining schedule draws that day at that day's price,
    and against the constant 0.045 the run is the same to the last ledger row before the switch."""
    params = {"fleet": "S19Pro:1000@2021-01-01,S9:2000@2021-01-01", "power_usd_per_kwh": f"0.045,0.1@{SWITCH}"}
    strategy = api._run_cerebro(btc, "static_hedge", params, None)[0]
    result = api.run_policy(btc, "static_hedge", params).result
    constant = api.run_policy(btc, "static_hedge", {**params, "power_usd_per_kwh": 0.045}).result
    schedule = strategy.mining_schedule.set_axis(pd.DatetimeIndex(strategy.mining_schedule.index).tz_convert("UTC"))
    kwh = schedule["power_kwh"].groupby(schedule.index.normalize()).sum()
    off = schedule["curtailed_fraction"]
    assert (off[off.index < SWITCH_DAY] == 0).all() and (off[off.index >= SWITCH_DAY] > 0).all()
    paid = per_day(pd.DataFrame(result.ledger), "power_cost")
    np.testing.assert_allclose(paid.to_numpy(), kwh.reindex(paid.index).to_numpy() * scheduled(paid.index, after=0.1),
                               rtol=1e-13)
    before = [row for row in result.ledger if pd.Timestamp(row["datetime"]) < SWITCH_DAY]
    assert len(before) > 9 and before == [row for row in constant.ledger
                                          if pd.Timestamp(row["datetime"]) < SWITCH_DAY]
    assert (per_day(pd.DataFrame(constant.ledger), "power_cost")[paid.index >= SWITCH_DAY]
            != paid[paid.index >= SWITCH_DAY]).all()


def test_a_schedule_of_one_price_gives_the_constants_run_bit_for_bit(btc):
    constant = api.run_policy(btc, "static_hedge", {"power_usd_per_kwh": 0.045, "hosting_usd_per_kwh": 0.004})
    same = api.run_policy(btc, "static_hedge", {"power_usd_per_kwh": f"0.045,0.045@{SWITCH}",
                                                "hosting_usd_per_kwh": {START: 0.004}})
    assert same.summary == constant.summary
    assert same.result.ledger == constant.result.ledger and same.result.events == constant.result.events
    assert list(same.result.trades) == list(constant.result.trades)
    pd.testing.assert_frame_equal(same.result.equity, constant.result.equity, check_exact=True)


def test_data_breakeven_prices_each_day_at_the_days_price(data_dir):
    config = {"asset": "BTC", "start": START, "end": END, "data_dir": str(data_dir), "policy": "unhedged"}
    rows = api.breakeven({**config, "params": {"power_usd_per_kwh": SCHEDULE}})
    low = api.breakeven({**config, "params": {"power_usd_per_kwh": 0.045}})
    high = api.breakeven({**config, "params": {"power_usd_per_kwh": 0.07}})
    expected = [a if a["date"] < SWITCH else b for a, b in zip(low, high, strict=True)]
    assert rows == expected and low != high and len(rows) == 19


# --- the command line ---------------------------------------------------------------------------------------
def test_run_with_a_schedule_reports_it(capsys, data_dir, btc, tmp_path):
    code, out, err = _run(capsys, ["run", *RANGE, "--data-dir", str(data_dir), "--policy", "unhedged", "--set",
                                   f"power_usd_per_kwh={SCHEDULE}", "--json", "--out", str(tmp_path / "rep")])
    assert code == 0, err
    assert json.loads(out)["power_cost_usd"] == api.run_policy(btc, "unhedged", {
        "power_usd_per_kwh": SCHEDULE}).summary["power_cost_usd"]
    assert f"- **power price**: {DESCRIBED}\n" in (tmp_path / "rep" / "summary.md").read_text()
    saved = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert saved["assumptions"]["power price"] == DESCRIBED


def test_a_config_file_takes_the_string_and_a_table_of_dates(capsys, data_dir, tmp_path):
    def power_cost(toml: str) -> float:
        path = tmp_path / "run.toml"
        path.write_text(f'policy = "unhedged"\nstart = {START}\nend = {END}\ndata_dir = "{data_dir}"\n{toml}')
        code, out, err = _run(capsys, ["run", "--config", str(path), "--json"])
        assert code == 0, err
        return json.loads(out)["power_cost_usd"]

    inline = power_cost(f'[set]\npower_usd_per_kwh = "{SCHEDULE}"\n')
    table = power_cost(f"[set.power_usd_per_kwh]\n{START} = 0.045\n{SWITCH} = 0.07\n")
    constant = power_cost("[set]\npower_usd_per_kwh = 0.045\n")
    assert inline == table > constant


def test_bad_schedules_stop_the_command_with_one_line(capsys, data_dir, tmp_path):
    late = tmp_path / "late.csv"
    late.write_text("date,usd_per_kwh\n2022-02-21,0.05\n")
    code, out, err = _run(capsys, ["run", *RANGE, "--data-dir", str(data_dir), "--policy", "unhedged", "--set",
                                   f"power_usd_per_kwh={late}"])
    assert (code, out, err) == (2, "", (
        f"run_backtest.py: error: power_usd_per_kwh='{late}' starts on 2022-02-21, after the first day to price, "
        f"{START}; give a price from {START} or earlier (a CSV row or table entry dated then, or, inline, a first "
        "price without a date, which applies from before the run).\n"))
    code, out, err = _run(capsys, ["data", "breakeven", *RANGE[:2], "--start", START, "--end", END, "--data-dir",
                                   str(data_dir), "--set", "hosting_usd_per_kwh=0.01,0.02"])
    assert (code, out, err) == (2, "", (
        "run_backtest.py: error: `data breakeven`: hosting_usd_per_kwh='0.01,0.02' is not a price schedule: item 2 "
        "'0.02' has no @YYYY-MM-DD (only the first price may have none: it applies from before the run); allowed: "
        "float >= 0.0 USD/kWh, or a schedule PRICE,PRICE@YYYY-MM-DD,... or FILE.csv.\n"))


def test_a_grid_that_splits_a_none_first_schedule_at_its_commas_says_to_separate_schedules_with_semicolons(
        capsys, data_dir, tmp_path):
    code, out, err = _run(capsys, ["sweep", "--policy", "unhedged", *RANGE, "--data-dir", str(data_dir),
                                   "--grid", "power_usd_per_kwh=none,0.05@2019-01-01", "--workers", "1",
                                   "--out", str(tmp_path / "grid")])
    assert (code, out) == (2, "") and err == (
        "run_backtest.py: error: --grid power_usd_per_kwh: policy 'unhedged': power_usd_per_kwh='none' may not be "
        "none alone (a schedule's first item none, as in none,0.05@2019-01-01, needs the rest of it: in a --grid, "
        "separate schedules with ';'); allowed: float >= 0.0 USD/kWh, or a schedule PRICE,PRICE@YYYY-MM-DD,... or "
        "FILE.csv.\n")
    # with ';' the same schedule is one grid point
    assert main(["sweep", "--policy", "unhedged", *RANGE, "--data-dir", str(data_dir), "--grid",
                 "power_usd_per_kwh=0.05;none,0.05@2019-01-01", "--workers", "1", "--out", str(tmp_path / "ok")]) == 0


def test_a_sweep_over_schedules_labels_each_and_resumes_by_content(capsys, data_dir, btc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the file's name is relative to the current directory
    (tmp_path / "power.csv").write_text(f"date,usd_per_kwh\n{START},0.05\n{SWITCH},0.09\n")
    argv = ["sweep", *RANGE, "--data-dir", str(data_dir), "--policy", "unhedged", "--workers", "1", "--out",
            "sweep", "--rank-by", "power_cost_usd", "--grid", f"power_usd_per_kwh=0.045;{SCHEDULE};power.csv"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    with (tmp_path / "sweep" / "results.csv").open(newline="") as handle:
        rows = {row["power_usd_per_kwh"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["0.045", SCHEDULE, "power.csv"]
    for label, value in (("0.045", 0.045), (SCHEDULE, SCHEDULE), ("power.csv", f"0.05@{START},0.09@{SWITCH}")):
        expected = api.run_policy(btc, "unhedged", {"power_usd_per_kwh": value}).summary["power_cost_usd"]
        assert float(rows[label]["power_cost_usd"]) == expected
    assert "skipped 3 of 3 configurations" in _run(capsys, argv)[2]
    (tmp_path / "power.csv").write_text(f"date,usd_per_kwh\n{START},0.05\n{SWITCH},0.08\n")
    code, out, err = _run(capsys, argv)
    assert code == 0 and "skipped 2 of 3 configurations" in err and "running 1 configurations" in err


def test_a_config_files_grid_takes_an_array_of_schedules(capsys, data_dir, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(f'policy = "unhedged"\nstart = {START}\nend = {END}\ndata_dir = "{data_dir}"\n'
                    f'workers = 1\nout = "{tmp_path / "out"}"\nrank_by = "power_cost_usd"\n'
                    f'[grid]\npower_usd_per_kwh = ["{SCHEDULE}", "0.045,0.09@{SWITCH}"]\n')
    code, out, err = _run(capsys, ["sweep", "--config", str(path), "--json"])
    assert code == 0, err
    top = json.loads(out)["top"]
    assert [row["power_usd_per_kwh"] for row in top] == [SCHEDULE, f"0.045,0.09@{SWITCH}"]
    assert top[0]["power_cost_usd"] < top[1]["power_cost_usd"]


def test_compare_shows_the_schedule_once_for_all_policies(capsys, data_dir, tmp_path):
    code, out, err = _run(capsys, ["compare", *RANGE, "--data-dir", str(data_dir), "--policies",
                                   "unhedged,sell_daily", "--set", f"power_usd_per_kwh={SCHEDULE}", "--out",
                                   str(tmp_path / "cmp")])
    assert code == 0, err
    assert f"- **power price** (all runs): {DESCRIBED}\n" in (tmp_path / "cmp" / "summary.md").read_text()


# --- a price in cents (audit25 finding 4) -------------------------------------------------------------------
CENTS = ("power_usd_per_kwh=4.5 USD/kWh is above 1 USD/kWh, more than any industrial power price miners paid "
         "(even Europe's 2022 peaks): did you give cents? The price is in USD per kWh: 4.5 cents is 0.045.")


def test_a_power_price_in_cents_warns_once_and_the_idle_fleet_is_explained(capsys, data_dir):
    argv = ["--start", "2022-01-01", "--end", "2022-01-10", "--data-dir", str(data_dir)]
    code, out, err = _run(capsys, ["run", "--policy", "unhedged", *argv, "--set", "power_usd_per_kwh=4.5",
                                   "--json"])
    assert code == 0 and err.count(CENTS) == 1 and f"warning: {CENTS}\n" in err
    summary = json.loads(out)
    assert summary["coins_mined"] == 0.0 and summary["curtailed_days"] == 10.0
    # the run sees day D's network values from D + 1 on (README, "No lookahead"): its break-even power price
    # on 2022-01-02..01-10 is data breakeven's of 2022-01-01..01-09 (01-01's is 2021-12-31's)
    rows = api.breakeven({"asset": "BTC", "start": "2021-12-31", "end": "2022-01-09", "data_dir": str(data_dir),
                          "params": {"power_usd_per_kwh": 4.5}})
    best = max(rows, key=lambda row: row["breakeven_power_usd_per_kwh"])
    seen_on = (pd.Timestamp(best["date"]) + pd.Timedelta(days=1)).date()
    idle = (f"the fleet mined nothing: it was curtailed on every day of the run (curtail=true), as its power and "
            f"hosting cost more than its coins paid on each: the break-even power price (after hosting) was at "
            f"most {best['breakeven_power_usd_per_kwh']:.4g} USD/kWh ({seen_on}), the power price at least 4.5 "
            f"USD/kWh. Prices are in USD per kWh: 0.045 is 4.5 cents.")
    assert f"note: {idle}\n" in err
    # compare: once, naming the policies; data breakeven warns too; the dollar price says neither
    code, _, err = _run(capsys, ["compare", "--policies", "unhedged,sell_daily", *argv,
                                 "--set", "power_usd_per_kwh=4.5"])
    assert code == 0 and f"warning (unhedged and sell_daily): {CENTS}\n" in err and err.count(CENTS) == 1
    code, _, err = _run(capsys, ["data", "breakeven", *argv, "--set", "power_usd_per_kwh=4.5"])
    assert code == 0 and err == f"warning: {CENTS}\n"
    code, _, err = _run(capsys, ["run", "--policy", "unhedged", *argv, "--set", "power_usd_per_kwh=0.045"])
    assert code == 0 and "cents" not in err and "mined nothing" not in err


def test_a_schedule_or_hosting_price_above_1_usd_per_kwh_warns_in_runs_and_sweeps(capsys, data_dir, tmp_path):
    argv = ["--start", "2022-01-01", "--end", "2022-01-05", "--data-dir", str(data_dir)]
    code, _, err = _run(capsys, ["run", "--policy", "unhedged", *argv, "--set",
                                 "power_usd_per_kwh=0.05,4.5@2022-01-03,7@2022-01-04", "--set", "hosting_usd_per_kwh=2"])
    assert code == 0
    assert ("warning: power_usd_per_kwh='0.05,4.5@2022-01-03,7.0@2022-01-04' has 2 price(s) above 1 USD/kWh, the "
            "highest 7 USD/kWh, more than any industrial power price miners paid (even Europe's 2022 peaks): did "
            "you give cents? The price is in USD per kWh: 7 cents is 0.07.\n") in err
    assert ("warning: hosting_usd_per_kwh=2 USD/kWh is above 1 USD/kWh, more than any industrial power price "
            "miners paid (even Europe's 2022 peaks): did you give cents? The price is in USD per kWh: 2 cents is "
            "0.02.\n") in err
    code, _, err = _run(capsys, ["sweep", "--policy", "unhedged", *argv, "--grid", "power_usd_per_kwh=0.05,4.5",
                                 "--workers", "1", "--out", str(tmp_path / "sw")])
    assert code == 0 and err.count(CENTS) == 1 and f"warning: {CENTS}\n" in err
