"""Pure margin, liquidation, funding and basis formulas: the one home of every exchange formula.

No backtrader import; plain floats in, floats out. Conventions used by every function:

* ``side``: +1 long, -1 short. Linear sizes are **coins** (signed ``qty``: + long, - short); inverse
  sizes are **contracts** (signed ``contracts``) of ``face`` USD each.
* Linear money is in the quote currency (**USD**; USDT is treated as USD). Inverse money is in **coin**
  (BTC, ETH). Prices are USD per coin.
* Rates are **fractions** (0.004 = 0.4 %), funding rates are fractions **per funding interval** (8 h on
  Binance and BitMEX), basis is a fraction **per year**.
* "Never liquidated" is returned as ``0.0`` for a long (the price cannot fall below 0) and ``math.inf``
  for a short; an already-liquidatable long (no margin at any price) returns ``math.inf``.

Sources (cited again beside each formula):

* Binance USD-M, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" (2020-08-14),
  https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93 and "Leverage and Margin of
  USDⓈ-M Futures" (maintenance margin = notional x MMR - maintenance amount, tier at the notional).
* Binance COIN-M, "How to Calculate Liquidation Price of COIN-M Futures Contracts" (2021-02-05),
  https://www.binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46 (same tier re-solve rule).
* BitMEX "Liquidation" guide, https://www.bitmex.com/app/liquidation, and BitMEX support's
  bankruptcy/liquidation price formulas (bankrupt = entry / (1 + IM) for a long, 1 / (1 - IM) short;
  maintenance margin a fraction of the entry value).
* CME Group margin: initial (performance bond) and maintenance margin per contract, daily variation
  margin, margin call when equity < maintenance, restore to initial.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

SECONDS_PER_YEAR = 365.0 * 86400.0  # ACT/365 for the dated-future basis
#: The largest plausible |funding rate|, fraction per settlement (per hour of accrual for Deribit's hourly
#: file rows): 5 %. ``data.funding`` refuses a file row beyond it, ``MarginBroker`` a constant
#: ``funding_rate``. Venues cap the rate far below it:
#: * Binance USD-M clamps it to +/- the maintenance margin ratio; the adjusted caps its
#:   GET /fapi/v1/fundingInfo lists (adjustedFundingRateCap; developers.binance.com, USDS-margined futures,
#:   "Get Funding Info") reach +/- 3 % per settlement ("Binance Futures Adjusts Capped Funding Rate for USD-M
#:   OGNUSDT Perpetual Contract", binance.com, 2023-10-01: +/- 3.00 %);
#: * BitMEX caps it at 75 % x (initial margin - maintenance margin) (blog.bitmex.com, "Reduction in Base
#:   Maintenance Margin - XBT and ETH Series - 17 April 2020"; 0.375 % per 8h for XBTUSD at 1 % / 0.5 %).
#: The largest |rate| in the shared files is BitMEX's 0.01125 (2016-06-13 12:00, 1.125 % per 8h, under its
#: early margins); then Deribit's largest hour 0.00066 (8h sum 0.0056), Binance's daily mean 0.0017, the
#: ETHUSDT file's 0.0010. A value beyond the bound is a corrupt file (an exponent's digit changed: 7.6e-05 ->
#: 7.6e-01).
MAX_PLAUSIBLE_RATE = 0.05


@dataclass(frozen=True, slots=True)
class MaintenanceTier:
    """One maintenance-margin bracket.

    floor: notional at which the bracket starts (USD for linear, coin for inverse), inclusive.
    mmr: maintenance margin rate (fraction). max_leverage: highest leverage allowed in the bracket.
    maintenance_amount: Binance "cum" amount (same unit as ``floor``), which makes the maintenance
    margin continuous across brackets: MM = notional x mmr - maintenance_amount.
    """

    floor: float
    mmr: float
    max_leverage: float
    maintenance_amount: float = 0.0


Tiers = Sequence[MaintenanceTier]


def flat_tiers(mmr: float, max_leverage: float = 125.0) -> tuple[MaintenanceTier, ...]:
    """A single bracket with rate ``mmr`` (fraction) for every notional."""
    return (MaintenanceTier(0.0, mmr, max_leverage, 0.0),)


def _floor(tier: MaintenanceTier) -> float:
    return tier.floor


def tier_index(tiers: Tiers, notional: float) -> int:
    """Index of the bracket whose ``floor <= notional`` (brackets sorted by floor, first floor 0); 0 for a
    notional below the first floor or NaN. A binary search: venue tables have up to a dozen brackets and
    the broker asks several times per bar."""
    if not notional >= 0.0:  # negative or NaN: the first bracket, as every floor is >= 0
        return 0
    return max(bisect.bisect_right(tiers, notional, key=_floor) - 1, 0)


def tier_for_notional(tiers: Tiers, notional: float) -> MaintenanceTier:
    return tiers[tier_index(tiers, abs(notional))]


# --- PnL and notional --------------------------------------------------------------------------------

def linear_pnl(qty: float, entry: float, exit_price: float) -> float:
    """Linear PnL in USD: qty (signed coins) x (exit - entry). Binance USD-M "Leverage and Margin"."""
    return qty * (exit_price - entry)


def inverse_pnl(contracts: float, face: float, entry: float, exit_price: float) -> float:
    """Inverse PnL in coin: contracts x face x (1/entry - 1/exit) (contracts signed, + long).

    Binance COIN-M contract specifications; BitMEX XBTUSD "Perpetual Contracts Guide" (PnL in XBT).
    """
    return contracts * face * (1.0 / entry - 1.0 / exit_price)


def linear_notional(qty: float, price: float) -> float:
    """Position notional in USD: |qty| x price."""
    return abs(qty) * price


def inverse_notional_coin(contracts: float, face: float, price: float) -> float:
    """Position notional in coin: |contracts| x face / price."""
    return abs(contracts) * face / price


def initial_margin(notional: float, leverage: float) -> float:
    """Initial margin = notional / leverage (same unit as ``notional``). Binance "Leverage and Margin"."""
    return abs(notional) / leverage


def maintenance_margin(notional: float, tiers: Tiers) -> float:
    """Maintenance margin = notional x MMR - maintenance amount, bracket taken at ``notional``.

    Binance USD-M / COIN-M "Leverage and Margin" (unit of ``notional``: USD linear, coin inverse).
    """
    tier = tier_for_notional(tiers, notional)
    return max(abs(notional) * tier.mmr - tier.maintenance_amount, 0.0)


def margin_ratio(maintenance: float, margin_balance: float) -> float:
    """Binance margin ratio = maintenance margin / margin balance (fraction; >= 1 means liquidation).

    Infinite when the margin balance is zero or negative and a maintenance margin is due; 0 when flat.
    """
    if maintenance <= 0.0:
        return 0.0
    if margin_balance <= 0.0:
        return math.inf
    return maintenance / margin_balance


def linear_margin_balance(qty: float, entry: float, mark: float, wallet: float) -> float:
    """Margin balance in USD: wallet (isolated margin or effective cross wallet) + unrealised PnL."""
    return wallet + linear_pnl(qty, entry, mark)


def inverse_margin_balance(contracts: float, face: float, entry: float, mark: float, wallet: float) -> float:
    """Margin balance in coin: wallet (coin) + unrealised coin PnL."""
    return wallet + inverse_pnl(contracts, face, entry, mark)


def cross_wallet(wallet_balance: float, other_maintenance: float = 0.0,
                 other_unrealized: float = 0.0) -> float:
    """Effective wallet for one position under cross margin: WB - TMM1 + UPNL1 (Binance USD-M/COIN-M).

    wallet_balance excludes unrealised PnL; other_* are the other positions' maintenance margin and
    unrealised PnL in the same margin currency. For isolated margin pass the isolated wallet and zeros.
    """
    return wallet_balance - other_maintenance + other_unrealized


def cross_account_balance(wallet_balance: float, unrealized: Iterable[float] = ()) -> float:
    """Margin balance of a cross account: wallet + the open cross positions' unrealised PnL (margin currency).

    Binance judges a cross account on this balance against the total maintenance margin
    (:func:`cross_account_compliant`); its insurance fund only brings a bankrupt account back to 0
    (:func:`insurance_refill`).
    """
    return wallet_balance + sum(unrealized)


def cross_account_compliant(margin_balance: float, total_maintenance: float) -> bool:
    """True while a cross account's margin balance stays above its total maintenance margin (same unit).

    At or below it the account is liquidated: Binance "Liquidation Protocols", liquidation stops once the
    user is "margin compliant".
    """
    return margin_balance > total_maintenance


def insurance_refill(margin_balance: float) -> float:
    """What the insurance fund pays into a bankrupt account: max(0, -margin balance) (margin currency).

    Binance: "if an account becomes bankrupt ... the Insurance Fund will balance the account back to 0".
    """
    return max(-margin_balance, 0.0)


def clearance_fee(fee: float, wallet: float, pnl: float, other_unrealized: float = 0.0) -> float:
    """Liquidation (clearance) fee actually charged: ``fee`` capped at what the margin has left after the
    fill, max(wallet + pnl + other_unrealized, 0) (margin currency; 0 once the account is bankrupt).

    wallet: isolated margin or cross wallet balance before the fill; pnl: the fill's realised PnL;
    other_unrealized: the other open cross positions' unrealised PnL (0 for isolated margin).
    """
    return min(fee, max(wallet + pnl + other_unrealized, 0.0))


# --- Linear liquidation / bankruptcy ------------------------------------------------------------------

def _linear_liq_for_tier(qty: float, entry: float, wallet: float, tier: MaintenanceTier) -> float:
    # Binance USD-M one-way: LP = (WB - TMM1 + UPNL1 + cumB - Side x Pos x EP) / (Pos x MMR - Side x Pos)
    side = 1.0 if qty > 0 else -1.0
    size = abs(qty)
    return (wallet + tier.maintenance_amount - side * size * entry) / (size * tier.mmr - side * size)


def linear_liquidation_price(qty: float, entry: float, wallet: float, tiers: Tiers) -> float:
    """Liquidation price (USD) of a linear position, Binance USD-M formula with the tier re-solve.

    qty: signed coins; entry: average entry price; wallet: isolated margin, or the cross wallet from
    :func:`cross_wallet` (USD, excluding this position's unrealised PnL). The bracket is the one that
    applies to the notional AT the liquidation price; when it differs from the entry bracket the price is
    re-solved with that bracket (Binance: "If your position (calculated at the liquidation price) and the
    current position (calculated at the opening price) are of different levels ... recalculate").
    Source: https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93
    Returns 0.0 for a long that cannot be liquidated (price would have to be <= 0).
    """
    if qty == 0:
        raise ValueError("qty must be non-zero")
    size = abs(qty)
    if qty > 0 and wallet >= size * entry:
        return 0.0  # margin covers the whole notional: no price >= 0 liquidates this long
    # Margin balance - MM is monotonic in price and MM is continuous across brackets, so exactly one
    # bracket is consistent with its own solution: try the entry bracket first, then the others.
    start = tier_index(tiers, size * entry)
    for i in (start, *[j for j in range(len(tiers)) if j != start]):
        price = _linear_liq_for_tier(qty, entry, wallet, tiers[i])
        if price > 0.0 and tier_index(tiers, size * price) == i:
            return price
    return max(_linear_liq_for_tier(qty, entry, wallet, tiers[start]), 0.0)  # float edge at a floor


# --- Vectorised twins (numpy arrays in, arrays out; brokers.screening) ----------------------------------
# Each applies the scalar function's operations in the same order, so element by element the results are
# equal to the last bit (tests/test_brokers_formulas.py checks it). The broker uses the scalar versions.

def tier_index_array(tiers: Tiers, notional: np.ndarray) -> np.ndarray:
    """:func:`tier_index` of every element (int array): the same search by floor; 0 for negative or NaN."""
    notional = np.asarray(notional, dtype=float)
    floors = np.fromiter((tier.floor for tier in tiers), dtype=float, count=len(tiers))
    index = np.searchsorted(floors, notional, side="right") - 1
    return np.where(notional >= 0.0, np.maximum(index, 0), 0)


def maintenance_margin_array(notional: np.ndarray, tiers: Tiers) -> np.ndarray:
    """:func:`maintenance_margin` of every element (notional: USD linear, coin inverse)."""
    notional = np.abs(np.asarray(notional, dtype=float))
    k = tier_index_array(tiers, notional)
    mmr = np.fromiter((tier.mmr for tier in tiers), dtype=float, count=len(tiers))
    amount = np.fromiter((tier.maintenance_amount for tier in tiers), dtype=float, count=len(tiers))
    return np.maximum(notional * mmr[k] - amount[k], 0.0)


def margin_ratio_array(maintenance: np.ndarray, margin_balance: np.ndarray) -> np.ndarray:
    """:func:`margin_ratio` of every element: 0 where no maintenance is due, inf where the balance is <= 0."""
    maintenance = np.asarray(maintenance, dtype=float)
    margin_balance = np.asarray(margin_balance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # those elements are replaced below
        ratio = maintenance / margin_balance
    return np.where(maintenance <= 0.0, 0.0, np.where(margin_balance <= 0.0, np.inf, ratio))


def linear_liquidation_price_array(qty: float, entry: float, wallet: np.ndarray, tiers: Tiers) -> np.ndarray:
    """:func:`linear_liquidation_price` for an array of wallets (USD), same bracket re-solve: per element the
    entry bracket's solution if consistent, else the first consistent bracket in order, else the fallback."""
    if qty == 0:
        raise ValueError("qty must be non-zero")
    wallet = np.asarray(wallet, dtype=float)
    size = abs(qty)
    start = tier_index(tiers, size * entry)
    result = np.full(wallet.shape, np.nan)
    open_ = np.ones(wallet.shape, dtype=bool)  # elements still without a consistent bracket
    for i in (start, *[j for j in range(len(tiers)) if j != start]):
        price = _linear_liq_for_tier(qty, entry, wallet, tiers[i])
        found = open_ & (price > 0.0) & (tier_index_array(tiers, size * price) == i)
        result[found] = price[found]
        open_ &= ~found
        if not open_.any():  # usually after the entry bracket
            break
    if open_.any():
        fallback = np.maximum(_linear_liq_for_tier(qty, entry, wallet, tiers[start]), 0.0)
        result[open_] = fallback[open_]
    if qty > 0:
        result[wallet >= size * entry] = 0.0  # margin covers the whole notional
    return result


def linear_bankruptcy_price(qty: float, entry: float, wallet: float) -> float:
    """Price (USD) at which the margin balance is zero: entry - side x wallet / |qty|.

    Long returns 0.0 when the wallet covers the whole notional (a 1x long never goes bankrupt).
    """
    if qty == 0:
        raise ValueError("qty must be non-zero")
    side = 1.0 if qty > 0 else -1.0
    return max(entry - side * wallet / abs(qty), 0.0)


# --- Inverse liquidation / bankruptcy -----------------------------------------------------------------

def _inverse_liq_for_tier(contracts: float, face: float, entry: float, wallet: float,
                          tier: MaintenanceTier) -> float:
    # Binance COIN-M one-way: LP = (Size x MMR + Side x Size) / (WB + cumB + Side x Size / EP),
    # Size = |contracts| x face (USD), WB in coin (cross: WB - TMM1 + UPNL1).
    side = 1.0 if contracts > 0 else -1.0
    size_usd = abs(contracts) * face
    denominator = wallet + tier.maintenance_amount + side * size_usd / entry
    if denominator == 0.0:
        return math.inf
    price = size_usd * (tier.mmr + side) / denominator
    # price <= 0: a short whose wallet covers its entry value (never liquidated), or a long with a
    # negative wallet (liquidated at any price); both are reported as math.inf.
    return price if price > 0.0 else math.inf


def inverse_liquidation_price(contracts: float, face: float, entry: float, wallet: float, tiers: Tiers,
                              basis: str = "mark") -> float:
    """Liquidation price (USD) of an inverse (coin-margined) position.

    contracts: signed; face: USD per contract; wallet: coin (isolated margin, or :func:`cross_wallet`).
    basis="mark" (Binance COIN-M): maintenance margin = notional_coin(at price) x MMR - cum, bracket at the
    notional at the liquidation price, re-solved as for USD-M.
    Source: https://www.binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46
    basis="entry" (BitMEX): maintenance margin = MMR x entry value (coin), fixed while the position is
    unchanged; long LP = S / (W + S/EP - MM), short LP = S / (S/EP + MM - W). A short whose margin covers
    its full entry value (1x short, bankruptcy price infinite) is never liquidated, as BitMEX shows no
    liquidation price for it. Source: https://www.bitmex.com/app/liquidation
    Returns math.inf for a short that can never be liquidated.
    """
    if contracts == 0:
        raise ValueError("contracts must be non-zero")
    side = 1.0 if contracts > 0 else -1.0
    size_usd = abs(contracts) * face
    if basis == "entry":
        if side < 0 and wallet >= size_usd / entry:
            return math.inf
        tier = tier_for_notional(tiers, size_usd / entry)
        maint = max(size_usd / entry * tier.mmr - tier.maintenance_amount, 0.0)
        denominator = (wallet + size_usd / entry - maint) if side > 0 else (size_usd / entry + maint - wallet)
        return size_usd / denominator if denominator > 0.0 else math.inf
    if basis != "mark":
        raise ValueError(f"basis={basis!r}; allowed: 'mark', 'entry'")
    if side < 0 and wallet >= size_usd / entry:
        return math.inf  # margin >= entry value: the margin balance stays above MM at any price
    start = tier_index(tiers, size_usd / entry)
    for i in (start, *[j for j in range(len(tiers)) if j != start]):
        price = _inverse_liq_for_tier(contracts, face, entry, wallet, tiers[i])
        if not math.isinf(price) and tier_index(tiers, size_usd / price) == i:
            return price
    return _inverse_liq_for_tier(contracts, face, entry, wallet, tiers[start])


def inverse_bankruptcy_price(contracts: float, face: float, entry: float, wallet: float) -> float:
    """Price (USD) at which the coin margin balance is zero.

    Long: S / (W + S/EP); short: S / (S/EP - W), infinite when W >= S/EP (a fully backed short).
    With W = S/EP x IM this is BitMEX's entry / (1 + IM) (long) and entry / (1 - IM) (short).
    """
    if contracts == 0:
        raise ValueError("contracts must be non-zero")
    size_usd = abs(contracts) * face
    if contracts > 0:
        denominator = wallet + size_usd / entry
    else:
        denominator = size_usd / entry - wallet
    return size_usd / denominator if denominator > 0.0 else math.inf


def is_liquidated(side: int, liquidation_price: float, adverse_extreme: float) -> bool:
    """True when the bar's adverse extreme (low for a long, high for a short) reaches the liquidation
    price."""
    if side > 0:
        return adverse_extreme <= liquidation_price
    return adverse_extreme >= liquidation_price


#: Relative gap between a bar's extreme and a liquidation price that :func:`clear_of_liquidation` demands:
#: far above the rounding error of the price formulas (~1e-15 relative), far below a tick (~1e-6).
CLEAR_GAP = 1e-9


def clear_of_liquidation(side: int, liquidation_price: float, adverse_extreme: float) -> bool:
    """True when the adverse extreme stays clear of the liquidation price by more than :data:`CLEAR_GAP`
    (relative), for a position whose price was computed with no more margin than it has now.

    More margin only moves the liquidation price away from the market: lower for a long, higher for a
    short (in both the linear and the inverse formula, whose bracket re-solve keeps the price monotonic in
    the wallet). So a bar clear of the price computed at a smaller wallet is clear at the current one, and
    the broker need not re-solve; the gap keeps the answer exact against the last bits of rounding. False
    for an infinite or NaN price (the caller then computes the price).
    """
    gap = abs(liquidation_price) * CLEAR_GAP
    if side > 0:
        return adverse_extreme > liquidation_price + gap
    return adverse_extreme < liquidation_price - gap


def is_bankrupt(side: int, bankruptcy_price: float, price: float) -> bool:
    """True when ``price`` (USD) is at or beyond the bankruptcy price: the margin balance is <= 0 there.

    An infinite long bankruptcy price (an inverse long whose margin is below -S/EP) is bankrupt at any price;
    an infinite short one (a fully backed inverse short) never is.
    """
    if side > 0:
        return price <= bankruptcy_price
    return price >= bankruptcy_price


def liquidation_fill_price(side: int, liquidation_price: float, bar_open: float) -> float:
    """Fill of a forced close: the open when the bar opens beyond the liquidation price, else that price."""
    if side > 0:
        return bar_open if bar_open <= liquidation_price else liquidation_price
    return bar_open if bar_open >= liquidation_price else liquidation_price


# --- Funding and dated futures ------------------------------------------------------------------------

def linear_funding_payment(qty: float, mark: float, rate: float) -> float:
    """USD paid by the position holder at one settlement: qty x mark x rate (negative = received).

    Longs pay when rate > 0. Binance USD-M "Introduction to Binance Futures Funding Rates":
    funding amount = position notional x funding rate.
    """
    return qty * mark * rate


def inverse_funding_payment(contracts: float, face: float, mark: float, rate: float) -> float:
    """Coin paid by the holder at one settlement: contracts x face / mark x rate (negative = received).

    Binance COIN-M funding (notional in coin x rate); BitMEX "Perpetual Contracts Guide" (funding =
    position value x funding rate).
    """
    return contracts * face / mark * rate


def funding_times(start: datetime, end: datetime, hours: Sequence[int]) -> list[datetime]:
    """Settlement times t with start <= t < end at the given UTC hours (naive UTC datetimes)."""
    if end <= start:
        return []
    hours_sorted = sorted(hours)
    times: list[datetime] = []
    day = datetime(start.year, start.month, start.day)
    while day < end:
        for hour in hours_sorted:
            t = day + timedelta(hours=hour)
            if start <= t < end:
                times.append(t)
        day += timedelta(days=1)
    return times


def years_between(start: datetime, end: datetime) -> float:
    """Year fraction (ACT/365) from start to end, never negative."""
    return max((end - start).total_seconds(), 0.0) / SECONDS_PER_YEAR


def dated_future_price(spot, annual_basis: float, years_to_expiry):
    """Dated-future price without futures data: spot x (1 + annual_basis x years_to_expiry).

    A simple (non-compounded) carry model; the basis is an assumption the caller must report.
    At expiry the price converges to spot (cash settlement at the index). Scalars or numpy arrays
    (spot USD per coin; annual_basis fraction per year; years_to_expiry ACT/365, negative counts as 0).
    """
    if isinstance(years_to_expiry, (int, float)):
        return spot * (1.0 + annual_basis * max(years_to_expiry, 0.0))
    return spot * (1.0 + annual_basis * np.maximum(years_to_expiry, 0.0))


def next_funding_time(after: datetime, hours: Sequence[int], inclusive: bool = True) -> datetime:
    """First settlement at one of ``hours`` (UTC) at or after ``after`` (strictly after if not inclusive)."""
    if not hours:
        raise ValueError("hours is empty: the venue has no funding settlements")
    return _next_funding_time(after, tuple(hours), inclusive)


@functools.lru_cache(maxsize=1 << 16)  # a run asks for the same settlement times bar after bar
def _next_funding_time(after: datetime, hours: tuple[int, ...], inclusive: bool) -> datetime:
    day = datetime(after.year, after.month, after.day)
    for offset in range(2):
        for hour in sorted(hours):
            t = day + timedelta(days=offset, hours=hour)
            if t > after or (inclusive and t == after):
                return t
    raise AssertionError("unreachable: a settlement exists within two days")  # pragma: no cover
