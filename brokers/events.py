"""Immutable event records: margin calls, liquidations, loan calls, bills and loan payments carried,
insolvency.

One shape for every event the broker, the loans and the miner strategy raise, so one analyzer and one
``events.csv`` report them all. Pure standard library (no backtrader import).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

# Every kind of event, with what triggers it.
EVENT_KINDS: dict[str, str] = {
    "margin_call": "margin ratio (maintenance margin / margin balance) crossed the warning level upward",
    "desk_margin_call": "the miner's own call (margin_buffer): at a close the liquidation price was nearer "
                        "than margin_buffer of the hedge's close; on_margin_call answers it at that close",
    "liquidation": "the bar's adverse extreme crossed the liquidation price; the position was force-closed",
    "partial_liquidation": "the position was reduced to a lower maintenance tier instead of closed in full",
    "insurance_fund": "a liquidation lost more than the isolated margin or the cross wallet held; the "
                      "venue's insurance fund absorbs the shortfall, recorded here",
    "cme_margin_call": "CME-style: equity fell below maintenance margin; restore initial margin by deadline",
    "cme_margin_call_met": "CME-style margin call met: equity back at initial margin before the deadline",
    "cme_margin_call_missed": "CME-style margin call missed: the position was closed at the deadline",
    "loan_call": "a coin-collateralised loan's LTV reached its margin-call LTV; top-up due by the deadline",
    "loan_call_met": "a loan call was met (collateral topped up or loan repaid) before its deadline",
    "loan_liquidation": "a loan's LTV reached its liquidation LTV (or a call was missed); collateral sold",
    "missed_payment": "an equipment-loan instalment, or a coin loan's month of interest, could not be paid "
                      "from the treasury (USD cash, coins sold, a draw on the hedge) when due, or, if it was "
                      "carried over a closure of the hedge's market, at the first bar the market traded",
    "bill_carried": "the bar's USD costs could be paid only by drawing on the hedge, whose market did not "
                    "trade during the bar (CME on a weekend): the unpaid part is owed (liability "
                    "bills_carried) until the first bar the market trades; mining continues",
    "bill_carried_paid": "the bills carried over a market closure were paid, at the first bar the hedge's "
                         "market traded, before that bar's own costs",
    "loan_payment_carried": "a loan instalment or month of interest due at the bar could be paid only by "
                            "drawing on the hedge, whose market did not trade during the bar (CME on a "
                            "weekend): it waits, whole, for the first bar the market trades (the lender's "
                            "next business day); it stays in the loan's own liability "
                            "meanwhile and is not missed",
    "loan_payment_carried_paid": "a loan payment carried over a market closure was paid, at the first bar "
                                 "the hedge's market traded, before that bar's other payments",
    "insolvency": "the miner could not pay its USD costs even after selling coins and drawing on the hedge; "
                  "mining stopped until cured",
    "insolvency_cured": "the insolvent miner paid its arrears (and purchases due meanwhile); mining resumed",
    "ruin": "total equity reached zero or below",
}


@dataclass(frozen=True, slots=True)
class MarginEvent:
    """One event. Money fields are in USD unless the name says otherwise.

    time: bar datetime (UTC, naive) at which the event happened.
    kind: one of :data:`EVENT_KINDS`.
    instrument: e.g. ``"BTCUSDT-PERP"`` or ``"loan:coin_loan"``; venue: venue profile name or lender.
    side: ``"long"``, ``"short"`` or ``""``; size: position size in coins (negative for short) or loan USD.
    price: the price used (liquidation fill price, mark at the call, ...), USD per coin.
    equity_usd: account (or isolated position) equity in USD at the event.
    maintenance_margin_usd: maintenance margin in USD at the event (0 where not applicable).
    margin_ratio: maintenance margin / margin balance (fraction; 1.0 means liquidation); for loans, the LTV.
    loss_usd: the price loss realised at the event's fill (>= 0), fee excluded: 0 when the fill is at a gain
    on the entry, as when funding has drained a long's margin above its entry (the detail then says how far);
    fee_usd: fee charged (>= 0). A coin loss or fee (inverse contracts) is valued at ``price``, as the ledger
    values the fill's coin rows.
    detail: free text for people (deadline, tier, amounts topped up, ...).
    """

    time: datetime
    kind: str
    instrument: str
    venue: str
    side: str
    size: float
    price: float
    equity_usd: float
    maintenance_margin_usd: float
    margin_ratio: float
    loss_usd: float = 0.0
    fee_usd: float = 0.0
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; known: {', '.join(EVENT_KINDS)}")

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
