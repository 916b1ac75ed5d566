"""Mining revenue: block subsidy, expected blocks, coins per unit of hash rate, and hashprice.

Units used throughout (one home per formula):

* hash rate in H/s; BTC revenue per **TH/s** (1e12 H/s), ETH revenue per **MH/s** (1e6 H/s);
* difficulty raw: Bitcoin difficulty D (expected hashes per block = D x 2^32), Ethash difficulty (expected
  hashes per block = D);
* "per day" is per 86,400 s of hashing; coins are BTC or ETH; prices USD per coin.

Bitcoin (FPPS, the expected value a Full-Pay-Per-Share pool pays before its fee):

    expected blocks/day      = h x 86,400 / (D x 2^32)
    BTC per TH/s per day     = 1e12 x 86,400 x (subsidy + fees per block) / (D x 2^32)
    hashprice USD/TH/s/day   = BTC per TH/s per day x price;  USD/PH/s/day = USD/TH/s/day x 1,000

Ethereum (proof of work until the Merge, 2022-09-15, block 15,537,393; zero afterwards):

    ETH per MH/s per day     = 1e6 x miner income ETH/day / network hash rate H/s
    expected blocks/day      = h x 86,400 / D   (Ethash: D is the expected hashes per block)

Sources: Bitcoin Core ``GetBlockSubsidy`` (src/validation.cpp) for the subsidy; the Bitcoin wiki
"Difficulty" page for blocks = hashes / (D x 2^32); the Ethereum yellow paper (Ethash) for hashes per block =
D; EIP-649 (Byzantium, 5 -> 3 ETH), EIP-1234 (Constantinople, 3 -> 2 ETH), EIP-1559 (London, base fee burned).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from minehedge.errors import ConfigError, DataError, check_choice

SECONDS_PER_DAY: int = 86_400
TWO_POW_32: int = 2**32
H_PER_TH: float = 1e12
H_PER_MH: float = 1e6
TH_PER_PH: float = 1_000.0

BTC_HALVING_INTERVAL: int = 210_000
BTC_INITIAL_SUBSIDY_SAT: int = 50 * 100_000_000
SATOSHI_PER_BTC: int = 100_000_000

# Ethereum proof-of-work milestones (UTC dates of the activation blocks).
ETH_BYZANTIUM = pd.Timestamp("2017-10-16", tz="UTC")  # block 4,370,000: 5 -> 3 ETH (EIP-649)
ETH_CONSTANTINOPLE = pd.Timestamp("2019-02-28", tz="UTC")  # block 7,280,000: 3 -> 2 ETH (EIP-1234)
ETH_LONDON = pd.Timestamp("2021-08-05", tz="UTC")  # block 12,965,000: base fee burned (EIP-1559)
ETH_MERGE = pd.Timestamp("2022-09-15", tz="UTC")  # block 15,537,393 (06:42 UTC): no more mining revenue
ETH_MERGE_BLOCK: int = 15_537_393
# Days of known income averaged into the fee assumption where only difficulty is known (2022-09-02 -> 09-14).
ETH_GAP_EXTRA_WINDOW_DAYS: int = 7

ASSETS: tuple[str, ...] = ("BTC", "ETH")
# Hash-rate unit in which each asset's revenue is quoted, and its size in H/s.
UNIT_NAME: dict[str, str] = {"BTC": "TH/s", "ETH": "MH/s"}
UNIT_HS: dict[str, float] = {"BTC": H_PER_TH, "ETH": H_PER_MH}

NETWORK_COLUMNS: tuple[str, ...] = (
    "price_usd", "hashrate_hs", "difficulty", "block_count", "issuance_coin", "fees_coin",
    "miner_income_coin", "subsidy_per_block", "fees_per_block", "supply_coin", "source",
)


def check_asset(asset: str) -> str:
    """Return ``asset`` upper-cased if it is BTC or ETH; else raise :class:`ConfigError`."""
    return check_choice("asset", str(asset).upper(), ASSETS)


def btc_subsidy(height: int) -> float:
    """BTC subsidy per block at block ``height``: 50 BTC halved every 210,000 blocks.

    Exactly Bitcoin Core's ``GetBlockSubsidy``: the subsidy in satoshis is ``50e8 >> halvings`` (an integer
    right shift, so it reaches 0 at the 33rd halving) and is forced to 0 from the 64th halving on.
    Heights 0-209,999 pay 50, 210,000-419,999 pay 25, ..., 840,000-1,049,999 pay 3.125 BTC.
    """
    if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or height < 0:
        raise ConfigError(f"height={height!r} must be a block height, an integer >= 0.")
    halvings = int(height) // BTC_HALVING_INTERVAL
    if halvings >= 64:
        return 0.0
    return (BTC_INITIAL_SUBSIDY_SAT >> halvings) / SATOSHI_PER_BTC


def btc_subsidy_array(heights: np.ndarray) -> np.ndarray:
    """Vectorised :func:`btc_subsidy` for an integer array of heights (BTC per block, float64)."""
    heights = np.asarray(heights, dtype=np.int64)
    if (heights < 0).any():
        raise ConfigError("heights must all be >= 0 (block heights).")
    halvings = heights // BTC_HALVING_INTERVAL
    sat = np.right_shift(np.int64(BTC_INITIAL_SUBSIDY_SAT), np.minimum(halvings, 63))
    return np.where(halvings >= 64, 0, sat) / SATOSHI_PER_BTC


def btc_coins_per_th_day(difficulty, subsidy_per_block, fees_per_block=0.0):
    """Expected BTC per TH/s per day (FPPS, before pool fee) = 1e12 x 86,400 x (subsidy + fees) / (D x 2^32).

    ``difficulty``: raw Bitcoin difficulty; ``subsidy_per_block`` and ``fees_per_block`` in BTC per block.
    Scalars or numpy arrays (broadcast). Example: D = 21.3876e12, 6.25 BTC, no fees -> 5.87857e-6 BTC per
    TH/s per day (0.00587857 BTC per PH/s), so 1 PH/s for 14 days earns 0.0823 BTC (4 decimals).
    """
    difficulty = np.asarray(difficulty, dtype=float) if not np.isscalar(difficulty) else float(difficulty)
    return H_PER_TH * SECONDS_PER_DAY * (subsidy_per_block + fees_per_block) / (difficulty * TWO_POW_32)


def expected_blocks_per_day(hashrate_hs, difficulty, asset: str):
    """Expected blocks found per day by ``hashrate_hs`` (H/s) at ``difficulty`` (raw).

    BTC: h x 86,400 / (D x 2^32);  ETH (Ethash): h x 86,400 / D. Scalars or numpy arrays.
    """
    asset = check_asset(asset)
    hashes_per_block = difficulty * TWO_POW_32 if asset == "BTC" else difficulty
    return hashrate_hs * SECONDS_PER_DAY / hashes_per_block


def eth_coins_per_mh_day(miner_income_eth_per_day, network_hashrate_hs):
    """Expected ETH per MH/s per day = 1e6 x network miner income (ETH/day) / network hash rate (H/s).

    Miner income = issuance to miners (block + uncle rewards) + fees paid to miners (after EIP-1559: the
    priority fees only, the base fee is burned). Scalars or numpy arrays.
    """
    return H_PER_MH * miner_income_eth_per_day / network_hashrate_hs


def eth_block_reward(dates: pd.DatetimeIndex) -> np.ndarray:
    """Static ETH block reward (ETH per block) by UTC date: 5 before 2017-10-16, 3 to 2019-02-27, 2 to the
    Merge, 0 from the Merge day (2022-09-15) on. Uncle rewards are not included."""
    dates = _utc_index(dates)
    reward = np.full(len(dates), 5.0)
    reward[dates >= ETH_BYZANTIUM] = 3.0
    reward[dates >= ETH_CONSTANTINOPLE] = 2.0
    reward[dates >= ETH_MERGE] = 0.0
    return reward


def fpps_payout(expected_coins, pool_fee: float = 0.02):
    """FPPS payout in coins: the expected value minus the pool fee (``pool_fee`` a fraction, default 2%)."""
    if not 0.0 <= pool_fee < 1.0:
        raise ConfigError(f"pool_fee={pool_fee!r} must be a fraction in [0, 1) (0.02 means 2%).")
    return expected_coins * (1.0 - pool_fee)


def per_th_to_per_ph(value_per_th_day):
    """Hashprice per PH/s per day from a value per TH/s per day (x 1,000)."""
    return value_per_th_day * TH_PER_PH


def smoothed_fees_per_block(network: pd.DataFrame, window_days: int = 1) -> pd.Series:
    """Mean fees per block (coin) over the trailing ``window_days`` days, ending on each day (no lookahead).

    Block-weighted (sum of fees / sum of blocks) where ``fees_coin`` and ``block_count`` exist, else the mean
    of ``fees_per_block``. ``window_days = 1`` is the day's own mean per block; the market's hashprice
    indices use a 144-block (about one day) average, which ``window_days = 1`` matches at daily resolution.
    """
    if isinstance(window_days, bool) or not isinstance(window_days, (int, np.integer)) or window_days < 1:
        raise ConfigError(f"fee_window_days={window_days!r} must be an integer >= 1 (days).")
    fees = pd.to_numeric(network["fees_coin"], errors="coerce") if "fees_coin" in network else None
    blocks = pd.to_numeric(network["block_count"], errors="coerce") if "block_count" in network else None
    per_block = pd.to_numeric(network["fees_per_block"], errors="coerce")
    if fees is not None and blocks is not None:
        ok = fees.notna() & (blocks > 0)
        sum_fees = fees.where(ok).rolling(window_days, min_periods=1).sum()
        sum_blocks = blocks.where(ok).rolling(window_days, min_periods=1).sum()
        weighted = (sum_fees / sum_blocks.where(sum_blocks > 0))
        fallback = per_block.rolling(window_days, min_periods=1).mean()
        return weighted.fillna(fallback)
    return per_block.rolling(window_days, min_periods=1).mean()


def network_hashprice(network: pd.DataFrame, asset: str, fee_window_days: int = 1) -> pd.DataFrame:
    """Per-day revenue of one unit of hash rate from a network frame (the contract in the developers' brief).

    Returns a frame with the same index as ``network`` and columns

    * ``coins_per_unit_day``: BTC per TH/s per day (BTC) or ETH per MH/s per day (ETH), FPPS expected value
      before the pool fee;
    * ``hashprice_usd_per_unit_day``: the same times ``price_usd`` (USD per TH/s or per MH/s per day);
    * ``fees_per_block_used``: the fee per block (coin) that went into it (BTC: the smoothed mean; ETH: the
      assumed extra per block where the difficulty formula was used, NaN elsewhere);
    * ``method``: which formula/source produced the row.

    BTC (``method = "difficulty"``): 1e12 x 86,400 x (subsidy_per_block + smoothed fees per block) / (D x
    2^32), with ``subsidy_per_block`` from the frame (on a halving day it is that day's block-weighted mean,
    falling back to issuance_coin / block_count) and fees smoothed over ``fee_window_days`` (see
    :func:`smoothed_fees_per_block`). A day whose difficulty, subsidy or fees are unknown (NaN) is NaN with
    ``method = "missing"``: never computed with zero fees.

    ETH, by date range (with the shared data via data.network; the method column says which applied to each
    row; ``fee_window_days`` is not used for ETH: each day's own income counts):

    * up to 2020-07-27 (Coin Metrics: issuance incl. uncles + fees), 2020-07-28 -> 2021-08-04 (Glassnode
      supply change + fees, Glassnode hash rate) and 2021-08-05 -> 2022-09-01 (post-London: Glassnode net
      supply change + total fees, in which the burned base fee cancels, so income = gross issuance +
      priority fees), ``method = "income/hashrate"``: 1e6 x miner_income_coin / hashrate_hs;
    * 2022-09-02 -> 2022-09-14 (difficulty only), ``method = "difficulty"``: 1e6 x 86,400 / D x (block reward
      + extra per block). The assumption: the extra per block (fees paid to miners + uncle rewards) is the
      mean, over the last 7 days with hash-rate data, of miner income per expected block (income x D /
      (h x 86,400)) minus the static reward, carried forward (0 if never observed). In the shared data that is
      2022-08-26 -> 09-01 (about 0.42 ETH per block);
    * from the Merge day 2022-09-15 on, ``method = "merged"``: 0 (the ~6.7 h of proof of work on the Merge
      day are dropped, conservatively).
    """
    asset = check_asset(asset)
    _check_network(network)
    index = _utc_index(network.index)
    price = pd.to_numeric(network["price_usd"], errors="coerce").to_numpy(dtype=float)
    difficulty = pd.to_numeric(network["difficulty"], errors="coerce").to_numpy(dtype=float)
    difficulty = np.where(difficulty > 0, difficulty, np.nan)
    if asset == "BTC":
        fees = smoothed_fees_per_block(network, fee_window_days).to_numpy(dtype=float)
        subsidy = pd.to_numeric(network["subsidy_per_block"], errors="coerce").to_numpy(dtype=float)
        if "issuance_coin" in network and "block_count" in network:
            blocks = pd.to_numeric(network["block_count"], errors="coerce").to_numpy(dtype=float)
            issuance = pd.to_numeric(network["issuance_coin"], errors="coerce").to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                subsidy = np.where(np.isnan(subsidy) & (blocks > 0), issuance / blocks, subsidy)
        # Unknown fees leave the day unknown (NaN, "missing"): counted as zero they understate revenue, by 75
        # % on 2024-04-20.
        coins = btc_coins_per_th_day(difficulty, subsidy, fees)
        method = np.where(np.isnan(coins), "missing", "difficulty").astype(object)
        fees_used = fees
    else:
        hashrate = pd.to_numeric(network["hashrate_hs"], errors="coerce").to_numpy(dtype=float)
        income = pd.to_numeric(network["miner_income_coin"], errors="coerce").to_numpy(dtype=float)
        have_income = (hashrate > 0) & np.isfinite(income)
        with np.errstate(divide="ignore", invalid="ignore"):
            by_income = eth_coins_per_mh_day(income, hashrate)
        reward = eth_block_reward(index)
        # Income beyond the static reward per expected block (fees to miners + uncle rewards), where known.
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = np.where(have_income, income * difficulty / (hashrate * SECONDS_PER_DAY) - reward, np.nan)
        known = pd.Series(extra).dropna()
        extra = known.rolling(ETH_GAP_EXTRA_WINDOW_DAYS, min_periods=1).mean().reindex(range(len(index)))
        assumed_fee = np.nan_to_num(extra.ffill().to_numpy(dtype=float), nan=0.0)
        by_difficulty = H_PER_MH * SECONDS_PER_DAY / difficulty * (reward + assumed_fee)
        merged = np.asarray(index >= ETH_MERGE)
        coins = np.where(merged, 0.0, np.where(have_income, by_income, by_difficulty))
        use_difficulty = ~merged & ~have_income & np.isfinite(by_difficulty)
        method = np.where(merged, "merged", np.where(have_income, "income/hashrate",
                                                     np.where(use_difficulty, "difficulty", "missing")))
        method = method.astype(object)
        fees_used = np.where(use_difficulty, assumed_fee, np.nan)

    return pd.DataFrame(
        {
            "coins_per_unit_day": coins,
            "hashprice_usd_per_unit_day": coins * price,
            "fees_per_block_used": fees_used,
            "method": method,
        },
        index=network.index,
    )


#: The network columns each asset's hashprice is computed from (:func:`network_hashprice`): where a day's
#: hashprice is missing, the ones that are NaN say why.
HASHPRICE_INPUTS: dict[str, tuple[str, ...]] = {
    "BTC": ("price_usd", "difficulty", "subsidy_per_block", "fees_per_block"),
    "ETH": ("price_usd", "hashrate_hs", "miner_income_coin", "difficulty"),
}


def _check_network(network: pd.DataFrame) -> None:
    if not isinstance(network, pd.DataFrame):
        raise DataError("network must be a pandas DataFrame (the network frame contract), "
                        f"got {type(network)}.")
    if not isinstance(network.index, pd.DatetimeIndex):
        raise DataError("network must have a daily DatetimeIndex (UTC), got "
                        f"{type(network.index).__name__}.")
    needed = ("price_usd", "hashrate_hs", "difficulty", "subsidy_per_block", "fees_per_block",
              "miner_income_coin")
    missing = [c for c in needed if c not in network.columns]
    if missing:
        raise DataError(f"network frame lacks columns {missing}; the contract has {list(NETWORK_COLUMNS)}.")


def _utc_index(index) -> pd.DatetimeIndex:
    """The index as a UTC DatetimeIndex in ns (naive values are taken as UTC; ``asi8`` is then ns)."""
    index = pd.DatetimeIndex(index).as_unit("ns")
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
