"""minehedge: the plugin's shared core.

Lives here: the backtrader compatibility shims (:mod:`minehedge.compat`, applied on import of any
minehedge module that touches backtrader), the error types every layer raises for user mistakes
(:mod:`minehedge.errors`), and the orchestration API that ``run_backtest.py`` and notebooks share
(single runs, sweeps, policy comparison). It is a package of its own, beside the design card's folders,
because all of them depend on it and it depends on none of them except through the orchestration modules.
May import: the standard library, numpy and pandas; the orchestration modules may import every other
minehedge folder. ``minehedge.errors`` imports nothing but the standard library.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__version__ = "0.8.0"

#: The design card's other top-level packages, installed beside this one. A user's own ``data.py`` (or
#: ``mining/`` package, ...) in the working folder comes first on ``sys.path`` and would hide them.
TOP_LEVEL_PACKAGES = ("data", "mining", "brokers", "strategies", "analyzers")


def _check_not_shadowed() -> None:
    """Raise :class:`ImportError` naming the file and the fix when one of :data:`TOP_LEVEL_PACKAGES` resolves
    to something other than the package installed beside ``minehedge`` (a ``data.py`` in the working folder):
    otherwise the import fails later with ``No module named 'data.api'; 'data' is not a package``. Silent when
    the layout is not the expected one (no such package beside ``minehedge``) or the name cannot be
    resolved."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in TOP_LEVEL_PACKAGES:
        ours = os.path.join(here, name, "__init__.py")
        if not os.path.isfile(ours):
            continue
        module = sys.modules.get(name)
        try:
            spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or not os.path.isfile(origin):
            continue
        try:
            same = os.path.samefile(origin, ours)
        except OSError:
            continue
        if not same:
            raise ImportError(
                f"minehedge needs its package {name!r} ({os.path.dirname(ours)}), but Python finds {origin} "
                f"first (in the working folder or on PYTHONPATH), which hides it. Rename that "
                f"{'file' if os.path.basename(origin) != '__init__.py' else 'folder'} or run from another "
                "folder.",
                name=name, path=origin)


_check_not_shadowed()
