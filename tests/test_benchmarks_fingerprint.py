"""The fingerprint that guards speed work tells a one-ulp change apart, names the part that moved, and is
the same for the same run twice."""

from __future__ import annotations

import math

from benchmarks import fingerprint as fp
from minehedge import api


def test_a_one_ulp_change_moves_the_hash_and_nan_is_stable():
    value = 0.1 + 0.2
    assert fp._digest({"x": value}) != fp._digest({"x": math.nextafter(value, 1.0)})
    assert fp._digest([math.nan, math.inf]) == fp._digest([math.nan, math.inf])
    assert fp._canon({"a": (1, 2.5, None, "s")}) == {"a": [1, "2.5", None, "s"]}


def test_compare_names_the_runs_and_parts_that_differ():
    same = {part: "h" for part in fp.PARTS}
    before = {"a": dict(same), "b": dict(same)}
    after = {"a": dict(same), "b": {**same, "ledger": "other", "events": "other"}, "c": dict(same)}
    assert fp.compare(before, after) == ["b: ledger, events changed", "c: only in the new fingerprint"]
    assert fp.compare(before, before) == []


def test_the_same_run_twice_has_the_same_fingerprint(data_dir):
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2020-10-01", "end": "2020-12-31",
                              "data_dir": str(data_dir)})
    first = fp.fingerprint(market, "static_hedge", {"leverage": 10.0, "on_margin_call": "ignore"})
    second = fp.fingerprint(market, "static_hedge", {"leverage": 10.0, "on_margin_call": "ignore"})
    assert first == second
    assert first["bars"] == 92 and first["liquidations [#]"] >= 1
    other = fp.fingerprint(market, "static_hedge", {"leverage": 10.0, "on_margin_call": "ignore",
                                                    "power_usd_per_kwh": 0.046})
    assert other["ledger"] != first["ledger"] and other["summary"] != first["summary"]


def test_every_run_in_the_set_names_a_known_policy():
    from strategies.registry import POLICIES

    names = [name for name, _, _, _ in fp.RUNS]
    assert len(names) == len(set(names)) == 22
    assert {policy for _, _, policy, _ in fp.RUNS} == set(POLICIES)
