"""backtrader 1.9.78.123 on today's Python stack: every shim in one place, applied once on import.

Import this module before backtrader's plot module is used (every minehedge module that imports backtrader
imports it first). Each shim is idempotent and says why it exists; tests/test_compat.py checks each one.
"""

from __future__ import annotations

import collections
import collections.abc
import types

import matplotlib

# 1. Headless plotting. backtrader/plot/__init__.py calls matplotlib.use('TkAgg') on import, which fails
#    (or opens nothing) on a machine with no display. Selecting Agg and importing pyplot *before* backtrader
#    makes its later matplotlib.use() a no-op that it swallows, so cerebro.plot() and our charts render to
#    PNG anywhere. An interactive user can still switch backend afterwards with matplotlib.use().
if matplotlib.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
    matplotlib.use("Agg")
import matplotlib.pyplot  # order matters: pyplot with Agg first, then backtrader
import backtrader
import backtrader.lineiterator

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
