"""Configuration: value and grid parsing, ParamSpec validation, TOML files with flag overrides, and every
configuration error through main(argv) with its exit code and message (no traceback)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minehedge.cli import _settings, build_parser, main
from minehedge.config import (
    ParamSpec,
    check_policy,
    load_config_file,
    merge,
    parse_grid,
    parse_grid_values,
    parse_scalar,
    validate_params,
)
from minehedge.errors import ConfigError

# ------------------------------------------------------------------------------------------ grids


def test_decimal_range_gives_the_written_decimals_exactly():
    values = parse_grid_values("0:1:0.1")
    assert values == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert values[3] == 0.3 and values[3] != 0.1 * 3  # not the float-accumulated 0.30000000000000004
    assert all(isinstance(v, float) for v in values)
    assert parse_grid_values("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_range_stop_is_included_only_when_it_is_on_the_grid():
    assert parse_grid_values("1:9:2") == [1, 3, 5, 7, 9]
    assert all(type(v) is int for v in parse_grid_values("1:9:2"))  # integer literals -> ints
    assert parse_grid_values("1:10:2") == [1, 3, 5, 7, 9]
    assert parse_grid_values("0:1:0.3") == [0.0, 0.3, 0.6, 0.9]
    assert parse_grid_values("2:2:1") == [2]
    assert parse_grid_values("1e-3:3e-3:1e-3") == [0.001, 0.002, 0.003]
    assert parse_grid_values("-1:1:0.5") == [-1.0, -0.5, 0.0, 0.5, 1.0]


@given(
    start=st.decimals(min_value=-100, max_value=100, places=2),
    span=st.decimals(min_value=0, max_value=50, places=2),
    step=st.decimals(min_value=Decimal("0.01"), max_value=10, places=2),
)
def test_range_points_are_exact_decimal_multiples(start, span, step):
    stop = start + span
    values = parse_grid_values(f"{start}:{stop}:{step}")
    expected_count = int(span / step) + 1
    assert len(values) == expected_count
    for k, value in enumerate(values):
        assert value == float(start + k * step)  # each point is the decimal, rounded once
    last = start + (expected_count - 1) * step
    assert last <= stop < last + step  # the stop is included exactly when it lies on the grid


def test_lists_single_values_and_toml_arrays():
    assert parse_grid("leverage=1,2,3,5") == ("leverage", ["1", "2", "3", "5"])  # typed later by the spec
    assert parse_grid_values("S19Pro:1000@2020-06-01") == ["S19Pro:1000@2020-06-01"]  # not a range
    assert parse_grid_values([1, 2, 3]) == [1, 2, 3]
    assert parse_grid_values(0.5) == [0.5]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1:0:0.1", "stop=0 is below start=1"),
        ("0:1:0", "step=0 must be > 0"),
        ("0:1:-0.5", "step=-0.5 must be > 0"),
        ("0:1000000:1", "expands to 1000001 points; at most 100000"),
        ("1,2,1", "value '1' appears twice"),
        ("1,,2", "empty item"),
        ("", "empty grid"),
    ],
)
def test_bad_grids_name_the_key_and_the_problem(spec, message):
    with pytest.raises(ConfigError, match="leverage=") as raised:
        parse_grid_values(spec, key="leverage")
    assert message in str(raised.value)


def test_parse_scalar_types():
    assert parse_scalar("true") is True and parse_scalar("False") is False
    assert parse_scalar("3") == 3 and type(parse_scalar("3")) is int
    assert parse_scalar("0.5") == 0.5 and parse_scalar("1e-3") == 0.001
    assert parse_scalar("2020-03-12") == dt.date(2020, 3, 12)
    assert parse_scalar("none") is None
    assert parse_scalar("S19Pro:1000@2020-06-01") == "S19Pro:1000@2020-06-01"


# ------------------------------------------------------------------------------------------ ParamSpec

HEDGE = ParamSpec("hedge_ratio", float, 0.5, unit="fraction", doc="short / expected production", minimum=0, maximum=1)
LEVERAGE = ParamSpec("leverage", float, 1, unit="x", minimum=1, maximum=125)
MARGIN = ParamSpec("margin_mode", str, "isolated", choices=("isolated", "cross"))
ROLL = ParamSpec("roll_days", int, 30, unit="days", minimum=1)
STOP = ParamSpec("stop_loss_pct", float, None, unit="%", minimum=0, nullable=True)
LOAN_DATE = ParamSpec("loan_date", dt.date, dt.date(2021, 12, 1))
CURTAIL = ParamSpec("curtailment", bool, False)
SPECS = [HEDGE, LEVERAGE, MARGIN, ROLL, STOP, LOAN_DATE, CURTAIL]


def test_paramspec_coerces_command_line_strings_and_typed_values():
    assert HEDGE.coerce("0.1") == 0.1 and HEDGE.coerce(1) == 1.0 and type(HEDGE.coerce(1)) is float
    assert LEVERAGE.default == 1.0 and type(LEVERAGE.default) is float  # stored typed, for stable hashes
    assert ROLL.coerce("7") == 7 and ROLL.coerce(7.0) == 7
    assert STOP.coerce("none") is None and STOP.coerce("5") == 5.0
    assert LOAN_DATE.coerce("2022-01-15") == dt.date(2022, 1, 15)
    assert CURTAIL.coerce("yes") is True and CURTAIL.coerce(False) is False
    assert MARGIN.coerce("cross") == "cross"


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (HEDGE, "1.5", "hedge_ratio='1.5' is out of range; allowed: float in [0, 1] fraction."),
        (HEDGE, "half", "hedge_ratio='half' is not a float; allowed: float in [0, 1] fraction."),
        (HEDGE, "nan", "hedge_ratio='nan' is not a finite number"),
        (HEDGE, True, "hedge_ratio=True is not a float"),
        (ROLL, "7.5", "roll_days='7.5' is not an int; allowed: int >= 1 days."),
        (ROLL, 0, "roll_days=0 is out of range; allowed: int >= 1 days."),
        (MARGIN, "crosss", "margin_mode='crosss' is not allowed; allowed: one of: isolated, cross. Did you mean 'cross'?"),
        (LOAN_DATE, "2022-13-01", "loan_date='2022-13-01' is not a date; allowed: a date YYYY-MM-DD."),
        (CURTAIL, "maybe", "curtailment='maybe' is not a bool"),
        (HEDGE, None, "hedge_ratio=None may not be empty"),
        (HEDGE, "none", "hedge_ratio='none' may not be none; allowed: float in [0, 1] fraction."),
    ],
)
def test_paramspec_errors_name_the_parameter_the_value_and_what_is_allowed(spec, value, message):
    with pytest.raises(ConfigError) as raised:
        spec.coerce(value)
    assert message in str(raised.value)


def test_paramspec_with_an_invalid_default_is_a_programming_error():
    with pytest.raises(ConfigError, match="default of hedge_ratio=2"):
        ParamSpec("hedge_ratio", float, 2, minimum=0, maximum=1)
    with pytest.raises(TypeError, match="type must be one of"):
        ParamSpec("fleet", list, [])


def test_validate_params_fills_defaults_and_suggests_names():
    params = validate_params({"hedge_ratio": "0.25", "roll_days": 7}, SPECS, owner="policy 'static_hedge'")
    assert params == {
        "hedge_ratio": 0.25, "leverage": 1.0, "margin_mode": "isolated", "roll_days": 7,
        "stop_loss_pct": None, "loan_date": dt.date(2021, 12, 1), "curtailment": False,
    }
    with pytest.raises(ConfigError) as raised:
        validate_params({"hedge_rato": 0.5}, SPECS, owner="policy 'static_hedge'")
    assert "policy 'static_hedge' has no parameter 'hedge_rato'" in str(raised.value)
    assert "Did you mean 'hedge_ratio'?" in str(raised.value)
    with pytest.raises(ConfigError, match="policy='static_hedg' is not a known policy.*Did you mean 'static_hedge'"):
        check_policy("static_hedg", {"static_hedge": SPECS, "unhedged": []})


# ------------------------------------------------------------------------------------------ config files


def write(tmp_path, text: str, name: str = "cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def settings_for(argv: list[str]) -> dict:
    return _settings(build_parser().parse_args(argv))


def test_config_file_then_flags_override_key_by_key(tmp_path, monkeypatch):
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    cfg = write(tmp_path, """
asset = "eth"
timeframe = "4h"
start = 2020-01-01
end = "2020-06-30"
policy = "static_hedge"
dask-local = 2
rank_by = "max_drawdown_pct:asc"
top = 3
[set]
hedge_ratio = 0.5
leverage = 3
[grid]
roll_days = [7, 14]
margin_mode = "isolated,cross"
""")
    from_file = settings_for(["sweep", "--config", str(cfg)])
    assert from_file["asset"] == "ETH" and from_file["timeframe"] == "4h"
    assert (from_file["start"], from_file["end"]) == (dt.date(2020, 1, 1), dt.date(2020, 6, 30))
    assert from_file["dask_local"] == 2 and from_file["workers"] is None and from_file["top"] == 3
    assert from_file["set"] == {"hedge_ratio": 0.5, "leverage": 3}
    assert from_file["grid"] == {"roll_days": [7, 14], "margin_mode": ["isolated", "cross"]}
    assert from_file["data_dir"] is None and from_file["seed"] == 0 and from_file["policy"] == "static_hedge"

    both = settings_for([
        "sweep", "--config", str(cfg), "--timeframe", "1d", "--end", "2020-03-31", "--set", "leverage=5",
        "--grid", "hedge_ratio=0:1:0.5", "--set", "roll_days=30", "--data-dir", str(tmp_path), "--top", "1",
    ])
    assert both["asset"] == "ETH" and both["timeframe"] == "1d"  # file kept, flag wins
    assert both["end"] == dt.date(2020, 3, 31) and both["top"] == 1 and both["data_dir"] == str(tmp_path)
    # --set leverage overrides the file's value; --grid hedge_ratio overrides the file's [set] hedge_ratio;
    # --set roll_days overrides the file's [grid] roll_days.
    assert both["set"] == {"leverage": "5", "roll_days": "30"}
    assert both["grid"] == {"margin_mode": ["isolated", "cross"], "hedge_ratio": [0.0, 0.5, 1.0]}
    assert both["dask_local"] == 2  # the file's executor stands until a flag chooses another
    local = settings_for(["sweep", "--config", str(cfg), "--workers", "3"])
    assert (local["workers"], local["dask_local"]) == (3, None)


def test_data_dir_falls_back_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", "/from/env")
    assert settings_for(["run"])["data_dir"] == "/from/env"
    assert settings_for(["run", "--data-dir", str(tmp_path)])["data_dir"] == str(tmp_path)


def test_run_with_no_flags_gets_the_documented_defaults(monkeypatch):
    monkeypatch.delenv("MINEHEDGE_DATA_DIR", raising=False)
    settings = settings_for(["run"])
    assert {k: settings[k] for k in ("asset", "timeframe", "start", "end", "policy", "seed", "out", "json")} == {
        "asset": "BTC", "timeframe": "1d", "start": None, "end": None, "policy": "static_hedge", "seed": 0,
        "out": None, "json": False,
    }


def test_set_and_grid_of_the_same_parameter_in_one_layer_is_an_error():
    with pytest.raises(ConfigError, match="hedge_ratio: both fixed .set. and swept .grid. in the flags"):
        merge({}, {"set": {"hedge_ratio": "0.5"}, "grid": {"hedge_ratio": [0.1]}})


def test_load_config_file_reports_unknown_keys_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'wrokers'.*Did you mean 'workers'\?$"):
        load_config_file(write(tmp_path, "wrokers = 2\n"))  # a misspelt file key: no [set] hint after it
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config_file(write(tmp_path, "asset = \n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\[set\]|set must be a table"):
        load_config_file(write(tmp_path, 'set = "hedge_ratio=0.5"\n'))


# ------------------------------------------------------------------------------------------ through main()


def run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["swep"], "invalid choice: 'swep'"),
        (["data", "lst"], "Did you mean 'list'?"),
        (["sweep", "--wrokers", "2"], "Did you mean '--workers'?"),
        (["run", "--asset", "XRP"], "asset='XRP' is not allowed; allowed: one of: BTC, ETH."),
        (["run", "--timeframe", "15m"], "timeframe='15m' is not allowed; allowed: one of: 1d, 4h, 1h."),
        (["run", "--start", "2020-13-01"], "start='2020-13-01' is not a date; allowed: a date YYYY-MM-DD"),
        (["run", "--start", "2021-01-01", "--end", "2020-01-01"], "start=2021-01-01 is after end=2020-01-01"),
        (["run", "--seed", "-1"], "seed='-1' is out of range; allowed: int >= 0."),
        (["run", "--set", "hedge_ratio"], "--set 'hedge_ratio' is not of the form key=value"),
        (["sweep", "--workers", "0"], "workers='0' is out of range; allowed: int >= 1"),
        (["sweep", "--workers", "two"], "workers='two' is not an int"),
        (["sweep", "--workers", "2", "--dask-local", "2"], "choose one executor"),
        (["sweep", "--scheduler", "localhost"], "scheduler='localhost' is not a scheduler address"),
        (["sweep", "--grid", "hedge_ratio=1:0:0.1"], "hedge_ratio='1:0:0.1': stop=0 is below start=1"),
        (["sweep", "--grid", "leverage=1", "--grid", "leverage=2"], "--grid leverage=... is given twice"),
        (["sweep", "--rank-by", "sharpe:up"], "order 'up' is not allowed; allowed: asc, desc"),
        (["sweep", "--top", "0"], "top='0' is out of range"),
        (["compare", "--policies", "unhedged,,sell_daily"], "empty policy name"),
        (["compare", "--policies", "unhedged,unhedged"], "unhedged listed twice"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_a_message(capsys, argv, message):
    code, out, err = run_main(capsys, argv)
    assert code == 2
    assert message in err
    assert out == ""


def test_config_file_errors_exit_2_through_main(capsys, tmp_path):
    bad_key = write(tmp_path, 'asset = "BTC"\nhedge_ratio = 0.5\n', "a.toml")
    code, _, err = run_main(capsys, ["run", "--config", str(bad_key)])
    assert code == 2 and "unknown key 'hedge_ratio'" in err and str(bad_key) in err
    bad_value = write(tmp_path, "top = -3\n", "b.toml")
    code, _, err = run_main(capsys, ["sweep", "--config", str(bad_value)])
    assert code == 2 and f"{bad_value}: top=-3 is out of range; allowed: int >= 1." in err
    bad_toml = write(tmp_path, "[grid\n", "c.toml")
    code, _, err = run_main(capsys, ["sweep", "--config", str(bad_toml)])
    assert code == 2 and "is not valid TOML" in err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert main(["sweep", "--help"]) == 0
    assert "--dask-local" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (["policies", "--start=2021-01-01"], "usage: run_backtest.py policies [-h]",
         "run_backtest.py policies: error: unrecognized arguments: --start=2021-01-01. --start is an option of "
         "`run`, `sweep`, `compare`, `data validate`, `data download`, `data hashprice` and `data breakeven`, not of "
         "`policies`.\n"),
        (["run", "--grid", "hedge_ratio=0,1"], "usage: run_backtest.py run [-h]",
         "run_backtest.py run: error: unrecognized arguments: --grid hedge_ratio=0,1. --grid is an option of "
         "`sweep`, not of `run`.\n"),
        (["data", "validate", "--policy=unhedged"], "usage: run_backtest.py data validate [-h]",
         "unrecognized arguments: --policy=unhedged. --policy is an option of `run`, `sweep` and "
         "`data breakeven`, not of `data validate`.\n"),
        (["data", "--json", "list"], "usage: run_backtest.py data list [-h]",
         "unrecognized arguments: --json. Give --json after `data list`.\n"),
        (["sweep", "--wrokers", "2"], "usage: run_backtest.py sweep [-h]",
         "unrecognized arguments: --wrokers 2. Did you mean '--workers'?\n"),
        # a foreign option before a positional keeps its value: the value is not a POLICY, FILE or command
        (["policies", "--venue", "bitmex", "static_hedge"], "usage: run_backtest.py policies [-h]",
         "run_backtest.py policies: error: unrecognized arguments: --venue bitmex. --venue is an option of "
         "`run`, `sweep` and `compare`, not of `policies`.\n"),
        (["data", "validate", "--venue", "bitmex", "x.csv"], "usage: run_backtest.py data validate [-h]",
         "unrecognized arguments: --venue bitmex. --venue is an option of `run`, `sweep` and `compare`, not of "
         "`data validate`.\n"),
        (["data", "--venue", "bitmex", "validate"], "usage: run_backtest.py data validate [-h]",
         "unrecognized arguments: --venue bitmex. --venue is an option of `run`, `sweep` and `compare`, not of "
         "`data validate`.\n"),
        (["--venue", "bitmex", "run"], "usage: run_backtest.py run [-h]",
         "run_backtest.py run: error: unrecognized arguments: --venue bitmex. Give --venue after `run`.\n"),
        (["policies", "--start", "-5", "static_hedge"], "usage: run_backtest.py policies [-h]",
         "unrecognized arguments: --start -5. --start is an option of `run`, `sweep`, `compare`, `data validate`, "
         "`data download`, `data hashprice` and `data breakeven`, not of `policies`.\n"),
    ],
)
def test_a_flag_the_command_does_not_take_is_reported_with_the_commands_usage(capsys, argv, usage, message):
    code, out, err = run_main(capsys, argv)
    assert code == 2 and out == ""
    assert err.startswith(usage) and err.endswith(message)
    assert "usage: run_backtest.py [-h] [--version] COMMAND" not in err and "Did you mean '--start'" not in err


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (["run"], 'policy = "static_hedge"\nrank_by = "max_drawdown_pct"\n[grid]\nhedge_ratio = "0:1:0.25"\n',
         "`run` does not use 'rank_by' and 'grid' (keys of `sweep`); remove them from the file, or use the file "
         "with `sweep`."),
        (["run"], 'policies = ["unhedged", "static_hedge"]\n',
         "`run` does not use 'policies' (a key of `compare`); remove it from the file, or use the file with "
         "`compare`."),
        (["compare"], 'policy = "unhedged"\ntop = 3\n',
         "`compare` does not use 'policy' (a key of `run`, `sweep` and `data breakeven`); 'top' (a key of "
         "`sweep`); remove them from the file."),
    ],
)
def test_config_file_keys_of_another_command_are_errors(capsys, tmp_path, argv, toml, message):
    cfg = write(tmp_path, toml, "other.toml")
    code, out, err = run_main(capsys, [*argv, "--config", str(cfg)])
    assert code == 2 and out == ""
    assert err == f"run_backtest.py: error: {cfg}: {message}\n"


def test_a_file_key_that_is_a_parameter_says_where_parameters_go_and_dates_show_as_written(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'leverage'; .* A policy's parameters go in the file's "
                                          r"\[set\] table \(\[set\] then leverage = \.\.\.\)"):
        settings_for(["run", "--config", str(write(tmp_path, "leverage = 2\n"))])
    with pytest.raises(ConfigError, match=r"start=2019-01-01T00:00:00 is not a date; allowed: a date YYYY-MM-DD"):
        settings_for(["run", "--config", str(write(tmp_path, "start = 2019-01-01T00:00:00\n", "dt.toml"))])


def test_a_range_open_at_its_minimum_refuses_the_minimum_with_the_reason_and_says_so_in_allowed():
    distance = ParamSpec("distance", float, None, unit="fraction", minimum=0.0, nullable=True,
                         refuse_minimum="a distance of 0 means nothing")
    bounded = ParamSpec("distance", float, None, minimum=0.0, maximum=1.0, nullable=True,
                        refuse_minimum="no")
    assert distance.allowed() == "float > 0.0 fraction or none"
    assert bounded.allowed() == "float in (0.0, 1.0] or none"
    assert distance.coerce("1e-9") == 1e-9 and distance.coerce("none") is None
    with pytest.raises(ConfigError) as caught:
        distance.coerce("0")
    assert str(caught.value) == ("distance='0' is not allowed: a distance of 0 means nothing; allowed: float > 0.0 "
                                 "fraction or none.")
    with pytest.raises(ConfigError, match=r"distance=-0.5 is out of range; allowed: float > 0.0 fraction"):
        distance.coerce(-0.5)
