"""The analyzers' figures on real policy runs (shared data), recomputed from the run's own tables: equity.csv,
the ledger, the events and the fills."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzers import ledger_stats


@pytest.fixture(scope="module")
def btc_2022(data_dir):
    from minehedge import api

    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2022-01-01", "end": "2022-12-31",
                            "data_dir": str(data_dir)})


def run(market, policy: str, params: dict):
    from minehedge import api

    return api.run_policy(market, policy, params)


# ------------------------------------------------------------------------------------- hedge effectiveness


def recomputed_variance_reduction_pct(outcome, opening_coins: float, opening_price: float) -> float:
    """Ederington on daily changes (a daily run: one bar a day), from equity.csv and the ledger: the coins held
    at the previous close (the opening first) x the price move, against the same plus the change of the hedge
    P&L (futures-wallet P&L entries at their USD value + unrealised P&L)."""
    equity, prices = outcome.result.equity, outcome.result.prices
    ledger = outcome.result.ledger.frame()
    futures = ledger[(ledger["wallet"] == "futures") & ledger["kind"].isin(ledger_stats.FUTURES_PNL_KINDS)]
    realized = futures.groupby("datetime")["amount_usd"].sum().cumsum()
    realized = realized.reindex(equity.index, method="ffill").fillna(0.0)
    coins = np.concatenate([[opening_coins], equity["coins"].to_numpy()])
    price = np.concatenate([[opening_price], prices.to_numpy()])
    hedge = np.concatenate([[0.0], (realized + equity["unrealized_pnl_usd"]).to_numpy()])
    unhedged = coins[:-1] * np.diff(price)
    hedged = unhedged + np.diff(hedge)
    return (1.0 - np.var(hedged, ddof=1) / np.var(unhedged, ddof=1)) * 100.0


def test_hedge_effectiveness_counts_the_opening_coins(btc_2022):
    # collateral_short shorts the treasury's coin equity, 1,000 opening coins included: the USD equity barely
    # moves, and the variance reduction is about 100 % (the audit measured -2,125 % against mined coins only).
    outcome = run(btc_2022, "collateral_short", {"start_coins": 1000.0})
    opening_price = float(btc_2022.frame["open"].iloc[0])
    expected = recomputed_variance_reduction_pct(outcome, 1000.0, opening_price)
    assert outcome.summary["hedge_variance_reduction_pct"] == pytest.approx(expected, rel=1e-9)
    assert 99.0 < expected < 100.0


def test_hedge_effectiveness_depends_on_the_coins_the_treasury_keeps(btc_2022):
    # The same full hedge of production: kept coins (hodl) are hedged; a treasury that sells every coin holds
    # none, so there is nothing to hedge (NaN), and the short shows in the equity's volatility instead.
    hodl = run(btc_2022, "static_hedge", {"hedge_ratio": 1.0})
    sold = run(btc_2022, "static_hedge", {"hedge_ratio": 1.0, "treasury": "sell_all"})
    no_opening_coins = recomputed_variance_reduction_pct(hodl, 0.0, float(btc_2022.frame["open"].iloc[0]))
    assert hodl.summary["hedge_variance_reduction_pct"] == pytest.approx(no_opening_coins, rel=1e-9)
    assert (sold.result.equity["coins"] == 0.0).all()
    assert math.isnan(sold.summary["hedge_variance_reduction_pct"])
    unhedged = run(btc_2022, "unhedged", {"treasury": "sell_all"})
    assert (sold.result.equity["equity_usd"].diff().var()
            > 10.0 * unhedged.result.equity["equity_usd"].diff().var())
