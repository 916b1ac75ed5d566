"""The Summary record's keys, in order, each declared with the side that is better: one declaration for the
``Summary`` analyzer, the docs, the CLI and the sweep's ranking (``minehedge.sweep.LOWER_IS_BETTER``).

Pure Python, so the sweep engine reads it without importing backtrader. A new Summary key must be added here,
with its direction, or the analyzer's record no longer matches :data:`SUMMARY_KEYS`.
"""

from __future__ import annotations

HIGHER = "higher"  # more is better: ranks descending
LOWER = "lower"  # less is better (drawdowns, forced closes, costs, failures, insolvencies): ranks ascending
NEITHER = "neither"  # a label or a setting of the run, not a merit: ranks descending, as any number
DIRECTIONS: tuple[str, ...] = (HIGHER, LOWER, NEITHER)

#: Every key of Summary.get_analysis(), in order, and which side is better (units in the key's suffix).
SUMMARY_BETTER: dict[str, str] = {
    "start": NEITHER, "end": NEITHER, "bars": NEITHER, "asset": NEITHER, "initial_equity_usd": NEITHER,
    "final_equity_usd": HIGHER, "final_equity_coin": HIGHER, "total_return_pct": HIGHER, "cagr_pct": HIGHER,
    "max_drawdown_pct": LOWER, "max_drawdown_usd": LOWER, "max_drawdown_coin_pct": LOWER,
    "max_drawdown_coin": LOWER, "longest_underwater_days": LOWER, "sharpe": HIGHER, "sortino": HIGHER,
    "margin_calls": LOWER, "liquidations": LOWER, "liquidation_loss_usd": LOWER, "liquidation_fee_usd": LOWER,
    "cme_calls_missed": LOWER, "loan_calls": LOWER, "loan_liquidations": LOWER,
    "insurance_shortfall_usd": LOWER, "time_above_warning_days": LOWER, "coins_mined": HIGHER,
    "mining_revenue_usd": HIGHER, "power_cost_usd": LOWER, "hosting_cost_usd": LOWER, "pool_fee_usd": LOWER,
    "net_operating_cash_flow_usd": HIGHER,
    # days x the share of the fleet's hash rate switched off because mining did not pay
    "curtailed_days": LOWER,
    "futures_pnl_usd": HIGHER, "funding_paid_usd": LOWER, "funding_received_usd": HIGHER,
    "fees_paid_usd": LOWER, "hedge_variance_reduction_pct": HIGHER, "ruined": LOWER, "insolvent": LOWER,
    "insolvencies": LOWER,  # insolvency events: bars on which bills went unpaid, each spell counted once
    "insolvent_days": LOWER,  # days from each insolvency to its cure (or to the end of the run)
    "ledger_residual_usd": LOWER,
}
SUMMARY_KEYS: tuple[str, ...] = tuple(SUMMARY_BETTER)
#: Summary keys whose values are not numbers (the run's first and last bar, the coin): they cannot rank runs.
NOT_NUMERIC: frozenset[str] = frozenset({"start", "end", "asset"})
#: Summary keys where smaller is better.
LOWER_IS_BETTER: frozenset[str] = frozenset(key for key, better in SUMMARY_BETTER.items() if better == LOWER)
