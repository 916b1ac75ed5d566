"""MarginBroker used as a backtrader plugin: the checks on its parameters, the commission schemes' and the
venue profiles' fee rates, and the first-bar checks on the cerebro it runs in (replayed data, coins nothing
prices, a scheme under a wrong name or on another coin's data, bars finer than declared), and bar times read as
UTC whatever a feed's ``tz``."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import pytest

from brokers.broker import MarginBroker
from brokers.commission import LinearFuturesCommInfo
from brokers.formulas import MAX_PLAUSIBLE_RATE
from brokers.venues import MAX_FEE_RATE, generic_venue, load_venue
from minehedge.errors import ConfigError
from minehedge.timeframes import span_timeframe
from tests.test_brokers_broker import Script, flat, frame, usdm

MINUTES = bt.TimeFrame.Minutes


def go(feeds, broker, schemes=(), actions=None, replay=None):
    """Run ``Script`` on ``feeds`` ([(frame, name or None, feed kwargs)]) with ``broker`` and ``schemes``
    ([(comminfo, name)]); ``replay``: kwargs of cerebro.replaydata for the first feed instead of adddata."""
    cerebro = bt.Cerebro(stdstats=False)
    for k, (data_frame, name, kwargs) in enumerate(feeds):
        feed = bt.feeds.PandasData(dataname=data_frame, **kwargs)
        if k == 0 and replay is not None:
            cerebro.replaydata(feed, name=name, **replay)
        elif name is None:
            cerebro.adddata(feed)
        else:
            cerebro.adddata(feed, name=name)
    cerebro.broker = broker
    for comminfo, name in schemes:
        cerebro.broker.addcommissioninfo(comminfo, name=name)
    cerebro.addstrategy(Script, actions=actions)
    return cerebro.run()[0], cerebro.broker


def funding_rows(broker):
    """(time, amount, note) of the ledger's funding rows."""
    return [(e.time, e.amount, e.note) for e in broker.ledger.entries if e.kind == "funding"]


HOURLY = {"timeframe": MINUTES, "compression": 60}


# --- F10: parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "words"), [
    ({"warning_level": 80}, "allowed: 0 < warning_level <= 1"),  # a percent: margin calls would be off
    ({"warning_level": 0}, "allowed: 0 < warning_level <= 1"),
    ({"cash": -5_000.0}, "cash=-5000.0 must be >= 0 (USD)"),
    ({"cash": "ten thousand"}, "cash='ten thousand' is not a number"),
    ({"coins": 1.0}, "coins=1.0 is not a mapping"),
    ({"coins": {"btc": 1.0, "BTC": 2.0}}, "names BTC twice"),
    ({"coins": {"USD": 5.0}}, "USD is cash"),
    ({"funding_rate": 1.0}, f"allowed: -{MAX_PLAUSIBLE_RATE:g} <= funding_rate <= {MAX_PLAUSIBLE_RATE:g}"),
    ({"funding_rate": "0.01%"}, "0.01 % is 0.0001"),
    ({"funding_rates": 0.0001}, "funding_rates=0.0001 is not callable"),
    ({"price_datas": ["BTC"]}, "price_datas=['BTC'] is not a mapping"),
])
def test_broker_parameters_out_of_range_or_of_the_wrong_type_are_one_line_config_errors(kwargs, words):
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        MarginBroker(**kwargs)
    assert words in str(caught.value)


def test_broker_parameters_given_as_strings_holding_numbers_are_converted_and_used():
    # A long of 1 BTC at 20,000 (2x, no fees) filled at the second daily bar's open, held over two bars' six
    # settlements at the constant funding_rate '0.0001': 6 x 20,000 x 0.0001 = 12 USD paid, from cash '10000';
    # 'btc' is BTC, its 0.5 coins priced at 20,000.
    broker = MarginBroker(cash="10000", funding_rate="0.0001", warning_level="1", coins={"btc": "0.5"},
                          coin_wallet="spot")
    assert (broker.p.cash, broker.p.funding_rate, broker.warning_level) == (10_000.0, 0.0001, 1.0)
    strat, broker = go([(frame(flat(20_000.0, 3)), "BTC", {})], broker,
                       [(usdm(leverage=2, funding=True), "BTC")], {1: lambda s: s.buy(size=1)})
    assert broker.ledger.total_by_kind("funding") == pytest.approx(-6 * 20_000.0 * 0.0001)
    assert broker.get_coins("BTC") == 0.5
    assert strat.rows[-1]["value"] == pytest.approx(10_000.0 - 12.0 + 0.5 * 20_000.0)
    with pytest.raises(ConfigError, match="allowed: 0 < warning_level <= 1"):
        broker.warning_level = 80  # the setter checks as the parameter does


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"commission": 0.04}, "allowed: 0 <= commission <= 0.01"),  # 0.04 % typed as a fraction: a 4 % fee
    ({"commission": -0.5}, "allowed: 0 <= commission <= 0.01"),
    ({"maker": 5}, "allowed: -0.01 <= maker <= 0.01"),
    ({"maker": -0.02}, "allowed: -0.01 <= maker <= 0.01"),
    ({"commission": "0.04%"}, "0.01 % is 0.0001"),
    ({"expiry": "next friday"}, "expiry='next friday' is not a date"),
    ({"expiry": 20210326}, "expiry=20210326 is not a date"),
])
def test_commission_scheme_parameters_are_checked_at_construction(kwargs, words):
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        LinearFuturesCommInfo(venue="binance_usdm", **kwargs)
    assert words in str(caught.value)


def test_fee_rates_allow_every_venue_profiles_fees_and_a_makers_rebate_but_no_percents():
    # The bound is 1 % per fill: each shipped profile's fees are far inside it (BitMEX: taker 0.075 %, maker
    # -0.025 %, a rebate), so they load; a profile built with a percent typed as a fraction does not.
    for name in ("binance_usdm", "binance_coinm", "bitmex", "cme", "generic"):
        fees = load_venue(name).fees[-1]
        assert 0.0 <= fees.taker <= MAX_FEE_RATE and abs(fees.maker) <= MAX_FEE_RATE
    assert LinearFuturesCommInfo(venue="binance_usdm", maker=-0.00025).p.maker == -0.00025
    with pytest.raises(ConfigError, match=r"generic_venue\(\): fees.taker=0.04 is not allowed"):
        generic_venue(taker=0.04)
    with pytest.raises(ConfigError, match=r"generic_venue\(\): fees.maker=-0.5 is not allowed"):
        generic_venue(maker=-0.5)


def test_commission_leverage_and_rates_given_as_strings_are_used_as_numbers():
    # '0.0004' taker on a 1 BTC fill at 20,000: 8 USD; leverage '10': 2,000 USD of initial margin, so the
    # free cash after the fill is 10,000 - 2,000 - 8.
    ci = LinearFuturesCommInfo(venue="binance_usdm", commission="0.0004", leverage="10", funding=False)
    assert (ci.p.commission, ci.p.leverage) == (0.0004, 10.0)
    assert LinearFuturesCommInfo(venue="cme", fixed_per_contract="10").p.fixed_per_contract == 10.0
    strat, broker = go([(frame(flat(20_000.0, 3)), "BTC", {})], MarginBroker(cash=10_000.0), [(ci, "BTC")],
                       {1: lambda s: s.buy(size=1)})
    assert strat.orders[0][4] == pytest.approx(20_000.0 * 0.0004)
    assert strat.rows[1]["cash"] == pytest.approx(10_000.0 - 20_000.0 / 10 - 8.0)


@pytest.mark.parametrize(("given", "expected"), [
    ("2021-01-04", datetime(2021, 1, 4)),
    (date(2021, 1, 4), datetime(2021, 1, 4)),
    ("2021-01-04T08:00", datetime(2021, 1, 4, 8)),
    ("2021-01-04 09:00+01:00", datetime(2021, 1, 4, 8)),  # converted to UTC
])
def test_expiry_as_an_iso_string_or_a_date_is_converted_to_utc_and_settles_the_contract(given, expected):
    ci = usdm(leverage=5, expiry=given)
    assert ci.p.expiry == expected and type(ci.p.expiry) is datetime
    # daily bars from 2021-01-01; 1 BTC bought on the first bar, cash-settled at the close of the first bar at
    # or after the expiry (2021-01-04's for 00:00, 2021-01-05's for 08:00) at that close
    rows = flat(20_000, 2) + [(20_000, 21_000, 19_900, 20_500)] + flat(21_000, 3)
    strat, broker = go([(frame(rows), "BTC", {})], MarginBroker(cash=10_000.0), [(ci, "BTC")],
                       {1: lambda s: s.buy(size=1)})
    settled = datetime(2021, 1, 4) + timedelta(days=1 if expected.hour else 0)
    assert strat.orders[-1][1] == "expiry" and strat.orders[-1][5] == settled
    assert broker.ledger.total_by_kind("settlement") == pytest.approx(21_000.0 - 20_000.0)


# --- F3: coins nothing prices ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "coins", "shown"), [
    (None, {"BTC": 1.0}, "coins['BTC']=1.0: no data prices BTC (data names: '')"),  # cerebro.adddata(feed)
    ("bitcoin", {"BTC": 1.0}, "no data prices BTC (data names: 'bitcoin')"),
    ("BTC", {"DOGE": 1_000.0}, "coins['DOGE']=1000.0: no data prices DOGE (data names: 'BTC')"),
])
def test_an_opening_coin_nothing_prices_is_a_config_error_at_the_first_bar(name, coins, shown):
    broker = MarginBroker(cash=0.0, coins=coins, coin_wallet="spot")
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        go([(frame(flat(20_000.0, 2)), name, {})], broker)
    assert shown in str(caught.value)
    assert "price_datas=" in str(caught.value) and "set_price(" in str(caught.value)


def test_coins_are_priced_under_any_case_by_a_feed_named_after_them_a_mapping_or_a_fixed_price():
    # 1 BTC ('btc') at 20,000, 1,000 DOGE at 0.25 by a feed named 'DOGEUSDT', 100 SOL at 30 mapped by
    # price_datas from the feed 'solana', 2 ETH at a fixed 1,500 (no feed): every coin counts.
    broker = MarginBroker(cash=0.0, coins={"btc": 1.0, "doge": 1_000.0, "Sol": 100.0, "ETH": 2.0},
                          coin_wallet="spot", price_datas={"sol": "solana"})
    broker.set_price("eth", 1_500.0)
    feeds = [(frame(flat(20_000.0, 2)), "BTC", {}), (frame(flat(0.25, 2)), "DOGEUSDT", {}),
             (frame(flat(30.0, 2)), "solana", {})]
    strat, broker = go(feeds, broker)
    assert strat.rows[-1]["value"] == pytest.approx(20_000.0 + 1_000.0 * 0.25 + 100.0 * 30.0 + 2.0 * 1_500.0)
    assert [broker.get_coins(c) for c in ("BTC", "DOGE", "SOL", "ETH")] == [1.0, 1_000.0, 100.0, 2.0]


def test_coins_credited_during_the_run_that_nothing_prices_are_a_config_error_when_credited():
    # BTC is priced by its feed; 2 SOL credited on the second bar are priced by nothing.
    broker = MarginBroker(cash=1_000.0)
    with pytest.raises(ConfigError, match=r"^mining_credit of 2 SOL: no data prices SOL \(data names: 'BTC'\)"):
        go([(frame(flat(20_000.0, 3)), "BTC", {})], broker, actions={2: lambda s: s.broker.credit_coins("SOL", 2.0)})


# --- F11: a scheme under a wrong name or on another coin's data -----------------------------------------

def test_a_scheme_named_after_no_data_is_a_config_error_not_backtraders_default_scheme():
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        go([(frame(flat(10_000.0, 3)), "BTC", {})], MarginBroker(cash=10_000.0),
           [(usdm(leverage=10), "XBT")], {1: lambda s: s.buy(size=1)})
    assert "name='XBT'): no data is named 'XBT' (data names: 'BTC')" in str(caught.value)


def test_a_scheme_on_a_data_named_after_another_coin_is_a_config_error():
    # binance_usdm's BTCUSDT on the ETH feed: BTC held would have been valued at ETH's 1,000
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        go([(frame(flat(1_000.0, 3)), "ETH", {})], MarginBroker(cash=0.0, coins={"BTC": 1.0}, coin_wallet="spot"),
           [(usdm(leverage=10), "ETH")])
    assert "data 'ETH' carries binance_usdm's BTCUSDT, a BTC contract, but its name says ETH" in str(caught.value)


def test_the_projects_own_names_pass_the_scheme_checks_and_price_btc_at_its_feed():
    # 'BTC' spot feed at 20,000 and 'BTC-DATED' / 'XBTUSD' carrying BTC contracts: 1 BTC held is valued at the
    # spot feed's 20,000 (a data without a futures scheme named after the coin comes first).
    rows = flat(20_000.0, 3)
    dated = [(20_500.0,) * 4] * 3
    broker = MarginBroker(cash=0.0, coins={"BTC": 1.0}, coin_wallet="spot")
    strat, broker = go([(frame(rows), "BTC", {}), (frame(dated), "BTC-DATED", {}), (frame(dated), "XBTUSD", {})],
                       broker, [(usdm(leverage=2, expiry=datetime(2021, 3, 26)), "BTC-DATED"),
                                (LinearFuturesCommInfo(venue="binance_usdm"), "XBTUSD")])
    assert strat.rows[-1]["value"] == 20_000.0
    with pytest.raises(ConfigError, match="no data is named 'BTC-PERP'"):  # and the name check is on
        go([(frame(rows), "BTC", {})], MarginBroker(cash=0.0), [(usdm(), "BTC-PERP")])


# --- F2: replaydata -------------------------------------------------------------------------------------

def _dip_hours():
    """48 hourly bars at 10,000 but for a dip to 8,000 at 2021-01-02 01:00 (the report's 06b script)."""
    rows = flat(10_000.0, 25) + [(10_000.0, 10_000.0, 8_000.0, 8_000.0), (8_000.0, 10_000.0, 8_000.0, 10_000.0)]
    return frame(rows + flat(10_000.0, 21), freq="1h")


def test_replaying_a_data_the_broker_trades_or_prices_is_a_config_error_and_the_finer_bars_work():
    ci = LinearFuturesCommInfo(venue="binance_usdm", leverage=10, commission=0.0)
    replay = {"timeframe": bt.TimeFrame.Days, "compression": 1}
    with pytest.raises(ConfigError, match=r"^data 'BTC' is replayed \(cerebro.replaydata\)[^\n]*resampledata"):
        go([(_dip_hours(), "BTC", HOURLY)], MarginBroker(cash=10_000.0), [(ci, "BTC")], replay=replay)
    with pytest.raises(ConfigError, match="data 'BTC' is replayed"):  # no scheme, but it prices the BTC held
        go([(_dip_hours(), "BTC", HOURLY)], MarginBroker(cash=0.0, coins={"BTC": 1.0}), replay=replay)
    # The hourly bars themselves: bought on the 05:00 bar, filled at the 06:00 open of 10,000 (after the dip,
    # so no liquidation), and only the 08:00 and 16:00 settlements are paid: 1 x 10,000 x 0.0001 each.
    strat, broker = go([(_dip_hours(), "BTC", HOURLY)], MarginBroker(cash=10_000.0),
                       [(LinearFuturesCommInfo(venue="binance_usdm", leverage=10, commission=0.0), "BTC")],
                       {30: lambda s: s.buy(size=1)})
    assert strat.orders[0][5] == datetime(2021, 1, 2, 6) and strat.orders[0][3] == 10_000.0
    assert not broker.events
    assert [(t, a) for t, a, _ in funding_rows(broker)] == [(datetime(2021, 1, 2, 8), -1.0),
                                                           (datetime(2021, 1, 2, 16), -1.0)]
    # a replayed data the broker neither trades nor prices is left alone
    strat, _ = go([(frame(flat(5.0, 48), freq="1h"), "SPX", HOURLY), (frame(flat(20_000.0, 2)), "BTC", {})],
                  MarginBroker(cash=0.0, coins={"BTC": 1.0}), replay=replay)
    assert strat.rows[-1]["value"] == 20_000.0


# --- F8: bars finer than the declared timeframe ---------------------------------------------------------

def test_hourly_bars_left_at_backtraders_default_daily_timeframe_are_a_config_error_at_the_second_bar():
    hourly = frame(flat(10_000.0, 48), freq="1h")
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        go([(hourly, "BTC", {})], MarginBroker(cash=10_000.0), [(usdm(leverage=2, funding=True), "BTC")],
           {1: lambda s: s.buy(size=1)})
    text = str(caught.value)
    assert "data 'BTC': declared timeframe=Days x compression=1 (1 day, 0:00:00)" in text
    assert "its first bars are 1:00:00 apart" in text
    assert "timeframe=bt.TimeFrame.Minutes, compression=60" in text
    # Declared: a long filled at the 01:00 open pays the 08:00 and 16:00 settlements of 2021-01-01 and the
    # three of 2021-01-02, at their hours (10,000 x 0.0001 = 1 USD each), none of them early.
    _, broker = go([(hourly, "BTC", HOURLY)], MarginBroker(cash=10_000.0),
                   [(usdm(leverage=2, funding=True), "BTC")], {1: lambda s: s.buy(size=1)})
    assert [t for t, _, _ in funding_rows(broker)] == [datetime(2021, 1, 1, 8), datetime(2021, 1, 1, 16),
                                                      datetime(2021, 1, 2), datetime(2021, 1, 2, 8),
                                                      datetime(2021, 1, 2, 16)]
    # daily bars with a gap of three days are wider than declared, not finer: not judged
    gap = frame(flat(10_000.0, 4)).iloc[[0, 3]]
    strat, _ = go([(gap, "BTC", {})], MarginBroker(cash=10_000.0), [(usdm(leverage=2), "BTC")])
    assert len(strat.rows) == 2


@pytest.mark.parametrize(("span", "pair"), [
    (timedelta(hours=1), (MINUTES, 60)), (timedelta(hours=4), (MINUTES, 240)),
    (timedelta(days=1), (bt.TimeFrame.Days, 1)), (timedelta(days=7), (bt.TimeFrame.Days, 7)),
    (timedelta(seconds=90), (bt.TimeFrame.Seconds, 90)), (timedelta(0), None),
    (timedelta(microseconds=5), None),
])
def test_span_timeframe_is_the_inverse_of_timeframe_span(span, pair):
    from minehedge.timeframes import timeframe_span

    assert span_timeframe(span) == pair
    if pair is not None:
        assert timeframe_span(*pair) == span


# --- F13: a feed's tz does not move the broker's clock --------------------------------------------------

@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo"])
def test_a_feeds_tz_leaves_funding_on_the_same_utc_settlements(tz):
    # Hourly bars from 2021-01-01 00:00 UTC; a long bought on the first bar fills at the 01:00 UTC open and is
    # closed on the 10th bar (fill at 10:00 UTC): it holds the 08:00 UTC settlement only, 10,000 x 0.0001 = 1.
    actions = {1: lambda s: s.buy(size=1), 10: lambda s: s.close()}
    rows = []
    for kwargs in ({}, {"tz": tz}):
        _, broker = go([(frame(flat(10_000.0, 30), freq="1h"), "BTC", {**HOURLY, **kwargs})],
                       MarginBroker(cash=10_000.0), [(usdm(leverage=2, funding=True), "BTC")], actions)
        rows.append(funding_rows(broker))
    assert rows[0] == rows[1] == [(datetime(2021, 1, 1, 8), -1.0, "settlement 2021-01-01 08:00 rate 0.0001")]


# --- regress26 A/B: the default scheme and signal-only datas ----------------------------------------------

def test_a_default_scheme_is_judged_on_the_datas_that_trade_not_on_a_signal_data_of_another_coin():
    # backtrader's default scheme (no name) is binance_usdm's BTCUSDT; 'ETH' is read as a signal only. 1 BTC
    # bought on bar 1 fills at bar 2's open of 10,000 and is marked at 11,000: value 10,000 + 1 x 1,000.
    btc = frame(flat(10_000.0, 2) + flat(11_000.0, 2))
    feeds = [(btc, "BTC", {}), (frame(flat(1_000.0, 4)), "ETH", {})]
    strat, broker = go(feeds, MarginBroker(cash=10_000.0), [(usdm(leverage=5), None)],
                       {1: lambda s: s.buy(data=s.datas[0], size=1) if s.datas[1].close[0] > 0 else None})
    assert strat.rows[-1]["size"] == 1.0
    assert strat.rows[-1]["value"] == pytest.approx(10_000.0 + 1.0 * (11_000.0 - 10_000.0))
    # an order on 'ETH' under that BTC scheme is refused at the order, in one line
    with pytest.raises(ConfigError, match=r"^data 'ETH' carries binance_usdm's BTCUSDT, a BTC contract, but its "
                                          r"name says ETH[^\n]*$"):
        go(feeds, MarginBroker(cash=10_000.0), [(usdm(leverage=5), None)],
           {2: lambda s: s.buy(data=s.datas[1], size=1)})
    # 'ETH' first: the BTC held is priced by 'BTC' (the scheme's own coin), not by the ETH closes
    strat, _ = go(feeds[::-1], MarginBroker(cash=0.0, coins={"BTC": 1.0}, coin_wallet="spot"),
                  [(usdm(leverage=5), None)])
    assert [row["value"] for row in strat.rows] == [close for close in btc["close"]]


def _replayed_signal(broker, scheme_name="BTC", actions=None):
    """Hourly 'BTC' (flat 10,000, 72 bars) traded with a binance_usdm scheme added under ``scheme_name``, the
    same bars replayed to days as 'BTC1d'."""
    hours = frame(flat(10_000.0, 72), freq="1h")
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=hours, **HOURLY), name="BTC")
    cerebro.replaydata(bt.feeds.PandasData(dataname=hours, **HOURLY), timeframe=bt.TimeFrame.Days, name="BTC1d")
    cerebro.broker = broker
    cerebro.broker.addcommissioninfo(usdm(leverage=5), name=scheme_name)
    cerebro.addstrategy(Script, actions=actions)
    return cerebro.run()[0], cerebro.broker


def test_a_replayed_data_read_only_as_a_signal_runs_and_is_refused_once_it_prices_a_coin_held_or_trades():
    # no coin held: 'BTC1d' prices nothing held and trades nothing; 1 BTC bought hourly at 10,000 (no fee)
    strat, _ = _replayed_signal(MarginBroker(cash=10_000.0), actions={2: lambda s: s.buy(size=1)})
    assert strat.rows[-1]["size"] == 1.0 and strat.rows[-1]["value"] == 10_000.0
    refused = r"^data 'BTC1d' is replayed \(cerebro.replaydata\)[^\n]*$"
    with pytest.raises(ConfigError, match=refused):  # it prices the BTC held from the start
        _replayed_signal(MarginBroker(cash=10_000.0, coins={"BTC": 1.0}))
    with pytest.raises(ConfigError, match=refused):  # ... or first credited on bar 3
        _replayed_signal(MarginBroker(cash=10_000.0), actions={3: lambda s: s.broker.credit_coins("BTC", 1.0)})
    with pytest.raises(ConfigError, match=refused):  # the default scheme, ordered on the replayed data
        _replayed_signal(MarginBroker(cash=10_000.0), None, {2: lambda s: s.buy(data=s.datas[1], size=1)})
    # the default scheme, ordered on the hourly data only: the replayed data is neither judged nor spaced
    strat, _ = _replayed_signal(MarginBroker(cash=10_000.0), None, {2: lambda s: s.buy(size=1)})
    assert strat.rows[-1]["size"] == 1.0 and strat.rows[-1]["value"] == 10_000.0


def test_hourly_bars_declared_as_days_under_the_default_scheme_are_refused_from_their_first_order():
    hourly = frame(flat(10_000.0, 48), freq="1h")
    with pytest.raises(ConfigError, match=r"^data 'BTC': declared timeframe=Days[^\n]*1:00:00 apart"):
        go([(hourly, "BTC", {})], MarginBroker(cash=10_000.0), [(usdm(leverage=2), None)],
           {3: lambda s: s.buy(size=1)})
    strat, _ = go([(hourly, "BTC", {})], MarginBroker(cash=10_000.0), [(usdm(leverage=2), None)])
    assert len(strat.rows) == 48  # never traded: not judged


def test_the_second_data_to_trade_on_a_bar_under_the_default_scheme_is_judged_too():
    # Two hourly feeds under the default scheme, both first traded on bar 3: BTC declared as hours, BTC2 left
    # at backtrader's default Days. BTC2 must be judged as BTC is (a membership test by ==, which backtrader's
    # lines turn into an always-true line operation, skipped it).
    hourly = frame(flat(10_000.0, 48), freq="1h")

    def both(s):
        s.buy(data=s.datas[0], size=1)
        s.buy(data=s.datas[1], size=1)

    with pytest.raises(ConfigError, match=r"^data 'BTC2': declared timeframe=Days[^\n]*1:00:00 apart"):
        go([(hourly, "BTC", HOURLY), (hourly, "BTC2", {})], MarginBroker(cash=100_000.0),
           [(usdm(leverage=2), None)], {3: both})


# --- regress26 C: messages -----------------------------------------------------------------------------------

def test_a_dated_contract_on_a_data_named_after_the_coin_is_named_as_the_reason_nothing_prices_the_coin():
    dated = usdm(leverage=2, expiry=datetime(2021, 3, 26))
    feeds = [(frame(flat(10_000.0, 3)), "BTC", {})]
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as caught:
        go(feeds, MarginBroker(cash=100_000.0, coins={"BTC": 1.0}), [(dated, "BTC")])
    message = str(caught.value)
    assert message.startswith("coins['BTC']=1.0: data 'BTC' carries a dated futures contract (binance_usdm's "
                              "BTCUSDT")
    assert "MarginBroker(price_datas={'BTC': 'BTC'})" in message and "set_price('BTC', usd)" in message
    assert "name a feed after the coin" not in message  # the advice it had, which that data already follows
    # the mapping it points to works: 1 BTC valued at the contract's close
    strat, _ = go(feeds, MarginBroker(cash=100_000.0, coins={"BTC": 1.0}, price_datas={"BTC": "BTC"}),
                  [(usdm(leverage=2, expiry=datetime(2021, 3, 26)), "BTC")])
    assert strat.rows[-1]["value"] == 100_000.0 + 1.0 * 10_000.0


def test_the_unpriced_coin_message_gives_examples_for_that_coin():
    with pytest.raises(ConfigError) as caught:
        go([(frame(flat(20_000.0, 2)), "BTC", {})], MarginBroker(cash=0.0, coins={"ETH": 2.0}, coin_wallet="spot"))
    assert "such as 'ETHUSDT', prices it too" in str(caught.value) and "XBTUSD" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        go([(frame(flat(20_000.0, 2)), None, {})], MarginBroker(cash=0.0, coins={"BTC": 2.0}, coin_wallet="spot"))
    assert "such as 'BTCUSDT' or 'XBTUSD', prices it too" in str(caught.value)


def test_a_negative_taker_fee_is_told_apart_from_a_percent_typed_as_a_fraction():
    with pytest.raises(ConfigError, match=r"^commission=-0.5 is not allowed[^\n]*A taker fee is not negative"
                                          r"[^\n]*maker[^\n]*$") as caught:
        LinearFuturesCommInfo(venue="binance_usdm", commission=-0.5)
    assert "percent" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"0.04 % is 0.0004"):
        LinearFuturesCommInfo(venue="binance_usdm", commission=0.04)
