"""The loans table of a run: each loan's account (``mining.loans.loan_statement``: the debt when the run
started or the loan was drawn, the debt at the end, the interest and principal paid, the collateral) beside
the counts of its own events (by instrument, counted as the summary counts every loan's), one row per loan.

Pure Python over plain records (no backtrader): ``build_run_result`` fills ``RunResult.loans`` from the
strategy's ``loan_statements()`` and the event log; the report, the comparison and the CLI print it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from analyzers import event_stats
from analyzers.report import format_value

#: The columns of :func:`loan_rows`, in order (units in the names: USD, coin; counts of events).
LOAN_COLUMNS: tuple[str, ...] = (
    "loan", "lender", "type", "drawn", "debt_start_usd", "debt_end_usd", "interest_paid_usd",
    "principal_paid_usd", "collateral_repaid_usd", "collateral_end_coin", "missed_payments",
    "payments_carried", "loan_calls", "loan_calls_met", "loan_liquidations", "loan_liquidation_loss_usd",
)
#: The :func:`analyzers.event_stats.event_totals` keys counted over each loan's own events.
EVENT_KEYS: tuple[str, ...] = ("missed_payments", "loan_calls", "loan_calls_met", "loan_liquidations",
                               "loan_liquidation_loss_usd")
#: The rows of a printed loans table (the loans across, each headed by its lender).
TABLE_KEYS: tuple[str, ...] = tuple(key for key in LOAN_COLUMNS if key != "lender")


def loan_rows(statements: Iterable[Mapping[str, object]],
              events: Iterable[event_stats.EventLike]) -> list[dict[str, object]]:
    """One row per loan, columns :data:`LOAN_COLUMNS`: its ``statement`` (``mining.loans.loan_statement``)
    and, over the events whose instrument is the loan's, :data:`EVENT_KEYS` (``event_stats.event_totals``) and
    ``payments_carried`` (``loan_payment_carried`` events: payments that waited for a closed market)."""
    records = event_stats.event_records(events)
    rows = []
    for statement in statements:
        own = [record for record in records if record["instrument"] == statement["loan"]]
        totals = event_stats.event_totals(own)
        counted = {key: totals[key] for key in EVENT_KEYS}
        counted["payments_carried"] = event_stats.count_events(own)["loan_payment_carried"]
        row = {**statement, **counted}
        rows.append({column: row[column] for column in LOAN_COLUMNS})
    return rows


def loan_title(row: Mapping[str, object], policy: str = "") -> str:
    """A loan's column heading: its lender (``existing lender``), after its policy's name when given."""
    return f"{policy}: {row['lender']}" if policy else str(row["lender"])


def loans_table(loans: Mapping[str, Sequence[Mapping[str, object]]]) -> tuple[list[dict[str, object]],
                                                                              list[str]]:
    """The rows (``{"metric": key, heading: value, ...}`` for :data:`TABLE_KEYS`) and the headings of one
    table, loans across: ``loans`` maps a policy's name ("" for a single run) to its :func:`loan_rows`."""
    columns = [(loan_title(row, policy), row) for policy, rows in loans.items() for row in rows]
    table = [{"metric": key, **{title: row[key] for title, row in columns}} for key in TABLE_KEYS]
    return table, [title for title, _ in columns]


def loans_markdown(loans: Mapping[str, Sequence[Mapping[str, object]]], asset: str = "") -> str:
    """The loans section of summary.md: :func:`loans_table` as a Markdown table (values with their units,
    coin amounts in ``asset``)."""
    table, titles = loans_table(loans)
    owed = any(row.get("drawn") == "before the run" for rows in loans.values() for row in rows)
    preamble = "Each loan's account over the run. " + (
        "Debt owed at the first bar (debt_usd) was spent before the run: no cash was credited for it, and "
        "equity (initial_equity_usd on) is net of it from the opening. " if owed else "")
    lines = ["## Loans", "",
             preamble + "Events are counted by the loan's instrument. Files: loans.csv.", "",
             "| metric | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    lines += [f"| {row['metric']} | " + " | ".join(format_value(str(row["metric"]), row[title], asset)
                                                    for title in titles) + " |" for row in table]
    return "\n".join([*lines, ""])
