"""brokers.screening (numpy margin path) against MarginBroker, bar by bar, on real data with real funding.

Each run holds one isolated BTCUSDT position on Binance USD-M from 2019-09-01 to 2022-12-31 (BTC daily
prices, Binance funding, three settlements a day, the dated bracket tables): the broker's wallet, liquidation
price and margin ratio on every bar, and its liquidation bar and fill, must equal the numpy path's, computed
from the same pure formulas but without backtrader. The array twins of the formulas are checked against the
scalar ones in tests/test_brokers_formulas.py.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
import numpy as np
import pytest

from brokers import formulas
from brokers.broker import MarginBroker
from brokers.commission import LinearFuturesCommInfo
from brokers.screening import BarSchedule, held_linear_path, held_linear_paths, settlements_per_bar
from brokers.venues import load_venue
from data.feeds import MinerFeed
from minehedge import api


class HoldFromFirstBar(bt.Strategy):
    """Sell or buy ``size`` on the first bar (filled at the second bar's open) and record the broker's
    figures on every bar after its own step: (maintenance margin, liquidation price, margin ratio, margin
    balance = isolated margin + unrealised PnL)."""

    params = (("size", 1.0),)

    def start(self) -> None:
        self.rows: list[tuple[float, float, float, float]] = []

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=self.p.size) if self.p.size > 0 else self.sell(size=-self.p.size)
        broker, data = self.broker, self.data
        ratio, maint, balance = broker.get_position_margin(data)
        held = bool(broker.getposition(data).size)
        self.rows.append((maint if held else math.nan, broker.get_liquidation_price(data),
                          ratio if held else math.nan, balance))


@pytest.fixture(scope="module")
def market(data_dir):
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2019-09-01", "end": "2022-12-31",
                            "data_dir": str(data_dir)})


@pytest.fixture(scope="module")
def schedule(market):
    venue = load_venue("binance_usdm")
    return BarSchedule.from_frame(market.frame, timedelta(days=1), venue.funding_hours_utc,
                                  venue.instrument("BTCUSDT").tiers_at)


def _broker_run(market, size, leverage):
    cerebro = bt.Cerebro(stdstats=False)
    data = MinerFeed(dataname=market.frame, name="BTCUSDT-PERP")
    cerebro.adddata(data)
    cerebro.broker = MarginBroker(cash=1e7)
    ci = LinearFuturesCommInfo(venue="binance_usdm", symbol="BTCUSDT", leverage=leverage, commission=0.0)
    cerebro.broker.addcommissioninfo(ci, name="BTCUSDT-PERP")
    cerebro.addstrategy(HoldFromFirstBar, size=size)
    strategy = cerebro.run()[0]
    return strategy, cerebro.broker, ci


def test_settlements_per_bar_daily_and_hourly():
    day = datetime(2021, 1, 1)
    opens = [day + timedelta(hours=h) for h in range(0, 48, 4)]
    assert settlements_per_bar(opens, timedelta(hours=4), (0, 8, 16)).tolist() == [1, 0, 1, 0, 1, 0] * 2
    assert settlements_per_bar([day, day + timedelta(days=1)], timedelta(days=1), (0, 8, 16)).tolist() == [3, 3]
    assert settlements_per_bar([day], timedelta(days=1), (4, 12, 20)).tolist() == [3]


@pytest.mark.parametrize(("size", "leverage"), [(-1.0, 1.0), (-1.0, 2.0), (-1.0, 3.0), (-2.5, 5.0), (-1.0, 10.0),
                                                (1.0, 2.0), (1.0, 5.0), (0.5, 20.0)])
def test_margin_path_equals_the_broker_bar_by_bar(market, schedule, size, leverage):
    strategy, broker, ci = _broker_run(market, size, leverage)
    entry = float(market.frame["open"].iloc[1])
    wallet = ci.posted_margin(size, entry)
    path = held_linear_path(schedule, size * ci.p.mult, entry, wallet, start=1)
    rows = np.array(strategy.rows)
    liquidations = [e for e in broker.events if e.kind == "liquidation"]
    if path.liquidated_at is None:
        assert liquidations == []
        last = len(rows) - 1
    else:  # the same bar, at the fill formulas.liquidation_fill_price gives
        assert len(liquidations) == 1
        assert liquidations[0].time == schedule.bar_opens[path.liquidated_at]
        side = 1 if size > 0 else -1
        fill = formulas.liquidation_fill_price(side, path.liquidation_price[path.liquidated_at],
                                               float(market.frame["open"].iloc[path.liquidated_at]))
        assert liquidations[0].price == fill
        last = path.liquidated_at - 1  # the broker's figures after a liquidation are those of no position
    held = slice(1, last + 1)
    # equal to the last bit: the same formulas, applied in the same order
    assert rows[held, 0].tolist() == path.maintenance_margin[held].tolist()
    assert rows[held, 1].tolist() == path.liquidation_price[held].tolist()
    assert rows[held, 2].tolist() == path.margin_ratio[held].tolist()
    assert rows[held, 3].tolist() == (path.wallet + path.unrealized_pnl)[held].tolist()
    # funding moved the margin: the total the ledger booked is the path's
    booked = -sum(e.amount for e in broker.ledger.entries if e.kind == "funding")
    assert booked == pytest.approx(float(np.nansum(path.funding[: (path.liquidated_at or len(rows) - 1) + 1])),
                                   rel=1e-12, abs=1e-9)
    assert path.wallet[1] != wallet  # funding was paid on the first bar already


def test_known_outcomes_2019_to_2022(market, schedule):
    entry = float(market.frame["open"].iloc[1])  # 2019-09-02 open, 9,766.62
    venue = load_venue("binance_usdm")
    assert entry == 9766.62 and list(venue.funding_hours_utc) == [0, 8, 16] and set(schedule.settlements) == {3}

    def died(qty, leverage):
        path = held_linear_path(schedule, qty, entry, abs(qty) * entry / leverage, start=1)
        return path, None if path.liquidated_at is None else schedule.bar_opens[path.liquidated_at]

    # A linear 1x short is not immune (unlike a coin-margined one): it dies when BTC about doubles. Funding
    # received while BTC traded at a premium grew its margin from 9,766.62 to 11,842.91 USD, so it lasted
    # until 2020-12-16, the day BTC went through 21,500 (high 21,569.94).
    path, when = died(-1.0, 1.0)
    k = path.liquidated_at
    assert when == datetime(2020, 12, 16)
    # the margin, summed independently from the data: entry value - three settlements a day of
    # qty x close x rate (the shared funding line; the close as mark), bars 1..k
    frame = market.frame.iloc[1:k + 1]
    received = -(3 * -1.0 * frame["close"] * frame["funding_rate"]).sum()
    assert path.wallet[k] == pytest.approx(entry + received, rel=1e-12)
    assert 11_800.0 < path.wallet[k] < 11_900.0  # the README's figure, 11,842.91
    # closed form in the first bracket (no maintenance amount): short LP = (W + EP) / (1 + MMR)
    mmr = schedule.tier_tables[schedule.table_of_bar[k]][0].mmr
    assert path.liquidation_price[k] == pytest.approx((path.wallet[k] + entry) / (1 + mmr), rel=1e-12)
    assert market.frame["high"].iloc[k] >= path.liquidation_price[k] > market.frame["high"].iloc[k - 1]
    # 2x long: Black Thursday (2020-03-12, low 4,644); 10x short: the next day's 10,790 high
    assert died(1.0, 2.0)[1] == datetime(2020, 3, 12)
    assert died(-1.0, 10.0)[1] == datetime(2019, 9, 3)
    assert died(-1.0, 0.5)[1] == datetime(2021, 1, 2)  # margin of twice the notional: BTC above 31,700


@pytest.mark.parametrize("qty", [-1.0, 0.75])
def test_many_margins_at_once_equal_one_at_a_time(market, schedule, qty):
    entry = float(market.frame["open"].iloc[1])
    wallets = [abs(qty) * entry / leverage for leverage in (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0)]
    paths = held_linear_paths(schedule, qty, entry, wallets, start=1)
    assert paths.wallet.shape == (len(wallets), len(schedule.close))
    for row, wallet in enumerate(wallets):
        one = held_linear_path(schedule, qty, entry, wallet, start=1)
        many = paths.path(row)
        assert many.liquidated_at == one.liquidated_at
        for name in ("wallet", "liquidation_price", "unrealized_pnl", "maintenance_margin", "margin_ratio", "funding"):
            np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)  # NaN == NaN here
    assert len({paths.path(r).liquidated_at for r in range(len(wallets))}) > 2  # the grid spans many outcomes


def test_missing_funding_rates_need_a_fallback(market):
    frame = market.frame.copy()
    frame.loc[frame.index[5], "funding_rate"] = np.nan
    venue = load_venue("binance_usdm")
    with pytest.raises(ValueError, match="fallback_rate"):
        BarSchedule.from_frame(frame, timedelta(days=1), venue.funding_hours_utc, venue.instrument("BTCUSDT").tiers_at)
    schedule = BarSchedule.from_frame(frame, timedelta(days=1), venue.funding_hours_utc,
                                      venue.instrument("BTCUSDT").tiers_at, fallback_rate=0.0001)
    assert schedule.rate[5] == 0.0001
