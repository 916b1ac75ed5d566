"""How ``sweep`` reports failed configurations: a user's configuration error in one line, a crash with its
traceback, and advice that fits each. Uses the contract API of tests/test_cli_commands.py."""

from __future__ import annotations

import time

import pytest

from minehedge.errors import ConfigError
from tests.test_cli_commands import CONTRACT, closed_form_summary, contract_api, run_main  # noqa: F401

SWEEP = ["sweep", "--start", "2020-01-01", "--set", "hedge_ratio=0.25", "--grid", "leverage=1,2,4"]


def capped_summary(config: dict, shared) -> dict:
    """closed_form_summary, but a leverage above 3 is refused as the venue's cap refuses it; 2 crashes."""
    leverage = config["params"]["leverage"]
    if leverage > 3:
        raise ConfigError(f"leverage={leverage} exceeds the venue maximum 3x; allowed: 1 to 3.")
    if leverage == 2.0:
        raise RuntimeError("a bug")
    return closed_form_summary(config, shared)


def user_error_summary(config: dict, shared) -> dict:
    """Like capped_summary without the crash."""
    if config["params"]["leverage"] == 2.0:
        return closed_form_summary(config, shared)
    return capped_summary(config, shared)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_configuration_error_is_one_line_without_traceback_or_retry_advice(capsys, tmp_path, monkeypatch,
                                                                             workers):
    monkeypatch.setattr(CONTRACT, "run_summary", user_error_summary)
    code, _, err = run_main(capsys, [*SWEEP, "--workers", workers, "--out", str(tmp_path / "s")])
    assert code == 1
    assert "Traceback" not in err and "re-run the same command" not in err
    lines = err.splitlines()
    assert lines[-2:] == [
        "failed: {'leverage': 4.0}: ConfigError: leverage=4.0 exceeds the venue maximum 3x; allowed: 1 to 3.",
        "1 configurations failed with a configuration or data error; fix the configuration (a re-run fails the "
        "same way).",
    ]


def test_crashes_keep_their_traceback_and_retry_advice_beside_configuration_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(CONTRACT, "run_summary", capped_summary)
    code, _, err = run_main(capsys, [*SWEEP, "--workers", "1", "--out", str(tmp_path / "s")])
    assert code == 1
    assert "failed: {'leverage': 2.0}: RuntimeError: a bug\n" in err
    assert "failed: {'leverage': 4.0}: ConfigError: leverage=4.0 exceeds" in err
    traceback = err[err.index("first failure's traceback:"):]
    assert 'raise RuntimeError("a bug")' in traceback and "ConfigError" not in traceback
    assert err.count("Traceback (most recent call last)") == 1
    assert err.endswith(
        "1 configurations failed; re-run the same command to retry them.\n"
        "1 configurations failed with a configuration or data error; fix the configuration (a re-run fails the "
        "same way).\n")


def slow_first_error_summary(config: dict, shared) -> dict:
    """Like user_error_summary, but leverage 1 also fails, after 1 s: it ends after leverage 4's failure."""
    if config["params"]["leverage"] == 1.0:
        time.sleep(1.0)
        raise ConfigError("leverage=1.0 is refused here.")
    return user_error_summary(config, shared)


def test_failures_are_listed_in_grid_order_not_in_the_order_they_ended(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(CONTRACT, "run_summary", slow_first_error_summary)
    code, _, err = run_main(capsys, [*SWEEP, "--workers", "2", "--out", str(tmp_path / "s")])
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("failed: ")] == [
        "failed: {'leverage': 1.0}: ConfigError: leverage=1.0 is refused here.",
        "failed: {'leverage': 4.0}: ConfigError: leverage=4.0 exceeds the venue maximum 3x; allowed: 1 to 3.",
    ]
