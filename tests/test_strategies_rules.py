"""Closed-form checks of the pure decision rules in strategies.rules."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minehedge.errors import ConfigError
from strategies import rules


def test_treasury_policies_on_one_bar():
    # 0.5 coin produced, 2 held, 3,000 USD of costs, price 20,000, 0.1 % spot fee.
    args = dict(produced_coin=0.5, held_coin=2.0, costs_usd=3_000.0, price_usd=20_000.0, fee_rate=0.001)
    assert rules.coins_to_sell("hodl", **args) == 0.0
    assert rules.coins_to_sell("sell_all", **args) == 0.5
    assert rules.coins_to_sell("sell_fraction", sell_fraction=0.25, **args) == 0.125
    # cover costs: 3,000 / (20,000 x 0.999) coins
    assert rules.coins_to_sell("sell_to_cover_costs", **args) == pytest.approx(3_000 / (20_000 * 0.999), rel=1e-15)
    # never more than the production, never more than held
    assert rules.coins_to_sell("sell_to_cover_costs", **{**args, "costs_usd": 1e9}) == 0.5
    assert rules.coins_to_sell("sell_all", **{**args, "held_coin": 0.2}) == 0.2


def test_unknown_treasury_policy_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"treasury='hold'.*hodl.*Did you mean 'hodl'"):
        rules.coins_to_sell("hold", 1.0, 1.0, 0.0, 1.0)


def test_coins_for_shortfall_is_exact():
    # shortfall 1,000 USD at 25,000 USD/coin with a 0.2 % fee: 1,000 / (25,000 x 0.998)
    coins = rules.coins_for_shortfall(1_500.0, 500.0, 25_000.0, 0.002)
    assert Fraction(coins).limit_denominator(10**9) == Fraction(1_000, 24_950)
    assert rules.coins_for_shortfall(100.0, 100.0, 25_000.0) == 0.0


def test_static_hedge_size():
    # 0.5 x 2.4 coins/day x 30 days = 36 coins short
    assert rules.static_hedge_coins(0.5, 2.4, 30.0) == pytest.approx(36.0, rel=1e-15)
    assert rules.static_hedge_coins(0.0, 2.4, 30.0) == 0.0


def test_realised_volatility_closed_form():
    # alternating +10 %/-10 % log returns: std (ddof=1) of [a, -a, a, -a] = a x sqrt(4/3)
    a = 0.1
    closes = np.exp(np.cumsum([0.0, a, -a, a, -a]))
    expected = a * math.sqrt(4.0 / 3.0) * math.sqrt(365.0)
    assert rules.realised_volatility(closes, 365.0) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(rules.realised_volatility(np.array([1.0, 2.0]), 365.0))


BOUNDS = dict(min_ratio=0.2, max_ratio=1.0, vol_low=0.4, vol_high=1.0, margin_low=0.1, margin_high=0.5)


def test_dynamic_ratio_piecewise_linear():
    # calm and profitable: the minimum
    assert rules.dynamic_hedge_ratio(0.3, 0.8, **BOUNDS) == 0.2
    # vol halfway (0.7): 0.2 + 0.8 x 0.5
    assert rules.dynamic_hedge_ratio(0.7, 0.8, **BOUNDS) == pytest.approx(0.6, rel=1e-15)
    # margin 0.2 (3/4 of the way from 0.5 to 0.1): 0.2 + 0.8 x 0.75
    assert rules.dynamic_hedge_ratio(0.3, 0.2, **BOUNDS) == pytest.approx(0.8, rel=1e-15)
    # the larger stress wins; price below break-even is full stress
    assert rules.dynamic_hedge_ratio(0.7, -0.3, **BOUNDS) == 1.0
    # unknown inputs are no stress
    assert rules.dynamic_hedge_ratio(math.nan, math.nan, **BOUNDS) == 0.2


@given(st.floats(0, 5), st.floats(-1, 5))
def test_dynamic_ratio_stays_in_bounds(vol, margin):
    ratio = rules.dynamic_hedge_ratio(vol, margin, **BOUNDS)
    assert BOUNDS["min_ratio"] <= ratio <= BOUNDS["max_ratio"]


def test_top_up_restores_the_target_ratio():
    # maintenance 400, ratio 0.8 -> balance 500; target 0.4 -> balance 1,000: add 500
    assert rules.top_up_amount(400.0, 0.8, 0.4) == pytest.approx(500.0, rel=1e-15)
    assert rules.top_up_amount(400.0, 0.3, 0.4) == 0.0


@given(st.floats(1.0, 1e6), st.floats(0.05, 5.0), st.floats(0.01, 1.0))
def test_top_up_property(maintenance, ratio, target):
    added = rules.top_up_amount(maintenance, ratio, target)
    new_ratio = maintenance / (maintenance / ratio + added)
    assert new_ratio <= max(ratio, target) * (1 + 1e-9)
    if ratio > target:
        assert new_ratio == pytest.approx(target, rel=1e-9)
