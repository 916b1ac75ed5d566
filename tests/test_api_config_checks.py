"""What :mod:`minehedge.api` checks before it loads any data, and how often: the policy's and the venue's
rules (``api.check_config``), the error of a comparison naming its policy, and ``breakeven``, which reads only
the fleet's parameters and so skips them."""

from __future__ import annotations

from collections import Counter

import pytest

from minehedge import api
from minehedge.cli import main
from minehedge.errors import ConfigError


def _config(policy: str, data_dir, **params) -> dict:
    return {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-01-31", "venue": None,
            "seed": 0, "data_dir": str(data_dir), "policy": policy, "params": params}


def test_a_comparison_names_the_policy_whose_rule_failed_before_loading_the_market(tmp_path):
    # tmp_path holds no data: the error comes before any load. leveraged_long breaks cme's cap with the
    # leverage given; unhedged, compared first, is fine.
    configs = [_config("unhedged", tmp_path),
               _config("leveraged_long", tmp_path, venue="cme", contract="dated", leverage=100)]
    message = ("policy 'leveraged_long': leverage=100.0 exceeds cme's maximum of 2.1277x at any notional; "
               "allowed: 1 <= leverage <= 2.1277.")
    for call in (lambda: api.compare_runs(configs, None), lambda: api.compare(configs, None),
                 lambda: api.check_config(configs[1], name_policy=True)):
        with pytest.raises(ConfigError) as caught:
            call()
        assert type(caught.value) is ConfigError and str(caught.value) == message
    with pytest.raises(ConfigError) as caught:  # one run of it is not named: there is only the one policy
        api.check_config(configs[1])
    assert str(caught.value) == message.removeprefix("policy 'leveraged_long': ")


def test_a_parameters_own_error_names_the_policy_once_in_a_comparison(tmp_path):
    # The parameter's range check names the policy itself; the comparison adds no second prefix.
    configs = [_config("static_hedge", tmp_path, leverage=0.5)]
    with pytest.raises(ConfigError) as caught:
        api.compare_runs(configs, None)
    assert str(caught.value) == ("policy 'static_hedge': leverage=0.5 is out of range; allowed: float in "
                                 "[1.0, 125.0] x.")


CME_PERPETUAL = "venue='cme' lists dated contracts only; use contract='dated' with it."
BITMEX_125 = ("leverage=125.0 exceeds bitmex's maximum of 100x for positions below 200 BTC of notional (its "
              "first bracket; larger ones allow less); allowed: 1 <= leverage <= 100.")


@pytest.mark.parametrize(("params", "message"), [
    ({"venue": "cme", "leverage": 100.0}, CME_PERPETUAL),  # cme lists dated contracts only
    ({"venue": "bitmex", "leverage": 125.0}, BITMEX_125),  # far above bitmex's first bracket
])
def test_breakeven_reads_only_the_fleet_so_a_config_breaking_the_venue_rules_gives_the_valid_figures(
        data_dir, params, message):
    base = {"asset": "BTC", "timeframe": "1d", "start": "2022-06-10", "end": "2022-06-11", "venue": None,
            "seed": 0, "data_dir": str(data_dir), "policy": "static_hedge"}
    broken, valid = {**base, "params": params}, {**base, "params": {}}
    with pytest.raises(ConfigError) as caught:
        api.check_config(broken)
    assert str(caught.value) == message
    api.check_config(valid)
    rows = api.breakeven(broken)
    assert rows == api.breakeven(valid) == api.breakeven({**valid, "policy": "unhedged"})
    # the default fleet (494,215 TH/s running at 97 % uptime) on the two days
    figures = [(r["date"], round(r["price_usd"], 2), round(r["breakeven_price_usd"], 2),
                round(r["breakeven_price_all_in_usd"], 2), round(r["breakeven_power_usd_per_kwh"], 6),
                r["hashrate_ths"]) for r in rows]
    assert figures == [("2022-06-10", 29070.40, 7266.95, 7266.95, 0.180016, 494215.0),
                       ("2022-06-11", 28360.79, 7291.02, 7291.02, 0.175042, 494215.0)]



@pytest.fixture
def checks(monkeypatch):
    """Counts ``api.check_config`` calls per configuration (its policy and hedge_ratio, None for a policy
    without one), running the real check."""
    counted: Counter = Counter()
    real = api.check_config

    def counting(config, **kwargs):
        counted[config["policy"], (config["params"] or {}).get("hedge_ratio")] += 1
        return real(config, **kwargs)

    monkeypatch.setattr(api, "check_config", counting)
    return counted


def test_each_cli_command_checks_each_configuration_once_and_the_api_alone_still_checks(
        checks, capsys, data_dir, tmp_path):
    argv = ["--start", "2021-01-01", "--end", "2021-01-31", "--data-dir", str(data_dir), "--json"]
    assert main(["run", "--set", "hedge_ratio=0.25", *argv]) == 0
    assert dict(checks) == {("static_hedge", 0.25): 1}
    checks.clear()
    assert main(["compare", "--policies", "unhedged,static_hedge", *argv]) == 0
    assert dict(checks) == {("unhedged", None): 1, ("static_hedge", 0.5): 1}
    checks.clear()
    sweep = ["sweep", "--grid", "hedge_ratio=0,0.25", "--workers", "1", "--out", str(tmp_path)]
    assert main([*sweep, *argv]) == 0
    assert dict(checks) == {("static_hedge", 0.0): 1, ("static_hedge", 0.25): 1}
    capsys.readouterr()
    checks.clear()
    # called alone, the API checks each configuration itself, once per call, before it loads the market
    config = _config("static_hedge", data_dir, hedge_ratio=0.25)
    api.run_backtest(config)
    api.compare_runs([_config("unhedged", data_dir), config], None)
    assert dict(checks) == {("static_hedge", 0.25): 2, ("unhedged", None): 1}
