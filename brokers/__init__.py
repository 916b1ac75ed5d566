"""Futures margin engine: venue profiles, pure margin/liquidation/funding formulas, and backtrader classes.

``brokers.formulas`` (and the other pure modules: events, ledger, venues) import neither backtrader nor
matplotlib; they are the one home of every margin formula. ``brokers.commission`` (``CommInfoBase``
subclasses) and ``brokers.broker`` (a ``BackBroker`` subclass installed with ``cerebro.broker = ...``) are
thin backtrader classes that call them.
"""
