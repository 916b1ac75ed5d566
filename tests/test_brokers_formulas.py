"""brokers.formulas against venue-documented examples and closed forms; hypothesis invariants."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers import formulas as f
from brokers.commission import InverseFuturesCommInfo
from brokers.venues import load_venue

T04 = f.flat_tiers(0.004)


# --- documented examples ------------------------------------------------------------------------------

def test_binance_usdm_documented_isolated_long():
    # 1 BTC long at 20,000 with 400 USDT isolated margin, maintenance amount 0.
    assert round(f.linear_liquidation_price(1.0, 20_000.0, 400.0, f.flat_tiers(0.004)), 2) == 19_678.71
    assert round(f.linear_liquidation_price(1.0, 20_000.0, 400.0, f.flat_tiers(0.005)), 2) == 19_698.49


def test_bitmex_closed_forms():
    # BitMEX support: bankrupt = entry / (1 + IM) (long), entry / (1 - IM) (short); liquidation with
    # maintenance on the entry value: entry / (1 + IM - MM) (long), entry / (1 - IM + MM) (short).
    contracts, entry = 10_000.0, 10_000.0
    margin = contracts / entry * 0.10  # 10x in XBT
    assert f.inverse_bankruptcy_price(contracts, 1.0, entry, margin) == pytest.approx(entry / 1.1, rel=1e-12)
    assert f.inverse_bankruptcy_price(-contracts, 1.0, entry, margin) == pytest.approx(entry / 0.9, rel=1e-12)
    for mmr in (0.004, 0.005):
        tiers = f.flat_tiers(mmr, 100)
        long_liq = f.inverse_liquidation_price(contracts, 1.0, entry, margin, tiers, basis="entry")
        short_liq = f.inverse_liquidation_price(-contracts, 1.0, entry, margin, tiers, basis="entry")
        assert long_liq == pytest.approx(entry / (1 + 0.10 - mmr), rel=1e-12)
        assert short_liq == pytest.approx(entry / (1 - 0.10 + mmr), rel=1e-12)
    assert round(f.inverse_liquidation_price(contracts, 1.0, entry, margin, f.flat_tiers(0.004), "entry"), 2) == 9124.09


def test_the_entry_basis_liquidation_price_takes_the_brackets_maintenance_amount_off():
    # BitMEX's entry basis: MM = MMR x entry value - the bracket's maintenance amount (cum), long LP =
    # S / (W + S/EP - MM), short LP = S / (S/EP + MM - W). BitMEX's own brackets carry no amount, so a custom
    # venue shows it: the audit's tiers, 300,000 contracts x 1 USD at 1,000 = 300 XBT in the 200 XBT bracket
    # (MMR 0.9 %, cum 200 x (0.9 % - 0.4 %) = 1): MM = 300 x 0.009 - 1 = 1.7 XBT, W = 30 XBT.
    tiers = (f.MaintenanceTier(0.0, 0.004, 100.0), f.MaintenanceTier(200.0, 0.009, 50.0, 200 * (0.009 - 0.004)))
    assert f.inverse_liquidation_price(300_000, 1.0, 1_000.0, 30.0, tiers, "entry") == pytest.approx(
        300_000 / (30 + 300 - 1.7), rel=1e-12)
    assert f.inverse_liquidation_price(-300_000, 1.0, 1_000.0, 30.0, tiers, "entry") == pytest.approx(
        300_000 / (300 + 1.7 - 30), rel=1e-12)
    # Binance COIN-M's brackets on the entry basis (dataclasses.replace): 2,500 contracts x 100 USD at 10,000 =
    # 25 BTC, in the 20 BTC bracket; its cum from the table's floors and rates by Binance's rule,
    # cum_k = cum_(k-1) + floor_k x (MMR_k - MMR_(k-1)); 10x, so W = 2.5 BTC.
    venue = replace(load_venue("binance_coinm"), maintenance_basis="entry")
    when = datetime(2021, 6, 1)
    table = venue.instrument("BTCUSD").tiers_at(when)
    k = max(i for i, tier in enumerate(table) if tier.floor <= 25.0)
    cum = sum(table[i].floor * (table[i].mmr - table[i - 1].mmr) for i in range(1, k + 1))
    assert k == 2 and cum > 0.0
    maint = 25.0 * table[k].mmr - cum
    ci = InverseFuturesCommInfo(venue=venue, leverage=10, commission=0.0, funding=False)
    assert ci.liquidation_price(2_500, 10_000.0, 2.5, when) == pytest.approx(250_000 / (2.5 + 25.0 - maint),
                                                                             rel=1e-12)


def test_binance_coinm_closed_form():
    # COIN-M: LP = (Size x MMR + Side x Size) / (WB + cumB + Side x Size / EP), Size in USD.
    size_usd, entry, wallet = 1_000.0, 10_000.0, 0.01
    expected_long = size_usd * (0.004 + 1) / (wallet + size_usd / entry)
    expected_short = size_usd * (0.004 - 1) / (wallet - size_usd / entry)
    assert f.inverse_liquidation_price(10, 100.0, entry, wallet, T04) == pytest.approx(expected_long, rel=1e-12)
    assert f.inverse_liquidation_price(-10, 100.0, entry, wallet, T04) == pytest.approx(expected_short, rel=1e-12)
    assert round(expected_long, 2) == 9127.27


def test_linear_short_and_bankruptcy():
    # short: LP = (WB + cum + Pos x EP) / (Pos x (1 + MMR)); bankrupt = EP + WB / Pos
    assert f.linear_liquidation_price(-2.0, 20_000.0, 2_000.0, T04) == pytest.approx(42_000 / (2 * 1.004), rel=1e-12)
    assert f.linear_bankruptcy_price(-2.0, 20_000.0, 2_000.0) == 21_000.0
    assert f.linear_bankruptcy_price(2.0, 20_000.0, 2_000.0) == 19_000.0
    assert f.linear_bankruptcy_price(1.0, 20_000.0, 25_000.0) == 0.0  # over-collateralised long


def test_cme_linear_maintenance_rate():
    # 1 BTC contract (5 BTC) at 10,000, initial 47 %, maintenance 43 %: LP = (qE - W) / (q (1 - MMR))
    tiers = load_venue("cme").instrument("BTC").tiers_at(datetime(2018, 1, 2))
    wallet = 5 * 10_000 * 0.47
    assert f.linear_liquidation_price(5.0, 10_000.0, wallet, tiers) == pytest.approx((50_000 - wallet) / (5 * 0.57))


def test_cross_wallet_enters_formula():
    wallet = f.cross_wallet(1_000.0, other_maintenance=50.0, other_unrealized=-100.0)
    assert wallet == 850.0
    assert f.linear_liquidation_price(1.0, 20_000.0, wallet, T04) == pytest.approx((20_000 - 850) / 0.996)


def test_tier_resolved_at_liquidation_price():
    # 2021-03-18 BTCUSDT table: 13 BTC at 20,000 is 260,000 USDT (bracket 1 %, cum 1,300) but the
    # liquidation notional falls below 250,000, so the 0.5 % / 50 bracket applies (re-solve).
    tiers = load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(datetime(2021, 5, 19))
    qty, entry, wallet = 13.0, 20_000.0, 13_000.0
    naive = (qty * entry - wallet - 1_300) / (qty * 0.99)
    price = f.linear_liquidation_price(qty, entry, wallet, tiers)
    assert price == pytest.approx((qty * entry - wallet - 50) / (qty * 0.995), rel=1e-12)
    assert round(price, 2) == 19_091.61 and abs(price - naive) > 0.5
    assert f.tier_for_notional(tiers, qty * price).mmr == 0.005


def test_margin_pnl_funding_basis():
    assert f.linear_pnl(-2.0, 100.0, 90.0) == 20.0
    assert f.inverse_pnl(100.0, 100.0, 10_000.0, 20_000.0) == pytest.approx(0.5)
    assert f.initial_margin(20_000.0, 20) == 1_000.0
    assert f.maintenance_margin(100_000.0, load_venue("binance_usdm").instrument().tiers_at(datetime(2024, 1, 1))) \
        == pytest.approx(100_000 * 0.005 - 50)
    assert f.margin_ratio(80.0, 100.0) == 0.8 and f.margin_ratio(0.0, 5.0) == 0.0 and f.margin_ratio(1.0, 0.0) == math.inf
    assert f.linear_funding_payment(2.0, 30_000.0, 0.0001) == pytest.approx(6.0)  # long pays
    assert f.linear_funding_payment(-2.0, 30_000.0, 0.0001) == pytest.approx(-6.0)  # short receives
    assert f.inverse_funding_payment(1_000.0, 1.0, 10_000.0, 0.0001) == pytest.approx(1e-5)
    assert f.dated_future_price(10_000.0, 0.10, 0.25) == pytest.approx(10_250.0)
    assert f.dated_future_price(10_000.0, 0.10, 0.0) == 10_000.0
    assert f.years_between(datetime(2021, 1, 1), datetime(2022, 1, 1)) == 1.0


def test_funding_times():
    times = f.funding_times(datetime(2021, 1, 1), datetime(2021, 1, 2), (0, 8, 16))
    assert times == [datetime(2021, 1, 1, h) for h in (0, 8, 16)]
    assert f.funding_times(datetime(2021, 1, 1, 1), datetime(2021, 1, 1, 8), (0, 8, 16)) == []
    assert f.next_funding_time(datetime(2021, 1, 1, 17), (4, 12, 20)) == datetime(2021, 1, 1, 20)
    assert f.next_funding_time(datetime(2021, 1, 1, 20), (4, 12, 20), inclusive=False) == datetime(2021, 1, 2, 4)


def test_a_settlement_instant_is_its_own_next_funding_time_by_default():
    assert f.next_funding_time(datetime(2021, 1, 1, 20), (4, 12, 20)) == datetime(2021, 1, 1, 20)
    assert f.next_funding_time(datetime(2021, 1, 1, 20), (4, 12, 20), inclusive=True) == datetime(2021, 1, 1, 20)


def test_inverse_funding_counts_the_contract_face():
    # Binance COIN-M BTCUSD: 10 contracts of 100 USD at a mark of 20,000 = 0.05 BTC; x 0.01 % = 5e-6 BTC
    assert f.inverse_funding_payment(10, 100.0, 20_000.0, 1e-4) == pytest.approx(10 * 100 / 20_000 * 1e-4, rel=1e-12)
    assert f.inverse_funding_payment(-10, 100.0, 20_000.0, 1e-4) == pytest.approx(-5e-6, rel=1e-12)


def test_a_bar_extreme_exactly_at_the_liquidation_price_liquidates():
    # Binance liquidates when the margin ratio reaches 100 %: margin balance = maintenance exactly at the
    # liquidation price, so a low (long) or high (short) that touches it liquidates.
    assert f.is_liquidated(1, 100.0, 100.0) is True
    assert f.is_liquidated(-1, 100.0, 100.0) is True
    assert f.is_liquidated(1, 100.0, 100.5) is False and f.is_liquidated(-1, 100.0, 99.5) is False
    # the long of test_linear_short_and_bankruptcy's scheme: 1 BTC at 10,000, 1,000 USD, LP = 9,000 / 0.996
    price = f.linear_liquidation_price(1.0, 10_000.0, 1_000.0, T04)
    assert price == pytest.approx(9_000 / 0.996, rel=1e-12)
    assert f.is_liquidated(1, price, price) and f.is_liquidated(-1, price, price)


# --- formula table: every venue, linear/inverse, long/short, isolated/cross ----------------------------

VENUE_CASES = [(name, spec.symbol) for name in ("binance_usdm", "binance_coinm", "bitmex", "cme", "generic")
               for spec in load_venue(name).instruments]


@pytest.mark.parametrize(("venue", "symbol"), VENUE_CASES)
@pytest.mark.parametrize("side", [1, -1])
@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_liquidation_price_solves_margin_equation(venue, symbol, side, mode):
    """At the liquidation price the margin balance equals the maintenance margin (bracket at that price)."""
    profile = load_venue(venue)
    spec = profile.instrument(symbol)
    when = datetime(2021, 6, 1)
    tiers = spec.tiers_at(when)
    entry, leverage = 30_000.0, min(5.0, tiers[0].max_leverage)
    extra = 0.3 if mode == "cross" else 0.0  # cross: wallet larger than the position margin
    if profile.is_inverse:
        contracts = side * 50_000 / spec.face_usd
        wallet = f.inverse_notional_coin(contracts, spec.face_usd, entry) * (1 / leverage + extra)
        price = f.inverse_liquidation_price(contracts, spec.face_usd, entry, wallet, tiers, profile.maintenance_basis)
        basis = entry if profile.maintenance_basis == "entry" else price
        maint = f.maintenance_margin(f.inverse_notional_coin(contracts, spec.face_usd, basis), tiers)
        balance = f.inverse_margin_balance(contracts, spec.face_usd, entry, price, wallet)
    else:
        qty = side * 2.0 * spec.contract_size
        wallet = abs(qty) * entry * (1 / leverage + extra)
        price = f.linear_liquidation_price(qty, entry, wallet, tiers)
        maint = f.maintenance_margin(abs(qty) * price, tiers)
        balance = f.linear_margin_balance(qty, entry, price, wallet)
    assert 0 < price < math.inf
    assert balance == pytest.approx(maint, rel=1e-9, abs=1e-9)
    assert (price < entry) if side > 0 else (price > entry)


# --- hypothesis invariants ------------------------------------------------------------------------------

prices = st.floats(1_000.0, 100_000.0)
leverages = st.floats(1.0, 100.0)
rates = st.floats(0.001, 0.05)


@settings(max_examples=200, deadline=None)
@given(entry=prices, leverage=leverages, mmr=rates, side=st.sampled_from([1, -1]), qty=st.floats(0.01, 50.0))
def test_isolated_loss_at_liquidation_never_exceeds_margin(entry, leverage, mmr, side, qty):
    wallet = qty * entry / leverage
    liq = f.linear_liquidation_price(side * qty, entry, wallet, f.flat_tiers(mmr))
    bankrupt = f.linear_bankruptcy_price(side * qty, entry, wallet)
    if liq == 0.0:  # a long that cannot be liquidated
        assert wallet * (1 + 1e-12) >= qty * entry * (1 - mmr) or bankrupt == 0.0
        return
    loss = -f.linear_pnl(side * qty, entry, liq)
    tol = 1e-9 * entry  # absolute: near 1x both prices are differences of nearly equal numbers
    assert loss <= wallet + tol * qty
    assert (bankrupt <= liq + tol) if side > 0 else (bankrupt >= liq - tol)


def _tier_index_by_scan(tiers, notional):
    """The bracket lookup as the venues describe it: walk up the brackets while the floor is reached."""
    index = 0
    for i, tier in enumerate(tiers):
        if notional >= tier.floor:
            index = i
        else:
            break
    return index


@settings(max_examples=300)
@given(steps=st.lists(st.floats(1e-3, 1e9), min_size=0, max_size=15),
       notional=st.one_of(st.floats(-1e3, 1e11), st.just(math.nan), st.just(0.0)), pick=st.integers(0, 15))
def test_tier_index_binary_search_equals_the_bracket_walk(steps, notional, pick):
    floors = [0.0]
    for step in steps:
        floors.append(floors[-1] + step)
    tiers = tuple(f.MaintenanceTier(floor, 0.004, 125) for floor in floors)
    assert f.tier_index(tiers, notional) == _tier_index_by_scan(tiers, notional)
    exact = floors[pick % len(floors)]  # a notional exactly on a floor belongs to that floor's bracket
    assert f.tier_index(tiers, exact) == _tier_index_by_scan(tiers, exact) == floors.index(exact)


def test_tier_index_on_binance_usdm_brackets():
    tiers = load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(datetime(2022, 6, 1))
    for k, tier in enumerate(tiers):
        assert f.tier_index(tiers, tier.floor) == k
        assert f.tier_index(tiers, math.nextafter(tier.floor, -math.inf)) == max(k - 1, 0)
    assert f.tier_index(tiers, 1e15) == len(tiers) - 1
    assert f.tier_index(tiers, math.nan) == 0


@settings(max_examples=150)
@given(steps=st.lists(st.floats(1e-3, 1e9), min_size=0, max_size=12),
       notionals=st.lists(st.one_of(st.floats(-1e3, 1e11), st.just(math.nan)), min_size=1, max_size=30))
def test_tier_index_and_maintenance_arrays_equal_the_scalars(steps, notionals):
    floors = [0.0]
    for step in steps:
        floors.append(floors[-1] + step)
    tiers = tuple(f.MaintenanceTier(floor, 0.004 * (k + 1), 125 / (k + 1), floor * 0.003 * k)
                  for k, floor in enumerate(floors))
    values = np.array(notionals)
    assert f.tier_index_array(tiers, values).tolist() == [f.tier_index(tiers, x) for x in notionals]
    expected = [f.maintenance_margin(x, tiers) for x in notionals]
    got = f.maintenance_margin_array(values, tiers).tolist()
    assert all(a == b or (a != a and b != b) for a, b in zip(got, expected, strict=True))


@settings(max_examples=200)
@given(qty=st.one_of(st.floats(-500.0, -1e-3), st.floats(1e-3, 500.0)), entry=prices,
       wallets=st.lists(st.one_of(st.floats(-1e6, 1e8), st.just(math.nan)), min_size=1, max_size=20),
       day=st.sampled_from([datetime(2020, 3, 1), datetime(2022, 6, 1)]))
def test_linear_liquidation_price_array_equals_the_scalar(qty, entry, wallets, day):
    tiers = load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(day)  # a dozen brackets with amounts
    got = f.linear_liquidation_price_array(qty, entry, np.array(wallets), tiers).tolist()
    expected = [f.linear_liquidation_price(qty, entry, w, tiers) for w in wallets]
    assert all(a == b or (a != a and b != b) for a, b in zip(got, expected, strict=True))


@given(pairs=st.lists(st.tuples(st.floats(-10.0, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=20))
def test_margin_ratio_array_equals_the_scalar(pairs):
    maint, balance = (np.array(x) for x in zip(*pairs, strict=True))
    assert f.margin_ratio_array(maint, balance).tolist() == [f.margin_ratio(m, b) for m, b in pairs]


@settings(max_examples=200, deadline=None)
@given(entry=prices, contracts=st.integers(1, 10_000_000), mmr=rates, face=st.sampled_from([1.0, 10.0, 100.0]),
       basis=st.sampled_from(["mark", "entry"]))
def test_1x_inverse_short_backed_by_coin_never_liquidated(entry, contracts, mmr, face, basis):
    wallet = contracts * face / entry  # the coin held equals the short's entry value
    tiers = (f.MaintenanceTier(0, mmr, 100), f.MaintenanceTier(100, mmr * 2, 50, 100 * mmr))
    assert f.inverse_liquidation_price(-contracts, face, entry, wallet, tiers, basis) == math.inf
    assert f.inverse_bankruptcy_price(-contracts, face, entry, wallet) == math.inf


@settings(max_examples=200, deadline=None)
@given(entry=prices, leverage=st.floats(1.5, 100.0), side=st.sampled_from([1, -1]), contracts=st.integers(1, 5_000_000))
def test_inverse_liquidation_solves_equation_on_binance_coinm_tiers(entry, leverage, side, contracts):
    tiers = load_venue("binance_coinm").instrument("BTCUSD").tiers_at(datetime(2021, 1, 1))
    size = side * contracts
    wallet = f.inverse_notional_coin(size, 100.0, entry) / leverage
    price = f.inverse_liquidation_price(size, 100.0, entry, wallet, tiers)
    maint = f.maintenance_margin(f.inverse_notional_coin(size, 100.0, price), tiers)
    balance = f.inverse_margin_balance(size, 100.0, entry, price, wallet)
    assert balance == pytest.approx(maint, rel=1e-7, abs=1e-12)


# --- the broker's liquidation shortcut: more margin only moves the price away -----------------------------

def test_clear_of_liquidation_demands_the_gap():
    liq = 40_000.0
    gap = liq * f.CLEAR_GAP  # 4e-05 USD
    assert f.clear_of_liquidation(1, liq, liq + 2 * gap) and not f.clear_of_liquidation(1, liq, liq + gap / 2)
    assert f.clear_of_liquidation(-1, liq, liq - 2 * gap) and not f.clear_of_liquidation(-1, liq, liq - gap / 2)
    assert not f.clear_of_liquidation(1, liq, liq) and not f.clear_of_liquidation(-1, liq, liq)
    assert f.clear_of_liquidation(1, 0.0, 1e-300)  # a long that cannot be liquidated stays clear
    assert not f.clear_of_liquidation(-1, math.inf, 50_000.0)  # no verdict from an infinite price
    assert not f.clear_of_liquidation(1, math.nan, 50_000.0)


def _liquidation_price(kind: str, size: float, entry: float, wallet: float, day: datetime) -> float:
    if kind == "linear":
        return f.linear_liquidation_price(size, entry, wallet,
                                          load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(day))
    tiers = load_venue("binance_coinm").instrument("BTCUSD").tiers_at(day)
    return f.inverse_liquidation_price(size, 100.0, entry, wallet, tiers, "entry" if kind == "entry" else "mark")


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["linear", "mark", "entry"]), side=st.sampled_from([1, -1]), entry=prices,
       leverage=st.floats(1.0, 125.0), size=st.floats(0.001, 2_000.0), more=st.floats(0.0, 2.0),
       extreme=st.floats(0.0, 1.0), day=st.sampled_from([datetime(2020, 3, 12), datetime(2022, 6, 1)]))
def test_clear_at_a_smaller_wallet_means_not_liquidated_at_a_larger_one(kind, side, entry, leverage, size, more,
                                                                         extreme, day):
    """The invariant MarginBroker's shortcut rests on, on Binance's bracket tables (linear BTCUSDT, inverse
    BTCUSD with the mark and the entry basis): if a bar's extreme is clear of the price at wallet W, it is
    not liquidated at any W' > W. ``size``: coins (linear) or contracts / 100 (inverse); the extreme is drawn
    close to the price (within ``extreme`` x 2 % of it) so the brackets' re-solve is exercised."""
    qty = side * (size if kind == "linear" else max(round(size * 100), 1))
    notional = abs(qty) * entry if kind == "linear" else f.inverse_notional_coin(qty, 100.0, entry)
    wallet = notional / leverage
    liq = _liquidation_price(kind, qty, entry, wallet, day)
    if not math.isfinite(liq) or liq <= 0.0:
        return
    bar_extreme = liq * (1.0 + side * (extreme * 0.02))  # on the clear side for side's adverse move
    larger = wallet * (1.0 + more) + 1e-12
    if f.clear_of_liquidation(side, liq, bar_extreme):
        assert not f.is_liquidated(side, _liquidation_price(kind, qty, entry, larger, day), bar_extreme)
    moved = _liquidation_price(kind, qty, entry, larger, day)
    assert (moved <= liq) if side > 0 else (moved >= liq)  # monotonic in the wallet
