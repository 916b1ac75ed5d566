"""One test per backtrader shim in minehedge.compat."""

from __future__ import annotations

import collections.abc
import json
import os
import subprocess
import sys
from pathlib import Path

import minehedge.compat  # noqa: F401  (must come before backtrader)

import backtrader as bt
import matplotlib
import numpy as np
import pandas as pd


def test_backend_is_headless_even_after_backtrader_plot_import():
    import backtrader.plot  # noqa: F401  (this import calls matplotlib.use('TkAgg'))

    assert matplotlib.get_backend().lower() == "agg"


_ROOT = Path(__file__).resolve().parents[1]


def _fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter (no matplotlib imported yet, as in a user's process) and return
    the JSON it prints last."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["PYTHONPATH"] = str(_ROOT)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=_ROOT,
                           timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_importing_the_engine_leaves_matplotlib_unimported():
    seen = _fresh_python(
        "import json, sys\n"
        "from minehedge import api\n"
        "import analyzers.report, strategies.registry, brokers.broker, data.feeds\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')))")
    assert seen == []


def test_the_headless_shim_runs_when_backtrader_first_imports_its_plot_module():
    # In a fresh process matplotlib is not imported until backtrader.plot is; without the shim that import
    # leaves the TkAgg backend selected, which fails on a machine with no display.
    seen = _fresh_python(
        "import json, sys\n"
        "import minehedge.compat\n"
        "before = 'matplotlib.pyplot' in sys.modules\n"
        "import backtrader.plot\n"
        "import matplotlib\n"
        "print(json.dumps([before, 'matplotlib.pyplot' in sys.modules, matplotlib.get_backend().lower()]))")
    assert seen == [False, True, "agg"]


def test_bindlines_accepts_iterables_without_collections_iterable():
    class Twice(bt.Indicator):
        lines = ("a", "b")

        def __init__(self):
            self.lines.a = self.data.close * 2
            self.lines.b = self.data.close * 2

    class Owner(bt.Indicator):
        lines = ("x", "y")

        def __init__(self):
            # bindlines with a tuple goes through the isinstance(..., collections.Iterable) branch.
            Twice(self.data).bindlines(owner=("x", "y"), own=("a", "b"))

    class Strat(bt.Strategy):
        def __init__(self):
            self.ind = Owner(self.data)

        def next(self):
            self.seen = (self.ind.x[0], self.ind.y[0], self.data.close[0])

    idx = pd.date_range("2021-01-01", periods=5, freq="D", tz="UTC")
    frame = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": np.arange(1.0, 6.0), "volume": 1.0},
                         index=idx)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Strat)
    strat = cerebro.run()[0]
    assert strat.seen == (10.0, 10.0, 5.0)
    assert not hasattr(collections, "Iterable")  # the standard library was left alone


def test_tz_aware_utc_index_loads_as_utc_wall_clock():
    idx = pd.date_range("2021-03-01 00:00", periods=3, freq="4h", tz="UTC")
    frame = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": [1.0, 2.0, 3.0], "volume": 0.0},
                         index=idx)
    stamps = []

    class Strat(bt.Strategy):
        def next(self):
            stamps.append(self.data.datetime.datetime(0))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Strat)
    cerebro.run()
    assert [s.isoformat() for s in stamps] == ["2021-03-01T00:00:00", "2021-03-01T04:00:00",
                                               "2021-03-01T08:00:00"]
