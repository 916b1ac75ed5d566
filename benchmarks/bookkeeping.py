"""What a sweep's own bookkeeping costs per configuration, beside the backtests; prints JSON.

``python -m benchmarks.bookkeeping [--configs 200,2000,10000]``: for each size, one in-process sweep
(:func:`minehedge.sweep.run_sweep`, ``LocalExecutor(1)``) of a run function that does no work and returns a
40-key summary like a backtest's, into a fresh folder. Everything timed is the sweep engine's work in the
parent process: hashing the configurations, recording each outcome and keeping results.csv safe on disk. On
a parallel sweep that work runs in the parent beside the workers, so on a machine whose cores the workers
fill it is taken from them.

Prints JSON: per size, seconds in all, milliseconds per configuration, and that cost as a share of one BTC 1d
configuration (``--config-s``: ``benchmarks/run.py`` passes its 1-worker sweep's mean; default 0.65 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUMMARY_KEYS = 40


def summary_like_run(config: dict, shared: Any) -> dict[str, float]:
    """A backtest's summary record in shape (40 float keys) without the backtest."""
    seed = config["params"]["hedge_ratio"] * 1_000.0 + config["params"]["leverage"]
    return {f"metric_{k:02d}": seed * (k + 1) / 7.0 for k in range(SUMMARY_KEYS)}


def sweep_seconds(configs: int) -> float:
    from minehedge.sweep import LocalExecutor, expand_grid, run_sweep

    base = {"asset": "BTC", "timeframe": "1d", "policy": "static_hedge", "params": {}}
    grid = {"hedge_ratio": [k / 1_000 for k in range(configs // 4)], "leverage": [1, 2, 3, 5]}
    points = expand_grid(base, grid)
    with tempfile.TemporaryDirectory() as folder, LocalExecutor(1) as executor:
        began = time.perf_counter()
        run_sweep(points, summary_like_run, None, data_fingerprint="bookkeeping", out_dir=folder,
                  executor=executor)
        return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="200,2000,10000", help="sweep sizes, comma-separated")
    parser.add_argument("--config-s", type=float, default=0.65, help="seconds of one backtest, for the share")
    args = parser.parse_args(argv)
    sizes = []
    for configs in (int(text) for text in args.configs.split(",")):
        seconds = sweep_seconds(configs)
        per_config = seconds / configs
        sizes.append({"configs": configs, "seconds": seconds, "ms_per_config": per_config * 1e3,
                      "share_of_a_daily_config": per_config / args.config_s})
    print(json.dumps({"config_s": args.config_s, "sizes": sizes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
