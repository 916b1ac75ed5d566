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

# Columns of events.csv, in this order (the contract), then the two MarginEvent fields added later
# (at the end, so a script reading columns by position still finds the first eleven): every field of
# brokers.events.MarginEvent is in the file. What size, equity_usd and margin_ratio hold depends on the kind:
# brokers.events.MarginEvent's docstring and the README's events.csv table say it per kind.
EVENT_COLUMNS: tuple[str, ...] = (
    "datetime", "kind", "instrument", "venue", "side", "size", "price",
    "equity_usd", "margin_ratio", "loss_usd", "fee_usd", "maintenance_margin_usd", "detail",
)
# Margin calls: the venue's warning level crossed, CME-style calls (below maintenance), and the desk's own
# (margin_buffer: the liquidation price nearer than the buffer at a close).
MARGIN_CALL_KINDS: tuple[str, ...] = ("margin_call", "cme_margin_call", "desk_margin_call")
# Forced closes: by the liquidation engine, or at the deadline of a missed CME call (the same set the
# broker reports through strategy.notify_liquidation). A missed CME call is also counted in cme_calls_missed.
LIQUIDATION_KINDS: tuple[str, ...] = ("liquidation", "partial_liquidation", "cme_margin_call_missed")

EventLike = MarginEvent | Mapping[str, object]
_DAY_NS = pd.Timedelta(days=1).value  # nanoseconds in a calendar day


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
    """Full records (every MarginEvent field; ``time`` renamed ``datetime``, a UTC Timestamp), in log
    order."""
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
    """Number of events of each kind in :data:`brokers.events.EVENT_KINDS` (0 for kinds that never
    happened)."""
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
    >= 0; coin amounts at the fill price, as in the ledger); cme_calls, cme_calls_met, cme_calls_missed;
    loan_calls, loan_calls_met, loan_liquidations; loan_liquidation_loss_usd (USD); insurance_fund_events and
    insurance_shortfall_usd (sum of their loss_usd, USD); missed_payments; insolvencies (count of
    ``insolvency`` events: the miner raises one on the first bar of each insolvency, on which its bills went
    unpaid, and none while it stays insolvent; the cure is an ``insolvency_cured`` event, not counted);
    insolvency and ruin (bool: at least one such event).
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
        "insolvencies": counts["insolvency"],
        "insolvency": counts["insolvency"] > 0,
        "ruin": counts["ruin"] > 0,
    }


def insolvency_spells(events: Iterable[EventLike],
                      times: Sequence[datetime] | pd.DatetimeIndex) -> list[tuple[int, int | None]]:
    """The insolvencies of a run as ``(first bar, cure bar)`` indices into ``times`` (the run's bar times,
    sorted), in time order (events sorted by time, stably): a spell starts at the bar of an ``insolvency``
    event and ends at the bar of the next ``insolvency_cured`` event, or is still open at the run's end (cure
    bar ``None``). The miner is insolvent from the first bar through the bar before the cure: on the cure bar
    it pays its arrears and mines again.
    An event is placed on the last bar at or before its time. An ``insolvency`` event while a spell is open (a
    hand-made log; the miner raises none) does not start another; an ``insolvency_cured`` with none open is
    ignored. Empty when there are no bars."""
    stamps = metrics.epoch_ns(pd.DatetimeIndex(times))
    if not stamps.size:
        return []
    spells: list[tuple[int, int | None]] = []
    start: int | None = None
    # in time order (a stable sort: same-time events keep their log order), so a log out of order cannot end a
    # spell before it starts
    marks = sorted(((int(metrics.epoch_ns(pd.DatetimeIndex([r["datetime"]]))[0]), r["kind"])
                    for r in event_records(events) if r["kind"] in ("insolvency", "insolvency_cured")),
                   key=lambda mark: mark[0])
    for at, kind in marks:
        opens = kind == "insolvency" and start is None
        cures = kind == "insolvency_cured" and start is not None
        if not (opens or cures):
            continue
        bar = max(int(np.searchsorted(stamps, at, side="right")) - 1, 0)
        if opens:
            start = bar
        else:
            spells.append((start, bar))
            start = None
    if start is not None:
        spells.append((start, None))
    return spells


def insolvent_days(events: Iterable[EventLike], times: Sequence[datetime] | pd.DatetimeIndex) -> float:
    """Calendar days the miner spent insolvent: over the spells of :func:`insolvency_spells`, the time from
    the first bar's time to the cure bar's time, or, for a spell never cured, to the end of the run's last bar
    (its time plus its duration: the median bar spacing, a day for a lone bar, the rule of
    :func:`analyzers.metrics.bar_durations_days`, here in nanoseconds). That is the summed duration of the
    bars that closed insolvent, each bar counting until the next one, as in :func:`time_above_level`, so 4h
    and 1h bars count hours / 24. Summed in nanoseconds, so whole bars give exact fractions (three 4h bars:
    0.5). 0.0 with no insolvency or no bars."""
    index = pd.DatetimeIndex(times)
    stamps = metrics.epoch_ns(index)
    return spell_days(insolvency_spells(events, index), stamps, 0, len(stamps))


def spell_days(spells: Sequence[tuple[int, int | None]], stamps: np.ndarray, lo: int, hi: int) -> float:
    """Calendar days of the bars ``lo`` to ``hi - 1`` (``stamps``: all the run's bar times,
    ``metrics.epoch_ns``) that fall in ``spells`` (:func:`insolvency_spells`: each spell's first bar up to its
    cure bar, or to the run's last bar when never cured). Each bar lasts until the next one, the run's last
    bar the median spacing (:func:`last_bar_ns`); summed in nanoseconds. Over the whole run (``lo`` 0, ``hi``
    the bar count) this is :func:`insolvent_days`; ``analyzers.windows`` clips it to a window."""
    total_ns = 0.0
    for start, cure in spells:
        first, stop = max(start, lo), min(len(stamps) if cure is None else cure, hi)
        if first >= stop:
            continue
        if stop < len(stamps):
            total_ns += int(stamps[stop]) - int(stamps[first])
        else:  # through the run's last bar, which lasts the median spacing
            total_ns += int(stamps[-1]) - int(stamps[first]) + last_bar_ns(stamps)
    return total_ns / _DAY_NS


def last_bar_ns(stamps: np.ndarray) -> float:
    """The last bar's duration in nanoseconds (``stamps``: the bars' times, ``metrics.epoch_ns``): the median
    bar spacing, a day for a lone bar (the rule of :func:`analyzers.metrics.bar_durations_days`)."""
    return float(np.median(np.diff(stamps))) if stamps.size > 1 else float(_DAY_NS)


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
