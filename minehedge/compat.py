"""backtrader 1.9.78.123 on today's Python stack: every shim in one place, applied once on import.

Import this module before backtrader's plot module is used (every minehedge module that imports backtrader
imports it first). Each shim is idempotent and says why it exists; tests/test_compat.py checks each one.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib.abc
import sys
import types


# 1. Headless plotting. backtrader/plot/__init__.py calls matplotlib.use('TkAgg') on import, which fails
#    (or opens nothing) on a machine with no display. Selecting Agg and importing pyplot *before* that module
#    makes its matplotlib.use() a no-op that it swallows, so cerebro.plot() and our charts render to PNG
#    anywhere. An interactive user can still switch backend afterwards with matplotlib.use().
#    backtrader imports its plot module only when asked to plot (cerebro.plot() imports it), so the shim runs
#    then, from an import hook, instead of here: importing matplotlib and pyplot took ~0.8 s of the ~1.7 s
#    a process spent importing minehedge, paid by every CLI run and every sweep worker that never plots.
def headless_plotting() -> None:
    """Select the Agg backend (unless a notebook's inline backend is in use) and import pyplot: what
    backtrader's plot module needs before it is imported. Idempotent."""
    import matplotlib

    if matplotlib.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
        matplotlib.use("Agg")
    import matplotlib.pyplot  # order matters: pyplot with Agg first, then backtrader.plot


class _HeadlessBeforeBacktraderPlot(importlib.abc.MetaPathFinder):
    """Runs :func:`headless_plotting` just before ``backtrader.plot`` is first imported. It finds nothing
    itself (the normal finders load the module) and stays in ``sys.meta_path``: removing a finder while the
    import system iterates that list would skip the next one."""

    def find_spec(self, name, path, target=None):
        # With pyplot already imported, its user has chosen a backend (or matplotlib chose Agg, with no
        # display); backtrader's matplotlib.use('TkAgg') then fails quietly on a headless machine.
        if name == "backtrader.plot" and "matplotlib.pyplot" not in sys.modules:
            headless_plotting()
        return None


if "backtrader.plot" in sys.modules:  # imported before this module: its TkAgg choice is undone now
    headless_plotting()
elif not any(isinstance(finder, _HeadlessBeforeBacktraderPlot) for finder in sys.meta_path):
    sys.meta_path.insert(0, _HeadlessBeforeBacktraderPlot())

import backtrader  # noqa: E402  (after the hook above)
import backtrader.lineiterator  # noqa: E402

# 2. LineIterator.bindlines() tests isinstance(x, collections.Iterable); the alias was removed from
#    `collections` in Python 3.10. Give that module (only) a `collections` namespace that has it, instead
#    of writing into the standard library's module for everyone.
_lineiterator = backtrader.lineiterator
if not hasattr(_lineiterator.collections, "Iterable"):
    _lineiterator.collections = types.SimpleNamespace(
        **{name: getattr(collections, name) for name in dir(collections) if not name.startswith("__")},
        Iterable=collections.abc.Iterable,
    )

# 3. pandas 3 / numpy 2: backtrader's PandasData reads index values with .to_pydatetime() and converts
#    them with date2num(), which ignores tzinfo. A tz-aware UTC index therefore loads as naive UTC, which is
#    what we want; a tz-aware index in any *other* zone would silently shift bars. data.frames.to_utc_index()
#    normalises every frame to UTC before it reaches a feed, so no patch to backtrader is needed here;
#    tests/test_compat.py pins the behaviour so a backtrader or pandas change cannot break it silently.

APPLIED = True
