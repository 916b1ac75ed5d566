"""Pure decision rules of the miner strategies: treasury sales, hedge sizing, margin top-ups.

No backtrader import: the strategies call these each bar with state known at that bar, and the tests check
them against closed forms. Units are in every signature: coins, USD, fractions (0.5 = 50 %), days.
"""

from __future__ import annotations

import math

import numpy as np

from minehedge.errors import check_choice

TREASURY_POLICIES = ("hodl", "sell_all", "sell_fraction", "sell_to_cover_costs")


def coins_to_sell(policy: str, produced_coin: float, held_coin: float, costs_usd: float, price_usd: float,
                  sell_fraction: float = 0.5, fee_rate: float = 0.0) -> float:
    """Coins to sell at this bar under a treasury policy (before any emergency sale for a USD shortfall).

    policy: ``hodl`` (keep every coin; sell only when USD cash cannot pay the bar's costs, see
    :func:`coins_for_shortfall`), ``sell_all`` (sell the bar's production), ``sell_fraction`` (sell
    ``sell_fraction`` of the bar's production), ``sell_to_cover_costs`` (sell just enough of the
    production to pay the bar's USD costs, keep the rest). produced_coin: coins credited this bar (net of
    the pool fee); held_coin: spot coins available (production included); costs_usd: USD due this bar;
    price_usd: execution price (USD per coin); fee_rate:
    spot fee (fraction of proceeds). Never more than ``held_coin``.
    """
    check_choice("treasury", policy, TREASURY_POLICIES)
    if policy == "hodl":
        wanted = 0.0
    elif policy == "sell_all":
        wanted = produced_coin
    elif policy == "sell_fraction":
        wanted = produced_coin * sell_fraction
    else:  # sell_to_cover_costs: the production that pays this bar's costs
        wanted = min(produced_coin, coins_for_shortfall(costs_usd, 0.0, price_usd, fee_rate))
    return max(0.0, min(wanted, held_coin))


def coins_for_shortfall(costs_usd: float, usd_cash: float, price_usd: float, fee_rate: float = 0.0) -> float:
    """Coins to sell so that ``usd_cash`` plus the net proceeds pays ``costs_usd`` (0 when cash suffices).

    net proceeds = coins x price x (1 - fee_rate)  =>  coins = shortfall / (price x (1 - fee_rate)).
    """
    shortfall = costs_usd - usd_cash
    if shortfall <= 0:
        return 0.0
    return shortfall / (price_usd * (1.0 - fee_rate))


def usd_to_buy_coins(coins: float, price_usd: float, fee_rate: float = 0.0) -> float:
    """USD to spend at ``price_usd`` (USD/coin) to receive ``coins`` after the ``fee_rate`` (fraction) taken
    from the amount spent: coins = usd x (1 - fee_rate) / price  =>  usd = coins x price / (1 - fee_rate)."""
    return coins * price_usd / (1.0 - fee_rate)


def static_hedge_coins(hedge_ratio: float, production_coin_per_day: float, horizon_days: float) -> float:
    """Short size (coins, >= 0) of the static hedge: ratio x expected production over the horizon."""
    return max(0.0, hedge_ratio * production_coin_per_day * horizon_days)


def collateral_short_coins(hedge_ratio: float, wallet_coin: float, unrealized_pnl_coin: float) -> float:
    """Short size (coins, >= 0) of the collateral short: ratio x the treasury's coin equity.

    The treasury's coin equity is the wallet's coins (``wallet_coin``, every wallet) plus the inverse short's
    unrealised PnL (``unrealized_pnl_coin``, coin: paid in coins, so it moves with the price like them). An
    inverse short of N USD against W = N / P0 coins is worth W x P + N x (1 - P / P0) = N USD whatever the
    price P: the hedge holds once set, and re-sizing to ratio x (W + PnL) x P keeps it (only new coins add
    to it). Sizing on the wallet alone would cut the short as the price falls (the PnL is left out) and
    grow it as the price rises.
    """
    return max(0.0, hedge_ratio * (wallet_coin + unrealized_pnl_coin))


def realised_volatility(closes: np.ndarray, bars_per_year: float) -> float:
    """Annualised realised volatility (fraction) of log returns of ``closes`` (NaN with < 3 prices).

    sigma = std(log(c_t / c_{t-1}), ddof=1) x sqrt(bars_per_year); crypto trades every day, so daily
    bars use 365 bars per year.
    """
    closes = np.asarray(closes, dtype=float)
    closes = closes[np.isfinite(closes) & (closes > 0)]
    if len(closes) < 3:
        return math.nan
    returns = np.diff(np.log(closes))
    return float(np.std(returns, ddof=1) * math.sqrt(bars_per_year))


def dynamic_hedge_ratio(volatility: float, profit_margin: float, *, min_ratio: float, max_ratio: float,
                        vol_low: float, vol_high: float, margin_low: float, margin_high: float) -> float:
    """Hedge ratio (fraction) of the ``dynamic_hedge`` policy, bounded in [min_ratio, max_ratio].

    Two stresses, each scaled linearly to [0, 1]:
      - volatility stress = (volatility - vol_low) / (vol_high - vol_low): 0 in calm markets, 1 when the
        annualised realised volatility reaches ``vol_high``;
      - margin stress = (margin_high - profit_margin) / (margin_high - margin_low): 0 when price is far
        above the fleet's break-even (profit_margin = price / break-even - 1 >= margin_high), 1 when it is
        within ``margin_low`` of it or below.
    ratio = min_ratio + (max_ratio - min_ratio) x max(volatility stress, margin stress). Unknown inputs (NaN)
    count as no stress, so a missing break-even never forces a hedge.
    """

    def stress(value: float, low: float, high: float, rising: bool) -> float:
        if not math.isfinite(value):
            return 0.0
        fraction = (value - low) / (high - low) if rising else (high - value) / (high - low)
        return min(1.0, max(0.0, fraction))

    level = max(stress(volatility, vol_low, vol_high, True),
                stress(profit_margin, margin_low, margin_high, False))
    return min_ratio + (max_ratio - min_ratio) * level


def median_adverse_move(opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, long: bool) -> float:
    """Median over bars of the move against a position from each bar's open, as a fraction of the open:
    ``(open - low) / open`` for a long, ``(high - open) / open`` for a short (prices in USD per coin; NaN
    bars skipped). A stop closer to its entry than this, on a position entered at a bar's open, is hit within
    that bar on more than half of the bars: it fires on an ordinary bar. NaN with no bar."""
    opens = np.asarray(opens, dtype=float)
    against = opens - np.asarray(lows, dtype=float) if long else np.asarray(highs, dtype=float) - opens
    moves = against / opens
    moves = moves[np.isfinite(moves)]
    return float(np.median(moves)) if moves.size else math.nan


def top_up_amount(maintenance_margin: float, margin_ratio: float, target_ratio: float) -> float:
    """Margin to add (same currency as ``maintenance_margin``) so the margin ratio falls to ``target_ratio``.

    margin ratio = maintenance / margin balance, so balance = maintenance / ratio, and the top-up is
    maintenance / target - maintenance / ratio (0 when the ratio is already at or below the target).
    """
    if maintenance_margin <= 0 or margin_ratio <= target_ratio:
        return 0.0
    current_balance = maintenance_margin / margin_ratio if margin_ratio > 0 else 0.0
    return maintenance_margin / target_ratio - current_balance


def liquidation_distance(price_usd: float, liquidation_price_usd: float, size: float) -> float:
    """How far ``price_usd`` may move against a position of ``size`` (> 0 long, < 0 short) before it reaches
    ``liquidation_price_usd``, as a fraction of ``price_usd``: (price - liquidation) / price for a long,
    (liquidation - price) / price for a short. 0 or less: at or beyond it. ``inf`` when flat or when the
    position has no liquidation price (NaN, infinite, or <= 0: a 1x inverse short backed by its coins)."""
    if not size or not math.isfinite(liquidation_price_usd) or liquidation_price_usd <= 0 or price_usd <= 0:
        return math.inf
    gap = price_usd - liquidation_price_usd if size > 0 else liquidation_price_usd - price_usd
    return gap / price_usd
