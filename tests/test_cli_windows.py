"""``--window`` on ``run`` and ``compare`` (and ``windows`` in a config file), through main(argv) on the shared
data: per-window tables after the main one, windows.csv and summary.md in the report folders, ``--json``
unchanged without windows, and one-line errors (exit 2) for windows that are malformed or outside the run."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from analyzers.windows import TABLE_KEYS, WINDOW_COLUMNS
from minehedge.cli import main

RANGE = ["--asset", "BTC", "--timeframe", "1d", "--start", "2020-01-01", "--end", "2020-12-31"]
POLICIES = ["--policies", "unhedged,sell_daily"]
WINDOWS = ["--window", "covid-crash", "--window", "h2=2020-07-01:2020-12-31"]


@pytest.fixture
def env(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _main(capsys, argv, code=0):
    got = main(argv)
    out, err = capsys.readouterr()
    assert got == code, err
    return out, err


def test_compare_prints_a_table_per_window_and_writes_windows_csv(env, capsys):
    out, _ = _main(capsys, ["compare", *RANGE, *POLICIES, *WINDOWS, "--out", "cmp"])
    plain, _ = _main(capsys, ["compare", *RANGE, *POLICIES])
    assert out.startswith(plain)  # the main table as without windows, then the windows
    lines = out[len(plain):].splitlines()
    assert lines[:4] == ["", "window covid-crash: 2020-03-01 to 2020-03-31, 31 bars",
                         "metric                 unhedged  sell_daily",
                         "--------------------  ---------  ----------"]
    assert [line.split()[0] for line in lines[4:4 + len(TABLE_KEYS)]] == list(TABLE_KEYS)
    assert lines[4 + len(TABLE_KEYS):4 + len(TABLE_KEYS) + 2] == [
        "", "window h2: 2020-07-01 to 2020-12-31, 184 bars"]
    assert len(lines) == 2 * (4 + len(TABLE_KEYS))
    with (env / "cmp" / "windows.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["policy", *WINDOW_COLUMNS]
    assert [(r["policy"], r["window"], r["start"], r["end"], r["bars"]) for r in rows] == [
        ("unhedged", "covid-crash", "2020-03-01", "2020-03-31", "31"),
        ("unhedged", "h2", "2020-07-01", "2020-12-31", "184"),
        ("sell_daily", "covid-crash", "2020-03-01", "2020-03-31", "31"),
        ("sell_daily", "h2", "2020-07-01", "2020-12-31", "184")]
    written = pd.read_csv(env / "cmp" / "windows.csv")
    summary = (env / "cmp" / "summary.md").read_text()
    assert "## Windows" in summary and "### h2: 2020-07-01 to 2020-12-31, 184 bars" in summary
    assert "| metric | unhedged | sell_daily |" in summary.split("## Windows")[1]
    assert "windows.csv" in json.loads((env / "cmp" / ".minehedge-report.json").read_text())["files"]
    assert written["return_pct"].tolist() == pytest.approx(
        ((written["equity_end_usd"] / written["equity_start_usd"] - 1) * 100).tolist(), rel=1e-12)


def test_compare_json_keeps_its_list_of_rows_and_adds_each_policys_windows(env, capsys):
    plain = json.loads(_main(capsys, ["compare", *RANGE, *POLICIES, "--json"])[0])
    windowed = json.loads(_main(capsys, ["compare", *RANGE, *POLICIES, *WINDOWS, "--json"])[0])
    assert isinstance(plain, list) and all("windows" not in row for row in plain)
    assert [{k: v for k, v in row.items() if k != "windows"} for row in windowed] == plain
    for row in windowed:
        assert [w["window"] for w in row["windows"]] == ["covid-crash", "h2"]
        assert list(row["windows"][0]) == list(WINDOW_COLUMNS)
        covid = row["windows"][0]
        assert covid["start"] == "2020-03-01" and covid["bars"] == 31
        assert covid["equity_end_usd"] / covid["equity_start_usd"] - 1 == pytest.approx(
            covid["return_pct"] / 100, rel=1e-12)


def test_run_writes_windows_to_its_report_and_prints_them(env, capsys):
    out, _ = _main(capsys, ["run", *RANGE, "--set", "hedge_ratio=0", *WINDOWS, "--out", "r"])
    assert "\nwindows: covid-crash: 2020-03-01 to 2020-03-31, 31 bars; h2: 2020-07-01 to 2020-12-31, 184 bars\n" \
        in out
    assert "metric                covid-crash          h2" in out
    frame = pd.read_csv(env / "r" / "windows.csv")
    equity = pd.read_csv(env / "r" / "equity.csv", index_col="datetime", parse_dates=True)["equity_usd"]
    assert list(frame.columns) == list(WINDOW_COLUMNS) and list(frame["window"]) == ["covid-crash", "h2"]
    assert frame.loc[0, "equity_start_usd"] == pytest.approx(equity.loc["2020-02-29T00:00:00Z"], rel=1e-12)
    assert frame.loc[1, "equity_end_usd"] == pytest.approx(equity.iloc[-1], rel=1e-12)
    summary = (env / "r" / "summary.md").read_text()
    assert "| metric | covid-crash: 2020-03-01 to 2020-03-31, 31 bars | h2: 2020-07-01 to 2020-12-31, 184 bars |" \
        in summary
    data = json.loads(_main(capsys, ["run", *RANGE, "--set", "hedge_ratio=0", "--window", "h2=2020-07-01:"
                                     "2020-12-31", "--json"])[0])
    assert [w["window"] for w in data["windows"]] == ["h2"]
    assert "windows" not in json.loads(_main(capsys, ["run", *RANGE, "--set", "hedge_ratio=0", "--json"])[0])


def test_a_config_file_gives_windows_to_compare_and_run_not_to_sweep(env, capsys):
    (env / "w.toml").write_text('start = 2020-01-01\nend = 2020-12-31\nwindows = ["covid-crash"]\n')
    data = json.loads(_main(capsys, ["compare", "--config", "w.toml", "--policies", "unhedged", "--json"])[0])
    assert [w["window"] for w in data[0]["windows"]] == ["covid-crash"]
    _, err = _main(capsys, ["sweep", "--config", "w.toml", "--grid", "hedge_ratio=0,1"], code=2)
    assert err == ("run_backtest.py: error: w.toml: `sweep` does not use 'windows' (a key of `run` and "
                   "`compare`); remove it from the file.\n")


@pytest.mark.parametrize(("windows", "says"), [
    (["--window", "2019"], "--window '2019' is not a window; allowed: NAME=START:END"),
    (["--window", "x=2020-03-31:2020-03-01"], "--window 'x=2020-03-31:2020-03-01': START 2020-03-31 is after "
                                              "END 2020-03-01"),
    (["--window", "x=2020-03"], "--window 'x=2020-03': '2020-03' is not START:END"),
    (["--windows", "stress", "--window", "2022"], "--window: window '2022' is given twice"),
    (["--window", "stress"], "window 2018=2018-01-01:2018-12-31 is outside the run (2020-01-01 to "
                             "2020-12-31)"),
    (["--window", "late=2021-01-01:2021-01-31"], "window late=2021-01-01:2021-01-31 is outside the run"),
])
def test_bad_windows_stop_with_one_line_before_any_run(env, capsys, windows, says):
    for command in (["compare", *POLICIES], ["run"]):
        out, err = _main(capsys, [*command, *RANGE, *windows, "--out", "never"], code=2)
        assert err.startswith("run_backtest.py: error: ") and says in err
        assert err.count("\n") == 1 and "Traceback" not in err and out == ""
        assert not (env / "never").exists()


def test_a_window_outside_the_default_range_is_refused_once_the_bars_are_known(env, capsys):
    # no --end: the bars end where the data do, which the command learns from the data
    _, err = _main(capsys, ["run", "--start", "2020-01-01", "--window", "future=2099-01-01:2099-01-31"], code=2)
    assert "window future=2099-01-01:2099-01-31 is outside the run (2020-01-01 to 20" in err
    assert err.count("\n") == 1


def test_a_window_partly_outside_is_clipped_with_a_note(env, capsys):
    out, err = _main(capsys, ["compare", *RANGE, *POLICIES, "--window", "x=2019-12-01:2020-01-31", "--json"])
    assert ("note (unhedged and sell_daily): window x=2019-12-01:2020-01-31 is clipped to 2020-01-01:2020-01-31, "
            "its part within the run (2020-01-01 to 2020-12-31)") in err.splitlines()
    (window,) = json.loads(out)[0]["windows"]
    assert (window["start"], window["end"], window["bars"]) == ("2020-01-01", "2020-01-31", 31)
