"""Futures margin engine: venue profiles, pure margin/liquidation/funding formulas, and backtrader classes.

``brokers.formulas`` (and the other pure modules: events, ledger, venues) import neither backtrader nor
matplotlib; they are the one home of every margin formula. ``brokers.commission`` (``CommInfoBase``
subclasses) and ``brokers.broker`` (a ``BackBroker`` subclass installed with ``cerebro.broker = ...``) are
thin backtrader classes that call them.
"""

# Exports are resolved lazily so that importing a pure module (brokers.formulas, brokers.venues, ...) never
# pulls in backtrader through this package's __init__.
_EXPORTS = {
    "MarginBroker": "brokers.broker",
    "LinearFuturesCommInfo": "brokers.commission",
    "InverseFuturesCommInfo": "brokers.commission",
    "FuturesCommInfo": "brokers.commission",
    "futures_comminfo": "brokers.commission",
    "load_venue": "brokers.venues",
    "generic_venue": "brokers.venues",
    "available_venues": "brokers.venues",
    "VenueProfile": "brokers.venues",
    "MarginEvent": "brokers.events",
    "EVENT_KINDS": "brokers.events",
    "Ledger": "brokers.ledger",
    "LedgerEntry": "brokers.ledger",
    "LEDGER_KINDS": "brokers.ledger",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brokers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
