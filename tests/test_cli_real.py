"""The commands through main(argv) on the real orchestration module and the shared real data."""

from __future__ import annotations

import csv
import json

import pytest

from minehedge import api
from minehedge.cli import main

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
