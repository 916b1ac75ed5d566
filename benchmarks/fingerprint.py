"""Bit-for-bit fingerprint of a fixed set of runs, the guard for speed work: a change that only makes the
engine faster must leave every hash unchanged.

``python -m benchmarks.fingerprint --out before.json`` on the old code, then
``python -m benchmarks.fingerprint --check before.json`` on the new one: exit status 1 and the runs that
differ (and in which part) when anything moved. Needs the shared data (``MINEHEDGE_DATA_DIR``).

Each run is hashed in five parts, every float by its ``repr`` (exact for IEEE doubles): the summary, the
per-bar equity table, the ledger, the margin events and the fills. The set covers every policy; linear,
inverse and cross margin; Binance, BitMEX and coin-margined perpetuals and CME-style dated contracts; 1d, 4h
and 1h bars; BTC and ETH; and hundreds of liquidations, so a shortcut that serves a case it should not
shows up here even when the test suite's smaller ranges miss it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (name, market config, policy, params): whole shared ranges for the daily runs, shorter ones intraday.
RUNS: tuple[tuple[str, dict[str, Any], str, dict[str, Any]], ...] = (
    ("btc-1d-static_hedge", {"asset": "BTC", "timeframe": "1d"}, "static_hedge", {}),
    ("btc-1d-static_hedge-cross", {"asset": "BTC", "timeframe": "1d"}, "static_hedge",
     {"margin_mode": "cross"}),
    ("btc-1d-static_hedge-coinm", {"asset": "BTC", "timeframe": "1d", "venue": "binance_coinm"},
     "static_hedge", {"venue": "binance_coinm"}),
    ("btc-1d-static_hedge-bitmex", {"asset": "BTC", "timeframe": "1d", "venue": "bitmex"}, "static_hedge",
     {"venue": "bitmex", "leverage": 5.0}),
    ("btc-1d-static_hedge-cme-dated", {"asset": "BTC", "timeframe": "1d", "venue": "cme"}, "static_hedge",
     {"venue": "cme", "contract": "dated"}),
    ("btc-1d-static_hedge-10x-halve", {"asset": "BTC", "timeframe": "1d"}, "static_hedge",
     {"leverage": 10.0, "on_margin_call": "reduce_position"}),
    ("btc-1d-unhedged", {"asset": "BTC", "timeframe": "1d"}, "unhedged", {"treasury": "sell_to_cover_costs"}),
    ("btc-1d-sell_daily", {"asset": "BTC", "timeframe": "1d"}, "sell_daily", {}),
    ("btc-1d-collateral_short", {"asset": "BTC", "timeframe": "1d", "venue": "binance_coinm"},
     "collateral_short", {}),
    ("btc-1d-dynamic_hedge", {"asset": "BTC", "timeframe": "1d"}, "dynamic_hedge", {}),
    ("btc-1d-leveraged_long-10x", {"asset": "BTC", "timeframe": "1d"}, "leveraged_long",
     {"leverage": 10.0, "on_margin_call": "ignore"}),
    ("btc-1d-leveraged_long-5x-cross", {"asset": "BTC", "timeframe": "1d"}, "leveraged_long",
     {"leverage": 5.0, "margin_mode": "cross"}),
    ("btc-1d-leveraged_short-20x-coinm", {"asset": "BTC", "timeframe": "1d", "venue": "binance_coinm"},
     "leveraged_short", {"leverage": 20.0, "venue": "binance_coinm", "on_margin_call": "ignore"}),
    ("btc-1d-financed_expansion", {"asset": "BTC", "timeframe": "1d"}, "financed_expansion", {}),
    ("btc-1d-financed_hedge", {"asset": "BTC", "timeframe": "1d"}, "financed_hedge", {}),
    ("btc-4h-static_hedge", {"asset": "BTC", "timeframe": "4h", "start": "2020-01-01", "end": "2022-12-31"},
     "static_hedge", {"leverage": 5.0}),
    ("btc-1h-static_hedge-25x-ignore", {"asset": "BTC", "timeframe": "1h", "start": "2021-01-01",
                                        "end": "2021-12-31"}, "static_hedge",
     {"leverage": 25.0, "on_margin_call": "ignore"}),
    ("btc-1h-leveraged_long", {"asset": "BTC", "timeframe": "1h", "start": "2021-01-01", "end": "2021-12-31"},
     "leveraged_long", {"leverage": 20.0, "on_margin_call": "ignore"}),
    ("eth-1d-static_hedge-coinm", {"asset": "ETH", "timeframe": "1d", "venue": "binance_coinm"},
     "static_hedge", {"venue": "binance_coinm", "leverage": 3.0}),
    # debt owed at the first bar (a coin loan called and sold in 2022) under a dated power price (0.6.0)
    ("btc-1d-dynamic_hedge-coin-debt-power", {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01",
                                              "end": "2023-12-31"}, "dynamic_hedge",
     {"debt_usd": 10_000_000.0, "debt_type": "coin", "debt_collateral_coins": 700.0,
      "power_usd_per_kwh": "0.045,0.07@2022-03-01"}),
    # an equipment debt beside an inverse hedge whose margin coins are bought with USD (0.6.0)
    ("btc-1d-static_hedge-bitmex-buy-margin-debt", {"asset": "BTC", "timeframe": "1d", "venue": "bitmex",
                                                    "start": "2018-01-01", "end": "2021-12-31"},
     "static_hedge", {"venue": "bitmex", "leverage": 5.0, "hedge_ratio": 1.0, "buy_coin_margin": True,
                      "debt_usd": 1_500_000.0, "debt_type": "equipment"}),
    ("eth-1d-leveraged_long-generic", {"asset": "ETH", "timeframe": "1d", "venue": "generic"},
     "leveraged_long", {"venue": "generic", "leverage": 10.0}),
)


def _canon(value: Any) -> Any:
    """JSON-able form in which every float is its exact ``repr`` (NaN and infinities included)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _canon(item())
    return str(value)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_canon(value), sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(market, policy: str, params: dict[str, Any]) -> dict[str, Any]:
    """Hashes of one run's summary, equity table, ledger, events and fills, with counts for reading them."""
    from minehedge import api

    result = api.run_policy(market, policy, params).result
    equity = result.equity
    table = {"index": [str(t) for t in equity.index],
             **{column: [float(v) for v in equity[column].to_numpy()] for column in equity.columns}}
    ledger = [dict(row) for row in result.ledger]
    events = [dict(event) for event in result.events]
    liquidations = sum(1 for e in events if "liquidation" in str(e.get("kind", "")))
    return {"summary": _digest(dict(result.summary)), "equity": _digest(table), "ledger": _digest(ledger),
            "events": _digest(events), "fills": _digest(list(result.trades)),
            "bars": len(equity), "ledger rows": len(ledger), "fills [#]": len(result.trades),
            "liquidations [#]": liquidations}


def run_all(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    from minehedge import api

    chosen = [r for r in RUNS if not names or r[0] in names]
    prints: dict[str, dict[str, Any]] = {}
    for name, config, policy, params in chosen:
        began = time.perf_counter()
        market = api.load_market(config)
        prints[name] = fingerprint(market, policy, params)
        print(f"{name:36s} {prints[name]['bars']:>6,} bars {prints[name]['ledger rows']:>7,} ledger rows "
              f"{prints[name]['liquidations [#]']:>4} liquidations  {time.perf_counter() - began:5.1f} s",
              flush=True)
    return prints


PARTS = ("summary", "equity", "ledger", "events", "fills")


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[str]:
    """One line per run whose parts differ (or that only one side has)."""
    problems = []
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            problems.append(f"{name}: only in {'the new' if name in after else 'the reference'} fingerprint")
            continue
        moved = [part for part in PARTS if before[name][part] != after[name][part]]
        if moved:
            problems.append(f"{name}: {', '.join(moved)} changed")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprint here (JSON)")
    parser.add_argument("--check", type=Path, help="compare with a fingerprint written by --out")
    parser.add_argument("--only", nargs="*", help="run only these names")
    args = parser.parse_args(argv)
    reference = None
    if args.check is not None:
        try:
            reference = json.loads(args.check.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: --check {args.check}: cannot read a fingerprint ({exc})", file=sys.stderr)
            return 2
    prints = run_all(args.only)
    total = sum(p["liquidations [#]"] for p in prints.values())
    print(f"{len(prints)} runs, {total} liquidations")
    if args.out is not None:
        args.out.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
        print(f"written: {args.out}")
    if reference is not None:
        if args.only:
            reference = {k: v for k, v in reference.items() if k in prints}
        problems = compare(reference, prints)
        for line in problems:
            print(f"DIFFERS  {line}")
        print("identical to the reference" if not problems else f"{len(problems)} runs differ")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
