"""Daily network (mining) frames in the shared contract, from Coin Metrics metrics and the shared CSV files.

Contract (BRIEF): daily UTC index (midnight of the day described), float64 columns

* ``price_usd`` USD per coin; ``hashrate_hs`` H/s; ``difficulty`` raw (BTC difficulty; ETH hashes per
  block); ``block_count`` blocks/day; ``issuance_coin`` new coins/day to miners (gross, incl. ETH uncle
  rewards); ``fees_coin`` fees/day paid to miners; ``miner_income_coin`` = issuance + fees;
  ``subsidy_per_block`` = issuance / blocks; ``fees_per_block`` = fees / blocks (coin); ``supply_coin``;
* ``source`` (str): which file and rule produced the row. NaN where the source has nothing.

**BTC** (Coin Metrics community file, or the API via :mod:`data.coinmetrics`): ``HashRate`` TH/s x 1e12 ->
H/s; ``difficulty`` = ``DiffMean`` where present (to 2020-07-27), else ``DiffMean_derived`` =
HashRate·1e12·86400 / (2^32·BlkCnt), Coin Metrics' own identity, which reproduces DiffMean to 8e-15 where both
exist (data README); the API path always derives it (DiffMean is not requested). Issuance IssTotNtv,
fees FeeTotNtv, supply SplyCur, price PriceUSD, blocks BlkCnt.

**ETH** (proof of work until the Merge, 2022-09-15), spliced as the data README advises:

1. 2015-07-30 -> 2020-07-27, ``coinmetrics``: the Coin Metrics file as for BTC (HashRate TH/s, DiffMean raw).
2. 2020-07-28 -> 2021-08-04, ``glassnode+etherscan``: Glassnode mean hash rate (H/s), Etherscan difficulty
   (TH x 1e12), Etherscan price; issuance = daily change of Glassnode total supply (equals CM IssTotNtv
   exactly before London, uncle rewards included), fees = Glassnode total fees (equals CM FeeTotNtv).
   ``block_count`` is *estimated* as hashrate·86400 / difficulty (the expected-hashes identity; within a
   few % of CM BlkCnt on the overlap, tested), so the per-block values inherit that estimate.
3. 2021-08-05 -> 2022-09-01, ``glassnode+etherscan post-London``: miner income = Δ Glassnode supply +
   Glassnode total fees. After EIP-1559 the supply is net of the burned base fee and the fees include it,
   so the burn cancels: income = gross issuance (blocks + uncles) + priority fees, exactly what miners
   received. The split is not in the data (neither supply series is gross issuance, and the burn is not
   published), so ``issuance_coin``, ``fees_coin``, ``subsidy_per_block`` and ``fees_per_block`` are NaN
   here; the protocol block reward was 2 ETH plus uncle rewards (EIP-1234). mining/ decides how to use it.
4. 2022-09-02 -> 2022-09-14, ``etherscan difficulty+price only``: Glassnode stops on 2022-09-01; only
   difficulty and price are known, the rest is NaN.
5. 2022-09-15 (Merge day, ``etherscan price only``): Etherscan's mean difficulty (2,709 TH) averages the
   PoW blocks before 06:42 UTC with zero-difficulty proof-of-stake blocks, so it is not a PoW difficulty and
   is left NaN. Later rows (no mining) are not returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.frames import read_time_csv, to_utc_index
from minehedge.errors import ConfigError, DataError

NETWORK_COLUMNS = ("price_usd", "hashrate_hs", "difficulty", "block_count", "issuance_coin", "fees_coin",
                   "miner_income_coin", "subsidy_per_block", "fees_per_block", "supply_coin")
#: Coin Metrics community metrics the contract is built from (asset-metrics endpoint, frequency 1d). Not
#: DiffMean: the community tier no longer serves it for BTC, and a metric the tier may not serve can make the
#: API refuse the whole request with HTTP 403 (the official client's ``ignore_forbidden_errors`` defaults to
#: false); difficulty is derived from HashRate and BlkCnt instead, which reproduces DiffMean to 8e-15.
COINMETRICS_METRICS = ("PriceUSD", "HashRate", "BlkCnt", "IssTotNtv", "FeeTotNtv", "SplyCur")
#: The Coin Metrics metrics each contract column is built from (BTC and the CM part of ETH), for messages.
CONTRACT_METRICS = {"price_usd": "PriceUSD", "hashrate_hs": "HashRate", "block_count": "BlkCnt",
                    "difficulty": "DiffMean, or HashRate and BlkCnt", "issuance_coin": "IssTotNtv",
                    "fees_coin": "FeeTotNtv", "miner_income_coin": "IssTotNtv + FeeTotNtv",
                    "subsidy_per_block": "IssTotNtv / BlkCnt", "fees_per_block": "FeeTotNtv / BlkCnt",
                    "supply_coin": "SplyCur"}
TERA = 1e12
LONDON = pd.Timestamp("2021-08-05", tz="UTC")  # EIP-1559 activation day (block 12,965,000, 12:33 UTC)
MERGE = pd.Timestamp("2022-09-15", tz="UTC")  # last proof-of-work block 15,537,393 at 06:42 UTC
CM_ETH_END = pd.Timestamp("2020-07-27", tz="UTC")
GLASSNODE_END = pd.Timestamp("2022-09-01", tz="UTC")


def derived_difficulty(hashrate_hs: pd.Series, block_count: pd.Series, asset: str) -> pd.Series:
    """Difficulty implied by hash rate (H/s) and blocks/day: Coin Metrics' identity.

    Expected blocks per day are inversely proportional to difficulty (BTC: H·86400 / (D·2^32); ETH:
    H·86400 / D, :func:`mining.revenue.expected_blocks_per_day`, the one home of that identity), so
    D = blocks expected at difficulty 1 / blocks seen. NaN where blocks == 0.
    """
    from mining.revenue import expected_blocks_per_day  # the formula's home (pure numpy/pandas)

    return expected_blocks_per_day(hashrate_hs, 1.0, asset) / block_count.where(block_count > 0)


def _per_block(amount: pd.Series, blocks: pd.Series) -> pd.Series:
    return amount / blocks.where(blocks > 0)


def network_from_coinmetrics(metrics: pd.DataFrame, asset: str, source: str) -> pd.DataFrame:
    """Map Coin Metrics daily metrics (columns named as in the API/CSV) to the network contract."""
    asset = str(asset).upper()
    if asset not in ("BTC", "ETH"):
        raise ConfigError(f"asset={asset!r} is not supported for network data; choose BTC or ETH.")
    metrics = to_utc_index(metrics, what=source)

    def column(name: str) -> pd.Series:
        if name in metrics.columns:
            return pd.to_numeric(metrics[name], errors="coerce").astype("float64")
        return pd.Series(np.nan, index=metrics.index, dtype="float64")

    out = pd.DataFrame(index=metrics.index)
    out["price_usd"] = column("PriceUSD")
    out["hashrate_hs"] = column("HashRate") * TERA
    out["block_count"] = column("BlkCnt")
    derived = column("DiffMean_derived")
    derived = derived.fillna(derived_difficulty(out["hashrate_hs"], out["block_count"], asset))
    out["difficulty"] = column("DiffMean").fillna(derived)
    out["issuance_coin"] = column("IssTotNtv")
    out["fees_coin"] = column("FeeTotNtv")
    out["supply_coin"] = column("SplyCur")
    out["source"] = source
    return _finish(out)


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Derived columns and the contract's column order (float64, then ``source``)."""
    frame["miner_income_coin"] = frame["miner_income_coin"] if "miner_income_coin" in frame else (
        frame["issuance_coin"] + frame["fees_coin"])
    frame["subsidy_per_block"] = _per_block(frame["issuance_coin"], frame["block_count"])
    frame["fees_per_block"] = _per_block(frame["fees_coin"], frame["block_count"])
    out = frame[list(NETWORK_COLUMNS)].astype("float64")
    out["source"] = frame["source"].astype(str)
    out.index.name = "datetime"
    return out


#: Coin Metrics columns a network CSV must have (the hashprice needs each), and those it may have.
CSV_REQUIRED = ("PriceUSD", "HashRate", "BlkCnt", "IssTotNtv", "FeeTotNtv")
_CSV_OPTIONAL = ("DiffMean", "DiffMean_derived", "SplyCur")
_TIME = ("time", "date")
#: Columns of the Etherscan/Glassnode ETH file (data README, section 3).
ETHERSCAN_GLASSNODE_COLUMNS = ("etherscan_difficulty_TH", "etherscan_price_usd",
                               "glassnode_hash_rate_mean_Hps",
                               "glassnode_total_fees_eth", "glassnode_total_supply_eth")


#: The columns a network file's reader needs and those it keeps if present, by the file's MANIFEST.csv venue.
FILE_COLUMNS = {"coinmetrics": (CSV_REQUIRED, _CSV_OPTIONAL),
                "etherscan+glassnode": (ETHERSCAN_GLASSNODE_COLUMNS, ())}


def read_network_file(path: str | Path, venue: str) -> pd.DataFrame:
    """One network file's columns on its own days, read and checked as the readers read it (the columns of
    ``venue``, :data:`FILE_COLUMNS`; numbers, ISO 8601 times), before any mapping or splicing."""
    required, optional = FILE_COLUMNS[venue]
    return read_time_csv(Path(path), "network", _TIME, required, optional)


def read_btc_network_csv(path: str | Path) -> pd.DataFrame:
    """The shared BTC Coin Metrics file as a network frame (source ``coinmetrics:<file name>``)."""
    path = Path(path)
    return network_from_coinmetrics(read_time_csv(path, "network", _TIME, CSV_REQUIRED, _CSV_OPTIONAL), "BTC",
                                    f"coinmetrics:{path.name}")


def read_eth_network_csv(coinmetrics_path: str | Path, etherscan_glassnode_path: str | Path) -> pd.DataFrame:
    """Splice the two shared ETH files up to the Merge (ranges and rules in the module docstring)."""
    cm_path, eg_path = Path(coinmetrics_path), Path(etherscan_glassnode_path)
    return splice_eth_network(*read_eth_network_files(cm_path, eg_path), cm_path.name, eg_path.name)


def read_eth_network_files(cm_path: Path, eg_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two ETH files' columns on their own days (Coin Metrics, Etherscan/Glassnode), before splicing."""
    return (read_time_csv(cm_path, "network", _TIME, CSV_REQUIRED, _CSV_OPTIONAL),
            read_time_csv(eg_path, "network", _TIME, ETHERSCAN_GLASSNODE_COLUMNS))


def eth_splice_reads(start: pd.Timestamp | None, end: pd.Timestamp | None
                     ) -> tuple[tuple[pd.Timestamp | None, pd.Timestamp], tuple[pd.Timestamp, pd.Timestamp]]:
    """The days ``[from, to)`` of the Coin Metrics file and of the Etherscan/Glassnode file that the splice
    reads for the days ``[start, end)`` (None: open): Coin Metrics up to :data:`CM_ETH_END`; the other file
    from the day after it to the Merge, plus the day before its first day served (issuance is the daily
    change of the supply). A part the request does not reach has ``to <= from``."""
    day = pd.Timedelta(days=1)
    after_merge = MERGE + day
    cm = (start, CM_ETH_END + day if end is None else min(end, CM_ETH_END + day))
    eg_from = CM_ETH_END if start is None else max(start - day, CM_ETH_END)
    eg_to = after_merge if end is None else min(end, after_merge)
    if eg_to <= CM_ETH_END + day:  # ends before the first day this file serves
        eg_to = eg_from
    return cm, (eg_from, eg_to)


def splice_eth_network(cm_raw: pd.DataFrame, eg_raw: pd.DataFrame, cm_name: str,
                       eg_name: str) -> pd.DataFrame:
    """The ETH network frame from the two files' columns (:func:`read_eth_network_files`)."""
    early = network_from_coinmetrics(cm_raw, "ETH", f"coinmetrics:{cm_name}")
    early = early.loc[:CM_ETH_END]
    supply = eg_raw["glassnode_total_supply_eth"]
    late = pd.DataFrame(index=eg_raw.index)
    late["price_usd"] = eg_raw["etherscan_price_usd"]
    late["hashrate_hs"] = eg_raw["glassnode_hash_rate_mean_Hps"]
    late["difficulty"] = eg_raw["etherscan_difficulty_TH"] * TERA
    late["block_count"] = late["hashrate_hs"] * 86400.0 / late["difficulty"]  # expected-hashes identity
    late["issuance_coin"] = supply.diff()
    late["fees_coin"] = eg_raw["glassnode_total_fees_eth"]
    late["miner_income_coin"] = late["issuance_coin"] + late["fees_coin"]
    late["supply_coin"] = supply
    late["source"] = f"glassnode+etherscan:{eg_name}"
    post_london = late.index >= LONDON
    late.loc[post_london, ["issuance_coin", "fees_coin"]] = np.nan  # split unknown after EIP-1559
    late.loc[post_london, "source"] = f"glassnode+etherscan post-London (income only):{eg_name}"
    after_glassnode = late.index > GLASSNODE_END
    late.loc[after_glassnode, "source"] = f"etherscan difficulty+price only:{eg_name}"
    late.loc[late.index == MERGE, "difficulty"] = np.nan  # Merge-day mean mixes in zero-difficulty PoS blocks
    late.loc[late.index == MERGE, "source"] = f"etherscan price only (Merge day):{eg_name}"
    late = _finish(late.loc[CM_ETH_END + pd.Timedelta(days=1):MERGE])
    if early.empty or late.empty:
        raise DataError(f"ETH network splice: {cm_name} or {eg_name} lacks the expected date ranges "
                        f"(CM to {CM_ETH_END.date()}, Glassnode/Etherscan to {MERGE.date()}).")
    return pd.concat([early, late])
