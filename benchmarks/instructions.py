"""Instruction count of one run under valgrind's callgrind: a speed measure that does not drift with the
machine (wall times on shared VMs moved threefold within one session).

A count is exactly repeatable for one *layout*, but moves by a few per cent between layouts of the same code,
for two reasons, both fixed per count here:

* the hash seed: string hashing lays out dicts and sets per seed; that alone moved the 730-bar count by up to
  1.3 % (546.3-553.3 M over five seeds, session 10). Each count gets ``PYTHONHASHSEED``;
* CPython's type-attribute cache: 4,096 slots indexed by a type's version tag and the attribute name's
  address, so which hot lookups collide depends on how many types took a tag before them. Any change to
  what is imported or created first moves that, and with it the count: in session 11, 0, 1, 7, 50 and 333
  extra classes created before the same plain replay counted 839.2, 837.9, 839.2, 869.6 and 837.6 M (+3.8 %
  for one of them). Each count creates ``padding`` classes first.

``--layouts N`` counts layouts 0..N-1 (layout ``i``: hash seed ``i`` and ``i x 37`` classes) and prints
each, their mean and their range. Compare commits by the mean over the same layouts. Over five layouts of
one commit the whole-range counts spread by about 2 % (miner 2,404-2,448 M, plain replay 838-851 M), so a
difference of well under 1 % between two means of five is not readable.

``python -m benchmarks.instructions`` counts the instructions of one ``run_policy`` of static_hedge on BTC
1d, 2021-01-01 to 2022-12-31 (730 bars, a futures position open on every bar), after a warm-up run and
a full collection, with callgrind collecting only around that run. Needs ``valgrind`` and its
``valgrind/callgrind.h`` header and a C compiler (Debian: ``apt install valgrind gcc``): a tiny helper
library issues callgrind's start/stop requests, which Python cannot issue itself. It takes about 30 s per
layout. Compare counts of two commits on the same machine; the figure is not comparable across Python
versions.

``--engine-ratio`` counts, on the same bars, the two runs whose wall-time ratio is the benchmark's engine
overhead (:mod:`benchmarks.engine`): the miner's cerebro with every analyzer and their end-of-run statistics,
and stock backtrader replaying its fills on BackBroker; and prints their ratio, which does not drift.
``--whole-range`` counts over the whole shared daily range (5,151 bars, as ``benchmarks/run.py`` times the
overhead) instead of the 730 bars; about 80-100 s per layout with ``--engine-ratio``.
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
#: ``--whole-range``: the whole shared daily range, as benchmarks/run.py times the engine overhead (5,151
#: bars; the futures leg is open only where the venue has history, so the miner's share differs from the 730
#: bars').
WHOLE_RANGE = {"asset": "BTC", "timeframe": "1d"}


#: What ``count`` can measure: ``run_policy`` (the default: load to report, as a user runs it), ``miner`` and
#: ``plain`` (the engine overhead's two runs: :func:`benchmarks.engine.timed_run`'s cerebro without its
#: RunResult, and :func:`benchmarks.engine.baseline_run` replaying the miner's fills; static_hedge only).
RUNS: tuple[str, ...] = ("run_policy", "miner", "plain")
#: ``--layouts``: layout ``i`` creates ``i * LAYOUT_STEP`` classes before the run (module docstring).
LAYOUT_STEP = 37


def layout(index: int) -> tuple[int, int]:
    """(hash seed, classes created first) of layout ``index``."""
    return index, index * LAYOUT_STEP


_PADDING: list[type] = []  # the padding classes of this process, alive for its run


def _pad_type_cache(classes: int) -> list[type]:
    """Create ``classes`` classes and read an attribute of each, so each takes a type version tag (the
    type-attribute cache's key) before anything the run uses; returned to keep them alive."""
    made = [type(f"_Padding{i}", (), {"attribute": i}) for i in range(classes)]
    for cls in made:
        _ = cls.attribute
    return made


def _measured_run(helper: str, policy: str, run: str = "run_policy", whole_range: bool = False,
                  window: tuple[str, str] | None = None, padding: int = 0) -> None:
    """Inside valgrind: ``padding`` classes, one warm-up run, then the counted run between the helper's start
    and stop."""
    _PADDING.extend(_pad_type_cache(padding))
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
          window: tuple[str, str] | None = None, padding: int = 0) -> int:
    """Instructions of one run (see the module docstring and :data:`RUNS`) with ``PYTHONHASHSEED=seed`` and
    ``padding`` classes created first; ``window`` (first and last day, YYYY-MM-DD) counts other bars than the
    730 of :data:`CONFIG`."""
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
            raise SystemExit("error: cannot build the callgrind helper (is valgrind/callgrind.h "
                             f"installed?):\n{built.stderr.strip()}")
        out = Path(folder) / "callgrind.out.%p"
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.instructions import "
                f"_measured_run; _measured_run({str(helper)!r}, {policy!r}, {run!r}, {whole_range!r}, "
                f"{window!r}, {padding!r})")
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
    parser.add_argument("--layouts", type=_layout_count, default=1,
                        help=f"count layouts 0..N-1 (layout i: hash seed i, i x {LAYOUT_STEP} classes "
                             "created first) and print each, their mean and their range (default 1: "
                             "layout 0)")
    parser.add_argument("--engine-ratio", action="store_true",
                        help="count the engine overhead's two runs (the miner's cerebro, the "
                             "plain replay) instead")
    parser.add_argument("--whole-range", action="store_true",
                        help="the whole shared daily range (5,151 bars) instead of 2021-2022 (730 bars)")
    args = parser.parse_args(argv)
    window = "BTC 1d, the whole shared range" if args.whole_range else \
        f"BTC 1d {CONFIG['start']} to {CONFIG['end']} (730 bars)"
    totals: list[tuple[int, int]] = []
    for index in range(args.layouts):
        seed, padding = layout(index)
        name = f"layout {index} (hash seed {seed}, {padding} classes)"
        if not args.engine_ratio:
            total = count(args.policy, whole_range=args.whole_range, seed=seed, padding=padding)
            totals.append((total, 1))
            print(f"{args.policy}, {window}, {name}: {total / 1e6:,.1f} M instructions", flush=True)
            continue
        miner = count(args.policy, "miner", args.whole_range, seed, padding=padding)
        plain = count(args.policy, "plain", args.whole_range, seed, padding=padding)
        totals.append((miner, plain))
        print(f"{args.policy}, {window}, {name}: miner {miner / 1e6:,.1f} M, plain replay "
              f"{plain / 1e6:,.1f} M instructions: {miner / plain:.2f}x", flush=True)
    if args.layouts > 1:
        def summary(values: list[int]) -> str:
            return (f"{sum(values) / len(values) / 1e6:,.1f} M "
                    f"({min(values) / 1e6:,.1f}-{max(values) / 1e6:,.1f} M)")

        miners = [t[0] for t in totals]
        if not args.engine_ratio:
            print(f"mean (range) over {args.layouts} layouts: {summary(miners)} instructions", flush=True)
        else:
            plains = [t[1] for t in totals]
            print(f"mean (range) over {args.layouts} layouts: miner {summary(miners)}, plain replay "
                  f"{summary(plains)}: {sum(miners) / sum(plains):.2f}x", flush=True)
    return 0


def _layout_count(text: str) -> int:
    """``--layouts``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--layouts={text!r}: expected a whole number >= 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
