"""Ledger views: the ledger table, the futures leg's P&L and the mining operation's P&L per bar.

Pure pandas (no backtrader). Ledger amounts are signed (positive credits the account); the totals here turn
costs into positive USD numbers and say so in the key (``..._paid_usd``, ``..._cost_usd``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analyzers import metrics
from brokers.ledger import Ledger, LedgerEntry

LEDGER_COLUMNS: tuple[str, ...] = ("datetime", "kind", "currency", "wallet", "amount", "instrument", "note",
                                   "amount_usd")
#: The columns of ``ledger_frame(..., notes=False)``: what the statistics read.
ANALYSIS_COLUMNS: tuple[str, ...] = tuple(column for column in LEDGER_COLUMNS if column != "note")
USD_CURRENCIES: frozenset[str] = frozenset({"USD", "USDT", "USDC"})  # one unit, as brokers.ledger says
# Every ledger kind that moves the futures wallet's USD because of the futures position itself (deposits
# and transfers are not P&L). insurance_fund: a shortfall covered by the venue counts for the account.
FUTURES_PNL_KINDS: tuple[str, ...] = (
    "realized_pnl", "settlement", "funding", "fee", "liquidation", "liquidation_fee", "insurance_fund",
)
MINING_KINDS: tuple[str, ...] = ("mining_credit", "power_cost", "hosting_cost", "pool_fee")

LedgerLike = Ledger | Iterable[LedgerEntry | Mapping[str, object]]


def frame_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """``frame.to_dict("records")`` (same values and types) without pandas' per-cell boxing."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        # a ledger has ~5 entries per bar time: box each once
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            codes, stamps = pd.factorize(column, use_na_sentinel=False)
            boxed = stamps.tolist()
            columns.append([boxed[code] for code in codes.tolist()])
        else:
            columns.append(column.tolist())
    names = list(frame.columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


class LedgerRecords(Sequence):
    """A run's ledger records (``Ledger.to_records()`` shape: one dict per entry, keys :data:`LEDGER_COLUMNS`)
    kept as the :func:`ledger_frame` table they come from; the dicts are built on first access by index or
    iteration. A run books about five entries per bar, and building those dicts cost as much as the rest of
    the result, while the report and the mining view only need the table (:func:`ledger_frame` returns a
    copy of it). Compares equal to a list of the same records."""

    __slots__ = ("_frame", "_records", "_notes")

    def __init__(self, frame: pd.DataFrame, notes: Callable[[], list[str]] | None = None) -> None:
        """``frame``: a :func:`ledger_frame` table; or, with ``notes`` (a function returning every entry's
        note, in order), a ``ledger_frame(..., notes=False)`` table whose note column is added when the
        records or the table are first read."""
        expected = LEDGER_COLUMNS if notes is None else ANALYSIS_COLUMNS
        if list(frame.columns) != list(expected):
            raise ValueError(f"LedgerRecords needs a ledger_frame table with columns {list(expected)}, "
                             f"got {list(frame.columns)}.")
        self._frame = frame
        self._notes = notes
        self._records: list[dict[str, object]] | None = None

    def _full(self) -> pd.DataFrame:
        """The table with its note column (added on first use when it was left out)."""
        if self._notes is not None:
            texts = self._notes()
            if len(texts) != len(self._frame):
                raise ValueError(f"LedgerRecords: {len(texts)} notes for {len(self._frame)} ledger entries.")
            frame = self._frame.copy()
            frame.insert(LEDGER_COLUMNS.index("note"), "note", texts)
            self._frame, self._notes = frame, None
        return self._frame

    def _materialised(self) -> list[dict[str, object]]:
        if self._records is None:
            self._records = frame_records(self._full())
        return self._records

    def frame(self) -> pd.DataFrame:
        """A copy of the table (callers may modify it)."""
        return self._full().copy()

    def __len__(self) -> int:
        return len(self._frame)

    def __getitem__(self, index):  # type: ignore[override]
        return self._materialised()[index]

    def __iter__(self):
        return iter(self._materialised())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LedgerRecords):
            other = other._materialised()
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return self._materialised() == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-by-content, like the list it stands for

    def __repr__(self) -> str:
        return f"LedgerRecords({len(self)} entries)"


def ledger_frame(ledger: LedgerLike, notes: bool = True) -> pd.DataFrame:
    """The ledger as a table with columns exactly :data:`LEDGER_COLUMNS` (datetime UTC), in entry order.

    ``notes=False``: without the note column. Every statistic here reads the other columns only, and a
    Ledger renders its notes when they are read (see :class:`brokers.ledger.Ledger`), so an analysis that
    only needs figures skips formatting ~15,000 notes per daily run.
    """
    if not notes:
        if isinstance(ledger, Ledger) and len(ledger):
            frame = pd.DataFrame(ledger.to_columns(notes=False), columns=list(ANALYSIS_COLUMNS))
            return _typed(frame)
        return ledger_frame(ledger).loc[:, list(ANALYSIS_COLUMNS)]
    if isinstance(ledger, LedgerRecords):
        return ledger.frame()
    if isinstance(ledger, Ledger):
        records = ledger.to_columns() if len(ledger) else []
    else:
        records = []
        for entry in ledger:
            if isinstance(entry, LedgerEntry):
                records.append({"datetime": entry.time, "kind": entry.kind, "currency": entry.currency,
                                "wallet": entry.wallet, "amount": entry.amount,
                                "instrument": entry.instrument, "note": entry.note,
                                "amount_usd": entry.amount_usd})
            else:
                record = dict(entry)
                if "time" in record and "datetime" not in record:
                    record["datetime"] = record.pop("time")
                records.append(record)
    if not records:
        frame = pd.DataFrame({column: pd.Series(dtype=object) for column in LEDGER_COLUMNS})
        frame["amount"] = frame["amount"].astype(float)
    elif isinstance(records, dict):  # a Ledger's columns
        frame = pd.DataFrame(records, columns=list(LEDGER_COLUMNS))
    else:
        frame = pd.DataFrame.from_records(records, columns=list(LEDGER_COLUMNS))
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The ledger table's types: datetime as UTC, amount as float, amount_usd filled in for USD rows."""
    stamps = pd.to_datetime(frame["datetime"])
    frame["datetime"] = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    frame["amount"] = frame["amount"].astype(float)
    # USD value when booked: the amount for USD rows; for coin rows the broker's valuation (NaN if none)
    usd_rows = _usd(frame)
    value = pd.to_numeric(frame["amount_usd"], errors="coerce").astype(float)
    frame["amount_usd"] = value.where(~usd_rows, frame["amount"])
    return frame


def _currency_in(frame: pd.DataFrame, currencies: frozenset[str]) -> pd.Series:
    """Rows whose currency, upper-cased, is in ``currencies`` (upper-cases the few distinct names, not every
    row)."""
    codes, names = pd.factorize(frame["currency"], use_na_sentinel=False)
    hits = np.fromiter((str(name).upper() in currencies for name in names), dtype=bool, count=len(names))
    return pd.Series(hits[codes], index=frame.index)


def _usd(frame: pd.DataFrame) -> pd.Series:
    return _currency_in(frame, USD_CURRENCIES)


def _usd_value(frame: pd.DataFrame) -> pd.Series:
    """Each row's USD value when booked (``LedgerEntry.amount_usd``: a fill's coin rows at the fill price,
    other coin rows at that bar's close; unknown values count as 0)."""
    return frame["amount_usd"].fillna(0.0)


def futures_leg_totals(ledger: pd.DataFrame, wallet: str = "futures") -> dict[str, float]:
    """USD totals of the futures leg from the ``wallet`` entries of :data:`FUTURES_PNL_KINDS`, in every
    currency: coin entries (inverse contracts' P&L, fees and funding) count at their USD value when booked.

    realized_pnl_usd, settlement_usd, liquidation_usd, insurance_fund_usd: signed sums (USD);
    funding_paid_usd / funding_received_usd: sums of negative / positive funding entries, both >= 0;
    funding_net_usd: received - paid; fees_paid_usd: trading fees plus liquidation fees, >= 0;
    realized_total_usd: signed sum of every :data:`FUTURES_PNL_KINDS` entry (the leg's realised P&L after
    costs).
    """
    rows = ledger[ledger["wallet"] == wallet]
    values = _usd_value(rows)
    by_kind = values.groupby(rows["kind"]).sum()
    funding = values[rows["kind"] == "funding"]

    def kind_sum(kind: str) -> float:
        return float(by_kind.get(kind, 0.0))

    return {
        "realized_pnl_usd": kind_sum("realized_pnl"),
        "settlement_usd": kind_sum("settlement"),
        "liquidation_usd": kind_sum("liquidation"),
        "insurance_fund_usd": kind_sum("insurance_fund"),
        "funding_paid_usd": 0.0 - float(funding[funding < 0].sum()),
        "funding_received_usd": float(funding[funding > 0].sum()),
        "funding_net_usd": kind_sum("funding"),
        "fees_paid_usd": 0.0 - (kind_sum("fee") + kind_sum("liquidation_fee")),
        "realized_total_usd": float(sum(kind_sum(kind) for kind in FUTURES_PNL_KINDS)),
    }


def fees_paid_usd(ledger: pd.DataFrame) -> float:
    """All trading and liquidation fees over every wallet and currency, in USD when paid, as a positive
    number."""
    rows = ledger[ledger["kind"].isin(("fee", "liquidation_fee"))]
    return 0.0 - float(_usd_value(rows).sum())


def funding_paid_usd(ledger: pd.DataFrame) -> float:
    """Funding paid over every wallet and currency (negative funding entries, in USD when paid), >= 0."""
    values = _usd_value(ledger[ledger["kind"] == "funding"])
    return 0.0 - float(values[values < 0].sum())


def cumulative_by_time(ledger: pd.DataFrame, kinds: Iterable[str], times: pd.DatetimeIndex,
                       wallet: str | None = None, currency: str = "USD") -> pd.Series:
    """Running sum of the ``kinds`` entries (one ``wallet`` or all), sampled at ``times``: in USD over every
    currency (coin rows at their USD value when booked) when ``currency`` is USD, else that coin's amounts.

    Each entry counts from its own timestamp on; ``times`` must be UTC and sorted.
    """
    mask = ledger["kind"].isin(tuple(kinds))
    in_usd = currency.upper() in USD_CURRENCIES
    if not in_usd:
        mask &= ledger["currency"] == currency
    if wallet is not None:
        mask &= ledger["wallet"] == wallet
    rows = ledger.loc[mask]
    if rows.empty:
        return pd.Series(0.0, index=times)
    amounts = _usd_value(rows) if in_usd else rows["amount"]
    per_time = amounts.groupby(rows["datetime"]).sum().sort_index().cumsum()
    positions = np.searchsorted(metrics.epoch_ns(per_time.index), metrics.epoch_ns(times), side="right") - 1
    values = np.where(positions >= 0, per_time.to_numpy()[np.maximum(positions, 0)], 0.0)
    return pd.Series(values, index=times)


def futures_pnl_by_time(ledger: pd.DataFrame, times: pd.DatetimeIndex, unrealized_usd: pd.Series,
                        wallet: str = "futures") -> pd.Series:
    """The futures leg's P&L to date at each of ``times`` (UTC, sorted), USD: the running sum of the
    ``wallet``'s :data:`FUTURES_PNL_KINDS` entries (:func:`cumulative_by_time`) plus ``unrealized_usd`` (the
    open positions' P&L at each time, NaN counted as 0); 0 before the first entry. Its last value is the
    summary's ``futures_pnl_usd``."""
    realized = cumulative_by_time(ledger, FUTURES_PNL_KINDS, times, wallet=wallet)
    return realized + unrealized_usd.fillna(0.0)


def price_at(times: pd.Series | pd.DatetimeIndex, prices: pd.Series) -> np.ndarray:
    """Price (USD per coin) in force at each time: the last bar's price at or before it (the first price
    for times before the first bar)."""
    stamps = pd.DatetimeIndex(times)
    positions = np.searchsorted(metrics.epoch_ns(prices.index), metrics.epoch_ns(stamps), side="right") - 1
    return prices.to_numpy(dtype=float)[np.maximum(positions, 0)]


def mining_frame(ledger: pd.DataFrame, asset: str, prices: pd.Series) -> pd.DataFrame:
    """Mining P&L per ledger timestamp (one row per bar that had mining entries), UTC index.

    Columns: coins_gross (coin credited by ``mining_credit``), pool_fee_coin (pool fee taken in coin, >= 0),
    coins_net (coins_gross - pool_fee_coin), revenue_usd (coins_gross x price at that bar), power_cost_usd,
    hosting_cost_usd, pool_fee_usd (coin fee x price plus any USD fee) - all costs >= 0 -,
    net_cash_flow_usd (revenue - power - hosting - pool fee), cash_cost_usd (costs paid in USD: power +
    hosting + USD pool fee), break_even_price_usd (USD per coin: cash_cost_usd / coins_net, the price at
    which the net coins pay the cash costs; NaN where no coin was mined, e.g. curtailed).
    ``prices``: USD per coin, UTC index, used to value coins at the time they were mined.
    """
    columns = ["coins_gross", "pool_fee_coin", "coins_net", "revenue_usd", "power_cost_usd",
               "hosting_cost_usd", "pool_fee_usd", "net_cash_flow_usd", "cash_cost_usd",
               "break_even_price_usd"]
    rows = ledger[ledger["kind"].isin(MINING_KINDS)].copy()
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns},
                            index=pd.DatetimeIndex([], tz="UTC", name="datetime"))
    is_coin = _currency_in(rows, frozenset({asset.upper()}))
    is_usd = _usd(rows)
    rows["coin"] = np.where(is_coin, rows["amount"], 0.0)
    rows["usd"] = np.where(is_usd, rows["amount"], 0.0)
    sums = rows.groupby(["datetime", "kind"], observed=True)[["coin", "usd"]].sum()
    coin = sums["coin"].unstack("kind", fill_value=0.0).reindex(columns=list(MINING_KINDS), fill_value=0.0)
    usd = sums["usd"].unstack("kind", fill_value=0.0).reindex(columns=list(MINING_KINDS), fill_value=0.0)
    price = price_at(coin.index, prices) if len(prices) else np.full(len(coin), math.nan)

    frame = pd.DataFrame(index=pd.DatetimeIndex(coin.index, name="datetime"))
    frame["coins_gross"] = coin["mining_credit"].to_numpy()
    frame["pool_fee_coin"] = -coin["pool_fee"].to_numpy()
    frame["coins_net"] = frame["coins_gross"] - frame["pool_fee_coin"]
    frame["revenue_usd"] = frame["coins_gross"] * price
    frame["power_cost_usd"] = -usd["power_cost"].to_numpy()
    frame["hosting_cost_usd"] = -usd["hosting_cost"].to_numpy()
    usd_pool_fee = -usd["pool_fee"].to_numpy()
    frame["pool_fee_usd"] = frame["pool_fee_coin"] * price + usd_pool_fee
    frame["net_cash_flow_usd"] = (frame["revenue_usd"] - frame["power_cost_usd"]
                                  - frame["hosting_cost_usd"] - frame["pool_fee_usd"])
    frame["cash_cost_usd"] = frame["power_cost_usd"] + frame["hosting_cost_usd"] + usd_pool_fee
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["break_even_price_usd"] = np.where(
            frame["coins_net"] > 0, frame["cash_cost_usd"] / frame["coins_net"], np.nan)
    return frame
