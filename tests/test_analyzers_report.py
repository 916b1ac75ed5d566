"""Report writer on a small hand-made RunResult: every file exists, parses, has the exact columns; every PNG
decodes with non-trivial content; writes are atomic. Also the comparison and sweep charts."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from analyzers import charts, event_stats, ledger_stats, metrics
from analyzers.files import atomic_write
from analyzers.report import CHART_FILES, EQUITY_COLUMNS, FILL_COLUMNS, RunResult, write_report
from brokers.events import EVENT_KINDS, MarginEvent
from brokers.ledger import Ledger
from minehedge.errors import DataError

DAYS = 30


def hand_made_result() -> RunResult:
    index = pd.date_range("2022-05-01", periods=DAYS, freq="D", tz="UTC")
    price = pd.Series(np.linspace(38_000.0, 20_000.0, DAYS), index=index)
    equity_usd = np.linspace(10_000.0, 4_000.0, DAYS)
    equity = pd.DataFrame({
        "equity_usd": equity_usd, "equity_coin": equity_usd / price.to_numpy(), "cash_usd": equity_usd * 0.5,
        "coins": np.linspace(0.1, 0.2, DAYS), "unrealized_pnl_usd": np.linspace(0.0, -3_000.0, DAYS),
        "margin_ratio": np.linspace(0.1, 1.0, DAYS),
    }, index=index)
    equity["drawdown_pct"] = metrics.drawdown_pct(equity["equity_usd"]).to_numpy()
    naive = [t.to_pydatetime().replace(tzinfo=None) for t in index]
    events = [
        MarginEvent(naive[20], "margin_call", "BTCUSDT-PERP", "binance", "long", 0.5, 25_000.0, 5_000.0,
                    4_100.0, 0.82),
        MarginEvent(naive[29], "liquidation", "BTCUSDT-PERP", "binance", "long", 0.5, 20_000.0, 0.0, 4_000.0,
                    1.0, loss_usd=2_500.0, fee_usd=50.0, detail="tier 1"),
    ]
    ledger = Ledger()
    for t in naive:
        ledger.add(t, "mining_credit", "BTC", "spot", 0.004, "fleet")
        ledger.add(t, "power_cost", "USD", "spot", -70.0, "fleet")
        ledger.add(t, "pool_fee", "BTC", "spot", -0.00008, "fleet")
    ledger.add(naive[29], "liquidation", "USD", "futures", -2_500.0, "BTCUSDT-PERP")
    ledger.add(naive[29], "liquidation_fee", "USD", "futures", -50.0, "BTCUSDT-PERP")
    trades = [{"datetime": index[2], "instrument": "BTCUSDT-PERP", "side": "buy", "size": 0.5, "price": 37_000.0,
               "commission": 7.4, "reason": ""},
              {"datetime": index[29], "instrument": "BTCUSDT-PERP", "side": "sell", "size": -0.5,
               "price": 20_000.0, "commission": 50.0, "reason": "liquidation"}]
    totals = event_stats.event_totals(events)
    summary = {"final_equity_usd": 4_000.0, "max_drawdown_pct": 60.0, "margin_calls": totals["margin_calls"],
               "liquidations": totals["liquidations"], "sharpe": math.nan, "insolvent": False,
               "start": index[0].isoformat()}
    return RunResult(summary=summary, equity=equity, prices=price, events=events, ledger=ledger.to_records(),
                     trades=trades, asset="BTC", warning_level=0.8,
                     assumptions={"data files": ["btc/BTCUSDT_1d.csv"], "venues": ["binance (2022)"],
                                  "funding": "constant 0.01 % per 8 h", "masked bad ticks": []},
                     title="hand-made")


def assert_png_has_content(path: Path) -> None:
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    rgb = image[..., :3]
    assert float(rgb.std()) > 0.05  # not a blank canvas
    colours = np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20  # lines, markers, text and fills in several colours


def test_report_folder_files_exist_parse_and_have_exact_columns(tmp_path):
    result = hand_made_result()
    written = write_report(result, tmp_path / "run")
    folder = tmp_path / "run"
    expected = {"summary.json", "summary.md", "events.csv", "equity.csv", "ledger.csv", "fills.csv", *CHART_FILES}
    assert set(written) == expected
    assert {p.name for p in folder.iterdir()} == expected  # no temporary file left behind

    payload = json.loads((folder / "summary.json").read_text())
    assert payload["summary"]["final_equity_usd"] == 4_000.0
    assert payload["summary"]["sharpe"] is None  # NaN is written as null, never as invalid JSON
    assert payload["assumptions"]["funding"] == "constant 0.01 % per 8 h"

    markdown = (folder / "summary.md").read_text()
    assert "| final_equity_usd | 4,000.00 USD |" in markdown
    assert "| max_drawdown_pct | 60.00 % |" in markdown
    assert "constant 0.01 % per 8 h" in markdown and "btc/BTCUSDT_1d.csv" in markdown

    events = pd.read_csv(folder / "events.csv")
    assert list(events.columns) == ["datetime", "kind", "instrument", "venue", "side", "size", "price",
                                    "equity_usd", "margin_ratio", "loss_usd", "fee_usd", "maintenance_margin_usd",
                                    "detail"]
    assert events["kind"].tolist() == ["margin_call", "liquidation"]
    assert events["loss_usd"].tolist() == [0.0, 2_500.0] and events["fee_usd"].tolist() == [0.0, 50.0]
    assert (events["kind"].isin(event_stats.MARGIN_CALL_KINDS).sum(), events["kind"].isin(
        event_stats.LIQUIDATION_KINDS).sum()) == (payload["summary"]["margin_calls"], payload["summary"]["liquidations"])
    assert pd.to_datetime(events["datetime"], utc=True).iloc[1] == pd.Timestamp("2022-05-30", tz="UTC")

    equity = pd.read_csv(folder / "equity.csv", index_col="datetime", parse_dates=True)
    assert list(equity.columns) == [*EQUITY_COLUMNS, "price_usd"]
    np.testing.assert_array_equal(equity["price_usd"].to_numpy(), result.prices.to_numpy())
    assert len(equity) == DAYS and equity.index[0] == pd.Timestamp("2022-05-01", tz="UTC")
    np.testing.assert_allclose(equity["equity_usd"].to_numpy(), result.equity["equity_usd"].to_numpy(), rtol=1e-15)
    assert equity["drawdown_pct"].iloc[-1] == pytest.approx(60.0, abs=1e-9)

    ledger = pd.read_csv(folder / "ledger.csv")
    assert list(ledger.columns) == list(ledger_stats.LEDGER_COLUMNS)
    assert len(ledger) == 3 * DAYS + 2
    assert ledger.loc[ledger["kind"] == "power_cost", "amount"].sum() == pytest.approx(-70.0 * DAYS)

    fills = pd.read_csv(folder / "fills.csv")
    assert list(fills.columns) == list(FILL_COLUMNS) == ["datetime", "instrument", "side", "size", "contracts",
                                                         "price_usd", "commission_usd", "reason"]
    assert fills[["side", "size", "price_usd", "commission_usd"]].to_dict("records") == [
        {"side": "buy", "size": 0.5, "price_usd": 37_000.0, "commission_usd": 7.4},
        {"side": "sell", "size": -0.5, "price_usd": 20_000.0, "commission_usd": 50.0}]
    assert fills["reason"].fillna("").tolist() == ["", "liquidation"]
    assert [pd.Timestamp(t) for t in fills["datetime"]] == [t["datetime"] for t in result.trades]

    for name in CHART_FILES:
        assert_png_has_content(folder / name)


def test_mining_view_of_the_hand_made_run():
    mining = hand_made_result().mining()
    assert mining["coins_net"].sum() == pytest.approx(DAYS * 0.00392, rel=1e-12)
    assert mining["break_even_price_usd"].iloc[0] == pytest.approx(70.0 / 0.00392, rel=1e-12)
    assert mining["revenue_usd"].iloc[0] == pytest.approx(0.004 * 38_000.0, rel=1e-12)


def test_run_result_rejects_missing_columns_and_naive_index():
    result = hand_made_result()
    with pytest.raises(DataError, match="margin_ratio"):
        RunResult(summary={}, equity=result.equity.drop(columns="margin_ratio"), prices=result.prices)
    with pytest.raises(DataError, match="UTC DatetimeIndex"):
        RunResult(summary={}, equity=result.equity, prices=result.prices.tz_localize(None))


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def interrupted(stream):
        stream.write(b"half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_compare_and_sweep_charts_render(tmp_path):
    index = pd.date_range("2021-01-01", periods=60, freq="D", tz="UTC")
    runs = {"unhedged": pd.Series(np.linspace(100, 50, 60), index=index),
            "hedged": pd.Series(100 + 5 * np.sin(np.arange(60) / 5), index=index)}
    compare = charts.compare_chart(runs, title="hedged vs unhedged")
    assert [ax.get_title() for ax in compare.axes] == ["Equity (USD)", "Drawdown (%)"]
    assert len(compare.axes[0].lines) == 2
    assert_png_has_content(charts.save_figure(compare, tmp_path / "compare.png"))

    sweep = pd.DataFrame([{"leverage": lev, "hedge_ratio": h, "max_drawdown_pct": lev * 10 + h * 5}
                          for lev in (1.0, 2.0, 3.0) for h in (0.0, 0.5, 1.0)])
    heat = charts.sweep_heatmap(sweep, "leverage", "hedge_ratio", "max_drawdown_pct")
    cells = heat.axes[0].images[0].get_array()
    assert cells.shape == (3, 3) and cells[2, 1] == 25.0  # row hedge_ratio=1.0, column leverage=2.0
    assert_png_has_content(charts.save_figure(heat, tmp_path / "sweep.png"))
    with pytest.raises(KeyError, match="sharpe"):
        charts.sweep_heatmap(sweep, "leverage", "hedge_ratio", "sharpe")
    # a Sortino with no down day is inf (metrics.sortino_ratio): its cell says so, an undefined one n/a
    sweep["sortino"] = [math.inf, math.nan, *range(7)]
    heat = charts.sweep_heatmap(sweep, "leverage", "hedge_ratio", "sortino")
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in heat.axes[0].texts}
    assert texts[(0, 0)] == "inf" and texts[(1, 0)] == "n/a" and texts[(2, 0)] == "0"


def test_a_comparison_title_naming_many_runs_wraps_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    index = pd.date_range("2021-01-01", periods=30, freq="D", tz="UTC")
    names = ["unhedged", "sell_daily", "static_hedge", "dynamic_hedge", "collateral_short", "leveraged_long",
             "leveraged_short", "financed_expansion", "financed_hedge"]
    runs = {name: pd.Series(np.linspace(100, 100 + k, 30), index=index) for k, name in enumerate(names)}
    title = f"Equity and drawdown in USD: {', '.join(names)}"
    fig = charts.compare_chart(runs, title=title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    shown = fig._suptitle
    assert shown.get_text().replace("\n", " ") == title  # every name, only the line breaks added
    box, page = shown.get_window_extent(canvas.get_renderer()), fig.bbox
    assert shown.get_text().count("\n") >= 1
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1
    # a two-column sweep heatmap's title (the sweep names its configurations) wraps inside its narrow figure
    sweep = pd.DataFrame([{"uptime": u, "power_usd_per_kwh": p, "sortino": u * p}
                          for u in (0.9, 1.0) for p in (0.04, 0.05)])
    long = "sortino by power_usd_per_kwh and uptime (4 configurations)"
    heat = charts.sweep_heatmap(sweep, "uptime", "power_usd_per_kwh", "sortino", title=long)
    canvas = FigureCanvasAgg(heat)
    canvas.draw()
    shown = heat.axes[0].title
    box, page = shown.get_window_extent(canvas.get_renderer()), heat.bbox
    assert shown.get_text().replace("\n", " ") == long and "\n" in shown.get_text()
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1


def _cell_colours(fig, rows, columns):
    """The colour (RGB 0-1) most pixels of each heatmap cell have in the rendered figure (the annotation and
    any hatch lines are a minority of a cell's pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    height = pixels.shape[0]
    ax = fig.axes[0]
    colours = {}
    for row in range(rows):
        for col in range(columns):
            (x0, y0), (x1, y1) = ax.transData.transform([(col - 0.35, row - 0.35), (col + 0.35, row + 0.35)])
            patch = pixels[int(height - y1):int(height - y0), int(x0):int(x1)].reshape(-1, 3)
            values, counts = np.unique(patch, axis=0, return_counts=True)
            colours[(row, col)] = values[counts.argmax()] / 255
    return colours


def test_sweep_heatmap_keeps_every_swept_value_and_draws_missing_and_infinite_cells():
    from matplotlib import colormaps, colors

    sweep = pd.DataFrame([{"leverage": lev, "hedge_ratio": h, "sortino": lev * 10 + h * 5}
                          for lev in (1.0, 2.0, 3.0) for h in (0.0, 0.5, 1.0)])
    sweep.loc[sweep["leverage"] == 3.0, "sortino"] = math.nan  # a column of n/a only
    sweep.loc[(sweep["leverage"] == 1.0) & (sweep["hedge_ratio"] == 0.0), "sortino"] = math.inf
    sweep.loc[(sweep["leverage"] == 2.0) & (sweep["hedge_ratio"] == 0.5), "sortino"] = -math.inf
    heat = charts.sweep_heatmap(sweep, "leverage", "hedge_ratio", "sortino")
    ax = heat.axes[0]
    columns, rows = sorted(sweep["leverage"].unique()), sorted(sweep["hedge_ratio"].unique())
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in columns]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{v:g}" for v in rows]
    finite = sweep["sortino"][np.isfinite(sweep["sortino"])]
    image = ax.images[0]
    assert (image.norm.vmin, image.norm.vmax) == (finite.min(), finite.max())  # the scale: finite values only
    scale = colormaps["viridis"]
    norm = colors.Normalize(finite.min(), finite.max())
    drawn = _cell_colours(heat, len(rows), len(columns))
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    for (row, col), colour in drawn.items():
        number = sweep.loc[(sweep["hedge_ratio"] == rows[row]) & (sweep["leverage"] == columns[col]),
                           "sortino"].item()
        if math.isnan(number):
            expected, text = colors.to_rgb("lightgrey"), "n/a"
        elif math.isinf(number):
            expected, text = scale(1.0 if number > 0 else 0.0)[:3], "inf" if number > 0 else "-inf"
        else:
            expected, text = scale(norm(number))[:3], f"{number:,.3g}"
        assert np.allclose(colour, expected, atol=2 / 255), ((row, col), number, colour, expected)
        assert texts[(row, col)] == text
    hatched = sorted((round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches if p.get_hatch())
    assert hatched == [(0, 0), (1, 1)]  # (column, row) of the inf and -inf cells

    # a parameter swept to none (stop_loss) keeps its column, after the numbers
    sweep = pd.DataFrame({"stop_loss": [None, 0.1, None, 0.1], "hedge_ratio": [0.0, 0.0, 0.5, 0.5],
                          "sharpe": [1.0, 2.0, 3.0, 4.0]})
    ax = charts.sweep_heatmap(sweep, "stop_loss", "hedge_ratio", "sharpe").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "none"]
    assert ax.images[0].get_array()[1, 1] == 3.0  # hedge_ratio 0.5, stop_loss none


def test_ledger_records_with_naive_times_load_as_utc():
    frame = ledger_stats.ledger_frame([{"datetime": datetime(2021, 1, 1), "kind": "fee", "currency": "USD",
                                        "wallet": "futures", "amount": -1.0, "instrument": "", "note": ""}])
    assert frame["datetime"].iloc[0] == pd.Timestamp("2021-01-01", tz="UTC")


def test_ledger_records_read_from_the_table_equal_pandas_records():
    ledger = hand_made_result().ledger
    table = ledger_stats.ledger_frame(ledger)
    records = ledger_stats.LedgerRecords(table)
    assert len(records) == len(ledger) == 92
    expected = table.to_dict("records")
    assert [list(r) for r in records] == [list(r) for r in expected]
    for got, want in zip(records, expected, strict=True):  # the same values and types, NaN where NaN
        for key in want:
            assert type(got[key]) is type(want[key]) or isinstance(got[key], float), key
            assert got[key] == want[key] or (got[key] != got[key] and want[key] != want[key]), key
    assert records[3]["kind"] == "mining_credit" and records[-1]["kind"] == "liquidation_fee"
    assert records == list(records)  # a list's equality (NaN compares unequal unless the same object)
    assert records != list(records)[:-1] and records != "not records"
    # the report reads the table back unchanged, and a caller's edits to it do not reach the records
    back = ledger_stats.ledger_frame(records)
    pd.testing.assert_frame_equal(back, ledger_stats.ledger_frame(list(records)))
    back.loc[0, "amount"] = 1e9
    assert records[0]["amount"] == table["amount"].iloc[0] != 1e9
    with pytest.raises(ValueError, match="LEDGER_COLUMNS|columns"):
        ledger_stats.LedgerRecords(table.drop(columns="note"))


def test_a_table_without_notes_gets_them_when_first_read():
    ledger = hand_made_result().ledger
    table = ledger_stats.ledger_frame(ledger)
    figures = ledger_stats.ledger_frame(ledger, notes=False)
    assert list(figures.columns) == list(ledger_stats.ANALYSIS_COLUMNS)
    pd.testing.assert_frame_equal(figures, table.drop(columns="note"))
    asked = []

    def notes() -> list[str]:
        asked.append(1)
        return table["note"].tolist()

    records = ledger_stats.LedgerRecords(figures, notes=notes)
    assert len(records) == 92 and not asked  # the length needs no notes
    pd.testing.assert_frame_equal(records.frame(), table)
    assert list(records)[5] is records[5] and asked == [1]  # rendered once
    assert [r["note"] for r in records] == table["note"].tolist()
    with pytest.raises(ValueError, match="3 notes for 92"):
        ledger_stats.LedgerRecords(figures, notes=lambda: ["a", "b", "c"]).frame()
    with pytest.raises(ValueError, match="columns"):
        ledger_stats.LedgerRecords(table, notes=notes)


def test_a_broker_ledger_without_notes_is_the_same_table(data_dir):
    from minehedge import api

    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-05-01", "end": "2021-05-31",
                              "data_dir": str(data_dir)})
    result = api.run_policy(market, "static_hedge").result
    ledger = result.ledger
    assert isinstance(ledger, ledger_stats.LedgerRecords) and ledger._notes is not None  # notes not yet rendered
    full = ledger.frame()
    # the hedge's first order fills at the open of 2021-05-02; from then on funding settles three times a day
    assert str(result.trades[0]["datetime"])[:10] == "2021-05-02"
    funding = full.loc[full["kind"] == "funding", "note"].tolist()
    rate = float(market.frame["funding_rate"].loc[pd.Timestamp("2021-05-02", tz="UTC")])  # per 8 h, that day
    assert len(funding) == 3 * 30 and funding[0] == f"settlement 2021-05-02 00:00 rate {rate:.6g}"
    assert funding[2].startswith("settlement 2021-05-02 16:00 rate 0.000")
    assert all(isinstance(note, str) for note in full["note"])
    pd.testing.assert_frame_equal(full.drop(columns="note"), ledger_stats.ledger_frame(ledger, notes=False))


def test_comparison_folder(tmp_path):
    from analyzers.comparison import COMPARISON_CHARTS, write_comparison

    hedged = hand_made_result()
    unhedged = hand_made_result()
    unhedged.equity = unhedged.equity.assign(equity_usd=unhedged.equity["equity_usd"] * 0.5)
    unhedged.assumptions = {**unhedged.assumptions, "policy": "unhedged"}
    rows = [{"policy": "hedged", **hedged.summary}, {"policy": "unhedged", **unhedged.summary,
                                                      "final_equity_usd": 2_000.0}]
    written = write_comparison({"hedged": hedged, "unhedged": unhedged}, rows, tmp_path, dpi=60)
    assert set(written) == {"comparison.csv", "summary.md", *COMPARISON_CHARTS}
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert table["policy"].tolist() == ["hedged", "unhedged"]
    assert table["final_equity_usd"].tolist() == [4_000.0, 2_000.0]
    markdown = (tmp_path / "summary.md").read_text()
    assert "| metric | hedged | unhedged |" in markdown
    assert "| final_equity_usd | 4,000.00 USD | 2,000.00 USD |" in markdown
    assert "- **funding** (all runs): constant 0.01 % per 8 h" in markdown
    assert "- **policy** (unhedged): unhedged" in markdown
    for name in COMPARISON_CHARTS:
        assert_png_has_content(tmp_path / name)


def test_every_event_kind_has_a_chart_marker_or_is_left_out_on_purpose():
    # a kind added to brokers.events.EVENT_KINDS must be given a marker, or a reason in UNMARKED_EVENTS
    assert set(charts.EVENT_MARKERS) | set(charts.UNMARKED_EVENTS) == set(EVENT_KINDS)
    assert not set(charts.EVENT_MARKERS) & set(charts.UNMARKED_EVENTS)
    assert all(set(style) == {"marker", "color", "label"} for style in charts.EVENT_MARKERS.values())
    assert len({style["label"] for style in charts.EVENT_MARKERS.values()}) == len(charts.EVENT_MARKERS)


def test_the_price_chart_marks_bills_and_loan_payments_carried_over_a_closure_at_the_price_then():
    index = pd.date_range("2021-03-01", periods=8, freq="D", tz="UTC")
    prices = pd.Series([100.0, 101, 102, 103, 104, 105, 106, 107], index=index)
    events = [{"datetime": index[5], "kind": kind} for kind in ("bill_carried", "loan_payment_carried")]
    events += [{"datetime": index[6], "kind": kind} for kind in ("loan_payment_carried_paid", "bill_carried_paid",
                                                                 "missed_payment", "cme_margin_call_met")]
    ax = charts.price_chart(prices, events=events).axes[0]
    marked = {collection.get_label(): collection.get_offsets()[:, 1].tolist() for collection in ax.collections}
    assert marked == {"bill carried (market closed) (1)": [105.0], "carried bills paid (1)": [106.0],
                      "loan payment carried (market closed) (1)": [105.0], "carried loan payment paid (1)": [106.0],
                      "missed loan payment (1)": [106.0]}
