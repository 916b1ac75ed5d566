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
    amount_usd: the amount's USD value when booked (USD rows: the amount; the coin P&L and fee of an inverse
    fill, a liquidation's included, and a cross insurance-fund refill: amount x that fill's price, as its
    event and its commission; other coin rows: amount x the coin's close at that bar; NaN when no price was
    known), so fees, funding and P&L paid in coin can be totalled.
    """

    __slots__ = ()

    def __new__(cls, time: datetime, kind: str, currency: str, wallet: str, amount: float,
                instrument: str = "", note: str = "", amount_usd: float = math.nan) -> LedgerEntry:
        _check_kind(kind)
        if currency == "USD":
            amount_usd = amount
        return tuple.__new__(cls, (time, kind, currency, wallet, amount, instrument, note, amount_usd))


#: Column names of :meth:`Ledger.to_columns` / :meth:`Ledger.to_records`, in LedgerEntry field order ("time"
#: is "datetime" there).
_COLUMN_NAMES: tuple[str, ...] = ("datetime", *_EntryFields._fields[1:])


def note_text(note: str | tuple) -> str:
    """A ledger note as text: a note is a string, or a template and its arguments (``("rate {:.6g}",
    0.0001)``) that :meth:`str.format` renders when the note is read (see :class:`Ledger`)."""
    return note if note.__class__ is str else note[0].format(*note[1:])


def _check_kind(kind: str) -> None:
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}; known: {', '.join(sorted(LEDGER_KINDS))}")



class Ledger:
    """Append-only record of balance changes with running balances per (currency, wallet).

    Rows are stored as plain tuples in :class:`LedgerEntry` field order and handed out as LedgerEntry by
    :attr:`entries`. Why not store LedgerEntry itself: Python's cycle collector stops tracking a plain tuple
    of strings, floats and datetimes, but never a tuple subclass. A daily run books ~27,000 entries, and in a
    sweep every full collection walked all of them until the run's objects were freed (about 35 ms of
    collector time per BTC 1d configuration, see the README's Performance section).

    A note may be booked as a template and its arguments (``note=("settlement {:%Y-%m-%d %H:%M}", when)``)
    and is rendered when it is read (:attr:`entries`, :meth:`to_records`, :meth:`to_columns`,
    :meth:`note_texts`). A daily run books ~15,000 formatted notes (funding settlements, coin sales) that only
    a report shows; formatting them as they were booked cost ~5 % of a run's instructions. Arguments must be
    plain values (numbers, strings, datetimes), so the rows stay outside the cycle collector.
    """

    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._balances: dict[tuple[str, str], float] = defaultdict(float)

    def add(self, time: datetime, kind: str, currency: str, wallet: str, amount: float,
            instrument: str = "", note: str | tuple = "", amount_usd: float = math.nan) -> None:
        """Book one entry (fields as :class:`LedgerEntry`; ``amount_usd`` is ignored for USD rows; ``note``
        text, or a template and its arguments rendered when read)."""
        if kind not in LEDGER_KINDS:
            _check_kind(kind)
        amount = float(amount)
        self._rows.append((time, kind, currency, wallet, amount, instrument, note,
                           amount if currency == "USD" else float(amount_usd)))
        self._balances[(currency, wallet)] += amount

    @property
    def entries(self) -> list[LedgerEntry]:
        """Every entry in booking order, as :class:`LedgerEntry` (a new list on each access)."""
        return list(map(LedgerEntry._make, self._rendered()))

    def _rendered(self) -> list[tuple]:
        """The rows with every note as text."""
        return [row if row[6].__class__ is str else (*row[:6], note_text(row[6]), row[7])
                for row in self._rows]

    def note_texts(self) -> list[str]:
        """Every entry's note as text, in booking order."""
        return [note_text(row[6]) for row in self._rows]

    def balance(self, currency: str, wallet: str | None = None) -> float:
        """Sum of entries for ``currency`` (in one ``wallet``, or all wallets when None)."""
        if wallet is not None:
            return self._balances.get((currency, wallet), 0.0)
        return sum(v for (c, _), v in self._balances.items() if c == currency)

    def balances(self) -> dict[tuple[str, str], float]:
        return dict(self._balances)

    def total_by_kind(self, kind: str, currency: str | None = None) -> float:
        return sum(row[4] for row in self._rows if row[1] == kind
                   and (currency is None or row[2] == currency))

    def to_columns(self, notes: bool = True) -> dict[str, list[object]]:
        """The entries column by column (the fast way to build a table of a long ledger); ``notes=False``
        leaves out the note column (statistics never read it, and rendering it is most of the cost)."""
        rows = self._rows
        columns = {name: [row[i] for row in rows] for i, name in enumerate(_COLUMN_NAMES) if name != "note"}
        if notes:
            columns["note"] = self.note_texts()
            columns = {name: columns[name] for name in _COLUMN_NAMES}
        return columns

    def to_records(self) -> list[dict[str, object]]:
        return [dict(zip(_COLUMN_NAMES, row, strict=True)) for row in self._rendered()]

    def __len__(self) -> int:
        return len(self._rows)
