"""The ledger: every balance change as an entry, so balances can be rebuilt and reconciled at any bar.

Pure standard library (no backtrader import). The broker appends; analyzers and reports read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

# Kinds of entry. Amounts are signed: positive credits the account, negative debits it.
LEDGER_KINDS: frozenset[str] = frozenset(
    {
        "deposit", "withdrawal", "transfer",            # explicit user operations
        "fill", "fee", "realized_pnl", "funding",       # trading (fill: spot coin buy/sell cash legs)
        "settlement",                                   # dated-future cash settlement / CME variation margin
        "liquidation", "liquidation_fee",               # forced close: realised loss, venue fee
        "insurance_fund",                               # shortfall beyond the wallet (cross margin)
        "mining_credit", "power_cost", "hosting_cost", "pool_fee",  # mining operations
        "coin_sale", "coin_purchase",                   # treasury spot trades (both legs)
        "loan_draw", "loan_payment", "loan_interest",    # financing
        "collateral_pledge", "collateral_release", "collateral_sale",
        "hardware_purchase",
    }
)


class _EntryFields(NamedTuple):
    time: datetime
    kind: str
    currency: str
    wallet: str
    amount: float
    instrument: str = ""
    note: str = ""
    amount_usd: float = math.nan


class LedgerEntry(_EntryFields):
    """One balance change (an immutable named tuple: a ledger appends thousands per run, and a tuple is
    built several times faster than a frozen dataclass).

    time: bar datetime (UTC, naive); currency: ``"USD"`` (USD and USDT are treated as one unit), ``"BTC"``
    or ``"ETH"``; wallet: ``"spot"``, ``"futures"`` or ``"collateral"``; amount: signed change in
    ``currency`` units; instrument: what caused it (``"BTCUSDT-PERP"``, ``"fleet"``, ``"loan:..."``);
    amount_usd: the amount's USD value when booked (USD rows: the amount; coin rows: amount x the coin's
    price at that bar; NaN when no price was known), so fees, funding and P&L paid in coin can be totalled.
    """

    __slots__ = ()

    def __new__(cls, time: datetime, kind: str, currency: str, wallet: str, amount: float, instrument: str = "",
                note: str = "", amount_usd: float = math.nan) -> LedgerEntry:
        _check_kind(kind)
        if currency == "USD":
            amount_usd = amount
        return tuple.__new__(cls, (time, kind, currency, wallet, amount, instrument, note, amount_usd))


def _check_kind(kind: str) -> None:
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}; known: {', '.join(sorted(LEDGER_KINDS))}")



class Ledger:
    """Append-only list of :class:`LedgerEntry` with running balances per (currency, wallet)."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self._balances: dict[tuple[str, str], float] = defaultdict(float)

    def add(self, time: datetime, kind: str, currency: str, wallet: str, amount: float,
            instrument: str = "", note: str = "", amount_usd: float = math.nan) -> LedgerEntry:
        if kind not in LEDGER_KINDS:
            _check_kind(kind)
        amount = float(amount)
        # LedgerEntry's own __new__, inlined: a run books tens of thousands of entries
        entry = tuple.__new__(LedgerEntry, (time, kind, currency, wallet, amount, instrument, note,
                                            amount if currency == "USD" else float(amount_usd)))
        self.entries.append(entry)
        self._balances[(currency, wallet)] += amount
        return entry

    def balance(self, currency: str, wallet: str | None = None) -> float:
        """Sum of entries for ``currency`` (in one ``wallet``, or all wallets when None)."""
        if wallet is not None:
            return self._balances.get((currency, wallet), 0.0)
        return sum(v for (c, _), v in self._balances.items() if c == currency)

    def balances(self) -> dict[tuple[str, str], float]:
        return dict(self._balances)

    def total_by_kind(self, kind: str, currency: str | None = None) -> float:
        return sum(e.amount for e in self.entries if e.kind == kind and (currency is None or e.currency == currency))

    def to_columns(self) -> dict[str, list[object]]:
        """The entries column by column (the fast way to build a table of a long ledger)."""
        entries = self.entries
        return {"datetime": [e.time for e in entries], "kind": [e.kind for e in entries],
                "currency": [e.currency for e in entries], "wallet": [e.wallet for e in entries],
                "amount": [e.amount for e in entries], "instrument": [e.instrument for e in entries],
                "note": [e.note for e in entries], "amount_usd": [e.amount_usd for e in entries]}

    def to_records(self) -> list[dict[str, object]]:
        return [
            {"datetime": e.time, "kind": e.kind, "currency": e.currency, "wallet": e.wallet,
             "amount": e.amount, "instrument": e.instrument, "note": e.note, "amount_usd": e.amount_usd}
            for e in self.entries
        ]

    def __len__(self) -> int:
        return len(self.entries)
