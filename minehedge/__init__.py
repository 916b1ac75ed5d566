"""minehedge: the plugin's shared core.

Lives here: the backtrader compatibility shims (:mod:`minehedge.compat`, applied on import of any
minehedge module that touches backtrader), the error types every layer raises for user mistakes
(:mod:`minehedge.errors`), and the orchestration API that ``run_backtest.py`` and notebooks share
(single runs, sweeps, policy comparison). It is a package of its own, beside the design card's folders,
because all of them depend on it and it depends on none of them except through the orchestration modules.
May import: the standard library, numpy and pandas; the orchestration modules may import every other
minehedge folder. ``minehedge.errors`` imports nothing but the standard library.
"""

__version__ = "0.4.0"
