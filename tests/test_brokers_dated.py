"""Dated contracts without futures data: the expiry calendar, the carry price, settlement and rolls."""

from __future__ import annotations

import pandas as pd
import pytest

from brokers.dated import dated_price_frame, expiries, last_friday
from minehedge import api
from minehedge.errors import ConfigError

UTC = "UTC"


def test_quarterly_and_monthly_calendars_are_last_fridays():
    quarterly = expiries(pd.Timestamp("2021-01-01", tz=UTC), pd.Timestamp("2021-12-31", tz=UTC))
    assert [str(t) for t in quarterly] == ["2021-03-26 08:00:00+00:00", "2021-06-25 08:00:00+00:00",
                                           "2021-09-24 08:00:00+00:00", "2021-12-31 08:00:00+00:00"]
    monthly = expiries(pd.Timestamp("2021-01-01", tz=UTC), pd.Timestamp("2021-02-01", tz=UTC), "monthly")
    assert [str(t) for t in monthly] == ["2021-01-29 16:00:00+00:00", "2021-02-26 16:00:00+00:00"]
    assert last_friday(2020, 2).day == 28 and last_friday(2020, 2).weekday() == 4
    with pytest.raises(ConfigError, match="expiry_cycle='weekly'"):
        expiries(pd.Timestamp("2021-01-01", tz=UTC), pd.Timestamp("2021-02-01", tz=UTC), "weekly")


def test_carry_price_closed_form_and_convergence_to_spot():
    index = pd.date_range("2021-03-20", periods=12, freq="D", tz=UTC)
    spot = pd.DataFrame({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1.0}, index=index)
    dated = dated_price_frame(spot, 0.10)
    # the 2021-03-20 bar closes 2021-03-21 00:00, 5 days 8 hours before the 2021-03-26 08:00 expiry
    assert dated["close"].iloc[0] == pytest.approx(100.0 * (1 + 0.10 * (5 + 8 / 24) / 365), rel=1e-15)
    # the bar that contains the expiry closes at spot; the next bar (closing 03-28) trades June: 89 days 8 h left
    assert dated.loc["2021-03-26":"2021-03-26", "close"].iloc[0] == 100.0
    assert dated.loc["2021-03-27":"2021-03-27", "close"].iloc[0] == pytest.approx(100 * (1 + 0.10 * (89 + 8 / 24) / 365),
                                                                     rel=1e-15)
    assert (dated.loc[:"2021-03-26", "settlement_bar"] == pd.Timestamp("2021-03-26", tz=UTC)).all()
    with pytest.raises(ConfigError, match="annual_basis=9"):
        dated_price_frame(spot, 9)


@pytest.fixture(scope="module")
def btc_2021(data_dir):
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-12-31",
                            "data_dir": str(data_dir), "data_venue": "binance"})


def test_static_hedge_on_dated_contracts_settles_at_spot_and_rolls(btc_2021):
    params = {"fleet": "S19Pro:100@2019-06-01", "contract": "dated", "annual_basis": 0.10, "leverage": 1.0,
              "hedge_ratio": 1.0}
    outcome = api.run_policy(btc_2021, "static_hedge", params)
    trades = outcome.result.trades
    settlements = [t for t in trades if t["reason"] == "expiry"]
    assert [str(t["datetime"])[:10] for t in settlements] == ["2021-03-26", "2021-06-25", "2021-09-24",
                                                              "2021-12-31"]
    for t in settlements:  # cash-settled at spot: the expiry bar's dated close equals the spot close
        day = str(t["datetime"])[:10]
        assert t["price"] == pytest.approx(btc_2021.frame.loc[day:day, "close"].iloc[0], rel=1e-12)
    for t in settlements[:-1]:  # re-hedged on the next bar, in the next contract
        next_day = (pd.Timestamp(t["datetime"]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        assert any(str(u["datetime"])[:10] == next_day and u["reason"] == "" for u in trades)
    assert "0.1 x years to expiry" in outcome.result.assumptions["dated contracts"]
    assert outcome.summary["funding_paid_usd"] == 0 and abs(outcome.summary["ledger_residual_usd"]) < 1e-6


def test_cme_needs_dated_contracts_and_micro_contracts_trade_whole_units(btc_2021):
    with pytest.raises(ConfigError, match="cme.*dated"):
        api.run_policy(btc_2021, "static_hedge", {"venue": "cme"})
    outcome = api.run_policy(btc_2021, "static_hedge", {"fleet": "S19Pro:100@2019-06-01", "venue": "cme",
                                                        "contract": "dated", "symbol": "MBT", "leverage": 2.0,
                                                        "hedge_ratio": 1.0})
    sizes = [t["contracts"] for t in outcome.result.trades]
    assert sizes and all(float(s).is_integer() for s in sizes)  # 0.1 BTC micro contracts, whole units
    assert [t["size"] for t in outcome.result.trades] == [0.1 * s for s in sizes]  # in coins
    with pytest.raises(ConfigError, match=r"symbol='XBT'.*BTC, MBT"):
        api.run_policy(btc_2021, "static_hedge", {"venue": "cme", "contract": "dated", "symbol": "XBT"})
