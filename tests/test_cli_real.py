"""The commands through main(argv) on the real orchestration module and the shared real data."""

from __future__ import annotations

import csv
import importlib.util
import json

import pandas as pd
import pytest

from minehedge import api
from minehedge.cli import main
from minehedge.errors import ConfigError, DataError
from tests.test_cli_commands import read_rows, run_main

ISSUE5_POLICIES = {"unhedged", "sell_daily", "static_hedge", "collateral_short", "dynamic_hedge",
                   "leveraged_long", "leveraged_short", "financed_expansion"}
ISSUE6_SUMMARY_KEYS = {
    "final_equity_usd", "final_equity_coin", "total_return_pct", "cagr_pct", "max_drawdown_pct",
    "max_drawdown_usd", "max_drawdown_coin_pct", "longest_underwater_days", "sharpe", "sortino", "margin_calls",
    "liquidations", "liquidation_loss_usd", "loan_calls", "coins_mined", "mining_revenue_usd", "power_cost_usd",
    "funding_paid_usd", "fees_paid_usd", "hedge_variance_reduction_pct", "insolvent", "ledger_residual_usd",
}
RANGE = ["--asset", "BTC", "--timeframe", "1d", "--start", "2020-01-01", "--end", "2020-03-31"]


def test_policies_lists_every_policy_of_the_registry(capsys):
    assert main(["policies", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert ISSUE5_POLICIES <= set(listed)
    assert "hedge_ratio" in {p["name"] for p in listed["static_hedge"]}
    assert set(api.SUMMARY_KEYS) >= ISSUE6_SUMMARY_KEYS


def test_policies_names_one_policy_a_parameter_a_line(capsys):
    assert main(["policies", "static_hedge"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "static_hedge" and "unhedged" not in out
    hedge_ratio = out.index("  hedge_ratio = 0.5  (float in [0.0, 2.0] fraction)")
    assert out[hedge_ratio + 1] == "      share of the hedged amount sold short"
    assert max(len(line) for line in out if not line.startswith("  fleet = ")) <= 110
    assert main(["policies", "static_hedg"]) == 2
    assert "Did you mean 'static_hedge'?" in capsys.readouterr().err


def test_run_json_prints_the_summary_record(capsys, data_dir):
    code = main(["run", *RANGE, "--data-dir", str(data_dir), "--set", "hedge_ratio=0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert ISSUE6_SUMMARY_KEYS <= set(summary)
    assert summary["liquidations"] == 0  # hedge_ratio 0: no futures position to liquidate


def test_sweep_runs_then_resumes_on_real_data(capsys, data_dir, tmp_path):
    argv = ["sweep", *RANGE, "--data-dir", str(data_dir), "--grid", "hedge_ratio=0,1", "--workers", "1",
            "--out", str(tmp_path), "--rank-by", "max_drawdown_pct"]
    assert main(argv) == 0
    with (tmp_path / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["hedge_ratio"], r["status"]) for r in rows] == [("0.0", "ok"), ("1.0", "ok")]
    assert ISSUE6_SUMMARY_KEYS <= set(rows[0])
    capsys.readouterr()
    assert main(argv) == 0
    assert "skipped 2 of 2 configurations" in capsys.readouterr().err


def test_range_outside_the_data_exits_2_naming_the_covered_range(capsys, data_dir):
    code = main(["run", "--start", "1990-01-01", "--end", "1990-12-31", "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "1990" in err
    assert "--timeframe" not in err  # no file of any timeframe covers 1990


def test_an_hourly_range_in_the_hourly_gap_names_the_coarser_file_that_covers_it(capsys, data_dir):
    # the 1h files stop 2022-08-19 and resume 2023-01-01; the 4h file runs 2017-08-17 to 2026-01-06
    argv = ["run", "--timeframe", "1h", "--start", "2022-06-01", "--end", "2022-12-31", "--data-dir", str(data_dir)]
    assert main(argv) == 2
    assert capsys.readouterr().err.rstrip().endswith("A 4h file covers it (--timeframe 4h).")
    assert main([*argv[:2], "4h", *argv[3:], "--json"]) == 0


def test_data_hashprice_json(capsys, data_dir):
    code = main(["data", "hashprice", "--asset", "BTC", "--start", "2021-01-01", "--end", "2021-01-03",
                 "--data-dir", str(data_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    days = json.loads(out)
    assert [d["date"] for d in days] == ["2021-01-01", "2021-01-02", "2021-01-03"]
    for day in days:
        assert set(day) == {"date", "hashprice_usd_per_th_day", "hashprice_usd_per_ph_day", "coins_per_th_day"}
        assert day["hashprice_usd_per_ph_day"] == pytest.approx(1000 * day["hashprice_usd_per_th_day"], rel=1e-12)


@pytest.mark.parametrize(("asset", "column", "running"), [
    ("BTC", "hashrate_ths", 494_215.0),  # the default BTC fleet's TH/s at 97 % uptime on 2022-06-10
    ("ETH", "hashrate_mhs", None),
])
def test_data_breakeven_names_the_hash_rates_unit(capsys, data_dir, asset, column, running):
    code = main(["data", "breakeven", "--asset", asset, "--start", "2022-06-10", "--end", "2022-06-10",
                 "--data-dir", str(data_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    [day] = json.loads(out)
    assert list(day) == ["date", "price_usd", "breakeven_price_usd", "breakeven_price_all_in_usd",
                         "breakeven_power_usd_per_kwh", column]
    assert day[column] > 0 and (running is None or day[column] == pytest.approx(running, abs=0.5))


def test_eth_hashprice_and_breakeven_across_the_merge_are_zero_from_it_as_in_run(capsys, data_dir):
    # The ETH network data end on the Merge day (2022-09-15); `run` mines nothing from it on, and so do these.
    argv = ["--asset", "ETH", "--start", "2022-09-13", "--end", "2022-09-17", "--data-dir", str(data_dir), "--json"]
    assert main(["data", "hashprice", *argv]) == 0
    days = json.loads(capsys.readouterr().out)
    assert [d["date"] for d in days] == [f"2022-09-{d}" for d in range(13, 18)]
    assert all(d["coins_per_mh_day"] > 0 for d in days[:2])
    assert [(d["hashprice_usd_per_mh_day"], d["coins_per_mh_day"]) for d in days[2:]] == [(0.0, 0.0)] * 3
    assert main(["data", "breakeven", *argv]) == 0
    days = json.loads(capsys.readouterr().out)
    assert [d["date"] for d in days] == [f"2022-09-{d}" for d in range(13, 18)]
    assert [d["price_usd"] for d in days] == [1574.56, 1639.6, 1472.51, None, None]  # none after the data end
    assert [(d["breakeven_price_usd"], d["hashrate_mhs"]) for d in days[2:]] == [(None, 0.0)] * 3  # nothing mined
    assert main(["data", "hashprice", *argv[:2], "--start", "2023-01-01", "--end", "2023-01-02", *argv[6:]]) == 0
    assert [d["coins_per_mh_day"] for d in json.loads(capsys.readouterr().out)] == [0.0, 0.0]
    assert main(["data", "hashprice", *argv[:2], "--start", "2023-01-01", *argv[6:]]) == 2  # no end to list to
    assert capsys.readouterr().err == (
        "run_backtest.py: error: start=2023-01-01 is after the Merge (2022-09-15), where ETH mining ended: every "
        "day from it earns 0; give end=YYYY-MM-DD (--end) to list those days.\n")


def test_data_validate_of_a_folder_says_it_is_one_and_what_to_give(capsys, data_dir, tmp_path):
    assert main(["data", "validate", str(data_dir)]) == 2
    first_ohlcv = next(line.split(",")[0] for line in (data_dir / "MANIFEST.csv").read_text().splitlines()
                       if ",ohlcv," in line)
    assert capsys.readouterr().err == (
        f"run_backtest.py: error: data validate '{data_dir}': that is a folder; give one OHLCV CSV file (for "
        f"example {data_dir / first_ohlcv}; a data folder with MANIFEST.csv is --data-dir), or no file to check "
        "the data of a range (--asset, --timeframe, --start, --end).\n")
    assert main(["data", "validate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"run_backtest.py: error: data validate '{tmp_path}': that is a folder; give one OHLCV CSV file, or no file "
        "to check the data of a range (--asset, --timeframe, --start, --end).\n")


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_compare_writes_one_row_per_policy_and_the_charts(capsys, data_dir, tmp_path):
    out = tmp_path / "cmp"
    code = main(["compare", *RANGE, "--data-dir", str(data_dir), "--policies", "unhedged,sell_daily,collateral_short",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = _rows(out / "comparison.csv")
    assert [r["policy"] for r in rows] == ["unhedged", "sell_daily", "collateral_short"]
    assert ISSUE6_SUMMARY_KEYS <= set(rows[0])
    # same market, fleet and period: the same coins were mined under every policy
    assert len({r["coins_mined"] for r in rows}) == 1 and float(rows[0]["coins_mined"]) > 0
    assert (out / "summary.md").read_text().count("collateral_short") >= 1
    assert sorted(p.name for p in out.glob("*.png")) == ["compare_equity_coin.png", "compare_equity_usd.png"]


def test_compare_prints_each_runs_notes_and_leverage_warning_once_naming_the_policies(capsys, data_dir, tmp_path):
    # binance_coinm's schedules start in 2020 (a note for both hedges), and its brackets refuse every hedge order
    # at 125x (a refusal note and a warning for each); unhedged trades no futures and gets neither
    market = ["--venue", "binance_coinm", "--start", "2019-06-01", "--end", "2019-06-30", "--set", "leverage=125",
              "--data-dir", str(data_dir)]
    out = tmp_path / "cmp"
    assert main(["compare", "--policies", "unhedged,static_hedge,dynamic_hedge", *market, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    refused = ("29 futures order(s) refused by the broker (bracket); the first at 2019-06-02 00:00 UTC: sell {} "
               "contracts of BTCUSD: binance_coinm's bracket for a notional of {} BTC allows at most {}x; leverage "
               "is 125x.")
    warning = ("leverage=125x is more than binance_coinm's brackets allow for this hedge: 29 of 29 hedge orders "
               "were refused, so the run is unhedged; at a notional of {} BTC (the largest refused) the bracket "
               "allows at most {}x. Set leverage={} or less to hedge.")
    assert err.splitlines() == [
        "note (static_hedge and dynamic_hedge): prices (and liquidations) are from bitstamp+coinbase's BTC 1d file, "
        "not binance's; --data-venue binance uses binance's own (2017-08-17 on)",
        "note (static_hedge and dynamic_hedge): binance_coinm BTCUSD: the run starts 2019-06-01, before the venue "
        "profile's earliest fee schedule (2020-08-10) and margin brackets (2020-06-11); those are applied to the "
        "earlier bars, and the contract may not have been listed yet then.",
        "note (static_hedge): " + refused.format("6,269", "73.24", 10),
        "note (dynamic_hedge): " + refused.format("10,632", "124.22", 5),
        "warning (static_hedge): " + warning.format(73, 10, 10),
        "warning (dynamic_hedge): " + warning.format(141, 5, 5),
        f"comparison written to {out}",
    ]
    # the same texts a separate run of each policy prints
    assert main(["run", "--policy", "dynamic_hedge", *market, "--json"]) == 0
    alone = capsys.readouterr().err.splitlines()
    assert alone == [line.replace(" (static_hedge and dynamic_hedge):", ":").replace(" (dynamic_hedge):", ":")
                     for line in err.splitlines() if "(static_hedge)" not in line and "written" not in line]


def test_dask_local_cluster_and_local_processes_give_identical_results(capsys, data_dir, tmp_path):
    grid = ["--grid", "hedge_ratio=0,0.5,1", "--grid", "leverage=1,3"]
    base = ["sweep", *RANGE, "--data-dir", str(data_dir), *grid, "--rank-by", "max_drawdown_pct"]
    assert main([*base, "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--dask-local", "2", "--out", str(tmp_path / "dask")]) == 0

    def table(folder):
        rows = sorted(_rows(tmp_path / folder / "results.csv"), key=lambda r: r["config_hash"])
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    local, dask = table("local"), table("dask")
    assert len(local) == 6 and all(r["status"] == "ok" for r in local)
    assert dask == local


def test_data_validate_finds_the_cboe_ohlc_violation_and_list_shows_the_manifest(capsys, data_dir):
    cboe = data_dir / "futures" / "btc_cboe_xbt_futures_daily_investing-com_2017-12-12_2019-06-19.csv"
    code = main(["data", "validate", str(cboe), "--json"])
    out, _ = capsys.readouterr()
    findings = json.loads(out)
    assert code == 1  # errors found
    errors = [f for f in findings if f["level"] == "error"]
    assert errors and "2018-08-28" in errors[0]["detail"]
    assert main(["data", "list", "--data-dir", str(data_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["file"] for r in listed if r["where"] == "data_dir"} >= {
        "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv", "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"}
    # the text table writes every row count with a thousands separator (5,151 beside 37,386)
    assert main(["data", "list", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    daily = next(line for line in lines if "btc_usd_daily_bitstamp-coinbase" in line)
    hourly = next(line for line in lines if "btc_usd_1h_bitstamp" in line)
    assert " 5,151 " in daily and " 37,386 " in hourly


def test_eth_run_uses_the_gpu_default_fleet_and_asset_comes_from_the_flag(capsys, data_dir):
    argv = ["run", "--asset", "ETH", "--timeframe", "1d", "--start", "2021-01-01", "--end", "2021-01-31",
            "--data-dir", str(data_dir), "--policy", "unhedged", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["asset"] == "ETH" and summary["coins_mined"] > 0
    assert main([*argv, "--set", "asset=BTC"]) == 2
    assert "contradicts --asset ETH" in capsys.readouterr().err


@pytest.mark.parametrize("params", [{"hedge_ratio": 1.0, "leverage": 20},
                                    {"venue": "binance_coinm", "leverage": 5, "margin_mode": "cross"}])
def test_sweep_summary_equals_the_full_runs_summary(data_dir, params):
    """A sweep skips the report's tables; its summary record must still be the full run's, value for value
    (Feb-Apr 2020: the 20x linear hedge is liquidated twice; the coin-margined cross hedge pays funding)."""
    config = {"asset": "BTC", "timeframe": "1d", "start": "2020-02-01", "end": "2020-04-30",
              "data_dir": str(data_dir)}
    market = api.load_market(config)
    full = api.run_policy(market, "static_hedge", params).summary
    swept = api.run_summary({"policy": "static_hedge", "params": params}, market)
    assert list(swept) == list(full)
    assert json.dumps(swept, default=str, sort_keys=True) == json.dumps(full, default=str, sort_keys=True)


# --- configurations whose market differs: each gets its own (funding venue, default start) -------------
VENUE_RANGE = ["--start", "2019-01-01", "--end", "2019-06-30"]


def _json(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_a_venue_pays_its_own_funding_in_run_compare_and_sweep_whatever_the_order(capsys, data_dir, tmp_path):
    # BitMEX XBTUSD funding (a file of its own) against Binance's: compare and sweep loaded the first policy's or
    # point's market for all, so the second venue was paid the first venue's funding.
    base = [*VENUE_RANGE, "--data-dir", str(data_dir)]
    run = {v: _json(capsys, ["run", *base, "--set", f"venue={v}", "--json"]) for v in ("binance_usdm", "bitmex")}
    assert run["bitmex"]["funding_paid_usd"] != run["binance_usdm"]["funding_paid_usd"]
    assert _json(capsys, ["run", *base, "--venue", "bitmex", "--json"]) == run["bitmex"]  # --venue applies
    for order in ("unhedged,static_hedge", "static_hedge,unhedged"):
        rows = _json(capsys, ["compare", *base, "--policies", order, "--set", "venue=bitmex", "--json"])
        assert {r["policy"]: r for r in rows}["static_hedge"] == {"policy": "static_hedge", **run["bitmex"]}
    swept = _json(capsys, ["sweep", *base, "--grid", "venue=binance_usdm,bitmex", "--workers", "1",
                           "--out", str(tmp_path / "sweep"), "--rank-by", "final_equity_usd", "--json"])["top"]
    assert {r["venue"]: r["final_equity_usd"] for r in swept} == {
        v: pytest.approx(run[v]["final_equity_usd"], rel=1e-15) for v in run}


def test_a_venue_added_to_a_grid_runs_only_the_new_configurations(capsys, data_dir, tmp_path):
    # each configuration is hashed with its own market's fingerprint: a third venue leaves the first two done
    base = ["sweep", *VENUE_RANGE, "--data-dir", str(data_dir), "--workers", "1", "--out", str(tmp_path)]
    assert main([*base, "--grid", "venue=binance_usdm,bitmex"]) == 0
    capsys.readouterr()
    assert main([*base, "--grid", "venue=binance_usdm,bitmex,generic"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 3 configurations" in err
    assert [line for line in err.splitlines() if line.startswith("warning") and "the constant" not in line] == []
    with (tmp_path / "results.csv").open(newline="") as handle:
        assert [r["venue"] for r in csv.DictReader(handle)] == ["binance_usdm", "bitmex", "generic"]


def test_a_swept_fleet_without_start_starts_on_its_own_first_day(capsys, data_dir, tmp_path):
    fleets = ["S19Pro:100@2020-06-01", "S19Pro:100@2021-06-01"]
    base = ["--end", "2021-09-30", "--data-dir", str(data_dir)]
    swept = _json(capsys, ["sweep", *base, "--grid", "fleet=" + ",".join(fleets), "--workers", "1",
                           "--out", str(tmp_path), "--json"])["top"]
    for fleet in fleets:
        alone = _json(capsys, ["run", *base, "--set", f"fleet={fleet}", "--json"])
        [row] = [r for r in swept if r["fleet"] == fleet]
        assert str(alone["start"])[:10] == fleet[-10:] and row["cagr_pct"] == pytest.approx(alone["cagr_pct"], rel=1e-15)


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--venue", "no_such_venue"], "--venue 'no_such_venue' is not allowed; choose one of: binance_coinm"),
    (["run", "--policy", "unhedged", "--venue", "bitmex"], "--venue bitmex: unhedged trade(s) no futures"),
    (["sweep", "--grid", "asset=BTC,ETH"], "--grid asset: a sweep mines one coin"),
    (["sweep", "--venue", "bitmex", "--grid", "venue=bitmex,generic"], "--venue bitmex and --grid venue=...: give one"),
    (["run", "--asset", "ETH"], "venue='binance_usdm' has no ETH contract; venues with one: binance_coinm, generic."),
    (["run", "--set", "leverage=125", "--set", "venue=bitmex", "--start", "2021-01-01", "--end", "2021-01-31"],
     "leverage=125.0 exceeds bitmex's maximum of 100x for positions below 200 BTC of notional (its first bracket; "
     "larger ones allow less); allowed: 1 <= leverage <= 100.\n"),
    (["run", "--policy", "dynamic_hedge", "--set", "vol_low=2", "--set", "vol_high=0.5", "--end", "2021-01-31"],
     "error: dynamic_hedge needs vol_low < vol_high; got vol_low=2 and vol_high=0.5 (annualised volatility, "
     "fraction/yr).\n"),
    (["run", "--policy", "dynamic_hedge", "--set", "margin_low=0.5", "--start", "2021-01-01", "--end", "2021-01-31"],
     "error: dynamic_hedge needs margin_low < margin_high; got margin_low=0.5 and margin_high=0.5 (price/break-even "
     "- 1, fraction).\n"),
    (["run", "--start", "2026-03-25", "--end", "2026-04-09", "--timeframe", "1h"],
     "the BTC network data end on 2026-03-22, before the first bar 2026-03-25"),
])
def test_market_and_venue_mistakes_exit_2_with_one_line(capsys, data_dir, tmp_path, argv, message):
    code = main([*argv, "--data-dir", str(data_dir), *(["--out", str(tmp_path)] if argv[0] == "sweep" else [])])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


VOL = ("dynamic_hedge needs vol_low < vol_high; got vol_low={} and vol_high={} (annualised volatility, "
       "fraction/yr).")


@pytest.mark.parametrize(("argv", "toml", "message"), [
    (["run", "--policy", "dynamic_hedge", "--set", "vol_low=2", "--set", "vol_high=0.5"], "", VOL.format(2, 0.5)),
    (["run", "--start", "2021-01-01"], 'policy = "dynamic_hedge"\n[set]\nmin_ratio = 0.9\nmax_ratio = 0.1\n',
     "min_ratio=0.9 must be <= max_ratio=0.1."),
    (["compare", "--policies", "unhedged,dynamic_hedge", "--set", "margin_low=0.5"], "",
     "policy 'dynamic_hedge': dynamic_hedge needs margin_low < margin_high; got margin_low=0.5 and margin_high=0.5 (price/break-even - 1, "
     "fraction)."),
    (["compare"], '[set]\nvol_high = 0.3\n', "policy 'dynamic_hedge': " + VOL.format(0.4, 0.3)),
    (["sweep", "--policy", "dynamic_hedge", "--grid", "vol_low=2,3"], "", VOL.format(2, 1)),
])
@pytest.mark.parametrize("data", ["empty", "missing"])
def test_dynamic_hedge_parameters_are_checked_before_any_data_is_loaded(capsys, tmp_path, monkeypatch, argv,
                                                                        toml, message, data):
    folder = tmp_path / "data"
    if data == "empty":
        folder.mkdir()
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(folder))
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path / "cache"))  # nothing to find there either
    config = []
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        config = ["--config", str(tmp_path / "c.toml")]
    out = tmp_path / "out"
    code = main([*argv, *config, "--data-dir", str(folder), "--out", str(out)])
    assert (code, *capsys.readouterr()) == (2, "", f"run_backtest.py: error: {message}\n")
    assert not out.exists()


CME_PERPETUAL = "venue='cme' lists dated contracts only; use contract='dated' with it."


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--venue", "cme"], CME_PERPETUAL),
    (["compare", "--policies", "unhedged,static_hedge", "--venue", "cme"], "policy 'static_hedge': " + CME_PERPETUAL),
    (["sweep", "--venue", "cme", "--grid", "leverage=1,2"], CME_PERPETUAL),
    (["run", "--asset", "ETH", "--venue", "bitmex"],
     "venue='bitmex' has no ETH contract; venues with one: binance_coinm, generic. Choose one: "
     "venue='binance_coinm' (--venue binance_coinm on the command line, venue = \"binance_coinm\" under [set] in "
     "a config file)."),
    (["run", "--policy", "collateral_short", "--asset", "ETH", "--venue", "bitmex"],
     "venue='bitmex' has no ETH contract; venues with one: binance_coinm. Choose one: venue='binance_coinm' "
     "(--venue binance_coinm on the command line, venue = \"binance_coinm\" under [set] in a config file)."),
    (["run", "--policy", "financed_expansion", "--set", "call_ratio=1.1"],
     "liquidation_ltv=0.85 must exceed the call LTV 1/call_ratio=0.9091."),
    (["sweep", "--policy", "financed_expansion", "--grid", "collateral_ratio=1.2,1.25"],
     "collateral_ratio=1.2 must exceed call_ratio=1.33: a loan drawn at or below its call level is called at once."),
    (["run", "--venue", "cme", "--set", "contract=dated", "--set", "symbol=BTCUSDT"],
     "symbol='BTCUSDT' is not allowed; choose one of: BTC, MBT. Did you mean 'BTC'?"),
    (["run", "--venue", "bitmex", "--set", "leverage=101"],
     "leverage=101.0 exceeds bitmex's maximum of 100x for positions below 200 BTC of notional (its first bracket; "
     "larger ones allow less); allowed: 1 <= leverage <= 100."),
    (["compare", "--policies", "unhedged,leveraged_long", "--venue", "cme", "--set", "contract=dated", "--set",
      "leverage=100"],
     "policy 'leveraged_long': leverage=100.0 exceeds cme's maximum of 2.1277x at any notional; allowed: "
     "1 <= leverage <= 2.1277."),
])
@pytest.mark.parametrize("data", ["empty", "missing"])
def test_venue_and_contract_mistakes_are_found_before_any_data_is_loaded(capsys, tmp_path, monkeypatch, argv,
                                                                         message, data):
    folder = tmp_path / "data"
    if data == "empty":
        folder.mkdir()
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(folder))
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code = main([*argv, "--data-dir", str(folder), "--out", str(out)])
    assert (code, *capsys.readouterr()) == (2, "", f"run_backtest.py: error: {message}\n")
    assert not out.exists()


def test_a_grid_some_of_whose_points_break_the_rules_runs_the_others_and_records_those_as_failed(capsys, data_dir,
                                                                                                   tmp_path):
    out = tmp_path / "sweep"
    code = main(["sweep", "--policy", "dynamic_hedge", "--grid", "leverage=1,2", "--grid", "vol_low=0.6,1.2",
                 "--set", "vol_high=1", "--start", "2021-01-01", "--end", "2021-01-31", "--workers", "1",
                 "--data-dir", str(data_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert ("2 of the grid's 4 configurations break the policy's or the venue's rules and will be recorded as "
            f"failed (the first: leverage=1.0, vol_low=1.2: {VOL.format(1.2, 1)})\n") in err
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    status = {(float(r["leverage"]), float(r["vol_low"])): r["status"] for r in rows}
    assert status == {(1.0, 0.6): "ok", (2.0, 0.6): "ok", (1.0, 1.2): "failed", (2.0, 1.2): "failed"}
    assert all(VOL.format(1.2, 1) in r["error"] for r in rows if r["status"] == "failed")


def test_the_api_checks_dynamic_hedge_parameters_before_loading_the_market(tmp_path):
    config = {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-01-31", "venue": None,
              "seed": 0, "data_dir": str(tmp_path), "policy": "dynamic_hedge",
              "params": {"vol_low": 2.0, "vol_high": 0.5}}
    for call, prefix in ((lambda: api.run_backtest(config), ""), (lambda: api.check_config(config), ""),
                         (lambda: api.compare([config], None), "policy 'dynamic_hedge': ")):
        with pytest.raises(ConfigError) as caught:
            call()
        assert str(caught.value) == prefix + VOL.format(2, 0.5)


def test_a_start_from_the_fleet_says_so_and_what_to_do(capsys, data_dir):
    assert main(["run", "--end", "2016-06-30", "--data-dir", str(data_dir)]) == 2
    assert capsys.readouterr().err == (
        "run_backtest.py: error: no start was given, so the run starts on the fleet's first deployment, 2017-01-01 "
        "(S9:4000@2017-01-01 of the default fleet), which is after end=2016-06-30; give a start on or before the "
        "end (--start YYYY-MM-DD), an end on or after 2017-01-01, or a fleet deployed by 2016-06-30 (--set "
        "fleet=MODEL:UNITS@YYYY-MM-DD).\n")
    assert main(["run", "--policy", "unhedged", "--set", "fleet=S19Pro:100@2030-01-01", "--data-dir",
                 str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("run_backtest.py: error: no start was given, so the run starts on the fleet's first "
                          "deployment, 2030-01-01 (fleet=S19Pro:100@2030-01-01), where the data have no bars: no BTC")
    assert err.endswith(". Give a start within the data (--start YYYY-MM-DD), or a fleet deployed within them.\n")
    assert "-> None" not in err and "Traceback" not in err


def test_a_leverage_every_hedge_order_is_refused_for_gets_a_warning_and_the_run_goes_on(capsys, data_dir):
    argv = ["run", "--start", "2021-01-01", "--end", "2021-01-31", "--data-dir", str(data_dir), "--json"]
    assert main([*argv, "--set", "leverage=125"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["futures_pnl_usd"] == 0.0  # no hedge was ever held
    assert captured.err.splitlines()[-1] == (
        "warning: leverage=125x is more than binance_usdm's brackets allow for this hedge: 30 of 30 hedge orders "
        "were refused, so the run is unhedged; at a notional of 1,332,861 USD (the largest refused) the bracket "
        "allows at most 20x. Set leverage=20 or less to hedge.")
    assert main([*argv, "--set", "leverage=20"]) == 0
    captured = capsys.readouterr()
    assert "warning:" not in captured.err and json.loads(captured.out)["futures_pnl_usd"] != 0.0


def test_an_eth_run_after_the_merge_runs_with_no_mining(capsys, data_dir):
    # The ETH network data end at the Merge (2022-09-15); a run that started 40 days later found no network row.
    summary = _json(capsys, ["run", "--asset", "ETH", "--policy", "unhedged", "--start", "2022-11-01",
                             "--end", "2022-11-30", "--data-dir", str(data_dir), "--json"])
    assert summary["coins_mined"] == 0.0 and summary["power_cost_usd"] == 0.0


def test_data_list_with_no_data_directory_and_an_empty_cache_says_what_to_do(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    monkeypatch.setenv("MINEHEDGE_CACHE_DIR", str(tmp_path))
    assert main(["data", "list"]) == 0
    assert capsys.readouterr().out == (
        "nothing to list: no data directory (set MINEHEDGE_DATA_DIR or pass --data-dir, e.g. ../shared/data), and "
        f"the download cache {tmp_path} is empty (`data download --asset BTC --start ...` fills it, with network "
        "access).\n")


BTC_DAILY = "btc/btc_usdt_daily_binance_2017-08-17_2026-01-05.csv"
BTC_NETWORK = "network/btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv"
BTC_FUNDING = "funding/btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv"
ETH_DAILY = "eth/eth_usdt_daily_binance_2017-08-17_2026-01-05.csv"
ETH_CM = "network/eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv"
ETH_EG = "network/eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv"


@pytest.mark.parametrize("files,cut,argv,message", [
    # before: the run paid the constant 0.01 %/8h from 2020-01-01 on, flagged only among its assumptions
    ([BTC_DAILY, BTC_NETWORK, BTC_FUNDING], {BTC_FUNDING: (None, "2019-12-31")}, RANGE,
     "btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv: MANIFEST.csv says 2019-09-10 "
     "00:00:00+00:00 -> 2026-03-23 00:00:00+00:00 (2387 rows), the file holds 2019-09-10 00:00:00+00:00 -> "
     "2019-12-31 00:00:00+00:00 (113 rows); the requested 2020-01-01 00:00:00+00:00 -> 2020-04-01 00:00:00+00:00 "
     "needs the missing part. Restore the file or correct its MANIFEST.csv row."),
    # before: the ETH network data ended on 2021-06-30 and the run's later bars were dropped
    ([ETH_DAILY, ETH_CM, ETH_EG], {ETH_EG: (None, "2021-06-30")},
     ["--asset", "ETH", "--policy", "unhedged", "--start", "2021-06-01", "--end", "2021-07-31"],
     "eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv: MANIFEST.csv says 2015-07-30 "
     "00:00:00+00:00 -> 2023-01-08 00:00:00+00:00 (2720 rows), the file holds 2015-07-30 00:00:00+00:00 -> "
     "2021-06-30 00:00:00+00:00 (2163 rows); the requested 2021-04-22 00:00:00+00:00 -> 2021-07-31 00:00:00+00:00 "
     "needs the missing part "
     "(the ETH network splice reads this file from 2020-07-27 to the Merge, 2022-09-15). Restore the file or "
     "correct its MANIFEST.csv row."),
], ids=["btc-funding", "eth-network"])
def test_a_run_on_a_truncated_funding_or_network_file_exits_2_naming_both_ranges(capsys, cut_copy, files, cut,
                                                                                 argv, message):
    code = main(["run", *argv, "--data-dir", str(cut_copy(files, cut)), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.splitlines() == [f"run_backtest.py: error: {message}"]


BTC_4H = "btc/btc_usdt_4h_binance_2017-08-17_2026-01-06.csv"
ETH_FUNDING = "funding/eth_ethusdt-perp_funding_8h_binance-inferred_2023-01-01_2026-04-10.csv"
BTC_ROW = "MANIFEST.csv says 2009-01-03 00:00:00+00:00 -> 2026-03-22 00:00:00+00:00 (6288 rows)"
EG_ROW = "MANIFEST.csv says 2015-07-30 00:00:00+00:00 -> 2023-01-08 00:00:00+00:00 (2720 rows)"
CM_ROW = "MANIFEST.csv says 2015-07-30 00:00:00+00:00 -> 2020-07-27 00:00:00+00:00 (1825 rows)"
EG_USE = " (the ETH network splice reads this file from 2020-07-27 to the Merge, 2022-09-15)"
CM_USE = " (the ETH network splice reads this file to 2020-07-27)"


@pytest.mark.parametrize("config,files,cut,message", [
    # the last bar (2021-12-31, daily or 20:00) sees the network day before it, 2021-12-30; the run reads from
    # 40 days before its first bar
    ({"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-12-31"},
     [BTC_DAILY, BTC_NETWORK, BTC_FUNDING], BTC_NETWORK,
     f"btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: {BTC_ROW}, the file holds 2009-01-03 00:00:00+00:00 "
     "-> 2021-12-29 00:00:00+00:00 (4744 rows); the requested 2020-11-22 00:00:00+00:00 -> 2021-12-31 00:00:00+00:00 "
     "needs the missing part."),
    ({"asset": "BTC", "timeframe": "4h", "start": "2021-12-01", "end": "2021-12-31"},
     [BTC_4H, BTC_NETWORK, BTC_FUNDING], BTC_NETWORK,
     f"btc_network_daily_coinmetrics_2009-01-03_2026-03-22.csv: {BTC_ROW}, the file holds 2009-01-03 00:00:00+00:00 "
     "-> 2021-12-29 00:00:00+00:00 (4744 rows); the requested 2021-10-22 00:00:00+00:00 -> 2021-12-31 00:00:00+00:00 "
     "needs the missing part."),
    ({"asset": "ETH", "timeframe": "1d", "start": "2021-01-01", "end": "2021-12-31"},
     [ETH_DAILY, ETH_CM, ETH_EG, ETH_FUNDING], ETH_EG,
     f"eth_network_daily_etherscan-glassnode_2015-07-30_2023-01-08.csv: {EG_ROW}, the file holds 2015-07-30 "
     "00:00:00+00:00 -> 2021-12-29 00:00:00+00:00 (2345 rows); the requested 2020-11-22 00:00:00+00:00 -> 2021-12-31 "
     f"00:00:00+00:00 needs the missing part{EG_USE}."),
    ({"asset": "ETH", "timeframe": "1d", "start": "2019-01-01", "end": "2019-12-31"},
     [ETH_DAILY, ETH_CM, ETH_EG, ETH_FUNDING], ETH_CM,
     f"eth_network_daily_coinmetrics_2015-07-30_2020-07-27.csv: {CM_ROW}, the file holds 2015-07-30 00:00:00+00:00 "
     "-> 2019-12-29 00:00:00+00:00 (1614 rows); the requested 2018-11-22 00:00:00+00:00 -> 2019-12-31 00:00:00+00:00 "
     f"needs the missing part{CM_USE}."),
], ids=["btc-1d", "btc-4h", "eth-glassnode", "eth-coinmetrics"])
def test_a_network_file_cut_after_the_last_day_a_run_sees_serves_it_and_one_day_less_is_an_error(
        cut_copy, config, files, cut, message):
    # Network data are loaded from the run's look-back on with no end (bars past them are dropped), so before,
    # a file shorter than its MANIFEST row was an error whatever the run's own range was.
    whole = api.load_market({**config, "data_dir": str(cut_copy(files, {}))})
    assert whole.frame.index[-1].strftime("%F %H") == config["end"] + (" 20" if config["timeframe"] == "4h" else " 00")
    last_seen = f"{config['end'][:8]}30"  # the day before the last bar's
    served = api.load_market({**config, "data_dir": str(cut_copy(files, {cut: (None, last_seen)}))})
    pd.testing.assert_frame_equal(served.frame, whole.frame)
    assert served.fingerprint == whole.fingerprint
    with pytest.raises(DataError) as error:
        api.load_market({**config, "data_dir": str(cut_copy(files, {cut: (None, f"{config['end'][:8]}29")}))})
    assert str(error.value) == f"{message} Restore the file or correct its MANIFEST.csv row."


def test_an_intraday_run_reads_the_funding_settlements_of_its_bars_only(cut_copy):
    # Before, funding was read to a day after the last bar's open: a 4h run to 2021-12-31 (last bar 20:00)
    # read the Binance mean of 2022-01-01, so a file cut after the run's last day was an error.
    config = {"asset": "BTC", "timeframe": "4h", "start": "2021-12-01", "end": "2021-12-31"}
    files = [BTC_4H, BTC_NETWORK, BTC_FUNDING]
    whole = api.load_market({**config, "data_dir": str(cut_copy(files, {}))})
    served = api.load_market({**config, "data_dir": str(cut_copy(files, {BTC_FUNDING: (None, "2021-12-31")}))})
    assert served.fingerprint == whole.fingerprint and len(served.funding_rates) == 31 * 3  # 00/08/16 of each day
    assert served.frame["funding_paid"].sum() == whole.frame["funding_paid"].sum() != 0
    with pytest.raises(DataError) as error:
        api.load_market({**config, "data_dir": str(cut_copy(files, {BTC_FUNDING: (None, "2021-12-30")}))})
    assert str(error.value) == (
        "btc_binance_btcusdt-perp_funding_daily-mean_2019-09-10_2026-03-23.csv: MANIFEST.csv says 2019-09-10 "
        "00:00:00+00:00 -> 2026-03-23 00:00:00+00:00 (2387 rows), the file holds 2019-09-10 00:00:00+00:00 -> "
        "2021-12-30 00:00:00+00:00 (843 rows); the requested 2021-12-01 00:00:00+00:00 -> 2022-01-01 00:00:00+00:00 "
        "needs the missing part. Restore the file or correct its MANIFEST.csv row.")


def test_a_price_file_cut_within_the_years_history_before_the_start_is_an_error(cut_copy):
    # A run reads the 366 days of closes before its first bar (2021-01-01: from 2020-01-01). Before, a file
    # whose first rows were lost gave fewer closes, said only in the "price history" line.
    config = {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-01-31"}
    files = [BTC_DAILY, BTC_NETWORK, BTC_FUNDING]
    whole = api.load_market({**config, "data_dir": str(cut_copy(files, {}))})
    served = api.load_market({**config, "data_dir": str(cut_copy(files, {BTC_DAILY: ("2020-01-01", None)}))})
    assert len(served.history_close) == 366 and served.fingerprint == whole.fingerprint
    with pytest.raises(DataError) as error:
        api.load_market({**config, "data_dir": str(cut_copy(files, {BTC_DAILY: ("2020-01-02", None)}))})
    assert str(error.value) == (
        "btc_usdt_daily_binance_2017-08-17_2026-01-05.csv: MANIFEST.csv says 2017-08-17 00:00:00+00:00 -> "
        "2026-01-05 00:00:00+00:00 (3064 rows), the file holds 2020-01-02 00:00:00+00:00 -> 2026-01-05 "
        "00:00:00+00:00 (2196 rows); the requested 2020-01-01 00:00:00+00:00 -> 2021-01-01 00:00:00+00:00 needs "
        "the missing part (the price history before the first bar). Restore the file or correct its MANIFEST.csv "
        "row.")


def test_funding_assumed_for_a_runs_dates_is_a_warning_with_what_the_run_booked_on_them(capsys, data_dir, tmp_path):
    # Binance USD-M funding data start 2019-09-10: the 252 days of 2019 before it are the constant assumption
    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2019-01-01", "end": "2019-12-31",
                         "data_dir": str(data_dir)})
    assumed, total = (pd.Timestamp("2019-09-10") - pd.Timestamp("2019-01-01")).days * 3, 365 * 3
    outcome = api.run_policy(m, "static_hedge", {})
    (warning,) = outcome.warnings
    assert warning.startswith(f"{assumed} of the {total:,} funding settlements (2019-01-01 00:00 to 2019-09-09 "
                              "16:00 UTC) are the constant 0.0001 per 8h, not venue data (funding/btc_binance_")
    book = outcome.result.ledger.frame()
    early = book[(book["kind"] == "funding") & (book["datetime"] < pd.Timestamp("2019-09-10", tz="UTC"))]
    assert len(early) == assumed - 3  # the short fills at 01-02's open and is held throughout
    paid, received = abs(early["amount_usd"].clip(upper=0).sum()), early["amount_usd"].clip(lower=0).sum()
    assert f"on those bars this run paid {paid:,.0f} USD and received {received:,.0f} USD of funding" in warning
    assert received > 0 and paid == 0  # the constant is positive: a short only receives
    # no warning where nothing was booked on those dates, or nothing could be
    assert api.run_policy(m, "static_hedge", {"hedge_ratio": 0.0}).warnings == []
    assert api.run_policy(m, "unhedged", {}).warnings == []
    bitmex = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2019-01-01", "end": "2019-12-31",
                              "venue": "bitmex", "data_dir": str(data_dir)})
    assert api.run_policy(bitmex, "static_hedge", {"venue": "bitmex"}).warnings == []  # its own file covers 2019
    # a sweep warns once, before its runs
    argv = ["sweep", "--start", "2019-01-01", "--end", "2019-03-31", "--data-dir", str(data_dir), "--workers", "1",
            "--grid", "hedge_ratio=0.5,1", "--out", str(tmp_path / "sweep")]
    assert main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: {90 * 3} of the {90 * 3} funding settlements (2019-01-01 00:00 to 2019-03-31 16:00 UTC) are "
        "the constant 0.0001 per 8h, not venue data")


def test_the_generic_venues_constant_funding_is_said_to_be_the_venues_not_a_venue_the_user_named(data_dir):
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2022-01-01", "end": "2022-01-10",
                              "venue": "generic", "data_dir": str(data_dir)})
    outcome = api.run_policy(market, "static_hedge", {"venue": "generic"})
    (warning,) = outcome.warnings
    assert warning.startswith("30 of the 30 funding settlements (2022-01-01 00:00 to 2022-01-10 16:00 UTC) are the "
                              "constant 0.0001 per 8h, not venue data (the generic venue has no BTC funding history "
                              "in the data): ")
    # the report's assumptions (summary.md, summary.json) say the same
    assert outcome.result.assumptions["funding"].startswith(
        "funding BTC: constant (no file); the generic venue has no BTC funding history in the data\n  ASSUMPTION:")
    assert "constant' requested" not in warning + outcome.result.assumptions["funding"]


def test_hashprice_days_without_inputs_are_explained_on_stderr(capsys, data_dir):
    # the network file starts 2009-01-03; its first days lack difficulty, and its price starts 2010-07-18
    assert main(["data", "hashprice", "--start", "2009-01-03", "--end", "2010-08-01", "--data-dir", str(data_dir),
                 "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    no_coins = [r["date"] for r in rows if r["coins_per_th_day"] is None]
    no_price = [r["date"] for r in rows if r["hashprice_usd_per_th_day"] is None and r["coins_per_th_day"] is not None]
    assert err == (f"note: hashprice is nan on {len(no_coins)} day(s) between {no_coins[0]} and {no_coins[-1]}, "
                   "which lack the network data (difficulty, subsidy or fees) coins per unit need; and on "
                   f"{len(no_price):,} day(s) between {no_price[0]} and {no_price[-1]}, which have coins per unit "
                   "but no BTC USD price in the data. Nothing is assumed for them.\n")
    assert no_price[-1] == "2010-07-17" and rows[-1]["hashprice_usd_per_th_day"] is not None
    assert main(["data", "hashprice", "--start", "2022-01-01", "--end", "2022-01-03", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------ sweeps that fail

# A coin loan of 5M USD against 300 BTC is an LTV of about 4.5 at 2019-01-01's open, past liquidation: every
# configuration fails at set-up, whatever its hedge ratio.
COIN_DEBT = ["--policy", "static_hedge", "--set", "debt_usd=5000000", "--set", "debt_type=coin",
             "--set", "debt_collateral_coins=300", "--start", "2019-01-01", "--end", "2019-01-31"]
HAS_DASK = importlib.util.find_spec("distributed") is not None


def _run_error(capsys, data_dir, hedge_ratio: str) -> str:
    """The ConfigError message `run` gives for one configuration of the grid (exit 2, one line)."""
    code, _, err = run_main(capsys, ["run", *COIN_DEBT, "--data-dir", str(data_dir),
                                     "--set", f"hedge_ratio={hedge_ratio}"])
    assert code == 2 and "Traceback" not in err, err
    return err.splitlines()[-1].partition(": error: ")[2]


@pytest.mark.parametrize("executor", [
    ["--workers", "1"], ["--workers", "2"],
    pytest.param(["--dask-local", "2"], marks=pytest.mark.skipif(not HAS_DASK, reason="needs distributed")),
])
def test_a_sweep_whose_configurations_all_fail_reports_each_failure_and_ranks_nothing(capsys, data_dir, tmp_path,
                                                                                       executor):
    """It used to end with a false `rank_by='sharpe' is not a column of the results` (exit 2), hiding the
    failures: the metrics are columns only once a configuration returned them. A re-run retries and ends the
    same way; a --rank-by that is no metric is still refused before anything runs."""
    errors = {value: _run_error(capsys, data_dir, value) for value in ("0", "1")}
    out = tmp_path / "sweep"
    argv = ["sweep", *COIN_DEBT, "--data-dir", str(data_dir), "--grid", "hedge_ratio=0,1", *executor,
            "--out", str(out)]
    expected_err = [
        f"failed: {{'hedge_ratio': 0.0}}: ConfigError: {errors['0']}",
        f"failed: {{'hedge_ratio': 1.0}}: ConfigError: {errors['1']}",
        "2 configurations failed with a configuration or data error; fix the configuration (a re-run fails the "
        "same way).",
    ]
    expected_out = [
        f"results: {out / 'results.csv'} (2 configurations: 0 skipped, 2 run, 2 failed)",
        f"nothing to rank by sharpe: all 2 configurations failed ({out / 'top.csv'} has no rows)",
    ]
    for attempt in ("first", "re-run"):
        code, stdout, err = run_main(capsys, argv)
        assert code == 1, err
        assert err.splitlines()[-3:] == expected_err, err
        assert stdout.splitlines() == expected_out
        assert "rank_by" not in err and "Traceback" not in err
        assert ("retrying 2 configurations that failed before" in err) == (attempt == "re-run")
        rows = read_rows(out / "results.csv")
        assert [(row["hedge_ratio"], row["status"], row["error"]) for row in rows] == [
            ("0.0", "failed", f"ConfigError: {errors['0']}"), ("1.0", "failed", f"ConfigError: {errors['1']}")]
        header = (out / "results.csv").read_text().splitlines()[0]
        assert (out / "top.csv").read_text().splitlines() == [f"rank,{header}"]
        assert sorted(path.name for path in out.iterdir()) == ["results.csv", "top.csv"]

    before = (out / "results.csv").read_bytes()
    code, _, err = run_main(capsys, [*argv, "--rank-by", "sharp"])
    assert code == 2
    assert err.splitlines()[-1].partition(": error: ")[2].startswith(
        "rank_by='sharp' is not a Summary key or swept parameter; allowed: ")
    assert "running" not in err and (out / "results.csv").read_bytes() == before

