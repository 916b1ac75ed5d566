"""What :mod:`minehedge.api` checks before it loads any data, and how often: the policy's and the venue's
rules (``api.check_config``), the error of a comparison naming its policy, and ``breakeven``, which reads only
the fleet's parameters and so skips them."""

from __future__ import annotations

import pytest

from minehedge import api
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
