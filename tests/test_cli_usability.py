"""Findings of a user audit of the command line, on the real orchestration module and the shared data: what
the commands do by default, and what their messages say."""

from __future__ import annotations

import csv
import json

import pytest

from minehedge.cli import build_parser, main

#: The first bar of the shared BTC (and ETH) 4h and 1h files: after the default fleet's first deployment.
FIRST_INTRADAY_BAR = "2017-08-17T04:00:00+00:00"
MOVED_START = ("no start was given, so the run starts on the first bar of the BTC {tf} data, 2017-08-17 04:00 UTC: "
               "the fleet's first deployment, 2017-01-01 (S9:4000@2017-01-01 of the default fleet), is before the "
               "data at {tf} begin (--start YYYY-MM-DD sets another start)")


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- the default range on intraday bars ------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["4h", "1h"])
def test_run_without_start_on_intraday_bars_starts_on_the_datas_first_bar_and_says_so(capsys, data_dir, tmp_path,
                                                                                     timeframe):
    code, out, err = _run(capsys, ["run", "--timeframe", timeframe, "--end", "2017-09-30", "--data-dir",
                                   str(data_dir), "--json", "--out", str(tmp_path / "rep")])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["start"] == FIRST_INTRADAY_BAR and summary["end"].startswith("2017-09-30")
    assert f"note: {MOVED_START.format(tf=timeframe)}\n" in err
    assert MOVED_START.format(tf=timeframe) in (tmp_path / "rep" / "summary.md").read_text()


def test_compare_and_sweep_without_start_on_intraday_bars_start_there_too(capsys, data_dir, tmp_path):
    code, out, err = _run(capsys, ["compare", "--policies", "unhedged,sell_daily", "--timeframe", "4h", "--end",
                                   "2017-09-30", "--data-dir", str(data_dir), "--json"])
    assert code == 0, err
    assert [row["start"] for row in json.loads(out)] == [FIRST_INTRADAY_BAR] * 2
    assert f"note (unhedged and sell_daily): {MOVED_START.format(tf='4h')}\n" in err
    code, out, err = _run(capsys, ["sweep", "--policy", "static_hedge", "--grid", "hedge_ratio=0,1", "--timeframe",
                                   "1h", "--end", "2017-09-30", "--data-dir", str(data_dir), "--workers", "1",
                                   "--out", str(tmp_path / "sweep")])
    assert code == 0, err
    assert f"note: {MOVED_START.format(tf='1h')}\n" in err
    with (tmp_path / "sweep" / "results.csv").open(newline="") as handle:
        assert [row["start"] for row in csv.DictReader(handle)] == [FIRST_INTRADAY_BAR] * 2


def test_a_daily_run_from_the_fleets_first_deployment_has_no_such_note(capsys, data_dir):
    code, out, err = _run(capsys, ["run", "--end", "2017-01-31", "--data-dir", str(data_dir), "--json"])
    assert code == 0 and json.loads(out)["start"] == "2017-01-01T00:00:00+00:00"
    assert "no start was given" not in err


def test_an_end_before_the_intraday_data_is_still_an_error_naming_the_fleets_start(capsys, data_dir):
    code, _, err = _run(capsys, ["run", "--timeframe", "4h", "--end", "2017-06-30", "--data-dir", str(data_dir)])
    assert code == 2 and "Traceback" not in err
    assert err.startswith("run_backtest.py: error: no start was given, so the run starts on the fleet's first "
                          "deployment, 2017-01-01 (S9:4000@2017-01-01 of the default fleet), where the data have no "
                          "bars: no BTC ohlcv file at 4h covers")


@pytest.mark.parametrize("command", ["run", "sweep", "compare"])
def test_the_start_flags_help_says_what_the_default_is(command):
    parser = build_parser().commands[command]
    [start] = [action for action in parser._actions if "--start" in action.option_strings]
    assert start.help == ("first UTC day (default: the fleet's first deployment, or the data's first bar at the "
                          "timeframe when that is later)")
    [hashprice] = [action for action in build_parser().commands["data hashprice"]._actions
                   if "--start" in action.option_strings]
    assert hashprice.help == "first UTC day (default: first in the data)"


# --- a venue without a contract on the asset ---------------------------------------------------------------

ETH_VENUE = ("venue='binance_usdm' has no ETH contract; venues with one: binance_coinm, generic. Choose one: "
             "venue='binance_coinm' (--venue binance_coinm on the command line, venue = \"binance_coinm\" under [set] "
             "in a config file).\n")


@pytest.mark.parametrize(("argv", "prefix"), [
    (["run"], ""),
    (["compare"], "policy 'dynamic_hedge': "),
    (["sweep", "--grid", "hedge_ratio=0,1"], ""),
])
def test_an_eth_run_on_the_default_venue_says_how_to_fix_it(capsys, data_dir, tmp_path, argv, prefix):
    code, _, err = _run(capsys, [*argv, "--asset", "ETH", "--start", "2019-01-01", "--end", "2019-12-31",
                                 "--data-dir", str(data_dir), *(["--out", str(tmp_path)] if argv[0] == "sweep" else [])])
    assert code == 2 and err == f"run_backtest.py: error: {prefix}{ETH_VENUE}"


def test_following_the_advice_runs_and_financed_expansions_btc_machine_is_named_before_any_data_load(
        capsys, data_dir):
    range_ = ["--asset", "ETH", "--start", "2019-01-01", "--end", "2019-01-31", "--data-dir", str(data_dir)]
    code, out, err = _run(capsys, ["run", *range_, "--venue", "binance_coinm", "--json"])
    assert code == 0 and json.loads(out)["asset"] == "ETH", err
    code, _, err = _run(capsys, ["compare", *range_, "--venue", "binance_coinm"])
    assert code == 2 and err == (
        "run_backtest.py: error: policy 'financed_expansion': expansion_model='S19XP' mines BTC, not ETH; give a "
        "machine for ETH: --set expansion_model=180MH/1000W (a catalog model, or a hash rate/power such as "
        "110TH/3250W or 500MH/1200W).\n")
    code, out, err = _run(capsys, ["compare", *range_, "--venue", "binance_coinm", "--set",
                                   "expansion_model=180MH/1000W", "--json"])
    assert code == 0, err
    from strategies.registry import POLICIES

    assert len(json.loads(out)) == len(POLICIES)  # every policy


# --- data breakeven names no policy it does not run ---------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "power_usd_per_kwh=-1"],
     "`data breakeven`: power_usd_per_kwh='-1' is out of range; allowed: float >= 0.0 USD/kWh, or a schedule "
     "PRICE,PRICE@YYYY-MM-DD,... or FILE.csv."),
    (["--policy", "unhedged", "--set", "uptime=2"],
     "`data breakeven`: uptime='2' is out of range; allowed: float in [0.01, 1.0] fraction."),
    (["--set", "hedge_ratio=5"],  # a hedge setting is refused as unused, whatever its value
     "--set hedge_ratio=5: `data breakeven` does not use hedge_ratio; it uses only the fleet's settings (fleet, "
     "uptime, power_usd_per_kwh, hosting_usd_per_kwh, pool_fee, curtail, depreciation_years); drop it."),
    (["--set", "foo=1"],
     "--set foo=1: `data breakeven` does not use foo; it uses only the fleet's settings (fleet, uptime, "
     "power_usd_per_kwh, hosting_usd_per_kwh, pool_fee, curtail, depreciation_years); drop it."),
])
def test_data_breakeven_errors_name_the_command_not_a_policy(capsys, data_dir, argv, message):
    code, out, err = _run(capsys, ["data", "breakeven", *argv, "--data-dir", str(data_dir)])
    assert (code, out, err) == (2, "", f"run_backtest.py: error: {message}\n")


def test_the_breakeven_api_names_itself_too(data_dir):
    from minehedge import api
    from minehedge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        api.breakeven({"start": "2022-01-01", "end": "2022-01-02", "data_dir": str(data_dir),
                       "params": {"pool_fee": 5}})
    assert str(caught.value) == "breakeven: pool_fee=5 is out of range; allowed: float in [0.0, 1.0] fraction."


# --- stop_loss=0 --------------------------------------------------------------------------------------------

WHY_NOT_0 = ("is not allowed: the stop would sit at the entry price; for no stop-loss leave stop_loss at its default, "
             "none (stop_loss=None in Python; on the command line drop --set stop_loss=0, or give --set "
             "stop_loss=none); allowed: float in (0.0, 1.0] fraction or none.")


@pytest.mark.parametrize(("argv", "policy"), [
    (["run", "--policy", "leveraged_long"], "leveraged_long"),
    (["run", "--policy", "static_hedge"], "static_hedge"),
    (["compare", "--policies", "unhedged,leveraged_short"], "leveraged_short"),
])
def test_stop_loss_0_is_refused_before_any_data_load_saying_none_is_no_stop(capsys, tmp_path, argv, policy):
    code, out, err = _run(capsys, [*argv, "--set", "stop_loss=0", "--data-dir", str(tmp_path / "missing")])
    assert (code, out, err) == (2, "", f"run_backtest.py: error: policy {policy!r}: stop_loss='0' {WHY_NOT_0}\n")


def test_stop_loss_out_of_range_names_the_open_range(capsys, tmp_path):
    code, out, err = _run(capsys, ["run", "--set", "stop_loss=5", "--data-dir", str(tmp_path / "missing")])
    assert (code, out, err) == (2, "", "run_backtest.py: error: policy 'static_hedge': stop_loss='5' is out of "
                                       "range; allowed: float in (0.0, 1.0] fraction or none.\n")


def test_stop_loss_none_and_a_distance_are_accepted_and_the_api_refuses_0(data_dir):
    from minehedge import api
    from minehedge.errors import ConfigError
    from strategies.registry import policy_class

    config = {"asset": "BTC", "policy": "leveraged_long", "params": {}}
    for value in (None, 0.05, 1.0):
        api.check_config({**config, "params": {"stop_loss": value}})
    with pytest.raises(ConfigError) as caught:
        api.check_config({**config, "params": {"stop_loss": 0.0}})
    assert str(caught.value) == f"policy 'leveraged_long': stop_loss=0.0 {WHY_NOT_0}"
    with pytest.raises(ConfigError) as caught:  # a strategy given its params without validate_params
        policy_class("leveraged_long").check_params({"stop_loss": 0})
    assert str(caught.value).startswith("stop_loss=0 is not allowed: the stop would sit at the entry price;")
    specs = {spec.name: spec for spec in api.policy_specs()["leveraged_long"]}
    assert specs["stop_loss"].default is None and "> 0 (none = no stop)" in specs["stop_loss"].doc


# --- event dates outside the run ------------------------------------------------------------------------------

LOAN_AFTER = ("loan_date={} is after the run's last bar, {} (the run covers {} to {}): no loan was taken and no "
              "machines were bought.")
ENTRY_AFTER = "entry_date={} is after the run's last bar, {} (the run covers {} to {}): no position was opened."
ENTRY_BEFORE = ("entry_date={} is before the run's first bar, {} (the run covers {} to {}): the entry was decided "
                "at the first bar's close instead, as with no entry_date.")
LOAN_BEFORE = ("loan_date={} is before the run's first bar, {} (the run covers {} to {}): the loan was drawn and "
               "the machines bought at the first bar instead.")
# the default treasury holds no coins at the first bar, so the coin loan is not drawn (audit25 finding 2)
LOAN_BEFORE_UNDRAWN = ("loan_date={} is before the run's first bar, {} (the run covers {} to {}): the loan was "
                       "decided at the first bar instead, where there were no coins to pledge: the coin loan was "
                       "not drawn and no machines were bought.")
LOAN_BEFORE_NO_MACHINE = ("loan_date={} is before the run's first bar, {} (the run covers {} to {}): the loan was "
                          "drawn at the first bar instead, and bought no machines (its principal, 50 USD, is less "
                          "than unit_price_usd=6,000 USD).")


@pytest.mark.parametrize(("policy", "sets", "start", "end", "warning"), [
    ("financed_expansion", ["loan_date=2035-01-01"], "2022-01-01", "2022-06-01",
     LOAN_AFTER.format("2035-01-01", "2022-06-01", "2022-01-01", "2022-06-01")),
    ("financed_expansion", [], "2020-01-01", "2020-02-01",  # the default loan_date, 2021-12-31
     LOAN_AFTER.format("2021-12-31", "2020-02-01", "2020-01-01", "2020-02-01")),
    ("financed_expansion", ["loan_date=2019-06-01"], "2020-01-01", "2020-02-01",
     LOAN_BEFORE_UNDRAWN.format("2019-06-01", "2020-01-01", "2020-01-01", "2020-02-01")),
    ("financed_hedge", ["loan_date=2019-06-01"], "2020-01-01", "2020-02-01",
     LOAN_BEFORE_UNDRAWN.format("2019-06-01", "2020-01-01", "2020-01-01", "2020-02-01")),
    ("financed_expansion", ["loan_date=2019-06-01", "start_coins=500"], "2020-01-01", "2020-02-01",
     LOAN_BEFORE.format("2019-06-01", "2020-01-01", "2020-01-01", "2020-02-01")),
    ("financed_hedge", ["loan_date=2019-06-01", "loan_type=equipment"], "2020-01-01", "2020-02-01",
     LOAN_BEFORE.format("2019-06-01", "2020-01-01", "2020-01-01", "2020-02-01")),
    ("financed_expansion", ["loan_date=2019-06-01", "start_coins=0.01"], "2020-01-01", "2020-02-01",
     LOAN_BEFORE_NO_MACHINE.format("2019-06-01", "2020-01-01", "2020-01-01", "2020-02-01")),
    ("leveraged_long", ["entry_date=2030-01-01"], "2020-01-01", "2020-02-01",
     ENTRY_AFTER.format("2030-01-01", "2020-02-01", "2020-01-01", "2020-02-01")),
    ("leveraged_short", ["entry_date=2019-12-01"], "2020-01-01", "2020-02-01",
     ENTRY_BEFORE.format("2019-12-01", "2020-01-01", "2020-01-01", "2020-02-01")),
])
def test_an_event_date_outside_the_run_is_a_warning_and_a_run_note_and_changes_nothing(
        capsys, data_dir, tmp_path, policy, sets, start, end, warning):
    argv = ["run", "--policy", policy, "--start", start, "--end", end, "--data-dir", str(data_dir), "--json"]
    code, out, err = _run(capsys, [*argv, *[arg for s in sets for arg in ("--set", s)], "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert f"warning: {warning}\n" in err and err.count(warning) == 1  # a warning, not also a note line
    assert f"  - {warning}" in (tmp_path / "r" / "summary.md").read_text()  # the report's run notes
    inside = {"financed_expansion": "loan_date=" + start, "financed_hedge": "loan_date=" + start,
              "leveraged_long": "entry_date=" + start, "leveraged_short": "entry_date=" + start}[policy]
    others = [arg for s in sets if "_date=" not in s for arg in ("--set", s)]
    code, same_out, err = _run(capsys, [*argv, *others, "--set", inside])  # the event on the first bar: no warning
    assert code == 0 and "warning" not in err
    if "before" in warning:  # the event happened at the first bar, as if dated there
        assert json.loads(out) == json.loads(same_out)
    else:  # nothing happened: the run is the unhedged miner's
        unhedged = json.loads(_run(capsys, ["run", "--policy", "unhedged", "--start", start, "--end", end,
                                            "--data-dir", str(data_dir), "--json"])[1])
        summary = json.loads(out)
        for key in ("final_equity_usd", "max_drawdown_pct", "coins_mined", "fees_paid_usd"):
            assert summary[key] == unhedged[key], key


def test_compare_prints_an_event_date_warning_naming_its_policy(capsys, data_dir):
    code, _, err = _run(capsys, ["compare", "--policies", "unhedged,financed_expansion", "--start", "2020-01-01",
                                 "--end", "2020-02-01", "--data-dir", str(data_dir)])
    assert code == 0
    assert (f"warning (financed_expansion): "
            f"{LOAN_AFTER.format('2021-12-31', '2020-02-01', '2020-01-01', '2020-02-01')}\n") in err
    assert "note (financed_expansion): loan_date" not in err


def test_version_names_minehedge_and_the_stack_it_runs_on(capsys):
    import platform
    from importlib.metadata import version

    import minehedge

    code, out, err = _run(capsys, ["--version"])
    assert code == 0 and err == ""
    assert out == (f"minehedge {minehedge.__version__} (backtrader {version('backtrader')}, "
                   f"pandas {version('pandas')}, Python {platform.python_version()})\n")


@pytest.mark.parametrize("command", [["run"], ["sweep"], ["data", "list"]])
def test_version_after_a_command_says_where_it_goes(capsys, command):
    code, _, err = _run(capsys, [*command, "--version"])
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].endswith(
        "error: unrecognized arguments: --version. --version is an option of the program: "
        "run_backtest.py --version.")


@pytest.mark.parametrize(("argv", "line"), [
    # misspelt options of another command: suggested, with the commands that take them
    (["policies", "--venu", "bitmex", "static_hedge"],
     "run_backtest.py policies: error: unrecognized arguments: --venu. Did you mean '--venue'? It is an option of "
     "`run`, `sweep` and `compare`, not of `policies`."),
    (["data", "list", "--workrs", "2"],
     "run_backtest.py data list: error: unrecognized arguments: --workrs 2. Did you mean '--workers'? It is an "
     "option of `sweep`, not of `data list`."),
    # before any command: argparse said only that a command is required
    (["--verson"], "run_backtest.py: error: unrecognized arguments: --verson. Did you mean '--version'?"),
    (["--json"], "run_backtest.py: error: unrecognized arguments: --json. --json is an option of `run`, `sweep`, "
                 "`compare`, `policies` and `data`: give it after the command."),
    ([], "run_backtest.py: error: the following arguments are required: COMMAND"),
])
def test_a_misspelt_or_misplaced_option_is_named_with_where_it_belongs(capsys, argv, line):
    code, out, err = _run(capsys, argv)
    assert (code, out) == (2, "") and err.splitlines()[-1] == line


# --- parameters that can do nothing (audit25 finding 7) ------------------------------------------------------
NOT_UNHEDGED = ("policy 'unhedged' has no parameter '{}'; its parameters are: asset, curtail, debt_call_deadline_days, "
                "debt_call_ratio, debt_collateral_coins, debt_cure_ratio, debt_liquidation_ltv, debt_rate, "
                "debt_term_months, debt_type, debt_usd, depreciation_years, fleet, hardware_value, hosting_usd_per_kwh, "
                "market_value_window_days, on_margin_call, pool_fee, power_usd_per_kwh, sell_fraction, spot_fee, "
                "start_coins, start_usd, treasury, uptime.")


@pytest.mark.parametrize("setting", ["symbol=BTCUSDT", "annual_basis=0.3", "expiry_cycle=monthly"])
def test_a_futures_setting_is_refused_by_a_policy_without_futures_and_left_to_the_others_in_a_compare(
        capsys, data_dir, setting):
    argv = ["--start", "2022-01-01", "--end", "2022-01-05", "--data-dir", str(data_dir)]
    code, _, err = _run(capsys, ["run", "--policy", "unhedged", *argv, "--set", setting])
    assert code == 2 and err.endswith(f"error: {NOT_UNHEDGED.format(setting.split('=')[0])}\n")
    # a compare applies it to the policies that take it, as leverage=3: unhedged runs as without it
    code, out, err = _run(capsys, ["compare", "--policies", "unhedged,static_hedge", *argv, "--set", setting,
                                   "--set", "contract=dated", "--json"])
    assert code == 0, err
    plain = json.loads(_run(capsys, ["run", "--policy", "unhedged", *argv, "--json"])[1])
    rows = {row["policy"]: row for row in json.loads(out)}
    assert rows["unhedged"]["final_equity_usd"] == plain["final_equity_usd"]


def test_buy_coin_margin_on_a_linear_contract_is_a_run_note(capsys, data_dir, tmp_path):
    argv = ["run", "--policy", "static_hedge", "--start", "2022-01-01", "--end", "2022-01-05", "--data-dir",
            str(data_dir), "--set", "buy_coin_margin=true"]
    note = ("buy_coin_margin=true changes nothing here: binance_usdm's BTCUSDT is a linear contract, margined in "
            "USD; it buys the margin's coins for inverse (coin-margined) contracts only.")
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "r")])
    assert code == 0 and f"note: {note}\n" in err
    assert f"  - {note}" in (tmp_path / "r" / "summary.md").read_text()
    code, _, err = _run(capsys, [*argv, "--venue", "bitmex"])  # inverse: it buys, and says so
    assert code == 0 and "changes nothing" not in err and "(buy_coin_margin), " in err


def test_version_text_is_built_only_when_asked_and_names_a_package_without_metadata_unknown(capsys, monkeypatch):
    from importlib import metadata

    import minehedge

    def missing(package):
        raise metadata.PackageNotFoundError(package)

    monkeypatch.setattr(metadata, "version", missing)
    assert _run(capsys, ["--help"])[0] == 0  # every command starts without reading package metadata
    code, out, _ = _run(capsys, ["--version"])
    assert (code, out) == (0, f"minehedge {minehedge.__version__} (backtrader unknown, pandas unknown, Python "
                              f"{__import__('platform').python_version()})\n")
