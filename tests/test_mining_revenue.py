"""mining.revenue: closed-form tables for subsidy, expected blocks, coins per unit of hash rate, hashprice."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from minehedge.errors import ConfigError, DataError
from mining.revenue import (
    btc_coins_per_th_day,
    btc_subsidy,
    btc_subsidy_array,
    eth_block_reward,
    eth_coins_per_mh_day,
    expected_blocks_per_day,
    fpps_payout,
    network_hashprice,
    per_th_to_per_ph,
    smoothed_fees_per_block,
)

# Height -> subsidy (BTC): the halving boundaries, then Bitcoin Core's integer shift running out of satoshis
# (5e9 >> 32 = 1 sat, >> 33 = 0) and the explicit zero from the 64th halving.
HALVING_TABLE = [
    (0, 50.0), (209_999, 50.0), (210_000, 25.0), (419_999, 25.0), (420_000, 12.5), (629_999, 12.5),
    (630_000, 6.25), (839_999, 6.25), (840_000, 3.125), (1_049_999, 3.125), (1_050_000, 1.5625),
    (1_260_000, 0.78125), (32 * 210_000, 1e-8), (33 * 210_000 - 1, 1e-8), (33 * 210_000, 0.0),
    (64 * 210_000, 0.0), (100 * 210_000, 0.0),
]


@pytest.mark.parametrize(("height", "subsidy"), HALVING_TABLE)
def test_btc_subsidy_by_height(height: int, subsidy: float) -> None:
    assert btc_subsidy(height) == subsidy


def test_btc_subsidy_array_matches_scalar() -> None:
    heights = np.array([h for h, _ in HALVING_TABLE])
    assert btc_subsidy_array(heights).tolist() == [s for _, s in HALVING_TABLE]


@pytest.mark.parametrize("height", [-1, 1.5, "7", True])
def test_btc_subsidy_rejects_bad_height(height) -> None:
    with pytest.raises(ConfigError, match="height"):
        btc_subsidy(height)


def test_issue_check_one_ph_for_14_days() -> None:
    """D = 21.3876e12, 6.25 BTC, no fees: 1 PH/s (1,000 TH/s) for 14 days earns 0.0823 BTC (4 decimals)."""
    per_th_day = btc_coins_per_th_day(21.3876e12, 6.25)
    exact = Fraction(10**12 * 86_400 * 625, 100) / (Fraction(213_876 * 10**8) * 2**32)
    assert per_th_day == pytest.approx(float(exact), rel=1e-15)
    btc = per_th_day * 1_000 * 14
    assert round(btc, 4) == 0.0823
    assert btc == pytest.approx(0.082300009, abs=1e-9)
    # FPPS after the default 2% pool fee.
    assert fpps_payout(btc) == pytest.approx(btc * 0.98, rel=1e-15)


def test_coins_per_th_day_includes_fees_and_broadcasts() -> None:
    d = np.array([1e12, 2e12])
    got = btc_coins_per_th_day(d, 6.25, 0.25)
    want = 1e12 * 86_400 * 6.5 / (d * 2**32)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert got[0] == pytest.approx(2 * got[1], rel=1e-15)


def test_expected_blocks_per_day_closed_forms() -> None:
    d = 50e12
    # A hash rate that finds a block every 600 s on average finds 144 a day.
    assert expected_blocks_per_day(d * 2**32 / 600, d, "BTC") == pytest.approx(144.0, rel=1e-14)
    # Ethash: difficulty is the expected hashes per block; one block per 13 s -> 86,400 / 13 a day.
    assert expected_blocks_per_day(3e15 / 13, 3e15, "eth") == pytest.approx(86_400 / 13, rel=1e-14)
    with pytest.raises(ConfigError, match="asset"):
        expected_blocks_per_day(1.0, 1.0, "XRP")


def test_eth_coins_per_mh_day() -> None:
    # 13,000 ETH/day to miners over 200 TH/s: 1e6 x 13,000 / 2e14 = 6.5e-5 ETH per MH/s per day.
    assert eth_coins_per_mh_day(13_000.0, 2e14) == pytest.approx(6.5e-5, rel=1e-15)


def test_eth_block_reward_schedule() -> None:
    dates = pd.DatetimeIndex(["2016-01-01", "2017-10-15", "2017-10-16", "2019-02-27", "2019-02-28",
                              "2022-09-14", "2022-09-15", "2023-01-01"], tz="UTC")
    assert eth_block_reward(dates).tolist() == [5.0, 5.0, 3.0, 3.0, 2.0, 2.0, 0.0, 0.0]


def test_per_ph_and_pool_fee() -> None:
    assert per_th_to_per_ph(0.045) == pytest.approx(45.0, rel=1e-15)
    assert fpps_payout(1.0, 0.0) == 1.0
    with pytest.raises(ConfigError, match="pool_fee"):
        fpps_payout(1.0, 1.5)


def _frame(days: int, **columns) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=days, freq="D", tz="UTC")
    base = {c: np.full(days, np.nan) for c in (
        "price_usd", "hashrate_hs", "difficulty", "block_count", "issuance_coin", "fees_coin",
        "miner_income_coin", "subsidy_per_block", "fees_per_block", "supply_coin")}
    base.update({k: np.asarray(v, dtype=float) for k, v in columns.items()})
    frame = pd.DataFrame(base, index=index)
    frame["source"] = "synthetic"
    return frame


def test_network_hashprice_btc_closed_form_and_fee_window() -> None:
    frame = _frame(2, price_usd=[40_000, 50_000], difficulty=[20e12, 25e12], subsidy_per_block=[6.25, 6.25],
                   block_count=[100, 300], fees_coin=[100, 900], fees_per_block=[1.0, 3.0])
    one_day = network_hashprice(frame, "BTC")
    want = btc_coins_per_th_day(np.array([20e12, 25e12]), 6.25, np.array([1.0, 3.0]))
    np.testing.assert_allclose(one_day["coins_per_unit_day"], want, rtol=1e-15)
    np.testing.assert_allclose(one_day["hashprice_usd_per_unit_day"], want * [40_000, 50_000], rtol=1e-15)
    assert one_day.index.equals(frame.index)
    # Two-day window: block-weighted (100 + 900) / (100 + 300) = 2.5 BTC per block on day 2.
    assert smoothed_fees_per_block(frame, 2).tolist() == [1.0, 2.5]
    two_day = network_hashprice(frame, "BTC", fee_window_days=2)
    assert two_day["coins_per_unit_day"].iloc[1] == pytest.approx(btc_coins_per_th_day(25e12, 6.25, 2.5),
                                                                   rel=1e-15)


def test_network_hashprice_btc_unknown_fees_are_missing_not_zero() -> None:
    # FeeTotNtv not published on day 2: its hashprice is unknown, not the subsidy alone labelled "difficulty"
    frame = _frame(2, price_usd=[40_000, 40_000], difficulty=[20e12, 20e12], subsidy_per_block=[6.25, 6.25],
                   block_count=[100, 100], fees_coin=[100, np.nan], fees_per_block=[1.0, np.nan])
    out = network_hashprice(frame, "BTC")
    assert out["coins_per_unit_day"].iloc[0] == btc_coins_per_th_day(20e12, 6.25, 1.0)
    assert np.isnan(out["coins_per_unit_day"].iloc[1]) and np.isnan(out["hashprice_usd_per_unit_day"].iloc[1])
    assert out["method"].tolist() == ["difficulty", "missing"]


def test_network_hashprice_eth_sources_and_merge() -> None:
    index_days = 5  # 2021-01-01 .. 01-05; shift the Merge question with a second frame below
    frame = _frame(index_days, price_usd=[1000] * 5, hashrate_hs=[2e14, 2e14, np.nan, np.nan, np.nan],
                   difficulty=[4e15, 4e15, 5e15, 5e15, np.nan], miner_income_coin=[13_000, 13_000, np.nan,
                                                                                     np.nan, np.nan])
    out = network_hashprice(frame, "ETH")
    assert out["coins_per_unit_day"].iloc[0] == pytest.approx(6.5e-5, rel=1e-15)
    # Where the hash rate is missing: 1e6 x 86,400 / D x (2 ETH + extra), with extra = income per expected
    # block minus the reward on the days with data: 13,000 / (2e14 x 86,400 / 4e15) - 2 = 1.0092592...
    extra = 13_000 / (2e14 * 86_400 / 4e15) - 2.0
    assert out["fees_per_block_used"].iloc[2] == pytest.approx(extra, rel=1e-14)
    assert out["coins_per_unit_day"].iloc[2] == pytest.approx(1e6 * 86_400 / 5e15 * (2.0 + extra), rel=1e-14)
    assert out["method"].tolist() == ["income/hashrate", "income/hashrate", "difficulty", "difficulty", "missing"]
    assert np.isnan(out["coins_per_unit_day"].iloc[4])

    merge = _frame(3, price_usd=[1600, 1500, 1450], hashrate_hs=[9e14] * 3, difficulty=[12e15] * 3,
                   miner_income_coin=[14_000] * 3)
    merge.index = pd.date_range("2022-09-14", periods=3, freq="D", tz="UTC")
    out = network_hashprice(merge, "eth")
    assert out["coins_per_unit_day"].iloc[0] > 0
    assert out["coins_per_unit_day"].iloc[1:].tolist() == [0.0, 0.0]
    assert out["method"].iloc[1:].tolist() == ["merged", "merged"]


def test_eth_gap_fee_is_the_mean_extra_of_the_last_seven_days_with_hash_rate() -> None:
    # 9 income days at D = 4e15, h = 2e14: 2e14 x 86,400 / 4e15 = 4,320 expected blocks a day. An income of
    # (2 + k) x 4,320 ETH on day k is 2 ETH of block reward (2021) plus k ETH of extra per block. The day after
    # has no hash rate: the docstring's rule takes the mean extra over the last 7 known days, mean(3..9) = 6.
    k = np.arange(1, 10)
    frame = _frame(10, price_usd=[1_000] * 10, difficulty=[4e15] * 10,
                   hashrate_hs=[*[2e14] * 9, np.nan], miner_income_coin=[*((2 + k) * 4_320), np.nan])
    out = network_hashprice(frame, "ETH")
    assert out["method"].tolist() == ["income/hashrate"] * 9 + ["difficulty"]
    assert out["fees_per_block_used"].iloc[9] == pytest.approx(np.mean(k[-7:]), rel=1e-14)  # 6.0
    assert out["coins_per_unit_day"].iloc[9] == pytest.approx(1e6 * 86_400 / 4e15 * (2.0 + 6.0), rel=1e-14)


def test_blocks_of_days_with_unknown_fees_stay_out_of_the_fee_average() -> None:
    # Day 2's fees are unknown: its 100 blocks must not dilute the block-weighted mean (10 + 30) / (100 + 100).
    frame = _frame(3, block_count=[100, 100, 100], fees_coin=[10, np.nan, 30], fees_per_block=[0.1, np.nan, 0.3])
    assert smoothed_fees_per_block(frame, 3).tolist() == [10 / 100, 10 / 100, 40 / 200]


def test_network_hashprice_bad_input() -> None:
    frame = _frame(1, price_usd=[1.0], difficulty=[1.0], subsidy_per_block=[1.0], fees_per_block=[0.0])
    with pytest.raises(ConfigError, match="asset"):
        network_hashprice(frame, "DOGE")
    with pytest.raises(ConfigError, match="fee_window_days"):
        network_hashprice(frame, "BTC", fee_window_days=0)
    with pytest.raises(DataError, match="difficulty"):
        network_hashprice(frame.drop(columns="difficulty"), "BTC")
    with pytest.raises(DataError, match="DatetimeIndex"):
        network_hashprice(frame.reset_index(drop=True), "BTC")
