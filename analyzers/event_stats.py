"""Counts, totals and the events table from the broker's event log (``list[MarginEvent]``).

Pure pandas (no backtrader): the MarginEvents/Summary analyzers, the report writer and notebooks share
these, so a count means the same thing in ``summary.json`` and in ``events.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from analyzers import metrics
from brokers.events import EVENT_KINDS, MarginEvent

# Columns of events.csv, in this order (the contract).
EVENT_COLUMNS: tuple[str, ...] = (
    "datetime", "kind", "instrument", "venue", "side", "size", "price",
    "equity_usd", "margin_ratio", "loss_usd", "fee_usd",
)
# Margin-call warnings: the venue's warning level crossed, and CME-style calls (below maintenance).
MARGIN_CALL_KINDS: tuple[str, ...] = ("margin_call", "cme_margin_call")
# Forced closes: by the liquidation engine, or at the deadline of a missed CME call (the same set the
# broker reports through strategy.notify_liquidation). A missed CME call is also counted in cme_calls_missed.
LIQUIDATION_KINDS: tuple[str, ...] = ("liquidation", "partial_liquidation", "cme_margin_call_missed")

EventLike = MarginEvent | Mapping[str, object]


def _event_dict(event: EventLike) -> dict[str, object]:
    record = event.as_dict() if isinstance(event, MarginEvent) else dict(event)
    if "time" in record and "datetime" not in record:
        record["datetime"] = record.pop("time")
    stamp = record.get("datetime")
    if stamp is not None and not isinstance(stamp, str):  # broker times are naive UTC: say so
        stamp = pd.Timestamp(stamp)
        record["datetime"] = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return record


def event_records(events: Iterable[EventLike]) -> list[dict[str, object]]:
    """Full records (every MarginEvent field; ``time`` renamed ``datetime``, a UTC Timestamp), in log order."""
    return [_event_dict(event) for event in events]


def events_frame(events: Iterable[EventLike]) -> pd.DataFrame:
    """The events table: one row per event, columns exactly :data:`EVENT_COLUMNS`; datetime is UTC."""
    records = event_records(events)
    frame = pd.DataFrame.from_records(records, columns=list(EVENT_COLUMNS)) if records else pd.DataFrame(
        {column: pd.Series(dtype=object) for column in EVENT_COLUMNS}
    )
    frame = frame.loc[:, list(EVENT_COLUMNS)]
    stamps = pd.to_datetime(frame["datetime"])
    frame["datetime"] = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return frame


def count_events(events: Iterable[EventLike]) -> dict[str, int]:
    """Number of events of each kind in :data:`brokers.events.EVENT_KINDS` (0 for kinds that never happened)."""
    counts = dict.fromkeys(EVENT_KINDS, 0)
    for record in event_records(events):
        kind = str(record["kind"])
        if kind not in counts:
            raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(EVENT_KINDS)}")
        counts[kind] += 1
    return counts


def event_totals(events: Sequence[EventLike]) -> dict[str, float | int | bool]:
    """Headline numbers of an event log.

    margin_calls: count of :data:`MARGIN_CALL_KINDS`; liquidations: count of :data:`LIQUIDATION_KINDS`;
    liquidation_loss_usd / liquidation_fee_usd: sums of loss_usd / fee_usd over those liquidations (USD,
    >= 0; coin amounts at the fill price, as in the ledger); cme_calls, cme_calls_met, cme_calls_missed; loan_calls, loan_calls_met, loan_liquidations;
    loan_liquidation_loss_usd (USD); insurance_fund_events and insurance_shortfall_usd (sum of their
    loss_usd, USD); missed_payments; insolvency and ruin (bool: at least one such event).
    """
    records = event_records(events)
    counts = count_events(records)

    def total(kinds: tuple[str, ...], field: str) -> float:
        return float(sum(float(r[field]) for r in records if r["kind"] in kinds))  # type: ignore[arg-type]

    return {
        "margin_calls": sum(counts[k] for k in MARGIN_CALL_KINDS),
        "liquidations": sum(counts[k] for k in LIQUIDATION_KINDS),
        "liquidation_loss_usd": total(LIQUIDATION_KINDS, "loss_usd"),
        "liquidation_fee_usd": total(LIQUIDATION_KINDS, "fee_usd"),
        "cme_calls": counts["cme_margin_call"],
        "cme_calls_met": counts["cme_margin_call_met"],
        "cme_calls_missed": counts["cme_margin_call_missed"],
        "loan_calls": counts["loan_call"],
        "loan_calls_met": counts["loan_call_met"],
        "loan_liquidations": counts["loan_liquidation"],
        "loan_liquidation_loss_usd": total(("loan_liquidation",), "loss_usd"),
        "insurance_fund_events": counts["insurance_fund"],
        "insurance_shortfall_usd": total(("insurance_fund",), "loss_usd"),
        "missed_payments": counts["missed_payment"],
        "insolvency": counts["insolvency"] > 0,
        "ruin": counts["ruin"] > 0,
    }


def time_above_level(times: Sequence[datetime] | pd.DatetimeIndex, ratios: Sequence[float] | np.ndarray,
                     level: float) -> tuple[float, float]:
    """Time spent with ``ratio >= level``: (calendar days, percent of the run's bars).

    Each bar counts for the time until the next bar; the last bar counts for the median bar spacing (one
    day on daily bars). NaN ratios (margin ratio not reported) count as below the level. ``(nan, nan)``
    for an empty series.
    """
    values = np.asarray(ratios, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    above = np.nan_to_num(values, nan=-np.inf) >= level
    durations = metrics.bar_durations_days(pd.DatetimeIndex(times))
    return float(durations[above].sum()), float(above.mean() * 100.0)
