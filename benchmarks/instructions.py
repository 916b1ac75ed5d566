"""Instruction count of one run under valgrind's callgrind: a speed measure that does not drift with the
machine (wall times on shared VMs moved threefold within one session).

The count is exactly repeatable for one hash seed: each run gets ``PYTHONHASHSEED`` (0 unless ``--seeds``
says otherwise), because string hashing lays out dicts and sets differently per seed, and that alone moved
the count by up to 1.3 % between runs of the same code (546.3-553.3 M for five seeds, session 10). A change
of well under 1 % is read from ``--seeds 3`` or more: the mean over seeds 0, 1, 2, ... of each commit.

``python -m benchmarks.instructions`` counts the instructions of one ``run_policy`` of static_hedge on BTC
1d, 2021-01-01 to 2022-12-31 (730 bars, a futures position open on every bar), after a warm-up run and
a full collection, with callgrind collecting only around that run. Needs ``valgrind`` and its
``valgrind/callgrind.h`` header and a C compiler (Debian: ``apt install valgrind gcc``): a tiny helper
library issues callgrind's start/stop requests, which Python cannot issue itself. It takes about 30 s.
Compare counts of two commits on the same machine; the figure is not comparable across Python versions.

``--engine-ratio`` counts, on the same bars, the two runs whose wall-time ratio is the benchmark's engine
overhead (:mod:`benchmarks.engine`): the miner's cerebro with every analyzer and their end-of-run statistics,
and stock backtrader replaying its fills on BackBroker; and prints their ratio, which does not drift.
``--whole-range`` counts over the whole shared daily range (5,151 bars, as ``benchmarks/run.py`` times the
overhead) instead of the 730 bars; about 70 s with ``--engine-ratio``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; CALLGRIND_TOGGLE_COLLECT; }
void cg_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
CONFIG = {"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2022-12-31"}
#: ``--whole-range``: the whole shared daily range, as benchmarks/run.py times the engine overhead (5,151 bars;
#: the futures leg is open only where the venue has history, so the miner's share differs from the 730 bars').
WHOLE_RANGE = {"asset": "BTC", "timeframe": "1d"}


#: What ``count`` can measure: ``run_policy`` (the default: load to report, as a user runs it), ``miner`` and
#: ``plain`` (the engine overhead's two runs: :func:`benchmarks.engine.timed_run`'s cerebro without its
#: RunResult, and :func:`benchmarks.engine.baseline_run` replaying the miner's fills; static_hedge only).
RUNS: tuple[str, ...] = ("run_policy", "miner", "plain")


def _measured_run(helper: str, policy: str, run: str = "run_policy", whole_range: bool = False,
                  window: tuple[str, str] | None = None) -> None:
    """Inside valgrind: one warm-up run, then the counted run between the helper's start and stop."""
    sys.path.insert(0, str(ROOT))
    from minehedge import api

    library = ctypes.CDLL(helper)
    config = WHOLE_RANGE if whole_range else CONFIG
    if window is not None:
        config = {**config, "start": window[0], "end": window[1]}
    market = api.load_market(config)
    if run == "run_policy":
        from strategies.base import forget_mining_schedules

        def once() -> None:
            forget_mining_schedules()  # count a single run's schedule, not the memo's hit
            api.run_policy(market, policy)
    else:
        from benchmarks import engine

        values = api._policy_params(policy, {"asset": market.asset}, None)
        orders = engine.replay_orders(market, engine.timed_run(market, policy).fills)
        commission = engine.baseline_commission(policy, None, market.asset)

        def once() -> None:
            if run == "miner":
                engine._miner_cerebro(market, engine.policy_class(policy), values).run()
            else:
                engine.baseline_run(market, orders, commission, 1e12)  # the cash benchmarks/run.py gives it
    once()
    gc.collect()
    library.cg_start()
    once()
    library.cg_stop()


def count(policy: str = "static_hedge", run: str = "run_policy", whole_range: bool = False, seed: int = 0,
          window: tuple[str, str] | None = None) -> int:
    """Instructions of one run (see the module docstring and :data:`RUNS`) with ``PYTHONHASHSEED=seed``;
    ``window`` (first and last day, YYYY-MM-DD) counts other bars than the 730 of :data:`CONFIG`."""
    if run not in RUNS:
        raise ValueError(f"run={run!r} is not allowed; allowed: {', '.join(RUNS)}.")
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"error: {' and '.join(missing)} not found; install valgrind and a C compiler.")
    with tempfile.TemporaryDirectory() as folder:
        source, helper = Path(folder) / "cg.c", Path(folder) / "libcg.so"
        source.write_text(_HELPER)
        built = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(helper), str(source)],
                               capture_output=True, text=True, check=False)
        if built.returncode:
            raise SystemExit(f"error: cannot build the callgrind helper (is valgrind/callgrind.h installed?):\n"
                             f"{built.stderr.strip()}")
        out = Path(folder) / "callgrind.out.%p"
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.instructions import _measured_run; "
                f"_measured_run({str(helper)!r}, {policy!r}, {run!r}, {whole_range!r}, {window!r})")
        ran = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
                              f"--callgrind-out-file={out}", sys.executable, "-c", code],
                             capture_output=True, text=True, check=False,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)})
        if ran.returncode:
            raise SystemExit(f"error: the run under valgrind failed:\n{ran.stderr.strip()[-2000:]}")
        totals = [int(match) for path in Path(folder).glob("callgrind.out.*")
                  for match in re.findall(r"^summary: (\d+)$", path.read_text(), flags=re.MULTILINE)]
    # the dump at cg_stop holds the counted run; other dumps (program exit) hold nothing or wrap around
    counted = [total for total in totals if 0 < total < 2**63]
    if not counted:
        raise SystemExit("error: callgrind wrote no count for the run.")
    return max(counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="static_hedge")
    parser.add_argument("--seeds", type=_seed_count, default=1,
                        help="count with hash seeds 0..N-1 and print each and their mean (default 1: seed 0)")
    parser.add_argument("--engine-ratio", action="store_true",
                        help="count the engine overhead's two runs (the miner's cerebro, the plain replay) instead")
    parser.add_argument("--whole-range", action="store_true",
                        help="the whole shared daily range (5,151 bars) instead of 2021-2022 (730 bars)")
    args = parser.parse_args(argv)
    window = "BTC 1d, the whole shared range" if args.whole_range else \
        f"BTC 1d {CONFIG['start']} to {CONFIG['end']} (730 bars)"
    totals: list[tuple[int, int]] = []
    for seed in range(args.seeds):
        if not args.engine_ratio:
            total = count(args.policy, whole_range=args.whole_range, seed=seed)
            totals.append((total, 1))
            print(f"{args.policy}, {window}, hash seed {seed}: {total / 1e6:,.1f} M instructions", flush=True)
            continue
        miner = count(args.policy, "miner", args.whole_range, seed)
        plain = count(args.policy, "plain", args.whole_range, seed)
        totals.append((miner, plain))
        print(f"{args.policy}, {window}, hash seed {seed}: miner {miner / 1e6:,.1f} M, plain replay "
              f"{plain / 1e6:,.1f} M instructions: {miner / plain:.2f}x", flush=True)
    if args.seeds > 1:
        first = sum(t[0] for t in totals) / len(totals)
        if not args.engine_ratio:
            print(f"mean over {args.seeds} seeds: {first / 1e6:,.1f} M instructions", flush=True)
        else:
            second = sum(t[1] for t in totals) / len(totals)
            print(f"mean over {args.seeds} seeds: miner {first / 1e6:,.1f} M, plain replay {second / 1e6:,.1f} M: "
                  f"{first / second:.2f}x", flush=True)
    return 0


def _seed_count(text: str) -> int:
    """``--seeds``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--seeds={text!r}: expected a whole number >= 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
