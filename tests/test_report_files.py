"""What the report files hold, with their units: events.csv has every event field (detail and maintenance
margin included) and the README says per kind what its columns mean; summary.md, equity.csv and fills.csv
carry or document their units."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from brokers.events import EVENT_KINDS, MarginEvent
from minehedge.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
LEVERAGED_LONG_2021 = ["run", "--policy", "leveraged_long", "--start", "2021-01-01", "--end", "2021-06-30"]


def _run(argv: list[str], data_dir: Path, out: Path, capsys) -> str:
    code = main([*argv, "--data-dir", str(data_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


# --------------------------------------------------------------------------------------------- events.csv


def test_events_csv_has_every_field_of_the_event(data_dir, tmp_path, capsys):
    _run(LEVERAGED_LONG_2021, data_dir, tmp_path, capsys)
    events = pd.read_csv(tmp_path / "events.csv")
    fields = [f.name for f in dataclasses.fields(MarginEvent)]
    assert set(events.columns) == {"datetime", *fields} - {"time"}
    # the first eleven columns stay where scripts reading them by position find them
    assert list(events.columns[:11]) == ["datetime", "kind", "instrument", "venue", "side", "size", "price",
                                         "equity_usd", "margin_ratio", "loss_usd", "fee_usd"]
    [row] = events.to_dict("records")
    assert row["kind"] == "liquidation" and row["datetime"] == "2021-05-19T00:00:00Z"
    # the README's quote is in the file, not only in outcome.result.events
    assert "funding and fees had drained the isolated margin to -66,520.33 USD" in row["detail"]
    assert "drained the\n  isolated margin to -66,520.33 USD" in README or \
        "drained\n  the isolated margin to -66,520.33 USD" in README
    # Binance USD-M's documented bracket for a 1M-5M USD notional: MMR 2.5 %, maintenance amount 16,300 USD
    # (brokers/venues/binance_usdm.toml); at the liquidation price the margin ratio is 1
    assert row["maintenance_margin_usd"] == pytest.approx(abs(row["size"]) * row["price"] * 0.025 - 16_300,
                                                          rel=1e-12)
    assert 1e6 <= abs(row["size"]) * row["price"] < 5e6 and row["margin_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert row["loss_usd"] == 0.0  # the fill gained on the entry: the detail says where the margin went


def test_loan_rows_hold_usd_debt_and_ltv_as_the_readme_table_says(data_dir, tmp_path, capsys):
    _run(["run", "--policy", "financed_expansion", "--start", "2021-12-01", "--end", "2022-01-10"], data_dir,
         tmp_path, capsys)
    events = pd.read_csv(tmp_path / "events.csv")
    ledger = pd.read_csv(tmp_path / "ledger.csv")
    call = events[events["kind"] == "loan_call"].iloc[0]
    assert call["instrument"] == "loan:coin_loan" and call["maintenance_margin_usd"] == 0.0
    # the draw of 2021-12-31 and the coins pledged then; a month's interest is paid on 01-01, so the debt at the
    # call is the draw and the 10.75 % a year accrued since (days)
    draw = ledger.loc[ledger["kind"] == "loan_draw", "amount"].sum()
    pledged = ledger.loc[(ledger["wallet"] == "collateral") & (ledger["datetime"] < "2022-01-01"), "amount"].sum()
    days = (pd.Timestamp(call["datetime"]) - pd.Timestamp("2022-01-01", tz="UTC")).days
    debt = draw * (1 + 0.1075 * days / 365)
    assert call["size"] == pytest.approx(debt, rel=1e-12)  # USD of debt, not coins
    ltv = debt / (pledged * call["price"])
    assert call["margin_ratio"] == pytest.approx(ltv, rel=1e-12) and ltv >= 1 / 1.33  # the LTV, at the call LTV
    top_up = debt * 1.43 / call["price"] - pledged  # the coins that bring the LTV back to 1 / 1.43
    assert call["detail"].startswith(f"LTV {ltv:.4f} >= call LTV {1 / 1.33:.4f}; top up {top_up:.6f} BTC")
    # the first bar whose close puts the LTV at the call level: none before it (interest accrues daily)
    closes = pd.read_csv(tmp_path / "equity.csv", index_col="datetime")["price_usd"]
    before = closes[(closes.index >= "2022-01-01") & (closes.index < call["datetime"])]
    for when, close in before.items():
        accrued = draw * (1 + 0.1075 * (pd.Timestamp(when) - pd.Timestamp("2022-01-01", tz="UTC")).days / 365)
        assert accrued / (pledged * close) < 1 / 1.33, when


def _events_table() -> list[list[str]]:
    table = README.split("| kind | `size` | `equity_usd` (USD) | `margin_ratio` (fraction) |", 1)[1]
    rows = table.split("\n\n", 1)[0].strip().splitlines()[1:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_readme_says_per_kind_what_size_equity_and_margin_ratio_hold():
    rows = _events_table()
    named = {kind for row in rows for kind in re.findall(r"`([a-z_]+)`", row[0])}
    assert named == set(EVENT_KINDS) - {"ruin"}  # ruin: raised by no part of the engine (docstring)
    by_kind = {kind: row for row in rows for kind in re.findall(r"`([a-z_]+)`", row[0])}
    assert "USD" in by_kind["loan_call"][1] and "LTV" in by_kind["loan_call"][3]
    assert "isolated" in by_kind["liquidation"][2] and "coins" in by_kind["liquidation"][1]
    assert "account's equity" in by_kind["insolvency"][2]
    doc = MarginEvent.__doc__
    for kind in set(EVENT_KINDS) - {"ruin"}:
        assert f"``{kind}``" in doc, kind


def test_the_readmes_isolated_liquidation_equity_is_the_positions_margin(data_dir):
    from minehedge import api

    outcome = api.run_backtest({"asset": "BTC", "timeframe": "1d", "start": "2019-01-01", "end": "2019-04-30",
                                "data_dir": str(data_dir), "policy": "static_hedge",
                                "params": {"hedge_ratio": 0.5, "leverage": 3.0}})
    first = next(e for e in outcome.result.events if e["kind"] == "liquidation")
    assert str(first["datetime"].date()) == "2019-04-23"
    # Binance's liquidation fee takes what is left of the isolated margin: the event's equity is that margin
    assert round(first["equity_usd"], 2) == round(first["fee_usd"], 2) > 0.0
    assert outcome.result.equity.loc["2019-04-23", "equity_usd"] > 1e6  # the account's
    assert f"reads `equity_usd` {first['equity_usd']:,.2f}" in README  # the README quotes this run's figure


# ------------------------------------------------------------------------------------------------ units


@pytest.fixture(scope="module")
def leveraged_long_report(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("leveraged_long")
    assert main([*LEVERAGED_LONG_2021, "--data-dir", str(data_dir), "--out", str(folder)]) == 0
    return folder


def test_summary_md_names_the_coin_and_says_sharpe_and_sortino_are_annualised(leveraged_long_report):
    table = dict(re.findall(r"^\| (\w+) \| (.+) \|$", (leveraged_long_report / "summary.md").read_text(),
                            flags=re.M))
    for key in ("final_equity_coin", "coins_mined", "max_drawdown_coin"):
        assert re.fullmatch(r"-?[\d,]+\.\d{6} BTC", table[key]), (key, table[key])
    assert table["final_equity_usd"].endswith(" USD") and table["max_drawdown_coin_pct"].endswith(" %")
    assert re.fullmatch(r"-?\d+\.\d{3} \(annualised: mean / standard deviation of daily returns x √365\)",
                        table["sharpe"]), table["sharpe"]
    assert table["sortino"].endswith("(annualised: mean / downside deviation of daily returns x √365)")


def test_a_run_without_a_down_day_reports_sortino_inf_and_says_why(data_dir, tmp_path, capsys):
    code = main(["run", "--policy", "sell_daily", "--start", "2022-01-01", "--end", "2022-03-01", "--data-dir",
                 str(data_dir), "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    # from the run's own records: the opening value, then each day's equity, never falls
    opening = json.loads((tmp_path / "summary.json").read_text())["summary"]["initial_equity_usd"]
    equity = pd.Series([opening, *pd.read_csv(tmp_path / "equity.csv")["equity_usd"]])
    assert len(equity) == 61 and (equity.diff().iloc[1:] >= 0).all()
    note = ("sortino is inf: no daily return was below 0 (the required return), so there is no downside "
            "deviation to divide by; by empyrical's convention the ratio is +inf, and it ranks above every "
            "finite Sortino.")
    assert f"note: {note}\n" in err and re.search(r"^sortino +inf$", out, flags=re.M)
    summary = (tmp_path / "summary.md").read_text()
    assert "| sortino | inf (annualised: mean / downside deviation of daily returns x √365) |" in summary
    assert f"  - {note}" in summary  # under the run notes
    code = main(["compare", "--policies", "sell_daily,unhedged", "--start", "2022-01-01", "--end", "2022-03-01",
                 "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and f"note (sell_daily): {note}\n" in err
    assert re.search(r"^sortino +inf +\d", out, flags=re.M)  # unhedged had down days: a finite ratio


def test_equity_csv_has_the_bars_close_beside_equity(leveraged_long_report, data_dir):
    equity = pd.read_csv(leveraged_long_report / "equity.csv", index_col="datetime")
    assert list(equity.columns)[-1] == "price_usd"
    closes = pd.read_csv(data_dir / "btc" / "btc_usd_daily_bitstamp-coinbase_2011-08-18_2025-09-23.csv")
    closes = closes.set_index(closes.columns[0])["close"]
    assert equity.loc["2021-05-19T00:00:00Z", "price_usd"] == closes.loc["2021-05-19"]
    assert equity["price_usd"].notna().all() and len(equity) == 181
    # equity_coin is equity_usd at that price
    assert (equity["equity_usd"] / equity["price_usd"]).to_numpy() == pytest.approx(equity["equity_coin"], rel=1e-12)


def test_fills_units_and_instrument_names_are_as_the_readme_says(leveraged_long_report):
    fills = pd.read_csv(leveraged_long_report / "fills.csv")
    events = pd.read_csv(leveraged_long_report / "events.csv")
    assert set(fills["instrument"]) == set(events["instrument"]) == {"BTCUSDT"}  # the contract in both
    row = README.split("| `fills.csv` |", 1)[1].split("\n", 1)[0]
    assert "instrument (the contract, as in `events.csv` and `ledger.csv`)" in row
    assert "price_usd (USD per coin)" in row and "commission_usd (USD, also on an inverse contract)" in row
    assert "size (coins)" in row
    # commission in USD: the taker fee on the notional at the fill price (linear, binance_usdm 0.04 %)
    opening = fills.iloc[0]
    assert opening["commission_usd"] == pytest.approx(abs(opening["size"]) * opening["price_usd"] * 0.0004,
                                                      rel=1e-9)


@pytest.mark.parametrize(("venue", "contract", "face_usd", "taker"), [
    ("bitmex", "XBTUSD", 1.0, 0.00075), ("binance_coinm", "BTCUSD", 100.0, 0.0005),
])
def test_an_inverse_contracts_fills_name_it_and_carry_its_coin_fee_in_usd(data_dir, tmp_path, capsys, venue,
                                                                           contract, face_usd, taker):
    _run(["run", "--venue", venue, "--start", "2021-01-01", "--end", "2021-03-31"], data_dir, tmp_path, capsys)
    fills = pd.read_csv(tmp_path / "fills.csv", parse_dates=["datetime"])
    ledger = pd.read_csv(tmp_path / "ledger.csv", parse_dates=["datetime"])
    assert len(fills) >= 2 and set(fills["instrument"]) == {contract}
    fees = ledger[(ledger["kind"] == "fee") & (ledger["wallet"] == "futures")]
    assert set(fees["instrument"]) == {contract} and fees["currency"].eq("BTC").all()
    for fill in fills.itertuples():
        # the venue's taker fee on the contracts' face value, in USD; the ledger books it in coin at the price
        assert fill.commission_usd == pytest.approx(abs(fill.contracts) * face_usd * taker, rel=1e-12)
        [fee] = fees[fees["datetime"] == fill.datetime].itertuples()
        assert -fee.amount == pytest.approx(fill.commission_usd / fill.price_usd, rel=1e-12)
        assert -fee.amount_usd == pytest.approx(fill.commission_usd, rel=1e-12)


# ------------------------------------------------------------------------------------- the price file


LIQUIDATED = {"asset": "BTC", "start": "2022-05-20", "end": "2022-07-15", "policy": "leveraged_long",
              "params": {"entry_date": "2022-06-01"}}
BINANCE_NOTE = ("prices (and liquidations) are from bitstamp+coinbase's BTC 1d file, not binance's; --data-venue "
                "binance uses binance's own (2017-08-17 on)")


def _liquidation_days(outcome) -> list[str]:
    return [str(e["datetime"].date()) for e in outcome.result.events if e["kind"] == "liquidation"]


def test_readme_price_venue_example_prints_its_note_and_liquidates_on_the_days_it_says(data_dir, capsys,
                                                                                      monkeypatch, tmp_path):
    from minehedge import api

    section = README.split("**Prices and liquidations.**", 1)[1]
    command = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ").split()
    shown = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert command[:2] == ["python", "run_backtest.py"]
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(command[2:]) == 0
    assert capsys.readouterr().err.splitlines() == shown == [f"note: {BINANCE_NOTE}"]

    config = {**LIQUIDATED, "data_dir": str(data_dir), "timeframe": "1d"}
    default = api.run_backtest(config)
    assert _liquidation_days(default) == ["2022-06-15"] and default.notes[0] == BINANCE_NOTE
    assert default.result.assumptions["price venue"] == BINANCE_NOTE  # summary.md lists it
    named = api.run_backtest({**config, "data_venue": "binance"})
    four_hourly = api.run_backtest({**config, "timeframe": "4h"})
    assert _liquidation_days(named) == ["2022-06-18"] == [d for d in _liquidation_days(four_hourly)]
    assert BINANCE_NOTE not in named.notes and not [n for n in four_hourly.notes if n.startswith("prices")]
    assert "liquidated on 2022-06-15, on Coinbase's low of 20,071 USD" in " ".join(section.split())
    assert "the same long is liquidated on 2022-06-18" in " ".join(section.split())


def test_data_venue_flag_and_config_key_reach_the_loader(data_dir, tmp_path, capsys):
    argv = ["run", "--policy", "leveraged_long", "--start", "2022-05-20", "--end", "2022-07-15", "--set",
            "entry_date=2022-06-01", "--data-dir", str(data_dir)]
    assert main([*argv, "--data-venue", "binance", "--out", str(tmp_path / "flag")]) == 0
    assert capsys.readouterr().err.splitlines() == [f"report written to {tmp_path / 'flag'}"]
    files = (tmp_path / "flag" / "summary.md").read_text()
    assert "btc_usdt_daily_binance_2017-08-17_2026-01-05.csv" in files and "price venue" not in files
    events = pd.read_csv(tmp_path / "flag" / "events.csv")
    assert events["datetime"].tolist() == ["2022-06-18T00:00:00Z"]
    config = tmp_path / "binance.toml"
    config.write_text('data_venue = "binance"\n')
    assert main([*argv, "--config", str(config), "--json"]) == 0
    assert "prices (and liquidations)" not in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "venues"), [
    (["--timeframe", "4h"], "binance, binance-perp-inferred, bitstamp"),
    (["--timeframe", "1d"], "binance, binance-perp-inferred, bitstamp, bitstamp+coinbase"),
])
def test_an_unknown_data_venue_is_an_error_listing_the_venues_at_the_timeframe(flags, venues, data_dir, capsys):
    code = main(["run", *flags, "--start", "2022-05-20", "--end", "2022-07-15", "--data-venue", "coinbase",
                 "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (f"data_venue='coinbase' (--data-venue): the data folder has no BTC price file from it at "
            f"{flags[1]} (or finer, to resample); venues with one: {venues}.") in err


def test_data_venue_is_refused_by_the_data_actions(capsys):
    assert main(["data", "list", "--data-venue", "binance"]) == 2
    assert "--data-venue is an option of `run`, `sweep` and `compare`, not of `data list`" in capsys.readouterr().err


def test_a_sweep_prints_the_price_note_once_and_policies_without_futures_none(data_dir, tmp_path, capsys):
    argv = ["--start", "2022-05-20", "--end", "2022-06-10", "--data-dir", str(data_dir)]
    assert main(["sweep", *argv, "--policy", "static_hedge", "--grid", "hedge_ratio=0.5,1", "--workers", "1",
                 "--out", str(tmp_path / "sweep")]) == 0
    err = capsys.readouterr().err
    assert err.count("note: prices (and liquidations)") == 1 and f"note: {BINANCE_NOTE}\n" in err
    assert main(["run", *argv, "--policy", "unhedged", "--json"]) == 0
    assert "prices (and liquidations)" not in capsys.readouterr().err
    # bitmex has no price file of its own: the spot file stands in, without a note
    assert main(["run", *argv, "--policy", "static_hedge", "--venue", "bitmex", "--json"]) == 0
    assert "prices (and liquidations)" not in capsys.readouterr().err


def test_the_comparisons_summary_md_names_each_runs_coin():
    from analyzers.comparison import comparison_markdown

    rows = [{"policy": "a", "asset": "BTC", "final_equity_coin": 1.5}, {"policy": "b", "asset": "ETH",
                                                                        "final_equity_coin": 20.25}]
    assert "| final_equity_coin | 1.500000 BTC | 20.250000 ETH |" in comparison_markdown({}, rows)
