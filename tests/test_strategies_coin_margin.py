"""``buy_coin_margin``: a USD treasury buys the coins a coin-margined (inverse) hedge's margin needs."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.broker import MarginBroker
from minehedge import api
from minehedge.errors import ConfigError
from strategies import rules
from strategies.base import MARGIN_CUSHION

BITMEX_5X = {"venue": "bitmex", "leverage": 5.0, "hedge_ratio": 1.0}  # the README's example (step 4)


@given(coins=st.floats(1e-8, 1e4), price=st.floats(1.0, 1e6), fee=st.floats(0.0, 0.1))
def test_the_usd_spent_buys_the_coins_after_the_fee(coins, price, fee):
    usd = rules.usd_to_buy_coins(coins, price, fee)
    assert usd * (1.0 - fee) / price == pytest.approx(coins, rel=1e-12)


def test_buy_coins_books_the_purchase_and_its_fee_and_conserves_cash():
    broker = MarginBroker()
    broker.deposit("USD", 10_000.0)
    coins = broker.buy_coins("BTC", 4_000.0, 20_000.0, 0.001)
    assert coins == (4_000.0 - 4.0) / 20_000.0
    assert broker.free_balance("USD", "spot") == 6_000.0 and broker.free_balance("BTC", "spot") == coins
    rows = [(e.kind, e.currency, e.amount) for e in broker.ledger.entries if e.kind != "deposit"]
    assert rows == [("coin_purchase", "USD", -3_996.0), ("fee", "USD", -4.0), ("coin_purchase", "BTC", coins)]
    assert broker.buy_coins("BTC", 6_000.01, 20_000.0) == 0.0  # more than the spot cash: nothing happens
    assert broker.free_balance("USD", "spot") == 6_000.0


@pytest.fixture(scope="module")
def january_2018(data_dir):
    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2018-01-01", "end": "2018-01-31",
                            "venue": "bitmex", "data_dir": str(data_dir)})


def test_a_usd_treasury_buys_the_margin_coins_and_places_the_whole_inverse_target(january_2018):
    held_only = api.run_policy(january_2018, "static_hedge", BITMEX_5X)
    (note,) = [n for n in held_only.notes if "contracts wanted" in n]
    wanted = int(re.search(r"position -([\d,]+) contracts wanted", note).group(1).replace(",", ""))

    bought = api.run_policy(january_2018, "static_hedge", {**BITMEX_5X, "buy_coin_margin": True})
    assert not [n for n in bought.notes if "contracts wanted" in n]
    first = bought.result.trades[0]
    assert first["contracts"] == -wanted

    book = pd.DataFrame(bought.result.ledger)
    book = book[pd.to_datetime(book["datetime"]) == pd.Timestamp("2018-01-01", tz="UTC")]
    (purchase,) = book.index[(book["kind"] == "coin_purchase") & (book["currency"] == "BTC")]
    spot_before = book.loc[:purchase - 1].query("currency == 'BTC' and wallet == 'spot'")["amount"].sum()
    close = float(january_2018.frame["close"].iloc[0])
    # XBTUSD: 1 USD a contract; margin = contracts / close / leverage coins, the fee = its USD value / close
    # (an inverse fee in USD is contracts x face x rate at any price), both times the 5 % cushion
    need = (wanted / close / BITMEX_5X["leverage"] + first["commission"] / close) * MARGIN_CUSHION
    assert book.loc[purchase, "amount"] == pytest.approx(need - spot_before, rel=1e-12)
    usd = -book[(book["kind"].isin(["coin_purchase", "fee"])) & (book["currency"] == "USD")]["amount"].sum()
    assert usd == pytest.approx(rules.usd_to_buy_coins(need - spot_before, close, 0.001), rel=1e-12)


def test_buy_coin_margin_changes_nothing_on_a_linear_venue(data_dir):
    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2020-03-01", "end": "2020-04-30",
                         "data_dir": str(data_dir)})
    plain = api.run_policy(m, "static_hedge", {"leverage": 3.0})
    flagged = api.run_policy(m, "static_hedge", {"leverage": 3.0, "buy_coin_margin": True})
    assert flagged.result.ledger == plain.result.ledger and flagged.summary == plain.summary


def test_coins_are_bought_at_the_spot_close_of_bars_that_grow_the_short(data_dir):
    m = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2018-01-01", "end": "2018-12-31",
                         "venue": "bitmex", "data_dir": str(data_dir)})
    bought = api.run_policy(m, "static_hedge", {**BITMEX_5X, "buy_coin_margin": True})
    book = pd.DataFrame(bought.result.ledger)
    purchases = book[(book["kind"] == "coin_purchase") & (book["currency"] == "USD")]
    # the liquidation of 2018-01-05 leaves a short to re-grow: a second purchase
    assert len(purchases) >= 2
    growing = {pd.Timestamp(t["datetime"]) - pd.Timedelta(days=1) for t in bought.result.trades
               if t["contracts"] < 0 and t.get("reason") != "liquidation"}  # decided at the close before
    for _, row in purchases.iterrows():
        day = pd.Timestamp(row["datetime"])
        assert day in growing
        qty, price = re.fullmatch(r"([\d.e+-]+) BTC at ([\d.]+)", row["note"]).groups()
        assert float(price) == pytest.approx(float(m.frame["close"].loc[day]), abs=0.005)
        assert -row["amount"] == pytest.approx(float(qty) * float(price), rel=1e-5)  # note rounding
    (note,) = [n for n in bought.notes if "buy_coin_margin" in n]
    count, coins, usd = re.match(r"(\d+) purchase\(s\) .*, ([\d.,]+) BTC for ([\d.,]+) USD in all", note).groups()
    coin_rows = book[(book["kind"] == "coin_purchase") & (book["currency"] == "BTC")]["amount"]
    usd_rows = book[book["currency"] == "USD"]
    spent = -usd_rows[(usd_rows["kind"] == "coin_purchase")
                      | usd_rows["note"].astype(str).str.startswith("spot purchase fee")]["amount"].sum()
    assert int(count) == len(purchases) and float(coins.replace(",", "")) == pytest.approx(
        coin_rows.sum(), rel=1e-5) and float(usd.replace(",", "")) == pytest.approx(spent, abs=0.005)


def test_policies_with_futures_take_buy_coin_margin_and_those_without_refuse_it():
    api.check_config({"policy": "collateral_short", "params": {"buy_coin_margin": True}})
    with pytest.raises(ConfigError, match=r"policy 'unhedged' has no parameter 'buy_coin_margin'"):
        api.check_config({"policy": "unhedged", "params": {"buy_coin_margin": True}})


def test_the_readmes_purchase_is_what_the_first_bar_buys(january_2018):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    text = " ".join(readme.split())
    placed, coins, usd = re.search(r"the same run places all ([\d,]+) contracts, buying ([\d.]+) BTC for "
                                   r"([\d,.]+) USD", text).groups()
    bought = api.run_policy(january_2018, "static_hedge", {**BITMEX_5X, "buy_coin_margin": True})
    assert bought.result.trades[0]["contracts"] == -int(placed.replace(",", ""))
    (note,) = [n for n in bought.notes if "buy_coin_margin" in n]
    assert note.endswith(f"the first at 2018-01-01 00:00 UTC: {coins} BTC for {usd} USD.")
