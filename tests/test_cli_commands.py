"""Each command through main(argv): flags -> validated configuration -> minehedge.api -> printed output,
files and exit code.

minehedge.api (the lead's orchestration module) is replaced here by ``CONTRACT``: the same functions, with a
real, deterministic closed-form "summary" of the configuration. What is tested is everything the CLI does
around one run (validation with did-you-mean, the configuration each policy receives, sweeps with resume,
failures and ranking, staged output folders, JSON output, exit codes), and every expected number is computed
from the configuration by the formula in :func:`closed_form_summary`. tests/test_cli_real.py runs the same
commands on the real api and data.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

import minehedge.cli as cli
from minehedge.cli import main, staged_output_dir
from minehedge.config import ParamSpec

SPECS = {
    "unhedged": [ParamSpec("power_usd_per_kwh", float, 0.05, unit="USD/kWh", minimum=0)],
    "static_hedge": [
        ParamSpec("power_usd_per_kwh", float, 0.05, unit="USD/kWh", minimum=0),
        ParamSpec("hedge_ratio", float, 0.5, unit="fraction", minimum=0, maximum=1),
        ParamSpec("leverage", float, 1, unit="x", minimum=1, maximum=125),
        ParamSpec("margin_mode", str, "isolated", choices=("isolated", "cross")),
    ],
}
SUMMARY_KEYS = ("sharpe", "max_drawdown_pct", "liquidations", "total_return_pct", "first_day")


@dataclass(frozen=True)
class ClosedFormData:
    """Stands for the loaded market: its fingerprint and one number the summary uses."""

    fingerprint: str
    scale: float

    def fingerprint_of(self, config: dict) -> str:  # as api.Markets: the configuration's own market
        return self.fingerprint


def closed_form_summary(config: dict, shared: ClosedFormData) -> dict:
    """sharpe = 2h - 0.1L; drawdown = scale*10*L*(1-h); liquidations = [L > 3 and h < 0.5]; fails at (0.5, 5)."""
    p = config["params"]
    h, lev = p.get("hedge_ratio", 0.0), p.get("leverage", 1.0)
    if (h, lev) == (0.5, 5.0):
        raise RuntimeError("liquidated beyond the insurance fund")
    return {
        "sharpe": 2 * h - 0.1 * lev,
        "max_drawdown_pct": shared.scale * 10 * lev * (1 - h),
        "liquidations": int(lev > 3 and h < 0.5),
        "total_return_pct": 100 * h - p["power_usd_per_kwh"],
        "first_day": config["start"],
    }


def load_shared(configs: dict | list[dict]) -> ClosedFormData:
    config = configs if isinstance(configs, dict) else configs[0]  # a sweep passes all its configurations
    return ClosedFormData(fingerprint=f"{config['asset']}-{config['timeframe']}", scale=1.5)


def _run_backtest(config: dict, checked: bool = False, windows: list | None = None):
    summary = closed_form_summary(config, load_shared(config))

    def write_report(folder: Path) -> None:
        (folder / "summary.json").write_text(json.dumps(cli.json_ready(summary)))
        if config["params"]["leverage"] == 2.0:
            raise OSError("disk full while writing equity.csv")  # after one file: the folder must vanish

    notes = ["1 futures order(s) refused by the broker (bracket)"] if config["params"]["leverage"] == 3.0 else []
    warnings = ["leverage=3x is more than the brackets allow"] if config["params"]["leverage"] == 3.0 else []
    return SimpleNamespace(summary=summary, write_report=write_report, notes=notes, warnings=warnings, windows=None,
                           loans=[])


CALLS: list = []


def _compare_runs(configs: list[dict], out: Path | None, checked: bool = False,
                  windows: list | None = None) -> SimpleNamespace:
    """As api.compare_runs: the rows, and each run's notes and warnings (a note every run shares; a refusal
    note and a warning at leverage 3, as :func:`_run_backtest`)."""
    CALLS.append((configs, out))
    rows = [{"policy": c["policy"], **closed_form_summary(c, load_shared(c))} for c in configs]
    if out is not None:
        (out / "comparison.csv").write_text("policy\n" + "\n".join(r["policy"] for r in rows) + "\n")
    outcomes = {}
    for config in configs:
        three = config["params"].get("leverage") == 3.0
        notes = [f"the run starts {config['start']}"] + (["1 futures order(s) refused (bracket)"] if three else [])
        outcomes[config["policy"]] = SimpleNamespace(notes=notes, warnings=["leverage=3x is too much"] if three else [],
                                                     loans=[])
    return SimpleNamespace(rows=rows, outcomes=outcomes, windows=None)


def _hashprice(config: dict) -> list[dict]:
    day = config["start"]
    return [
        {"date": day + dt.timedelta(days=i), "hashprice_usd_per_th_day": 0.1 * (i + 1),
         "hashprice_usd_per_ph_day": 100.0 * (i + 1), "coins_per_th_day": float("nan") if i else 2e-6}
        for i in range(2)
    ]


def _validate(config: dict, path: Path | None) -> list[dict]:
    level = "error" if path is not None and path.name.startswith("bad") else "info"
    return [{"level": level, "file": str(path), "message": "checked"}]


CONTRACT = SimpleNamespace(
    policy_specs=lambda: SPECS,
    SUMMARY_KEYS=SUMMARY_KEYS,
    load_shared=load_shared,
    sweep_funding_warnings=lambda configs, shared: [],
    sweep_price_notes=lambda configs, shared: [],
    sweep_price_warnings=lambda configs, shared: [],
    run_summary=closed_form_summary,
    run_backtest=_run_backtest,
    compare_runs=_compare_runs,
    hashprice=_hashprice,
    hashprice_report=lambda config: (_hashprice(config), ""),
    data_validate=_validate,
    data_list=lambda config: [{"file": "btc.csv", "rows": 3}],
    data_download=lambda config: [],
    breakeven=lambda config, warnings=None: [{"date": config["start"], "breakeven_price_usd": 1000 * config["params"]["power_usd_per_kwh"]}],
    BREAKEVEN_PARAMS=("asset", "power_usd_per_kwh"),
    check_config=lambda config, name_policy=False: None,
)


@pytest.fixture(autouse=True)
def contract_api(monkeypatch):
    monkeypatch.setattr(cli, "_api", lambda: CONTRACT)
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    CALLS.clear()


def run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------ sweep

SWEEP = ["sweep", "--start", "2020-01-01", "--grid", "hedge_ratio=0:1:0.25", "--grid", "leverage=1,2,3,5"]


def test_sweep_command_records_every_configuration_ranks_and_resumes(capsys, tmp_path):
    out = tmp_path / "sweep1"
    code, stdout, err = run_main(capsys, [*SWEEP, "--workers", "2", "--top", "3", "--out", str(out)])
    assert code == 1  # one configuration failed; the others completed
    assert "1 configurations failed; re-run the same command to retry them" in err
    assert "RuntimeError: liquidated beyond the insurance fund" in err and "Traceback" in err

    rows = read_rows(out / "results.csv")
    assert len(rows) == 20 and len({r["config_hash"] for r in rows}) == 20
    assert list(rows[0])[:2] == ["hedge_ratio", "leverage"] and list(rows[0])[-4:] == [
        "status", "error", "seconds", "config_hash"]
    assert [(float(r["hedge_ratio"]), float(r["leverage"])) for r in rows] == [
        (h, lev) for h in (0.0, 0.25, 0.5, 0.75, 1.0) for lev in (1.0, 2.0, 3.0, 5.0)]
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["hedge_ratio"], r["leverage"]) for r in failed] == [("0.5", "5.0")]
    for row in rows:
        if row["status"] == "ok":
            h, lev = float(row["hedge_ratio"]), float(row["leverage"])
            assert float(row["sharpe"]) == 2 * h - 0.1 * lev
            assert float(row["max_drawdown_pct"]) == 1.5 * 10 * lev * (1 - h)
            assert int(row["liquidations"]) == int(lev > 3 and h < 0.5)
            assert row["first_day"] == "2020-01-01"

    # top 3 by sharpe (descending): h=1 with L=1, 2, 3
    top = read_rows(out / "top.csv")
    assert [(r["rank"], r["hedge_ratio"], r["leverage"]) for r in top] == [
        ("1", "1.0", "1.0"), ("2", "1.0", "2.0"), ("3", "1.0", "3.0")]
    assert "top 3 by sharpe" in stdout
    assert {p.name for p in out.iterdir()} - {"results.csv", "top.csv"} <= {
        "heatmap_sharpe.png", "heatmap_max_drawdown_pct.png", "heatmap_liquidations.png"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files

    # Resume: everything ok is skipped, the failure is retried (and fails again, deterministically).
    code, stdout, err = run_main(capsys, [*SWEEP, "--workers", "1", "--top", "3", "--out", str(out), "--json"])
    assert code == 1
    assert "skipped 19 of 20 configurations" in err and "retrying 1 configurations" in err
    report = json.loads(stdout)
    assert (report["configurations"], report["skipped"], report["ran"], report["failed"]) == (20, 19, 1, 1)
    assert [(r["hedge_ratio"], r["leverage"]) for r in report["top"]] == [(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]
    again = read_rows(out / "results.csv")
    failed_at = rows.index(failed[0])  # (h, L) = (0.5, 5): 2*4 + 3
    assert failed_at == 11
    assert again[:11] == rows[:11] and again[12:] == rows[12:]  # finished rows untouched
    assert again[11]["config_hash"] == rows[11]["config_hash"] and again[11]["status"] == "failed"


def _heatmaps(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith("heatmap")}


def test_a_sweep_removes_the_heatmaps_an_earlier_sweep_left_in_its_folder(capsys, tmp_path):
    # Before: an earlier sweep's heatmap_sharpe.png stayed beside a later sweep's results and looked current.
    out = tmp_path / "sw"
    grid = ["sweep", "--grid", "hedge_ratio=0,1", "--grid", "leverage=1,2", "--workers", "1", "--out", str(out)]
    assert run_main(capsys, grid)[0] == 0
    drawn = {f"heatmap_{m}.png" for m in ("sharpe", "max_drawdown_pct", "liquidations")}
    assert _heatmaps(out) == drawn
    # files that are not named as a sweep names its heatmaps stay
    others = {"heatmap_sharpe.png.bak", "heatmap_notes.txt", "my_heatmap_x.png", "heatmap_a b.png", "notes.txt"}
    for name in others:
        (out / name).write_text("mine")
    # resumed as it was: the same heatmaps drawn again, nothing removed, nothing said
    code, _, err = run_main(capsys, grid)
    assert code == 0 and "skipped 4 of 4" in err and "removed" not in err
    assert _heatmaps(out) == drawn | {n for n in others if n.startswith("heatmap")}
    # ranked by another metric: its heatmap replaces heatmap_sharpe.png, which this sweep did not draw
    code, _, err = run_main(capsys, [*grid, "--rank-by", "total_return_pct"])
    assert code == 0
    assert (f"removed 1 heatmap(s) of an earlier sweep in {out} that this sweep did not draw, so that none looks "
            "current: heatmap_sharpe.png\n") in err
    assert _heatmaps(out) == (drawn - {"heatmap_sharpe.png"} | {"heatmap_total_return_pct.png"}
                              | {n for n in others if n.startswith("heatmap")})
    # a one-parameter grid draws none: every heatmap left goes, in one line
    code, _, err = run_main(capsys, ["sweep", "--grid", "leverage=1,2", "--workers", "1", "--out", str(out)])
    assert code == 0
    gone = sorted(drawn - {"heatmap_sharpe.png"} | {"heatmap_total_return_pct.png"})
    (line,) = [text for text in err.splitlines() if text.startswith("removed")]
    assert line.endswith(f"current: {', '.join(gone)}")
    assert {p.name for p in out.iterdir()} == {"results.csv", "top.csv"} | others


def test_a_sweep_whose_configurations_all_fail_removes_the_earlier_heatmaps(capsys, tmp_path):
    out = tmp_path / "sw"
    assert run_main(capsys, ["sweep", "--grid", "hedge_ratio=0,1", "--grid", "leverage=1,2", "--workers", "1",
                             "--out", str(out)])[0] == 0
    assert len(_heatmaps(out)) == 3
    # (0.5, 5) fails in the closed form: nothing to rank or draw
    code, stdout, err = run_main(capsys, ["sweep", "--grid", "hedge_ratio=0.5", "--grid", "leverage=5",
                                          "--workers", "1", "--out", str(out)])
    assert code == 1 and "nothing to rank by sharpe" in stdout
    assert "removed 3 heatmap(s)" in err and _heatmaps(out) == set()


def test_sweep_rank_by_ascending_metric_and_seed_grid(capsys, tmp_path):
    out = tmp_path / "s"
    code, stdout, _ = run_main(capsys, [
        "sweep", "--grid", "leverage=1,3", "--grid", "seed=1,2", "--set", "hedge_ratio=0.25",
        "--rank-by", "max_drawdown_pct", "--top", "2", "--workers", "1", "--out", str(out), "--json"])
    assert code == 0
    top = json.loads(stdout)["top"]
    # max_drawdown_pct is lower-is-better: L=1 rows (15*0.75 = 11.25) first, grid order (seed 1, 2) kept
    assert [(r["leverage"], r["seed"], r["max_drawdown_pct"]) for r in top] == [(1.0, 1, 11.25), (1.0, 2, 11.25)]
    rows = read_rows(out / "results.csv")
    assert len({r["config_hash"] for r in rows}) == 4  # seed is part of the configuration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "--policy", "static_hedg", "--grid", "leverage=1,2"], "Did you mean 'static_hedge'?"),
        (["sweep", "--grid", "hedge_rato=0:1:0.5"], "policy 'static_hedge' has no parameter 'hedge_rato'"),
        (["sweep", "--grid", "leverage=1,2", "--set", "levrage=2"], "Did you mean 'leverage'?"),
        (["sweep", "--grid", "hedge_ratio=0:2:0.5"], "hedge_ratio=1.5 is out of range; allowed: float in [0, 1]"),
        (["sweep", "--grid", "margin_mode=isolated,crss"], "Did you mean 'cross'?"),
        (["sweep", "--grid", "leverage=1,1.0"], "value 1.0 appears twice once typed as float"),
        (["sweep", "--grid", "leverage=1,2", "--rank-by", "sharp"], "Did you mean 'sharpe'?"),
        (["sweep"], "sweep needs at least one --grid"),
        (["run", "--policy", "unhedge"], "Did you mean 'unhedged'?"),
        (["run", "--set", "hedge_ratio=2"], "hedge_ratio='2' is out of range"),
        (["compare", "--policies", "unhedged,static_hedg"], "Did you mean 'static_hedge'?"),
        (["compare", "--policies", "unhedged", "--set", "hedge_ratio=0.1"], "none of the compared policies"),
        (["data", "breakeven", "--set", "power_usd_per_kw=0.1"], "Did you mean 'power_usd_per_kwh'?"),
    ],
)
def test_policy_parameter_and_grid_errors_exit_2_before_anything_runs(capsys, tmp_path, monkeypatch, argv,
                                                                     message):
    monkeypatch.chdir(tmp_path)  # a default output folder would appear here if anything ran
    code, out, err = run_main(capsys, argv)
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ run


def test_run_prints_the_summary_and_writes_the_report(capsys, tmp_path):
    out = tmp_path / "run1"
    out.mkdir()
    for name in ("comparison.csv", "summary.md"):  # an older report (of compare) in the folder
        (out / name).write_text("from an older run")
    code, stdout, err = run_main(capsys, [
        "run", "--start", "2020-01-01", "--set", "hedge_ratio=0.25", "--set", "leverage=3", "--out", str(out), "--json"])
    assert code == 0
    assert "note: 1 futures order(s) refused by the broker (bracket)\n" in err  # the run notes, on stderr
    assert "\nwarning: leverage=3x is more than the brackets allow\n" in err  # the run's warnings, after them
    summary = json.loads(stdout)
    assert summary == {"sharpe": 2 * 0.25 - 0.1 * 3, "max_drawdown_pct": 1.5 * 10 * 3 * 0.75, "liquidations": 0,
                       "total_return_pct": 25 - 0.05, "first_day": "2020-01-01"}
    assert sorted(p.name for p in out.iterdir()) == [cli.REPORT_MARKER, "summary.json"]  # replaced whole
    assert json.loads((out / "summary.json").read_text()) == summary
    code, stdout, _ = run_main(capsys, ["run", "--start", "2020-01-01", "--set", "hedge_ratio=0.25"])
    lines = dict(line.split(None, 1) for line in stdout.splitlines())
    assert code == 0 and lines["sharpe"] == "0.40" and lines["max_drawdown_pct"] == "11.25"
    assert lines["first_day"] == "2020-01-01"


def test_run_that_fails_exits_1_and_leaves_nothing_half_written(capsys, tmp_path):
    out = tmp_path / "run2"
    code, _, err = run_main(capsys, ["run", "--start", "2020-01-01", "--set", "leverage=2", "--out", str(out)])
    assert code == 1 and "OSError: disk full" in err and "Traceback" in err
    assert err.endswith("error: `run` failed with an unexpected error (traceback above).\n")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a staging folder


def test_staged_output_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "report"
    with staged_output_dir(out) as folder:
        (folder / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), staged_output_dir(out) as folder:
        (folder / "b.txt").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert sorted(os.listdir(out)) == [cli.REPORT_MARKER, "a.txt"]


# ------------------------------------------------------------------------------------------ compare


def test_compare_gives_every_policy_the_same_market_and_applies_sets_where_they_exist(capsys, tmp_path):
    out = tmp_path / "cmp1"
    code, stdout, _ = run_main(capsys, [
        "compare", "--policies", "unhedged,static_hedge", "--start", "2020-01-01", "--end", "2020-12-31",
        "--asset", "btc", "--set", "hedge_ratio=0.75", "--set", "power_usd_per_kwh=0.04", "--out", str(out)])
    assert code == 0
    configs, staged = CALLS[0]
    assert [c["policy"] for c in configs] == ["unhedged", "static_hedge"]
    assert configs[0]["params"] == {"power_usd_per_kwh": 0.04}
    assert configs[1]["params"] == {"power_usd_per_kwh": 0.04, "hedge_ratio": 0.75, "leverage": 1.0,
                                    "margin_mode": "isolated"}
    market = [{k: v for k, v in c.items() if k not in ("policy", "params")} for c in configs]
    assert market[0] == market[1] == {"asset": "BTC", "timeframe": "1d", "start": dt.date(2020, 1, 1),
                                      "end": dt.date(2020, 12, 31), "venue": None, "seed": 0, "data_dir": None}
    assert staged != out and (out / "comparison.csv").read_text() == "policy\nunhedged\nstatic_hedge\n"
    header = stdout.splitlines()[0].split()
    assert header == ["metric", "unhedged", "static_hedge"]


def test_compare_prints_each_runs_notes_and_warnings_once_naming_their_policies(capsys, tmp_path):
    argv = ["compare", "--policies", "unhedged,static_hedge", "--start", "2020-01-01", "--set", "leverage=3"]
    code, stdout, err = run_main(capsys, [*argv, "--out", str(tmp_path / "cmp"), "--json"])
    assert code == 0 and [row["policy"] for row in json.loads(stdout)] == ["unhedged", "static_hedge"]
    assert err == ("note (unhedged and static_hedge): the run starts 2020-01-01\n"
                   "note (static_hedge): 1 futures order(s) refused (bracket)\n"
                   "warning (static_hedge): leverage=3x is too much\n"
                   f"comparison written to {tmp_path / 'cmp'}\n")
    code, _, err = run_main(capsys, ["compare", "--policies", "static_hedge", "--start", "2020-01-02"])
    assert (code, err) == (0, "note (static_hedge): the run starts 2020-01-02\n")


# ------------------------------------------------------------------------------------------ policies, data


def test_policies_lists_parameters_with_defaults_and_units(capsys):
    code, stdout, _ = run_main(capsys, ["policies", "--json"])
    assert code == 0
    listed = json.loads(stdout)
    assert listed["static_hedge"][1] == {"name": "hedge_ratio", "type": "float", "default": 0.5, "unit": "fraction",
                                         "doc": "", "allowed": "float in [0, 1] fraction"}
    code, stdout, _ = run_main(capsys, ["policies"])
    assert code == 0 and "static_hedge" in stdout and "USD/kWh" in stdout


def test_data_hashprice_json_is_an_array_of_days(capsys):
    code, stdout, _ = run_main(capsys, ["data", "hashprice", "--start", "2020-03-12", "--json"])
    assert code == 0
    assert json.loads(stdout) == [
        {"date": "2020-03-12", "hashprice_usd_per_th_day": 0.1, "hashprice_usd_per_ph_day": 100.0,
         "coins_per_th_day": 2e-6},
        {"date": "2020-03-13", "hashprice_usd_per_th_day": 0.2, "hashprice_usd_per_ph_day": 200.0,
         "coins_per_th_day": None},  # NaN is null in JSON
    ]


def test_data_validate_exit_code_follows_the_findings(capsys, tmp_path):
    assert run_main(capsys, ["data", "validate", str(tmp_path / "good.csv")])[0] == 0
    code, stdout, _ = run_main(capsys, ["data", "validate", str(tmp_path / "bad.csv")])
    assert code == 1 and "error" in stdout
    code, stdout, _ = run_main(capsys, ["data", "breakeven", "--start", "2020-01-01", "--set",
                                        "power_usd_per_kwh=0.07", "--policy", "unhedged", "--json"])
    assert code == 0 and json.loads(stdout) == [{"date": "2020-01-01", "breakeven_price_usd": 70.0}]


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "list", "--timeframe", "1h"], "run_backtest.py data list: error: unrecognized arguments: --timeframe "
     "1h. --timeframe is an option of `run`, `sweep`, `compare`, `data validate` and `data download`, not of "
     "`data list`.\n"),
    (["data", "list", "--start", "2020-01-01"], "unrecognized arguments: --start 2020-01-01. --start is an option "
     "of `run`, `sweep`, `compare`, `data validate`, `data download`, `data hashprice` and `data breakeven`, not "
     "of `data list`.\n"),
    (["data", "list", "--asset", "ETH"], "--asset is an option of `run`, `sweep`, `compare`, `data validate`, "
     "`data download`, `data hashprice` and `data breakeven`, not of `data list`.\n"),
    (["data", "validate", "--asset", "BTC", "--venue=bitmex"], "unrecognized arguments: --venue=bitmex. "
     "--venue is an option of `run`, `sweep` and `compare`, not of `data validate`.\n"),
    (["data", "validate", "--seed", "3"], "--seed is an option of `run`, `sweep` and `compare`, not of "
     "`data validate`.\n"),
    (["data", "download", "--data-dir", "somewhere"], "run_backtest.py data download: error: unrecognized "
     "arguments: --data-dir somewhere. --data-dir is an option of `run`, `sweep`, `compare`, `data list`, "
     "`data validate`, `data hashprice` and `data breakeven`, not of `data download`.\n"),
    (["data", "download", "--start", "2024-01-01", "--venue", "bitmex"], "--venue is an option of `run`, `sweep` "
     "and `compare`, not of `data download`.\n"),
    (["data", "download", "--seed", "1"], "--seed is an option of `run`, `sweep` and `compare`, not of "
     "`data download`.\n"),
])
def test_data_list_validate_and_download_refuse_the_flags_they_do_not_use(capsys, argv, message):
    code, stdout, err = run_main(capsys, argv)
    assert (code, stdout) == (2, "") and err.endswith(message) and "Traceback" not in err
    assert err.startswith(f"usage: run_backtest.py {' '.join(argv[:2])} [-h]")


@pytest.mark.parametrize(("toml", "action", "message"), [
    ('timeframe = "4h"\n', "list", "`data list` does not use 'timeframe' (a key of `run`, `sweep`, `compare`, "
     "`data validate` and `data download`); remove it from the file."),
    ('venue = "bitmex"\nseed = 2\n', "validate", "`data validate` does not use 'venue' and 'seed' (keys of `run`, "
     "`sweep` and `compare`); remove them from the file."),
    ('data_dir = "d"\n', "download", "`data download` does not use 'data_dir' (a key of `run`, `sweep`, `compare`, "
     "`data list`, `data validate`, `data hashprice` and `data breakeven`); remove it from the file."),
])
def test_data_actions_refuse_config_keys_they_do_not_use(capsys, tmp_path, toml, action, message):
    cfg = tmp_path / "data.toml"
    cfg.write_text(toml)
    code, stdout, err = run_main(capsys, ["data", action, "--config", str(cfg)])
    assert (code, stdout, err) == (2, "", f"run_backtest.py: error: {cfg}: {message}\n")


def test_data_list_validate_and_download_take_exactly_the_flags_they_use(capsys, monkeypatch, tmp_path):
    cli.build_parser()
    common = {"-h", "--help", "--config", "--json"}
    assert {action: cli._OPTIONS[f"data {action}"] - common for action in ("list", "validate", "download")} == {
        "list": {"--data-dir"},
        "validate": {"--data-dir", "--asset", "--timeframe", "--start", "--end"},
        "download": {"--asset", "--timeframe", "--start", "--end"},
    }
    seen: list = []
    monkeypatch.setattr(CONTRACT, "data_list", lambda config: seen.append(config) or [])
    monkeypatch.setattr(CONTRACT, "data_validate", lambda config, path: seen.append((config, path)) or [])
    monkeypatch.setattr(CONTRACT, "data_download", lambda config: seen.append(config) or [])
    monkeypatch.setattr(CONTRACT, "data_list_empty", lambda config: "empty", raising=False)
    assert run_main(capsys, ["data", "list", "--data-dir", "here", "--json"])[:2] == (0, "[]\n")
    assert seen.pop()["data_dir"] == "here"
    rng = ["--asset", "eth", "--timeframe", "4h", "--start", "2021-02-01", "--end", "2021-02-03"]
    market = {"asset": "ETH", "timeframe": "4h", "start": dt.date(2021, 2, 1), "end": dt.date(2021, 2, 3)}
    assert run_main(capsys, ["data", "validate", *rng, "--data-dir", "here"])[:2] == (0, "(nothing)\n")
    config, path = seen.pop()
    assert path is None and {k: config[k] for k in (*market, "data_dir")} == {**market, "data_dir": "here"}
    assert run_main(capsys, ["data", "download", *rng])[:2] == (0, "(nothing)\n")
    config = seen.pop()
    assert {k: config[k] for k in market} == market
    good = tmp_path / "good.csv"
    assert run_main(capsys, ["data", "validate", str(good), "--json"])[:2] == (0, "[]\n")
    assert seen.pop()[1] == good


@pytest.mark.parametrize(("argv", "toml", "message"), [
    (["--asset", "ETH", "--start", "2020-01-01"], "",
     "--asset ETH --start 2020-01-01: `data validate FILE` checks that file alone and does not use them; drop "
     "them, or give no FILE to check the data of a range.\n"),
    (["--data-dir", "here"], "", "--data-dir here: `data validate FILE` checks that file alone and does not use "
     "it; drop it, or give no FILE to check the data of a range.\n"),
    (["--timeframe", "1h"], 'end = 2021-01-31\nasset = "BTC"\n', "--timeframe 1h; 'asset' and 'end' of CFG: "
     "`data validate FILE` checks that file alone and does not use them; drop them, or give no FILE to check the "
     "data of a range.\n"),
])
def test_data_validate_of_a_file_refuses_the_range_settings(capsys, tmp_path, argv, toml, message):
    config = []
    if toml:
        (tmp_path / "v.toml").write_text(toml)
        config = ["--config", str(tmp_path / "v.toml")]
        message = message.replace("CFG", str(tmp_path / "v.toml"))
    code, stdout, err = run_main(capsys, ["data", "validate", str(tmp_path / "good.csv"), *argv, *config])
    assert (code, stdout, err) == (2, "", f"run_backtest.py: error: {message}")


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "hedge_ratio=0.3"], "run_backtest.py: error: --set hedge_ratio=0.3: `data breakeven` does not use "
     "hedge_ratio; it uses only the fleet's settings (power_usd_per_kwh); drop it.\n"),
    (["--set", "leverage=2", "--set", "power_usd_per_kwh=0.07", "--set", "margin_mode=cross"],
     "run_backtest.py: error: --set leverage=2 --set margin_mode=cross: `data breakeven` does not use leverage and "
     "margin_mode; it uses only the fleet's settings (power_usd_per_kwh); drop them.\n"),
    (["--timeframe", "1h"], "run_backtest.py data breakeven: error: unrecognized arguments: --timeframe 1h. "
     "--timeframe is an option of `run`, `sweep`, `compare`, `data validate` and `data download`, "
     "not of `data breakeven`.\n"),
    (["--venue", "bitmex"], "unrecognized arguments: --venue bitmex. --venue is an option of"),
    (["--seed", "1"], "unrecognized arguments: --seed 1. --seed is an option of"),
])
def test_data_breakeven_refuses_what_it_does_not_use(capsys, argv, message):
    code, stdout, err = run_main(capsys, ["data", "breakeven", "--start", "2020-01-01", *argv])
    assert (code, stdout) == (2, "") and message in err and err.endswith(".\n")
    code, stdout, err = run_main(capsys, ["data", "hashprice", "--start", "2020-01-01", *argv])
    assert (code, stdout) == (2, "") and ("--set" in argv or "not of `data hashprice`.\n" in err)


@pytest.mark.parametrize(("argv", "message"), [
    (["--grid", "hedge_ratio=0,1", "--rank-by", "start"], "rank_by='start' is not a number (a date or a name), so "
     "it cannot rank configurations; allowed: sharpe, max_drawdown_pct, liquidations, total_return_pct, "
     "first_day, hedge_ratio, seconds.\n"),
    (["--grid", "margin_mode=isolated,cross", "--rank-by", "margin_mode:asc"], "rank_by='margin_mode' is not a "
     "number (a date or a name), so it cannot rank configurations; allowed: sharpe, max_drawdown_pct, "
     "liquidations, total_return_pct, first_day, seconds.\n"),
    (["--grid", "hedge_ratio=0:1:0.001", "--grid", "leverage=1:125:0.5"], "the grid has 249,249 configurations "
     "(hedge_ratio: 1,001 x leverage: 249), more than max_configs=10,000; narrow it (fewer values, a coarser "
     "step), or raise the cap with --max-configs 249249 if you mean to run them all.\n"),
    (["--grid", "hedge_ratio=0:1:0.25", "--grid", "leverage=1,2", "--max-configs", "9"], "the grid has 10 "
     "configurations (hedge_ratio: 5 x leverage: 2), more than max_configs=9; narrow it (fewer values, a coarser "
     "step), or raise the cap with --max-configs 10 if you mean to run them all.\n"),
])
def test_sweep_refuses_a_rank_by_it_cannot_rank_and_a_grid_above_the_cap_before_anything_runs(
        capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.setattr(CONTRACT, "SUMMARY_KEYS", (*SUMMARY_KEYS[:-1], "start", SUMMARY_KEYS[-1]))
    loaded = []
    monkeypatch.setattr(CONTRACT, "load_shared", lambda configs: loaded.append(1) or load_shared(configs))
    code, out, err = run_main(capsys, ["sweep", *argv, "--workers", "1", "--out", str(tmp_path / "s")])
    assert (code, out, loaded) == (2, "", []) and err == f"run_backtest.py: error: {message}"
    assert not (tmp_path / "s").exists()


def test_sweep_max_configs_raises_the_cap(capsys, tmp_path):
    argv = ["sweep", "--grid", "hedge_ratio=0:1:0.25", "--grid", "leverage=1,2", "--workers", "1"]
    code, _, _ = run_main(capsys, [*argv, "--max-configs", "10", "--out", str(tmp_path / "s"), "--json"])
    assert code == 0 and len(read_rows(tmp_path / "s" / "results.csv")) == 10
    (tmp_path / "c.toml").write_text("max_configs = 9\n")
    code, _, err = run_main(capsys, [*argv, "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "t")])
    assert code == 2 and "more than max_configs=9" in err


def test_sweep_checks_its_out_folder_before_loading_data_or_starting_a_dask_cluster(capsys, tmp_path,
                                                                                    monkeypatch):
    from minehedge import sweep

    started, loaded = [], []
    monkeypatch.setattr(sweep.DaskExecutor, "__enter__", lambda self: started.append(1) or self)
    monkeypatch.setattr(CONTRACT, "load_shared", lambda configs: loaded.append(1) or load_shared(configs))
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run_main(capsys, ["sweep", "--grid", "hedge_ratio=0,1", "--dask-local", "1",
                                       "--out", str(tmp_path / "notes.txt" / "s")])
    assert (code, out, started, loaded) == (2, "", [], [])
    assert err.endswith("cannot write there (Not a directory).\n")
