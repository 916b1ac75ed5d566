"""Venue profiles: bundled data, dated tier selection, documented amounts, validation errors."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from brokers import formulas as f
from brokers.commission import (
    InverseFuturesCommInfo,
    LinearFuturesCommInfo,
    futures_comminfo,
    opening_liquidation_distance,
)
from brokers.venues import VENUE_DIR, available_venues, check_leverage, generic_venue, load_venue
from minehedge.errors import ConfigError, did_you_mean


def test_bundled_venues_have_sources_and_dates():
    assert available_venues() == ["binance_coinm", "binance_usdm", "bitmex", "cme", "generic"]
    for name in available_venues():
        venue = load_venue(name)
        assert venue.source and isinstance(venue.as_of, date)
        for spec in venue.instruments:
            for table in spec.tier_tables:
                assert table.source and isinstance(table.as_of, date) and table.tiers[0].floor == 0


def test_binance_usdm_issue_table_exact():
    tiers = load_venue("binance_usdm").instrument("BTCUSDT").tiers_at(date(2024, 6, 1))
    rows = [(t.floor, t.mmr, t.max_leverage, t.maintenance_amount) for t in tiers]
    assert rows == [
        (0, 0.004, 125, 0), (50_000, 0.005, 100, 50), (600_000, 0.0065, 75, 950),
        (3_000_000, 0.01, 50, 11_450), (12_000_000, 0.02, 25, 131_450), (70_000_000, 0.025, 20, 481_450),
        (100_000_000, 0.05, 10, 2_981_450), (230_000_000, 0.10, 5, 14_481_450),
        (480_000_000, 0.125, 4, 26_481_450), (600_000_000, 0.15, 3, 41_481_450),
        (800_000_000, 0.25, 2, 121_481_450), (1_200_000_000, 0.50, 1, 421_481_450),
    ]


def test_tier_tables_are_selected_by_date():
    spec = load_venue("binance_usdm").instrument("BTCUSDT")
    assert spec.tier_table_at(date(2020, 3, 12)).effective == date(2019, 9, 10)
    assert spec.tier_table_at(date(2021, 3, 17)).effective == date(2019, 9, 10)
    assert spec.tier_table_at(date(2021, 3, 18)).effective == date(2021, 3, 18)
    assert spec.tiers_at(date(2021, 5, 19))[3].floor == 1_000_000
    bitmex = load_venue("bitmex").instrument("XBTUSD")
    # BitMEX's announcements: 0.50 % -> 0.45 % on 2020-04-17, -> 0.40 % on 2020-05-05; each risk step +0.5 %
    assert [bitmex.tiers_at(date(2020, 4, d))[0].mmr for d in (16, 17)] == [0.005, 0.0045]
    assert [t.mmr for t in bitmex.tiers_at(date(2020, 5, 4))[:3]] == [0.0045, 0.0095, 0.0145]
    assert bitmex.tiers_at(date(2020, 5, 5))[0].mmr == 0.004
    # the risk step grew from 100 to 150 XBT on 2021-08-31, above the unchanged 200 XBT base risk limit
    assert [t.floor for t in bitmex.tiers_at(date(2021, 8, 30))[:4]] == [0, 200, 300, 400]
    assert [t.floor for t in bitmex.tiers_at(date(2021, 8, 31))[:4]] == [0, 200, 350, 500]
    assert [t.mmr for t in bitmex.tiers_at(date(2021, 8, 31))] == [
        t.mmr for t in bitmex.tiers_at(date(2021, 8, 30))]


def test_binance_coinm_documented_maintenance_amounts():
    # COIN-M liquidation FAQ: level 5 amount = 50 BTC x (5 % - 2.5 %) + 0.56 BTC = 1.81 BTC; a 300 BTC
    # position has MMR 12.5 % and maintenance amount 11.81 BTC.
    tiers = load_venue("binance_coinm").instrument("BTCUSD").tiers_at(date(2021, 1, 1))
    assert tiers[3].maintenance_amount == pytest.approx(0.56)
    assert tiers[4].maintenance_amount == pytest.approx(1.81)
    assert f.tier_for_notional(tiers, 300).mmr == 0.125
    assert f.tier_for_notional(tiers, 300).maintenance_amount == pytest.approx(11.81)
    assert load_venue("binance_coinm").instrument("ETHUSD").face_usd == 10.0


def test_venue_rules():
    bitmex, cme = load_venue("bitmex"), load_venue("cme")
    assert bitmex.liquidation_fill == "bankruptcy_price" and bitmex.funding_hours_utc == (4, 12, 20)
    assert load_venue("binance_usdm").funding_hours_utc == (0, 8, 16)
    assert cme.margin_call == "deadline" and cme.funding_hours_utc == ()
    assert [s.contract_size for s in cme.instruments] == [5.0, 0.1]


def test_trading_hours_name_a_calendar_or_are_absent():
    assert load_venue("cme").trading_hours == "cme_globex"
    assert [load_venue(v).trading_hours for v in ("binance_usdm", "binance_coinm", "bitmex", "generic")] == [None] * 4
    assert generic_venue().trading_hours is None
    with pytest.raises(ConfigError) as info:
        load_venue("cme", overrides={"trading_hours": "nyse"})
    assert str(info.value) == ("cme.toml: trading_hours='nyse' is not a known trading calendar; choose one of: "
                               "cme_globex (or leave it out: the market never closes).")


@pytest.mark.parametrize(("written", "shown"), [("5", "5"), ("24.0", "24.0"), ('["cme_globex"]', "['cme_globex']")])
def test_a_trading_hours_value_that_is_not_a_name_is_shown_as_written(tmp_path, written, shown):
    # A venue file with trading_hours = 5: the error names the parameter, the value as the file gives it (5, not
    # '5', which would read as a name) and the calendars allowed.
    text = (VENUE_DIR / "cme.toml").read_text()
    assert text.count('trading_hours = "cme_globex"') == 1
    path = tmp_path / "my_cme.toml"
    path.write_text(text.replace('trading_hours = "cme_globex"', f"trading_hours = {written}"))
    with pytest.raises(ConfigError) as info:
        load_venue(path)
    assert str(info.value) == (f"my_cme.toml: trading_hours={shown} is not a known trading calendar (a calendar's "
                               "name is a string); choose one of: cme_globex (or leave it out: the market never "
                               "closes).")


def test_a_linear_venue_on_the_entry_basis_is_refused_at_construction(tmp_path):
    # engine26 L4: linear margin and liquidation use the mark only; a linear profile asking for the entry basis
    # (BitMEX's linear example: liquidation at 510, not the mark basis' 505.05) is refused, not computed wrongly.
    with pytest.raises(ConfigError) as info:
        generic_venue(contract_type="linear", mmr=0.01, maintenance_basis="entry")
    assert str(info.value) == ("generic_venue(): maintenance_basis='entry' is not allowed for linear contracts; "
                               "allowed: 'mark' (the entry basis is implemented for inverse contracts only).")
    text = (VENUE_DIR / "binance_usdm.toml").read_text()
    assert text.count('maintenance_basis = "mark"') == 1
    path = tmp_path / "my_usdm.toml"
    path.write_text(text.replace('maintenance_basis = "mark"', 'maintenance_basis = "entry"'))
    with pytest.raises(ConfigError, match=r"^my_usdm.toml: maintenance_basis='entry' is not allowed for linear "):
        load_venue(path)
    with pytest.raises(ConfigError, match=r"^binance_usdm.toml: maintenance_basis='entry' is not allowed for linear"):
        load_venue("binance_usdm", overrides={"maintenance_basis": "entry"})
    assert generic_venue(contract_type="inverse", maintenance_basis="entry").maintenance_basis == "entry"


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'bitmex'"):
        load_venue("bitmx")
    with pytest.raises(ConfigError, match="Did you mean 'XBTUSD'"):
        load_venue("bitmex").instrument("XBTUSDT")
    with pytest.raises(ConfigError, match="contract_type='inverso' is not allowed.*Did you mean 'inverse'"):
        load_venue("generic", overrides={"contract_type": "inverso"})
    with pytest.raises(ConfigError, match="not a field"):
        load_venue("generic", overrides={"liquidaton_fee_rate": 0.1})


@pytest.mark.parametrize(("scheme", "venue", "symbol", "message"), [
    (LinearFuturesCommInfo, "binance_usdm", "ETHUSDT",
     "symbol='ETHUSDT' is not listed for venue 'binance_usdm'; choose one of: BTCUSDT. Did you mean 'BTCUSDT'?"),
    (LinearFuturesCommInfo, "cme", "mbt",
     "symbol='mbt' is not listed for venue 'cme'; choose one of: BTC, MBT. Did you mean 'MBT'?"),
    (InverseFuturesCommInfo, "binance_coinm", "ethusd",
     "symbol='ethusd' is not listed for venue 'binance_coinm'; choose one of: BTCUSD, ETHUSD. Did you mean "
     "'ETHUSD'?"),
])
def test_an_unlisted_symbol_names_the_schemes_parameter_and_suggests_whatever_the_case(scheme, venue, symbol,
                                                                                      message):
    with pytest.raises(ConfigError) as raised:
        scheme(venue=venue, symbol=symbol)
    assert str(raised.value) == message


def test_did_you_mean_ignores_case_and_spells_the_suggestion_as_allowed():
    assert did_you_mean("mbt", ["BTC", "MBT"]) == " Did you mean 'MBT'?"
    assert did_you_mean("Binance_USDM", ["binance_usdm", "bitmex"]) == " Did you mean 'binance_usdm'?"
    assert did_you_mean("zzz", ["BTC", "MBT"]) == ""


def test_bad_parameters_fail_before_the_run():
    tiers = load_venue("binance_usdm").instrument().tiers_at(date(2024, 1, 1))
    assert check_leverage(100, tiers, 60_000) == 100
    with pytest.raises(ConfigError, match="leverage=101 exceeds the venue's maximum of 100x"):
        check_leverage(101, tiers, 60_000)


@pytest.mark.parametrize(("venue", "leverage", "notional", "message"), [
    ("binance_usdm", 101, 60_000, "leverage=101 exceeds binance_usdm's maximum of 100x at a notional of 60,000.00 "
     "USD (its bracket from 50,000 USD to 600,000 USD); allowed: 0 < leverage <= 100."),
    ("binance_usdm", 2, 2e9, "leverage=2 exceeds binance_usdm's maximum of 1x at a notional of 2,000,000,000.00 "
     "USD (its bracket from 1,200,000,000 USD up); allowed: 0 < leverage <= 1."),
    ("bitmex", 125, 0.0, "leverage=125 exceeds bitmex's maximum of 100x for positions below 200 BTC of notional "
     "(its first bracket; larger ones allow less); allowed: 0 < leverage <= 100."),
    ("generic", 101, 0.0, "leverage=101 exceeds generic's maximum of 100x at any notional; allowed: 0 < "
     "leverage <= 100."),
])
def test_a_leverage_above_the_bracket_names_the_maximum_and_its_bracket(venue, leverage, notional, message):
    profile = load_venue(venue)
    unit = profile.instrument().asset if profile.is_inverse else "USD"
    tiers = profile.instrument().tiers_at(date(2024, 1, 1))
    with pytest.raises(ConfigError) as caught:
        check_leverage(leverage, tiers, notional, venue=venue, unit=unit)
    assert str(caught.value) == message
    with pytest.raises(ConfigError) as caught:  # a commission scheme takes any leverage > 0, and says so
        LinearFuturesCommInfo(venue="binance_usdm", leverage=126)
    assert str(caught.value) == (
        "leverage=126 exceeds binance_usdm's maximum of 125x for positions below 50,000 USD of notional (its "
        "first bracket; larger ones allow less); allowed: 0 < leverage <= 125.")
    assert LinearFuturesCommInfo(venue="binance_usdm", leverage=0.5).p.leverage == 0.5
    with pytest.raises(ConfigError, match="leverage=0 must be > 0"):
        LinearFuturesCommInfo(venue="binance_usdm", leverage=0)
    with pytest.raises(ConfigError, match="use InverseFuturesCommInfo"):
        LinearFuturesCommInfo(venue="bitmex")
    with pytest.raises(ConfigError, match="margin_mode='crossed'.*Did you mean 'cross'"):
        LinearFuturesCommInfo(venue="generic", margin_mode="crossed")
    with pytest.raises(ConfigError, match="face=-1"):
        InverseFuturesCommInfo(venue="bitmex", face=-1)
    with pytest.raises(ConfigError, match="mmr"):
        generic_venue(mmr=0.0)
    with pytest.raises(ConfigError, match="maintenance amount"):
        load_venue("binance_usdm", overrides={"instruments": [{
            "symbol": "X", "asset": "BTC", "contract_size": 1.0,
            "tier_tables": [{"effective": date(2020, 1, 1), "as_of": date(2020, 1, 1), "source": "t",
                             "tiers": [[0, 0.004, 125, 0], [50_000, 0.005, 100, 49]]}]}]})


@pytest.mark.parametrize(("leverage", "tiers", "minimum", "message"), [
    (125, "bitmex", 1.0, "leverage=125 exceeds bitmex's maximum of 100x for positions below 200 BTC of "
     "notional (its first bracket; larger ones allow less); allowed: 1 <= leverage <= 100."),
    (0.5, "bitmex", 1.0, "leverage=0.5 is below the minimum of 1x; allowed: 1 <= leverage <= 100."),
    (1.5, f.flat_tiers(0.5, 0.8), 1.0, "leverage=1.5 exceeds bitmex's maximum of 0.8x at any notional; "
     "allowed: none (leverage must be at least 1 here)."),
    (0.5, f.flat_tiers(0.5, 0.8), None, None),  # no minimum (a commission scheme): any leverage > 0 fits
])
def test_the_range_a_leverage_error_states_starts_at_the_callers_minimum(leverage, tiers, minimum, message):
    tiers = load_venue("bitmex").instrument().tiers_at(date(2024, 1, 1)) if tiers == "bitmex" else tiers
    if message is None:
        assert check_leverage(leverage, tiers, venue="bitmex", unit="BTC", minimum=minimum) == leverage
        return
    with pytest.raises(ConfigError) as caught:
        check_leverage(leverage, tiers, venue="bitmex", unit="BTC", minimum=minimum)
    assert str(caught.value) == message


def test_generic_and_factory():
    venue = generic_venue(contract_type="inverse", mmr=0.01, max_leverage=20, face_usd=10.0, taker=0.001)
    ci = futures_comminfo(venue, leverage=20)
    assert isinstance(ci, InverseFuturesCommInfo) and ci.p.face == 10.0 and ci.p.commission == 0.001
    assert ci.tiers_at(datetime(2021, 1, 1))[0].mmr == 0.01
    assert isinstance(futures_comminfo("binance_usdm"), LinearFuturesCommInfo)


def test_commission_uses_formulas():
    ci = LinearFuturesCommInfo(venue="binance_usdm", leverage=20)
    assert ci.get_margin(20_000.0) == 1_000.0
    assert ci.getcommission(2, 20_000.0) == pytest.approx(2 * 20_000 * 0.0004)
    assert ci.profitandloss(2, 20_000.0, 21_000.0) == 2_000.0
    cme = LinearFuturesCommInfo(venue="cme", symbol="MBT", leverage=2)
    assert cme.p.mult == 0.1 and cme.profitandloss(10, 30_000.0, 31_000.0) == pytest.approx(1_000.0)
    inv = InverseFuturesCommInfo(venue="binance_coinm", leverage=10)
    assert inv.p.face == 100.0 and inv.getoperationcost(10, 10_000.0) == 0.0
    assert inv.coin_fee(10, 10_000.0) == pytest.approx(10 * 100 / 10_000 * 0.0005)
    assert inv.posted_margin(10, 10_000.0) == pytest.approx(0.01)
    assert inv.profitandloss(10, 10_000.0, 20_000.0) == pytest.approx(0.05 * 20_000)


def test_bitmex_maintenance_margin_is_on_the_entry_value_and_binance_coinm_on_the_mark():
    # BitMEX (https://www.bitmex.com/app/liquidation): MM = MMR x entry value in XBT. 10,000 contracts of
    # 1 USD entered at 10,000 are worth 1 XBT at entry; at a mark of 8,000 the MM stays 0.4 % x 1 XBT.
    bitmex = InverseFuturesCommInfo(venue="bitmex", leverage=5)
    when = datetime(2021, 1, 1)  # table of 2020-05-05: first bracket 0.4 %
    assert bitmex.maintenance_margin(10_000, 8_000.0, when, entry=10_000.0) == 10_000 / 10_000.0 * 0.004
    # Binance COIN-M values the position at the mark: 10 contracts x 100 USD / 8,000 = 0.125 BTC x 0.4 %
    coinm = InverseFuturesCommInfo(venue="binance_coinm", leverage=5)
    assert coinm.maintenance_margin(10, 8_000.0, when, entry=10_000.0) == pytest.approx(
        10 * 100 / 8_000.0 * 0.004, rel=1e-12)


def test_a_linear_scheme_with_a_contract_multiplier_counts_coins_as_units_times_mult():
    # 1,000 units of 0.001 BTC = 1 BTC at 10,000 USD with 1,000 USD of margin, taker 0.04 %.
    ci = LinearFuturesCommInfo(venue="binance_usdm", mult=0.001, leverage=10, commission=0.0004)
    when = datetime(2024, 6, 1)  # first bracket: MMR 0.4 %, maintenance amount 0, below 50,000 USD
    qty, entry, wallet = 1_000 * 0.001, 10_000.0, 1_000.0
    assert ci.getcommission(1_000, entry) == pytest.approx(qty * entry * 0.0004, rel=1e-12)  # 4 USD
    # Binance USD-M long: LP = (q x EP - WB) / (q x (1 - MMR)); bankruptcy = EP - WB / q
    assert ci.liquidation_price(1_000, entry, wallet, when) == pytest.approx(
        (qty * entry - wallet) / (qty * (1 - 0.004)), rel=1e-12)
    assert ci.bankruptcy_price(1_000, entry, wallet) == pytest.approx(entry - wallet / qty, rel=1e-12)
    assert ci.funding_payment(1_000, entry, 1e-4) == pytest.approx(qty * entry * 1e-4, rel=1e-12)  # 1 USD
    assert ci.maintenance_margin(1_000, entry, when) == pytest.approx(qty * entry * 0.004, rel=1e-12)


def test_an_inverse_coin_fee_adds_the_fixed_usd_per_contract_at_the_fill_price():
    # 10 COIN-M contracts of 100 USD at 20,000: (100 x 0.05 % + 0.01 USD) per contract, in coin at 20,000
    ci = InverseFuturesCommInfo(venue="binance_coinm", commission=0.0005, fixed_per_contract=0.01)
    assert ci.coin_fee(10, 20_000.0) == pytest.approx(10 * (100 * 0.0005 + 0.01) / 20_000.0, rel=1e-12)


def test_the_opening_distance_uses_the_lowest_first_bracket_rate_over_the_dated_tables():
    # BitMEX XBTUSD's first-bracket MMR was 0.5 %, 0.45 %, then 0.4 % (from 2020-05-05): the most room is at
    # 0.4 %. BitMEX liquidation on the entry value: long entry / (1 + IM - MM), short entry / (1 - IM + MM),
    # at 10x IM = 0.1; the long opens nearer.
    profile = load_venue("bitmex")
    long_room = 1 - 1 / (1 + 0.1 - 0.004)
    short_room = 1 / (1 - 0.1 + 0.004) - 1
    assert long_room < short_room
    assert opening_liquidation_distance(profile, profile.instrument("XBTUSD"), 10.0) == pytest.approx(
        long_room, rel=1e-12)
