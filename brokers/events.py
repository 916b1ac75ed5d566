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
    "insurance_fund": "a liquidation lost more than the isolated margin held, or left a cross account "
                      "bankrupt; the venue's insurance fund absorbs the shortfall, recorded here",
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
    """One event. Money fields are in USD unless the name says otherwise. Every field is a column of
    ``events.csv`` (``time`` as ``datetime``).

    time: bar datetime (UTC, naive) at which the event happened.
    kind: one of :data:`EVENT_KINDS`.
    instrument: the contract's symbol (``"BTCUSDT"``, ``"BTCUSD"``, ``"XBTUSD"``), ``"loan:<name>"`` or
    ``"fleet"``; venue: venue profile name, or the lender for a loan ("" for insolvency and its cure).
    side: ``"long"``, ``"short"`` or ``""``.
    size, price, equity_usd, maintenance_margin_usd and margin_ratio mean one thing per kind of event:

    * ``margin_call``, ``desk_margin_call``: size the position in coins (negative for a short); price the
      bar's close (USD per coin); equity_usd the position's margin balance at the close: an isolated
      position's own margin plus its unrealised P&L, not the account's equity; a cross position's, the cross
      wallet (less the other cross positions' maintenance margin, plus their unrealised P&L) plus its
      unrealised P&L; maintenance_margin_usd the position's; margin_ratio maintenance / margin balance.
    * ``liquidation``: size the position closed (coins); price the fill price; equity_usd, isolated: the
      position's margin balance at the fill (its margin plus the fill's P&L, fee not yet taken: the fee takes
      at most this, so often all of it), cross: the account's cross equity in the margin currency (the USD
      wallet with free cash, or the coin futures wallet x fill price) after the forced close;
      maintenance_margin_usd and margin_ratio at the liquidation price (so about 1.0).
    * ``partial_liquidation``: size the part cut (coins); price the market price of the liquidation (the
      liquidation price, or the bar's open when it gapped through); equity_usd the isolated position's
      margin balance at that price, before the cut.
    * ``insurance_fund``: size and price the liquidation's; equity_usd and maintenance_margin_usd 0;
      margin_ratio the liquidation's (isolated), inf (cross); loss_usd the shortfall the venue absorbed.
    * ``cme_margin_call``, ``cme_margin_call_met``, ``cme_margin_call_missed``: equity_usd the futures
      account's equity at the close (the USD futures wallet with free cash, plus the CME positions' margin
      and unrealised P&L), maintenance_margin_usd their maintenance summed, margin_ratio maintenance / equity;
      size the (first) position's coins (missed: each closed position's own row).
    * ``loan_call``, ``loan_call_met``, ``loan_liquidation`` and a coin loan's ``missed_payment``: size the
      loan's debt in USD (principal plus accrued interest), not coins; price the coin price the lender used;
      equity_usd the collateral's value less the debt; maintenance_margin_usd 0; margin_ratio the LTV
      (debt / collateral value, fraction). An equipment loan's ``missed_payment``: size its outstanding
      balance in USD; price, equity_usd and margin_ratio 0.
    * ``bill_carried``, ``bill_carried_paid``, ``loan_payment_carried``, ``loan_payment_carried_paid``,
      ``insolvency``, ``insolvency_cured``: size 0; price the bar's coin price; equity_usd the whole account's
      equity (``broker.getvalue()``: every wallet, machines, net of liabilities); maintenance_margin_usd and
      margin_ratio 0.
    * ``ruin`` is a kind a strategy may raise (the summary's ``ruined`` flag is from equity itself); the
      engine raises none.

    loss_usd: the price loss realised at the event's fill (>= 0), fee excluded: 0 when the fill is at a gain
    on the entry, as when funding has drained a long's margin above its entry (the detail then says how far);
    a loan liquidation's shortfall (debt left owed). fee_usd: fee charged (>= 0). A coin amount (inverse
    contracts) is valued at ``price``, as the ledger values the fill's coin rows.
    detail: free text for people (deadline, tier, amounts topped up, where a drained margin went, ...).
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
