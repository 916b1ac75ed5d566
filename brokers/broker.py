"""MarginBroker: backtrader's BackBroker plus maintenance margin, funding, margin calls and liquidation.

Install with ``cerebro.broker = MarginBroker(cash=..., coins={'BTC': 1.0})`` and give each futures data a
:class:`brokers.commission.LinearFuturesCommInfo` or :class:`~brokers.commission.InverseFuturesCommInfo`
(``cerebro.broker.addcommissioninfo(comminfo, name=data._name)``).

Each bar, in this order (``next``):

1. orders fill exactly as BackBroker fills them (submission check, activation, pending orders);
2. funding: every settlement time of the venue (e.g. 00/08/16 UTC) inside the bar is paid on the position
   held after the fills, at the bar's ``mark`` line if the data has one, else its close. The rate comes
   from ``funding_rates(data, when)`` if given, else the data's ``funding_rate`` line (fraction per 8 h),
   else the constant ``funding_rate`` (or the venue default) - that fallback is listed in ``assumptions``;
3. liquidation check at the bar's adverse extreme (low for longs, high for shorts) against the
   liquidation price of :mod:`brokers.formulas`; the forced close is a real backtrader order
   (``order.info['reason'] == 'liquidation'``) filled at the open if the bar opens beyond the liquidation
   price, else at that price (BitMEX: at the bankruptcy price). The venue's liquidation fee is charged,
   capped at the margin left; an isolated position never loses more than its margin (the shortfall is
   an ``insurance_fund`` event); a cross account is judged as a whole (wallet plus its positions'
   unrealised P&L against their maintenance margin: positions are closed, the largest loss first, until it
   is compliant), and the insurance fund brings a bankrupt one back to 0 (an ``insurance_fund`` event and
   ledger entry);
4. margin calls: a ``margin_call`` event when a position's margin ratio (maintenance / margin balance)
   crosses ``warning_level`` upward; for deadline venues (CME) a ``cme_margin_call`` when equity falls
   below maintenance, met when equity is back at initial margin before the deadline, else the position
   is closed at the deadline bar's close; dated contracts past ``expiry`` are cash-settled at the close;
5. mark to market at the close (linear variation margin, as BackBroker) and the value update.

Trading calendars (a venue profile's ``trading_hours``, :mod:`brokers.sessions`; CME Globex): orders on such a
data fill only at the open of a bar whose open time is inside a session, and wait otherwise (they fill at the
first such bar's open); the deadline call is judged only on bars during which the market traded, its deadline
counted in hours of the trading week (see ``_check_deadline_call``); a close at a bar's close (a missed call,
``close_now``) fills at the close of a bar during which the market traded, and ``close_now`` on a bar during
which it did not (a Saturday) waits for the open of the first bar whose open is in a session. Cash settlement
at expiry is a fixing, not a trade, and marks use the close on every bar.

Accounting: the USD futures wallet is backtrader's ``cash`` plus the margin posted to linear positions,
less the variation margin already settled on open positions (so it excludes unrealised PnL, as a venue's
wallet balance does). Coin balances live in ``(asset, wallet)`` pairs; inverse positions post coin margin
and book coin PnL and fees. Every balance change is a :class:`brokers.ledger.LedgerEntry`;
:meth:`MarginBroker.reconcile` returns the largest difference between the ledger and the balances
(:meth:`~MarginBroker.reconcile_usd` in USD).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime, timedelta

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt
from backtrader.order import BuyOrder, Order, SellOrder
from backtrader.utils.dateintern import num2date

from brokers import formulas, sessions
from brokers.commission import FuturesCommInfo, InverseFuturesCommInfo, LinearFuturesCommInfo
from brokers.events import MarginEvent
from brokers.ledger import Ledger
from brokers.venues import available_venues, load_venue
from minehedge.errors import ConfigError, check_between, check_choice, check_positive
from minehedge.timeframes import SPANNED_TIMEFRAMES, span_timeframe, timeframe_span

USD = "USD"
WALLETS = ("spot", "futures", "collateral")
DEFAULT_WARNING_LEVEL = 0.8  # margin ratio of a margin call when no venue says otherwise (Binance's level)
_EPOCH = datetime(1970, 1, 1)
# Ledger notes booked as templates and rendered when read (brokers.ledger.Ledger); times are naive UTC.
_SETTLEMENT_NOTE = "settlement {:%Y-%m-%d %H:%M}"
_SETTLEMENT_RATE_NOTE = "settlement {:%Y-%m-%d %H:%M} rate {:.6g}"
_CALL_KINDS = frozenset({"margin_call", "cme_margin_call"})
_LIQUIDATION_KINDS = frozenset({"liquidation", "partial_liquidation", "cme_margin_call_missed"})
_DUST = 1e-9  # relative rounding tolerance of a wallet balance after a liquidation (fraction of notional)
#: USD by which a payment may fall short of what it pays and still count as paid: float rounding of a sale
#: sized to cover a bill (coins x price x (1 - fee)) leaves spot cash ~1e-11 USD short of it, or a few
#: 1e-11 over.
CASH_TOLERANCE_USD = 1e-9
_FILL_KINDS = {  # order.info['reason'] -> (ledger kind of the realised PnL, ledger kind of the fee)
    "liquidation": ("liquidation", "liquidation_fee"),
    "expiry": ("settlement", "fee"),
}


def check_warning_level(value: float) -> float:
    """``warning_level`` (margin ratio of a margin call: a fraction, 0.8 = 80 %) as float if 0 < it <= 1 (1 is
    where the venue liquidates); else ConfigError. A percent (80) would switch margin calls off."""
    return check_between("warning_level", value, 0.0, 1.0, low_open=True, unit="fraction",
                         hint="A margin ratio: 0.8 is 80 %; 1 is where the venue liquidates.")


def coin_name(parameter: str, name: object) -> str:
    """A coin's name as the broker keeps it, upper case (``'btc'`` -> ``'BTC'``); ConfigError for something
    that is not one (``'USD'`` is cash)."""
    coin = name.strip().upper() if isinstance(name, str) else ""
    if not coin or coin == USD:
        raise ConfigError(f"{parameter} {name!r} is not a coin's name (such as 'BTC'); USD is cash: use "
                          "cash= (futures wallet) or spot_cash=.")
    return coin


def check_coin_keys(parameter: str, mapping: object, example: str) -> dict[str, object]:
    """``mapping`` (coin -> value; None: empty) with its keys upper-cased (``'btc'`` -> ``'BTC'``), the coins'
    names everywhere in the broker; ConfigError for something not a mapping, a key that is not a coin's name
    (``'USD'`` is cash) or a coin named twice."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{parameter}={mapping!r} is not a mapping; allowed: a dict such as "
                          f"{parameter}={example}.")
    out: dict[str, object] = {}
    for key, value in mapping.items():
        coin = coin_name(f"{parameter} key", key)
        if coin in out:
            raise ConfigError(f"{parameter}={mapping!r} names {coin} twice; give each coin once.")
        out[coin] = value
    return out


@functools.cache
def _venue_assets() -> tuple[str, ...]:
    """The coins of the bundled venue profiles' contracts (BTC, ETH): the coins a data's name may start
    with to price that coin (``BTCUSDT``, ``XBTUSD``, ``ETH``)."""
    return tuple(sorted({spec.asset for name in available_venues() for spec in load_venue(name).instruments}))


def _bar_utc(data) -> datetime:
    """``data``'s current bar time, naive UTC: backtrader's date number as stored, whatever the feed's ``tz``
    (which moves ``data.datetime.datetime()`` to that zone; funding hours and sessions are UTC)."""
    return num2date(data.lines.datetime[0])


def _pair_text(span: timedelta) -> str:
    """The feed parameters for bars ``span`` apart: ``timeframe=bt.TimeFrame.Minutes, compression=60``."""
    pair = span_timeframe(span)
    if pair is None:
        return f"bars {span} apart have no backtrader timeframe"
    return f"timeframe=bt.TimeFrame.{bt.TimeFrame.Names[pair[0]]}, compression={pair[1]}"


def usd_debit_legs(amount: float, spot: float, free_futures: float) -> tuple[float, float]:
    """USD a payment of ``amount`` takes from spot cash and from the futures wallet's free cash (both USD, a
    payment that :meth:`MarginBroker.debit_usd` found covered within :data:`CASH_TOLERANCE_USD`).

    Spot pays first, the futures wallet the rest. A leg smaller than the tolerance beside a real one is
    rounding, not a payment, and is not split off: when spot covers all but that much, spot pays alone (the
    remainder, under 1e-9 USD, is the tolerance the cover check allows); when spot holds only that much,
    the futures wallet pays alone (the spot dust stays where it is). Without this a ledger gained a power
    bill's row of -7e-12 USD from the futures wallet on about one daily bar in forty of a hedged run.
    """
    from_spot = max(min(amount, spot), 0.0)
    from_futures = max(min(amount - from_spot, free_futures), 0.0)
    if from_spot and from_futures:
        if from_futures < CASH_TOLERANCE_USD:
            return from_spot, 0.0
        if from_spot < CASH_TOLERANCE_USD:
            return 0.0, max(min(amount, free_futures), 0.0)
    return from_spot, from_futures


class MarginBroker(bt.brokers.BackBroker):
    """BackBroker with margin, funding, liquidation, multi-currency wallets, an event log and a ledger.

    Params (in addition to BackBroker's; ``cash`` goes to the USD futures wallet):
      - ``cash`` (USD, >= 0): BackBroker's, the opening futures wallet.
      - ``spot_cash`` (USD, >= 0): opening USD in the spot wallet.
      - ``coins`` (dict asset -> coins >= 0): opening coin balances, in ``coin_wallet``; keys are upper-cased
        (``'btc'`` is BTC). Every coin held must be priced by a data (see ``price_datas``) or
        :meth:`set_price`: the first bar raises ConfigError for one that is not.
      - ``coin_wallet``: wallet of the opening coins (``'futures'``: usable as inverse margin).
      - ``warning_level`` (fraction in (0, 1] or None): margin ratio that raises a ``margin_call`` event; None
        (the default): each position's venue profile's ``warning_level`` (Binance: 0.8).
      - ``liquidation`` / ``funding`` (bool): master switches (each comminfo has its own as well).
      - ``funding_rate`` (fraction per 8 h or None): constant fallback, |rate| <= 0.05
        (:data:`brokers.formulas.MAX_PLAUSIBLE_RATE`); None = the venue's default.
      - ``funding_rates`` (callable ``(data, when) -> rate or None``): a funding series (fraction per 8 h).
      - ``funding_line`` / ``mark_line``: names of optional data lines (funding rate per 8 h, mark price).
      - ``bar_time``: ``'open'`` if bar datetimes are bar open times (the shared data), ``'close'`` if close.
      - ``price_datas`` (dict asset -> data name): which data prices coin balances (default: a data whose
        name starts with the coin, ``XBT`` read as BTC, else the data of a futures scheme on that coin).

    Numbers given as strings holding a number are converted; anything else out of range is a ConfigError
    naming the parameter, the value and what is allowed. At the first bar the broker also refuses a
    commission scheme added under a name no data has, a futures scheme added under a data's name whose coin
    contradicts that name (the default scheme: at the data's first order), a replayed data
    (``cerebro.replaydata``) with such a scheme or pricing a held coin, and a coin balance nothing prices;
    at a futures data's second bar, bars finer than its declared timeframe and compression (see
    :meth:`_first_bar_checks`).
    """

    params = (
        ("spot_cash", 0.0),
        ("coins", None),
        ("coin_wallet", "futures"),
        ("warning_level", None),
        ("liquidation", True),
        ("funding", True),
        ("funding_rate", None),
        ("funding_rates", None),
        ("funding_line", "funding_rate"),
        ("mark_line", "mark"),
        ("bar_time", "open"),
        ("price_datas", None),
    )

    def __init__(self) -> None:
        # checked before BackBroker divides by it (its fund shares)
        self.p.cash = check_positive("cash", self.p.cash, allow_zero=True, unit="USD")
        super().__init__()
        if self.p.warning_level is not None:
            self.p.warning_level = check_warning_level(self.p.warning_level)
        self.p.spot_cash = check_positive("spot_cash", self.p.spot_cash, allow_zero=True, unit="USD")
        check_choice("bar_time", self.p.bar_time, ("open", "close"))
        check_choice("coin_wallet", self.p.coin_wallet, WALLETS)
        if self.p.funding_rate is not None:
            bound = formulas.MAX_PLAUSIBLE_RATE
            self.p.funding_rate = check_between(
                "funding_rate", self.p.funding_rate, -bound, bound, unit="fraction per 8 h",
                hint="Rates are fractions, not percents: 0.01 % per 8 h is 0.0001.")
        if self.p.funding_rates is not None and not callable(self.p.funding_rates):
            raise ConfigError(f"funding_rates={self.p.funding_rates!r} is not callable; allowed: a function "
                              "(data, when) -> rate (fraction per 8 h) or None.")
        self.p.coins = {coin: check_positive(f"coins[{coin!r}]", qty, allow_zero=True, unit="coins")
                        for coin, qty in check_coin_keys("coins", self.p.coins, "{'BTC': 1.0}").items()}
        self.p.price_datas = check_coin_keys("price_datas", self.p.price_datas, "{'BTC': 'BTCUSDT'}")
        self._reset_state()

    def set_cash(self, cash: float) -> None:
        """BackBroker's ``set_cash``: the opening futures wallet (USD, >= 0)."""
        super().set_cash(check_positive("cash", cash, allow_zero=True, unit="USD"))

    setcash = set_cash

    # --- lifecycle ----------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.events: list[MarginEvent] = []
        self.ledger = Ledger()
        self.assumptions: list[str] = []
        self._now = _EPOCH
        self._first_bar = True  # no bar has run yet (see next() and open_at())
        self._priced: set[str] = set()  # coins found priced (by a data or set_price): _require_price
        self._traded: set[int] = set()  # ids of the datas judged at their first order: _judge_traded
        self._spacing_due: list = []  # futures datas whose bar spacing is still to check (_check_spacing)
        self._usd_spot = 0.0
        self._coins: dict[tuple[str, str], float] = defaultdict(float)
        # data -> isolated margin added/taken (USD or coin)
        self._extra: dict[object, float] = defaultdict(float)
        # data -> [contracts, entry] of inverse positions
        self._inv: dict[object, list[float]] = {}
        self._owners: dict[object, object] = {}
        self._in_call: dict[object, bool] = {}
        self._cme_deadline: datetime | None = None
        self._next_funding: dict[object, datetime] = {}
        self._funding_src: dict[object, tuple] = {}
        self._spans: dict[object, timedelta] = {}
        self._price_data: dict[str, object] | None = None
        self._fixed_prices: dict[str, float] = {}
        self._bar_prices: dict[str, float] = {}  # asset -> this bar's close (cleared by next())
        self._pseudo_coin: dict[str, float] = defaultdict(float)
        self._liabilities: dict[str, float] = {}  # name -> USD owed (loans), subtracted from equity
        self._assets: dict[str, float] = {}  # name -> USD value of what is owned off the wallets (machines)
        self._dirty = False
        self._now_data = None  # the data whose current bar time is self._now (set each bar by next)
        self._data0 = None  # cerebro's first data, found on the first bar
        # Between the end of next() and the next bar's next() no fill, mark or forced close can happen (orders
        # fill inside next()), so the isolated positions' settled variation margin is cached for that phase.
        self._between_bars = False
        self._settled_cache: tuple[float, float] | None = None  # (isolated, cross): see _settled_split
        self._open_cache: list[tuple] | None = None
        self._liq_cache: dict[object, tuple] = {}  # data -> (comminfo, tiers, size, entry, wallet, price)
        self._close_margins: dict[object, tuple] = {}  # data -> (inputs, figures) of _close_margin
        self._calendars: dict[object, str | None] = {}  # data -> its venue's trading calendar (None: 24/7)
        # data -> market open at this bar's open (cleared by next)
        self._open_at_start: dict[object, bool] = {}
        # close_now closes waiting for the market to open: (data, reason, size).
        self._deferred: list[tuple] = []
        # (order, scheme, entry before the fill) while an inverse order fills: see notify()
        self._inverse_fill: tuple | None = None
        # data -> ({tradeid: net contracts} of inverse fills, the open tradeids that have shared the data with
        # another since they opened): notify applies the broker's entry only to a trade that never shared it
        self._tradeids: dict[object, tuple[dict[int, float], set[int]]] = {}

    @property
    def warning_level(self) -> float:
        """Margin ratio (fraction) at which a margin_call event is raised: the ``warning_level`` param, else
        the venue profile's of the futures schemes installed (the first one's, if they differ), else 0.8."""
        if self.p.warning_level is not None:
            return self.p.warning_level
        for ci in self.comminfo.values():
            if isinstance(ci, FuturesCommInfo):
                return ci.venue.warning_level
        return DEFAULT_WARNING_LEVEL

    @warning_level.setter
    def warning_level(self, value: float | None) -> None:
        self.p.warning_level = None if value is None else check_warning_level(value)

    def start(self) -> None:
        super().start()
        fixed = self._fixed_prices  # set_price before the run is configuration, as the params are: kept
        self._reset_state()
        self._fixed_prices = fixed
        if self.cash:
            self.ledger.add(self._now, "deposit", USD, "futures", self.cash, note="opening cash")
        if self.p.spot_cash:
            self._usd_spot = float(self.p.spot_cash)
            self.ledger.add(self._now, "deposit", USD, "spot", self._usd_spot, note="opening spot cash")
        for asset, qty in self.p.coins.items():
            if qty:
                self._coins[(asset, self.p.coin_wallet)] += float(qty)
                self.ledger.add(self._now, "deposit", asset, self.p.coin_wallet, float(qty),
                                note="opening coins")
        self._get_value()

    # --- order plumbing -----------------------------------------------------------------------------
    def buy(self, owner, data, *args, **kwargs):
        self._owners[data] = owner
        self._judge_traded(data)
        return super().buy(owner, data, *args, **kwargs)

    def sell(self, owner, data, *args, **kwargs):
        self._owners[data] = owner
        self._judge_traded(data)
        return super().sell(owner, data, *args, **kwargs)

    def _judge_traded(self, data) -> None:
        """At a data's first order: :meth:`_judge_scheme` on its futures scheme. A scheme added under the
        data's name is judged at the first bar already; backtrader's default scheme (``addcommissioninfo``
        without a name) covers every data, including datas only read as signals, so it is judged only on the
        datas that trade."""
        if id(data) not in self._traded:
            ci = self.getcommissioninfo(data)
            if isinstance(ci, FuturesCommInfo):
                self._judge_scheme(data, ci)
                # by identity: backtrader's lines compare with == into a line operation, always truthy
                if (all(due is not data for due in self._spacing_due)
                        and timeframe_span(data._timeframe, data._compression)):
                    self._spacing_due.append(data)  # judged at the next bar's start, before the order fills
            self._traded.add(id(data))

    def check_submitted(self):
        if not self.submitted:  # called every bar; nothing to check most of the time
            return
        self._pseudo_coin.clear()
        # BackBroker checks orders against raw `cash`, which already holds the variation margin of open
        # isolated positions (a loss there is the position's, covered by its margin). Check against the free
        # balance instead, so a position that is losing can still be reduced and the wallet still used.
        shift = self._isolated_settled()
        self.cash -= shift
        try:
            super().check_submitted()
        finally:
            self.cash += shift

    def _execute(self, order, ago=None, price=None, cash=None, position=None, dtcoc=None):
        comminfo = self.getcommissioninfo(order.data)
        if not isinstance(comminfo, FuturesCommInfo):
            return super()._execute(order, ago=ago, price=price, cash=cash, position=position, dtcoc=dtcoc)
        if ago is None:
            return self._pseudo_execute(order, comminfo, cash, position)
        nbits = len(order.executed.exbits)
        if comminfo.is_inverse:  # the fill's notification carries the entry it is booked against (notify)
            held = self._inv.get(order.data)
            sizes, shared = self._tradeids.get(order.data, ({}, set()))
            alone = order.tradeid not in shared and not any(
                size for tradeid, size in sizes.items() if tradeid != order.tradeid)
            self._inverse_fill = (order, comminfo, held[1] if held and alone else 0.0)
        try:
            if comminfo.is_inverse:
                # limit orders pay the maker rate (taker for everything else)
                with comminfo.maker_fill() if order.exectype == Order.Limit else nullcontext():
                    if not self._refuse_inverse_open(order, comminfo, ago, price, dtcoc):
                        # BackBroker nullifies an open when USD cash < its commission, but an inverse fee is
                        # coin (checked with the coin margin, refunded in USD by _after_fill). Lend USD cash
                        # exactly that commission for the fill (|size| x (face x rate + fixed): no price).
                        allowance = comminfo.getcommission(abs(order.executed.remsize), 1.0)
                        self.cash += allowance
                        try:
                            super()._execute(order, ago=ago, price=price, cash=cash, position=position,
                                             dtcoc=dtcoc)
                        finally:
                            self.cash -= allowance
                    return self._after_fill(order, comminfo, nbits)  # books the coin fee at the same rate
            if order.exectype == Order.Limit:
                with comminfo.maker_fill():
                    super()._execute(order, ago=ago, price=price, cash=cash, position=position, dtcoc=dtcoc)
                    return self._after_fill(order, comminfo, nbits)
        finally:
            self._inverse_fill = None
        shift = self._isolated_settled()  # as in check_submitted: fills see the free balance, not raw cash
        self.cash -= shift
        try:
            super()._execute(order, ago=ago, price=price, cash=cash, position=position, dtcoc=dtcoc)
        finally:
            self.cash += shift
        return self._after_fill(order, comminfo, nbits)

    def notify(self, order):
        """Queue a copy of ``order`` for its owner (BackBroker). The copy of an inverse fill carries the
        scheme with the entry the fill was booked against (:meth:`InverseFuturesCommInfo.with_entry`), so the
        owner's Trade computes the pnl the broker booked, on the harmonic entry. A trade that has shared the
        data with another open ``tradeid`` keeps backtrader's own figure, on its own (arithmetic) entry: the
        position's entry is then not that trade's."""
        super().notify(order)
        fill = self._inverse_fill
        if fill is not None and fill[0] is order and fill[2]:
            self.notifs[-1].comminfo = fill[1].with_entry(fill[2])

    def _settled_split(self) -> tuple[float, float]:
        """Variation margin of open linear positions already moved into ``cash`` (USD; < 0 = losses): the
        isolated positions' total and the cross positions' total."""
        if self._settled_cache is not None:
            return self._settled_cache
        isolated = cross = 0.0
        for data, pos in self.positions.items():  # called on every cash question: kept to a plain loop
            if pos.size:
                ci = self.getcommissioninfo(data)
                if isinstance(ci, LinearFuturesCommInfo):
                    if ci.p.margin_mode == "isolated":
                        isolated += self._settled(data, pos, ci)
                    else:
                        cross += self._settled(data, pos, ci)
        if self._between_bars:
            self._settled_cache = (isolated, cross)
        return isolated, cross

    def _isolated_settled(self) -> float:
        """Variation margin of open isolated linear positions already in ``cash`` (USD): the orders' free
        balance leaves it out (a loss there is the position's, covered by its margin)."""
        return self._settled_split()[0]

    def _after_fill(self, order, comminfo, nbits):
        """Ledger (and coin book) of a real fill; releases hand-added isolated margin when flat."""
        data = order.data
        if len(order.executed.exbits) == nbits:
            return None
        bit = order.executed.exbits[-1]
        pnl_kind, fee_kind = _FILL_KINDS.get(order.info.get("reason"), ("realized_pnl", "fee"))
        instrument = comminfo.spec.symbol
        comm = bit.closedcomm + bit.openedcomm
        if comminfo.is_inverse:
            self.cash += comm  # the fee is coin: undo backtrader's USD debit
            self._book_inverse_fill(data, comminfo, bit.size, bit.price, order, pnl_kind, fee_kind)
            sizes, shared = self._tradeids.setdefault(data, ({}, set()))
            sizes[order.tradeid] = sizes.get(order.tradeid, 0.0) + bit.size
            open_ids = {tradeid for tradeid, size in sizes.items() if size and self.positions[data].size}
            if len(open_ids) > 1:
                shared |= open_ids
            shared &= open_ids  # a tradeid's next trade starts afresh
            if not open_ids:
                sizes.clear()
        else:
            if comm:
                self.ledger.add(self._now, fee_kind, USD, "futures", -comm, instrument)
            if bit.pnl:
                self.ledger.add(self._now, pnl_kind, USD, "futures", bit.pnl, instrument)
            if not self.positions[data].size and self._extra.get(data):
                self.cash += self._extra.pop(data)  # isolated margin added by hand goes back to the wallet
        if order.info.get("reason") != "liquidation":  # a partial liquidation keeps its margin (see there)
            self._release_isolated_margin(data, comminfo, bit.size)
        self._settled_cache = None  # the position changed (a fill between bars: close_now)
        self._dirty = True
        if not self.positions[data].size:
            self._end_calls(data)
        return None

    def _end_calls(self, data) -> None:
        """A flat position's margin call ends with it: the next position on ``data`` is warned afresh, and a
        CME call (on the account) ends once no deadline-venue position is left, so a new contract is never
        closed at a deadline it was not called for."""
        self._in_call.pop(data, None)
        if self._cme_deadline is not None and not any(
                p.size and isinstance(ci := self.getcommissioninfo(d), FuturesCommInfo)
                and ci.venue.margin_call == "deadline" for d, p in self.positions.items()):
            self._cme_deadline = None

    def _release_isolated_margin(self, data, ci, filled: float) -> None:
        """A reducing fill of an isolated position releases the margin added to it (``extra``: top-ups, less
        funding paid from it) in proportion to the size closed, as the posted margin is; a fill that flips
        the position releases all of it. Kept whole, a reduction that realises a loss would leave the free
        balance short while the smaller position held the margin that had covered that loss."""
        extra = self._extra.get(data)
        if not extra:
            return
        after = self.positions[data].size
        before = after - filled
        if before * after < 0:
            released = extra
        elif abs(after) < abs(before):
            released = extra * (1.0 - abs(after) / abs(before))
        else:
            return
        self._extra[data] = extra - released
        if not ci.is_inverse:
            # linear: from the isolated margin to free cash (one wallet, no ledger entry)
            self.cash += released

    def _pseudo_execute(self, order, comminfo, cash, position):
        """Submission check: USD margin through BackBroker; coin margin and leverage brackets here."""
        size = order.executed.remsize
        price = order.created.price if not self.p.coo else order.data.open[0]
        before = position.size
        after = before + size
        if not comminfo.is_inverse:
            free = cash
            cash = super()._execute(order, cash=cash, position=position)  # USD margin, as BackBroker
            if cash < 0.0:
                order.addinfo(refusal="margin",
                              refused=f"free USD {free:,.2f} is short of the initial margin "
                                      f"+ fee by {-cash:,.2f}")
        if abs(after) > abs(before) or before * after < 0:
            reserved = self._pseudo_coin[comminfo.asset] if comminfo.is_inverse else 0.0
            need = self._check_opening(order, comminfo, before, after, price, reserved)
            if need is None:
                return -1.0
            if comminfo.is_inverse:
                self._pseudo_coin[comminfo.asset] += need
        if comminfo.is_inverse:
            position.update(size, price)
            return max(cash, 0.0)  # coin-margined: USD cash (even float dust below zero) does not gate it
        return cash

    def _check_opening(self, order, comminfo, before: float, after: float, price: float,
                       reserved: float = 0.0) -> float | None:
        """The venue's checks of the part of ``order`` that opens or adds, the position going from ``before``
        to ``after`` (signed units) at ``price`` (USD per coin): the new notional's bracket must allow the
        scheme's leverage and, for an inverse contract, the free coin (:meth:`_available_coin`, less
        ``reserved`` coin held for orders checked before) must cover the opened part's initial margin + fee
        in coin. Returns the coin needed (0.0 for a linear contract or when nothing opens), or None when
        refused, with the reason in ``order.info`` (``refusal``, ``refused`` and, for a bracket, ``bracket``).
        Used at submission (the previous close) and, for inverse orders, again at the fill."""
        if not (abs(after) > abs(before) or before * after < 0):
            return 0.0
        tiers = comminfo.tiers_at(self.bar_time(order.data))
        if comminfo.is_inverse:
            notional = formulas.inverse_notional_coin(after, comminfo.p.face, price)
            unit = comminfo.asset
        else:
            notional = abs(after) * comminfo.p.mult * price
            unit = USD
        allowed = formulas.tier_for_notional(tiers, notional).max_leverage
        if allowed + 1e-9 < comminfo.p.leverage:  # the new notional's bracket refuses this leverage
            order.addinfo(refusal="bracket",
                          refused=f"{comminfo.venue.name}'s bracket for a notional of {notional:,.2f} "
                                  f"{unit} allows at most {allowed:g}x; leverage is {comminfo.p.leverage:g}x",
                          bracket=(notional, unit, allowed))
            return None
        if not comminfo.is_inverse:
            return 0.0
        opened = abs(after) if before * after < 0 else abs(after) - abs(before)
        need = comminfo.posted_margin(opened, price) + comminfo.coin_fee(opened, price)
        asset = comminfo.asset
        free = self._available_coin(asset) - reserved
        if free < need:
            order.addinfo(refusal="margin",
                          refused=f"free {asset} {free:.8f} is short of the initial margin + fee {need:.8f}")
            return None
        return need

    def _refuse_inverse_open(self, order, comminfo, ago, price, dtcoc) -> bool:
        """Re-check an inverse order at its real fill: the coin margin was checked at submission, at the
        previous close, and a fill that gaps away needs more coin (a long filling 50 % lower needs twice the
        margin). Linear orders are re-checked by BackBroker, which nullifies an open whose cash goes short.
        If :meth:`_check_opening` refuses the opened part at ``price``, BackBroker fills the closing part
        alone (it nullifies the opened part, the order ends with status Margin) and True is returned;
        False (nothing done) when the order may fill whole."""
        if price is None:
            return False
        before = self.positions[order.data].size
        if self._check_opening(order, comminfo, before, before + order.executed.remsize, price) is not None:
            return False
        # BackBroker nullifies the opened part when its USD cash, after the closing part's commission, is
        # short of the opened part's commission: run it on a cash of -inf, which no commission lifts to 0 (a
        # maker rebate is a negative commission: BitMEX's -0.025 %), then put back the cash less the
        # commission of what was closed, as a fill would leave it (an inverse fill moves no other USD).
        saved, nbits = self.cash, len(order.executed.exbits)
        self.cash = -math.inf
        try:
            super()._execute(order, ago=ago, price=price, dtcoc=dtcoc)
        finally:
            bits = order.executed.exbits
            self.cash = saved - sum(bits[i].closedcomm for i in range(nbits, len(bits)))
        return True

    def _book_inverse_fill(self, data, ci, size, price, order, pnl_kind, fee_kind) -> None:
        """Coin accounting of an inverse fill: harmonic entry, realised coin PnL, coin fee; the ledger values
        both at the fill price, as the fill's commission and a liquidation event's loss and fee are."""
        asset, instrument = ci.asset, ci.spec.symbol
        state = self._inv.setdefault(data, [0.0, 0.0])
        contracts, entry = state
        realized = 0.0
        if contracts == 0.0 or contracts * size > 0:  # open or add: harmonic average entry
            total = contracts + size
            entry = total / (contracts / entry + size / price) if contracts else price
            contracts = total
        elif abs(size) <= abs(contracts):  # reduce or close
            realized = ci.pnl_coin(-size, entry, price)
            contracts += size
        else:  # reverse: close all, open the remainder at this fill
            realized = ci.pnl_coin(contracts, entry, price)
            contracts, entry = contracts + size, price
        state[0], state[1] = contracts, entry
        if contracts:
            # backtrader's Position averages prices arithmetically; keep the venue's harmonic entry there, so
            # that Position.price and the next closing fill's order.executed.pnl (BackBroker: profitandloss
            # from Position.price) agree with these books.
            self.positions[data].price = entry
        fee_coin = order.info.get("fee_coin")
        if fee_coin is None:
            fee_coin = ci.coin_fee(size, price)
        if realized:
            self._coin_move(asset, "futures", realized, pnl_kind, instrument, price=price)
        if fee_coin:
            self._coin_move(asset, "futures", -fee_coin, fee_kind, instrument, price=price)
        if contracts == 0.0:
            self._inv.pop(data, None)
            self._extra.pop(data, None)

    def _force_order(self, data, size: float, price: float, **info) -> Order:
        """Create, accept and execute at ``price`` a real order closing ``size`` (signed units held)."""
        cls = SellOrder if size > 0 else BuyOrder
        owner = self._owners.get(data)
        order = cls(owner=owner, data=data, size=abs(size), price=price, exectype=Order.Market,
                    simulated=False)
        order.addinfo(**info)
        order.addcomminfo(self.getcommissioninfo(data))
        self._ocoize(order, None)
        order.submit(self)
        order.accept(self)
        self.orders.append(order)
        self.notify(order)
        self._execute(order, ago=0, price=price)
        return order

    def _liquidate_before_stops(self) -> None:
        """A stop that closes a position beyond its liquidation price is never reached: on the way there the
        price meets the liquidation price, and the venue liquidates first (the loss of an isolated position
        capped at its margin). Such positions get the liquidation check before the bar's fills; it cancels
        the stop. Stops short of the liquidation price fill first, as BackBroker fills them."""
        checked = []
        for order in self.pending:
            if (order is None or order.exectype not in (Order.Stop, Order.StopLimit) or not order.alive()
                    or any(order.data is d for d, _, _ in checked)):
                continue
            data = order.data
            pos = self.positions.get(data)
            ci = self.getcommissioninfo(data)
            if not pos or not pos.size or order.size * pos.size >= 0 or not isinstance(ci, FuturesCommInfo):
                continue
            size, entry = self._size_entry(data, pos, ci)
            liq = ci.liquidation_price(size, entry, self._position_wallet(data, pos, ci), self._now)
            if (order.created.price <= liq) if size > 0 else (order.created.price >= liq):
                checked.append((data, pos, ci))
        if checked:
            self._check_liquidations(checked)

    def _cancel_open_orders(self, data) -> None:
        for order in list(self.pending):
            if order is not None and order.data is data and order.alive():
                self.cancel(order)

    # --- trading calendars (brokers.sessions) -------------------------------------------------------
    def _calendar(self, data) -> str | None:
        """The trading calendar of ``data``'s venue (its futures scheme's profile ``trading_hours``); None
        when the market never closes (every other venue, and data without a futures scheme)."""
        try:
            return self._calendars[data]
        except KeyError:
            ci = self.getcommissioninfo(data)
            calendar = self._calendars[data] = (ci.venue.trading_hours if isinstance(ci, FuturesCommInfo)
                                                else None)
            return calendar

    def _closed_at_open(self, data) -> bool:
        """True if ``data``'s venue has a calendar and its market is closed at the current bar's open."""
        calendar = self._calendars.get(data, 0)
        if calendar == 0:
            calendar = self._calendar(data)
        if calendar is None:
            return False
        state = self._open_at_start.get(data)
        if state is None:
            state = self._open_at_start[data] = sessions.is_open(calendar, self._bar_span(data)[0])
        return not state

    def market_open(self, data, at: str = "close") -> bool:
        """Whether ``data``'s market can trade at the current bar's ``at``: ``'open'``, the market is open at
        the bar's open time (where orders fill); ``'close'``, the market traded during the bar, so a position
        can be closed at the bar's close. On a bar that outlives its last session (Friday's daily bar, which
        CME Globex leaves at 22:00 UTC in winter; an hourly bar ending at the daily halt) the bar's close
        stands in for the session's last price, as it does when a deadline call is judged
        (:func:`brokers.sessions.check_time`). Always True for a venue without ``trading_hours``."""
        check_choice("at", at, ("open", "close"))
        calendar = self._calendar(data)
        if calendar is None:
            return True
        start, end = self._bar_span(data)
        if at == "open":
            return sessions.is_open(calendar, start)
        return sessions.check_time(calendar, start, end) is not None

    def _defer_close(self, data, reason: str, size: float) -> None:
        """Close ``size`` of ``data``'s position at the open of the first bar whose open is inside a session
        of its market (:meth:`close_now` on a bar during which the market did not trade)."""
        self._deferred.append((data, reason, size))

    def _run_deferred(self) -> None:
        """Closes that waited for the market: each fills at the open of the first bar whose open is in a
        session, before the strategy's pending orders, as many units as are still held (at most the size
        asked). The strategy's orders stay pending."""
        waiting = []
        for data, reason, size in self._deferred:
            if self._closed_at_open(data):
                waiting.append((data, reason, size))
                continue
            pos = self.positions.get(data)
            held = pos.size if pos else 0.0
            if not held or size * held < 0 or not isinstance(self.getcommissioninfo(data), FuturesCommInfo):
                continue  # closed or reversed meanwhile: nothing of what was asked is left to close
            self._force_order(data, math.copysign(min(abs(size), abs(held)), held), data.open[0],
                              reason=reason, deferred=True)
        self._deferred = waiting

    # --- the bar ------------------------------------------------------------------------------------
    def next(self):
        if self._first_bar:
            self._first_bar = False
            self._price_data = None  # strategies may have added commission infos after start()
            self._first_bar_checks()
        self._between_bars = False
        self._settled_cache = self._open_cache = None
        self._now = self._bar_datetime()
        if self._spacing_due:
            self._check_spacing()
        self._bar_prices.clear()
        self._open_at_start.clear()
        while self._toactivate:
            self._toactivate.popleft().activate()
        if self.p.checksubmit:
            self.check_submitted()
        credit = 0.0
        for data, pos in self.positions.items():
            if pos:
                comminfo = self.getcommissioninfo(data)
                dt0 = self.bar_time(data)
                dcredit = comminfo.get_credit_interest(data, pos, dt0)
                self.d_credit[data] += dcredit
                credit += dcredit
                pos.datetime = dt0
        self.cash -= credit
        self._process_order_history()
        if self.p.liquidation and self.pending:
            self._liquidate_before_stops()                               # 0.
        if self._deferred:
            # 1. forced closes the market waited for
            self._run_deferred()
        self.pending.append(None)
        while True:  # 1. fills, exactly as BackBroker (held while the data's market is closed at the open)
            order = self.pending.popleft()
            if order is None:
                break
            if order.expire():
                self.notify(order)
                self._ococheck(order)
                self._bracketize(order, cancel=True)
            elif not order.active() or self._closed_at_open(order.data):
                self.pending.append(order)
            else:
                self._try_exec(order)
                if order.alive():
                    self.pending.append(order)
                elif order.status == Order.Completed:
                    self._bracketize(order)
        open_futures = [(d, p, c) for d, p in self.positions.items()
                        if p.size and isinstance(c := self.getcommissioninfo(d), FuturesCommInfo)]
        if open_futures:
            if self.p.funding:
                self._settle_funding(open_futures)                       # 2.
            if self.p.liquidation:
                self._check_liquidations(open_futures)                   # 3.
            self._check_margin_calls()                                   # 4.
            self._settle_expiries()
        for data, pos in self.positions.items():                         # 5. mark to market
            if pos:
                comminfo = self.getcommissioninfo(data)
                self.cash += comminfo.cashadjust(pos.size, pos.adjbase, data.close[0])
                pos.adjbase = data.close[0]
        if self._cash_addition or self.p.fundmode:
            self._get_value()  # cash added and fund shares issued now, at the bar's value, as BackBroker does
        else:
            # Valued when first read (get_value, account_state, fundvalue): the strategy changes the account
            # before an analyzer records it, so valuing here as well would value each bar twice.
            self._dirty = True
        self._between_bars = True

    # --- checks at the first bars -------------------------------------------------------------------
    def _datas(self) -> list:
        """cerebro's datas (none before the broker is installed in a cerebro)."""
        return list(getattr(getattr(self, "cerebro", None), "datas", None) or [])

    def _first_bar_checks(self) -> None:
        """What can be judged only once the run has started (the strategies have added their schemes):

        * a commission scheme added under a name that no data has (backtrader would trade that data on its
          default scheme: no margin, funding or liquidation);
        * a futures scheme added under a data's name that contradicts the data (:meth:`_judge_scheme`); the
          default scheme is judged on a data at its first order (:meth:`_judge_traded`);
        * a coin balance that nothing prices (it would count as 0 USD), or that a replayed data prices:
          :meth:`_require_price`, called again when a coin is first credited.

        It also lists the futures datas with a scheme under their name whose bar spacing
        :meth:`_check_spacing` compares with their declared bar at their second bar (the default scheme's
        datas: from their first order). Each problem is a one-line ConfigError."""
        datas = self._datas()
        names = ", ".join(repr(d._name) for d in datas) or "none"
        named = {d._name for d in datas}
        for name, ci in self.comminfo.items():
            if name is not None and name not in named:
                raise ConfigError(
                    f"addcommissioninfo({type(ci).__name__}, name={name!r}): no data is named {name!r} (data "
                    f"names: {names}), so backtrader would trade it on its default scheme, without margin, "
                    f"funding or liquidation; pass the data's name, or name the data {name!r} "
                    f"(cerebro.adddata(feed, name={name!r})).")
        futures = [(d, ci) for d in datas if isinstance(ci := self.getcommissioninfo(d), FuturesCommInfo)]
        for data, ci in futures:
            if data._name in self.comminfo:  # added under its name; the default scheme: _judge_traded
                self._judge_scheme(data, ci)
        for (asset, _wallet), balance in list(self._coins.items()):
            if balance and asset not in self._priced:
                opening = self.p.coins.get(asset)
                self._require_price(asset, f"coins[{asset!r}]={opening!r}" if opening else
                                    f"the {balance:g} {asset} held at the first bar")
        self._spacing_due += [d for d, _ in futures if d._name in self.comminfo  # by identity, not ==
                              and all(due is not d for due in self._spacing_due)
                              and timeframe_span(d._timeframe, d._compression) is not None]

    def _judge_scheme(self, data, ci) -> None:
        """ConfigError if futures scheme ``ci`` on ``data`` contradicts it: the data's name starts with
        another coin (a BTCUSDT scheme on ``'ETH'``: the broker would price BTC at ETH's closes), or the data
        is replayed (:meth:`_refuse_replayed`)."""
        coin = self._named_coin(data._name)
        if coin is not None and coin != ci.asset:
            raise ConfigError(
                f"data {data._name!r} carries {ci.venue.name}'s {ci.spec.symbol}, a {ci.asset} contract, "
                f"but its name says {coin}: the broker would price {ci.asset} at its closes; attach a "
                f"contract on {coin} to it (venue=, symbol=), or add this scheme under the name of the "
                f"{ci.asset} data.")
        self._refuse_replayed(data)

    @staticmethod
    def _refuse_replayed(data) -> None:
        """ConfigError if ``data`` is replayed (``cerebro.replaydata``) and trades futures or prices a held
        coin: the broker judges a bar at its extremes and pays the settlements of its whole span, which on a
        bar still forming means lows from before a fill and settlements still to come."""
        if getattr(data, "replaying", False):
            raise ConfigError(
                f"data {data._name!r} is replayed (cerebro.replaydata), which MarginBroker does not "
                "support: it would judge a bar still forming on its extremes so far and pay all of its "
                "funding settlements at once; use cerebro.resampledata(...) or add the finer bars "
                "themselves (cerebro.adddata).")

    def _check_spacing(self) -> None:
        """At each listed futures data's second bar: ConfigError if its bars are closer together than its
        declared timeframe x compression (:func:`minehedge.timeframes.timeframe_span`), from which the broker
        takes each bar's span to place funding settlements and sessions: hourly bars declared as days
        (backtrader's default timeframe) would pay each settlement up to a day early. Wider spacing can be a
        gap in the data and is not judged."""
        due = []
        for data in self._spacing_due:
            if len(data) < 2:
                due.append(data)
                continue
            span = timeframe_span(data._timeframe, data._compression)
            seen = timedelta(days=data.lines.datetime[0] - data.lines.datetime[-1])
            if seen < span - timedelta(seconds=1):  # date numbers are floats: a second of slack
                seen = timedelta(seconds=round(seen.total_seconds()))
                raise ConfigError(
                    f"data {data._name!r}: declared timeframe={bt.TimeFrame.Names[data._timeframe]} x "
                    f"compression={data._compression} ({span}), but its first bars are {seen} apart: the "
                    "broker would take each bar for the declared span and pay funding early; pass the bars' "
                    f"own pair to the feed ({_pair_text(seen)}).")
        self._spacing_due = due

    @staticmethod
    def _named_coin(name: str | None) -> str | None:
        """The coin a data's name starts with (``XBT`` read as BTC), longest first, among the venue profiles'
        coins (:func:`_venue_assets`); None when it starts with none."""
        label = (name or "").upper().replace("XBT", "BTC")
        found = [coin for coin in _venue_assets() if label.startswith(coin)]
        return max(found, key=len) if found else None

    def _bar_datetime(self) -> datetime:
        """The current bar's time (naive UTC) of data0; remembers which data it read (``_now_data``) so the
        rest of the bar reuses it instead of converting the same date number again."""
        data0 = self._data0
        if data0 is None:
            datas = getattr(getattr(self, "cerebro", None), "datas", None)
            data0 = self._data0 = datas[0] if datas else None
        if data0 is not None:
            self._now_data = data0
            return _bar_utc(data0)
        for data in self.positions:
            self._now_data = data
            return _bar_utc(data)
        self._now_data = None
        return self._now

    def bar_time(self, data) -> datetime:
        """``data``'s current bar time (naive UTC, whatever the feed's ``tz``: see :func:`_bar_utc`); the
        broker has already converted data0's date number this bar, so asking for data0 costs nothing."""
        return self._now if data is self._now_data else _bar_utc(data)

    def _bar_span(self, data) -> tuple[datetime, datetime]:
        """[start, end) of the current bar in UTC, from its timeframe and compression."""
        span = self._spans.get(data)
        if span is None:
            span = timeframe_span(data._timeframe, data._compression)
            if span is None:
                raise ConfigError(f"data {data._name!r}: timeframe {bt.TimeFrame.Names[data._timeframe]} is "
                                  "not supported for funding or trading hours, which need each bar's span; "
                                  f"allowed: {', '.join(SPANNED_TIMEFRAMES)}.")
            self._spans[data] = span
        dt = self.bar_time(data)
        if data._timeframe >= bt.TimeFrame.Days:
            dt = datetime(dt.year, dt.month, dt.day)  # daily stamps may carry the session end time
            return (dt, dt + span) if self.p.bar_time == "open" else (dt + timedelta(days=1) - span,
                                                                     dt + timedelta(days=1))
        return (dt, dt + span) if self.p.bar_time == "open" else (dt - span, dt)

    # --- 2. funding ---------------------------------------------------------------------------------
    def _funding_source(self, data, comminfo) -> list:
        """[funding line or None, mark line or None, constant fallback, fallback-noted flag], per data."""
        source = self._funding_src.get(data)
        if source is None:
            line = getattr(data.lines, self.p.funding_line, None) if self.p.funding_line else None
            mark = getattr(data.lines, self.p.mark_line, None) if self.p.mark_line else None
            fallback = (self.p.funding_rate if self.p.funding_rate is not None
                        else comminfo.venue.default_funding_rate)
            source = self._funding_src[data] = [line, mark, float(fallback), False]
        return source

    def _funding_rate(self, data, comminfo, when: datetime, source: list) -> float:
        """Rate (fraction per 8 h) of the settlement at ``when``: series, else data line, else constant."""
        if self.p.funding_rates is not None:
            rate = self.p.funding_rates(data, when)
            if rate is not None and rate == rate:
                return float(rate)
        line = source[0]
        if line is not None:
            value = line[0]
            if value == value:
                return value
        if not source[3]:
            source[3] = True
            self.assumptions.append(
                f"funding: constant rate {source[2]:.6%} per 8h for {data._name or comminfo.spec.symbol} "
                f"wherever no funding data (first at {when:%Y-%m-%d %H:%M} UTC)")
        return source[2]

    def _settle_funding(self, open_futures) -> None:
        for data, pos, ci in open_futures:
            hours = ci.venue.funding_hours_utc
            if not ci.p.funding or not hours or ci.p.expiry is not None:
                continue
            start, end = self._bar_span(data)
            nxt = self._next_funding.get(data)
            if nxt is None or nxt < start:
                nxt = formulas.next_funding_time(start, hours)
            if nxt < end:
                source = self._funding_source(data, ci)
                mark_line = source[1]
                mark = (mark_line[0] if mark_line is not None and mark_line[0] == mark_line[0]
                        else data.close[0])
                while nxt < end:
                    self._pay_funding(data, pos, ci, mark, self._funding_rate(data, ci, nxt, source), nxt)
                    nxt = formulas.next_funding_time(nxt, hours, inclusive=False)
            self._next_funding[data] = nxt

    def _pay_funding(self, data, pos, ci, mark: float, rate: float, when: datetime) -> None:
        if ci.is_inverse:
            payment = ci.funding_payment(self._inv[data][0], mark, rate)
            self._coin_move(ci.asset, "futures", -payment, "funding", ci.spec.symbol,
                            (_SETTLEMENT_NOTE, when))
        else:
            payment = ci.funding_payment(pos.size, mark, rate)
            if ci.p.margin_mode != "isolated":
                self.cash -= payment
            self.ledger.add(self._now, "funding", USD, "futures", -payment, ci.spec.symbol,
                            (_SETTLEMENT_RATE_NOTE, when, rate))
        if ci.p.margin_mode == "isolated":
            self._extra[data] -= payment  # isolated funding is taken from (or added to) the position margin
        self._dirty = True

    # --- margin figures -----------------------------------------------------------------------------
    def _settled(self, data, pos, ci) -> float:
        """Variation margin already in ``cash`` for an open linear position (USD)."""
        if ci.is_inverse or pos.adjbase is None:
            return 0.0
        return ci.cashadjust(pos.size, pos.price, pos.adjbase)

    def _futures_positions(self) -> list[tuple]:
        """[(data, position, comminfo)] of the open futures positions (cached between bars: see next())."""
        cached = self._open_cache
        if cached is not None:
            return cached
        found = []
        for data, pos in self.positions.items():
            if pos.size:
                ci = self.getcommissioninfo(data)
                if isinstance(ci, FuturesCommInfo):
                    found.append((data, pos, ci))
        if self._between_bars:
            self._open_cache = found
        return found

    def addcommissioninfo(self, comminfo, name=None):
        self._open_cache = None  # a new scheme for a data changes what its position is
        self._calendars = {}  # and may change its venue's calendar
        return super().addcommissioninfo(comminfo, name=name)

    def _size_entry(self, data, pos, ci) -> tuple[float, float]:
        if ci.is_inverse:
            contracts, entry = self._inv[data]
            return contracts, entry
        return pos.size, pos.price

    def _isolated_wallet(self, data, pos, ci) -> float:
        size, entry = self._size_entry(data, pos, ci)
        return ci.posted_margin(size, entry) + self._extra.get(data, 0.0)

    def _cross_wallet_balance(self, currency: str) -> float:
        """Wallet balance (no unrealised PnL) backing cross positions in ``currency``."""
        if currency == USD:
            wallet = self.cash
            for data, pos, ci in self._futures_positions():
                if ci.is_inverse:
                    continue
                wallet -= self._settled(data, pos, ci)
                if ci.p.margin_mode == "cross":
                    wallet += ci.posted_margin(pos.size, pos.price) + self._extra.get(data, 0.0)
            return wallet
        wallet = self._coins.get((currency, "futures"), 0.0)
        for data, pos, ci in self._futures_positions():
            if ci.is_inverse and ci.asset == currency and ci.p.margin_mode == "isolated":
                wallet -= self._isolated_wallet(data, pos, ci)
        return wallet

    def _currency(self, ci) -> str:
        return ci.asset if ci.is_inverse else USD

    def _upnl(self, data, pos, ci, price: float) -> float:
        """Unrealised PnL from entry at ``price`` in the margin currency."""
        size, entry = self._size_entry(data, pos, ci)
        return ci.pnl_coin(size, entry, price) if ci.is_inverse else ci.profitandloss(size, entry, price)

    def _maint(self, data, pos, ci, price: float) -> float:
        size, entry = self._size_entry(data, pos, ci)
        if ci.is_inverse:
            return ci.maintenance_margin(size, price, self._now, entry)
        return ci.maintenance_margin(size, price, self._now)

    def _position_wallet(self, data, pos, ci) -> float:
        """The W of the liquidation formulas: isolated margin, or cross wallet - others' MM + others' UPNL."""
        if ci.p.margin_mode == "isolated":
            return self._isolated_wallet(data, pos, ci)
        currency = self._currency(ci)
        wallet = self._cross_wallet_balance(currency)
        for other, opos, oci in self._futures_positions():
            if other is data or oci.p.margin_mode != "cross" or self._currency(oci) != currency:
                continue
            close = other.close[0]
            wallet = formulas.cross_wallet(wallet, self._maint(other, opos, oci, close),
                                           self._upnl(other, opos, oci, close))
        return wallet

    def _ratio(self, data, pos, ci, price: float) -> tuple[float, float, float]:
        """(margin ratio, maintenance margin, margin balance) at ``price``, in the margin currency."""
        wallet = self._position_wallet(data, pos, ci)
        maint = self._maint(data, pos, ci, price)
        balance = wallet + self._upnl(data, pos, ci, price)
        return formulas.margin_ratio(maint, balance), maint, balance

    def _close_margin(self, data, pos, ci) -> tuple[float, float, float]:
        """:meth:`_ratio` at ``data``'s close. An isolated position's figures depend only on its scheme, size,
        entry and added margin, the close and the bar's time (the day's brackets), so the margin-call check's
        answer is reused until one of them changes: the recorder asks again at the same close after the
        strategy's bar, which rarely touches the position. A cross position's wallet depends on the whole
        account and is computed afresh each time."""
        close = data.close[0]
        if ci.p.margin_mode != "isolated":
            return self._ratio(data, pos, ci, close)
        memo = self._close_margins.get(data)
        size, entry = self._inv[data] if ci.is_inverse else (pos.size, pos.price)  # _size_entry, inlined
        key = (ci, size, entry, self._extra.get(data, 0.0), close, self._now)
        if memo is not None and memo[0] == key:
            return memo[1]
        figures = self._ratio(data, pos, ci, close)
        self._close_margins[data] = (key, figures)
        return figures

    # --- 3. liquidation -----------------------------------------------------------------------------
    def _check_liquidations(self, open_futures) -> None:
        """Liquidate the positions whose liquidation price the bar reached: isolated positions and a cross
        account's only position one by one in data order; a cross account holding two or more positions in
        one currency as an account (:meth:`_check_cross_account`), after the others."""
        accounts: list[str] = []
        for data, pos, ci in open_futures:
            if not self._liquidable(ci):
                continue
            if ci.p.margin_mode == "cross":
                currency = self._currency(ci)
                if currency in accounts:
                    continue
                if len(self._cross_positions(currency)) > 1:
                    accounts.append(currency)
                    continue
            self._check_position(data, pos, ci)
        for currency in accounts:
            self._check_cross_account(currency)

    @staticmethod
    def _liquidable(ci) -> bool:
        return ci.p.liquidation and ci.venue.margin_call != "deadline"

    def _cross_positions(self, currency: str, but=None) -> list[tuple]:
        """[(data, position, comminfo)]: the open cross positions margined in ``currency`` but ``but``."""
        return [(d, p, c) for d, p, c in self._futures_positions()
                if d is not but and p.size and c.p.margin_mode == "cross" and self._currency(c) == currency]

    def _open_upnl(self, positions) -> list[float]:
        """Unrealised PnL of ``positions`` at their closes (the prices their liquidation checks use)."""
        return [self._upnl(d, p, c, d.close[0]) for d, p, c in positions]

    def _check_cross_account(self, currency: str) -> None:
        """A cross account with several positions in ``currency``: of the positions whose liquidation price
        the bar reached (each priced against the others at their closes), the one whose liquidation realises
        the largest loss is liquidated (then by symbol and data name: never the order the data were added);
        :meth:`_settle_cross_account` then judges the account at the closes and closes the others while it is
        not compliant. The others are not judged again on this bar's extremes or open: those came before the
        liquidation, whose realised loss the account only carries after it."""
        reached = []
        for data, pos, ci in self._cross_positions(currency):
            if not self._liquidable(ci):
                continue
            size, entry = self._size_entry(data, pos, ci)
            wallet = self._position_wallet(data, pos, ci)
            liq = ci.liquidation_price(size, entry, wallet, self._now)
            side = 1 if size > 0 else -1
            if not formulas.is_liquidated(side, liq, data.low[0] if side > 0 else data.high[0]):
                continue
            market = (formulas.liquidation_fill_price(side, liq, data.open[0]) if not math.isinf(liq)
                      else data.open[0])
            key = self._loss_first(self._upnl_at(ci, size, entry, market), data, ci)
            reached.append((key, (data, pos, ci, size, entry, wallet, liq)))
        if reached:
            self._liquidate(*min(reached, key=lambda item: item[0])[1])

    @staticmethod
    def _loss_first(pnl: float, data, ci) -> tuple:
        """Order in which a cross account's positions are liquidated: the largest loss (the lowest ``pnl``)
        first, then by symbol and data name; never the order the data were added."""
        return pnl, ci.spec.symbol, data._name or ""

    def _check_position(self, data, pos, ci) -> None:
        """One position whose margin is its own (isolated) or its cross account's only position."""
        # a partial step-down is re-checked against the same bar's extreme, bracket by bracket
        tiers = ci.tiers_at(self._now)
        for _ in range(len(tiers) + 1):
            if not pos.size:
                break
            size, entry = self._size_entry(data, pos, ci)
            wallet = self._position_wallet(data, pos, ci)
            side = 1 if size > 0 else -1
            extreme = data.low[0] if side > 0 else data.high[0]
            # The price depends on nothing else. Funding moves the wallet nearly every bar, but more
            # margin only moves the price away from the market (lower for a long, higher for a short), so
            # a bar clear of the price cached at a smaller wallet is clear now: skip the tiered re-solve.
            cached = self._liq_cache.get(data)
            if (cached is not None and cached[0] is ci and cached[1] is tiers and cached[2] == size
                    and cached[3] == entry):
                if cached[4] == wallet:
                    liq = cached[5]
                elif wallet > cached[4] and formulas.clear_of_liquidation(side, cached[5], extreme):
                    break
                else:
                    liq = ci.liquidation_price(size, entry, wallet, self._now)
                    self._liq_cache[data] = (ci, tiers, size, entry, wallet, liq)
            else:
                liq = ci.liquidation_price(size, entry, wallet, self._now)
                self._liq_cache[data] = (ci, tiers, size, entry, wallet, liq)
            if not formulas.is_liquidated(side, liq, extreme):
                break
            self._liquidate(data, pos, ci, size, entry, wallet, liq)

    def _liquidate(self, data, pos, ci, size, entry, wallet, liq) -> None:
        side = 1 if size > 0 else -1
        bar_open = data.open[0]
        market = formulas.liquidation_fill_price(side, liq, bar_open) if not math.isinf(liq) else bar_open
        bankrupt = ci.bankruptcy_price(size, entry, wallet)
        fill = market
        if ci.venue.liquidation_fill == "bankruptcy_price" and 0.0 < bankrupt < math.inf:
            beyond = market < bankrupt if side > 0 else market > bankrupt
            fill = market if beyond else bankrupt
        isolated = ci.p.margin_mode == "isolated"
        shortfall = 0.0
        if isolated and 0.0 < bankrupt < math.inf and (fill < bankrupt if side > 0 else fill > bankrupt):
            # the venue absorbs what lies beyond the bankruptcy price: the isolated margin is the most lost
            shortfall = -(self._upnl_at(ci, size, bankrupt, fill))
            fill = bankrupt
        ratio, maint, _ = self._ratio(data, pos, ci, liq if 0.0 < liq < math.inf else market)
        self._cancel_open_orders(data)
        # A step-down cuts at the market, so only while the market is short of the whole position's bankruptcy
        # price: beyond it the whole position is closed at that price, its isolated margin lost and no more.
        if (ci.venue.partial_liquidation and not (isolated and formulas.is_bankrupt(side, bankrupt, market))
                and self._step_down(data, pos, ci, size, entry, wallet, market, ratio, maint)):
            return
        pnl = self._upnl_at(ci, size, entry, fill)
        # margin before the fill; a cross wallet is backed by the other cross positions' open PnL too
        before = wallet if isolated else self._cross_wallet_balance(self._currency(ci))
        others = 0.0 if isolated else sum(self._open_upnl(self._cross_positions(self._currency(ci), data)))
        fee = formulas.clearance_fee(ci.venue.liquidation_fee_rate * self._notional(ci, size, market), before,
                                     pnl, others)
        price_usd = fill
        info = {"reason": "liquidation", "market_price": market, "liquidation_price": liq,
                "bankruptcy_price": bankrupt}
        if ci.is_inverse:
            info["fee_coin"] = fee
            fee_usd = fee * fill
        else:
            fee_usd = fee
        with ci.fee_override(fee_usd):
            self._force_order(data, pos.size, fill, **info)
        if isolated and side > 0 and math.isinf(bankrupt):
            # an inverse long whose margin is below -S/EP: no price brings it back to zero, so the venue
            # absorbs everything its fill loses beyond the margin
            shortfall = -(wallet + pnl)
            self._coin_move(ci.asset, "futures", shortfall, "insurance_fund", ci.spec.symbol,
                            "isolated margin below zero at any price: the loss beyond it absorbed",
                            market)
        unit = price_usd if ci.is_inverse else 1.0
        detail = (f"{'isolated' if isolated else 'cross'}; market {market:.2f}, liquidation price {liq:.2f}, "
                  f"bankruptcy price {bankrupt:.2f}")
        if pnl > 0.0:  # loss_usd is the fill's price loss, so 0 here: say where the margin went
            detail += (f"; the fill gains {pnl * unit:,.2f} USD on the entry {entry:.2f}: funding and fees "
                       f"had drained the {'isolated margin' if isolated else 'cross wallet'} to "
                       f"{before * unit:,.2f} USD")
        self._emit("liquidation", data, ci, side, size, fill, (wallet + pnl) * unit if isolated else
                   self._equity_in(self._currency(ci)) * unit, maint * unit, ratio, max(-pnl, 0.0) * unit,
                   fee_usd, detail)
        if shortfall > 0.0:  # a coin shortfall is valued at the market, the event's price (as a cross refill)
            beyond = (f"bankruptcy price {bankrupt:.2f}" if bankrupt < math.inf
                      else "margin, below zero at any price")
            self._emit("insurance_fund", data, ci, side, size, market, 0.0, 0.0, ratio,
                       shortfall * (market if ci.is_inverse else 1.0), 0.0,
                       f"isolated: loss beyond the {beyond} absorbed by the venue")
        if not isolated:
            self._settle_cross_account(data, ci, side, size, market)

    def _settle_cross_account(self, data, ci, side, size, price) -> None:
        """After liquidating a cross position: judge the account (wallet + the other cross positions' PnL at
        their closes) against their total maintenance margin; at or below it, close the one with the largest
        loss at its close and judge again, until the account is compliant or nothing is left. Then the
        insurance fund pays what the account lacks."""
        currency = self._currency(ci)
        while left := self._cross_positions(currency):  # judged again after each close: Binance stops once
            wallet = self._cross_wallet_balance(currency)  # the account is compliant
            upnl = self._open_upnl(left)
            balance = formulas.cross_account_balance(wallet, upnl)
            maint = sum(self._maint(d, p, c, d.close[0]) for d, p, c in left)
            closable = [k for k in range(len(left)) if self._liquidable(left[k][2])]
            if formulas.cross_account_compliant(balance, maint) or not closable:
                break
            k = min(closable, key=lambda k: self._loss_first(upnl[k], left[k][0], left[k][2]))
            self._close_with_account(*left[k], formulas.margin_ratio(maint, balance), ci.spec.symbol)
        self._refill_cross(data, ci, side, size, price)

    def _close_with_account(self, data, pos, ci, ratio: float, trigger: str) -> None:
        """Liquidate a cross position at its close because its account fell to or below its maintenance
        margin after ``trigger``'s liquidation; the fee is capped at what the account has left."""
        size, entry = self._size_entry(data, pos, ci)
        side = 1 if size > 0 else -1
        price = data.close[0]
        currency = self._currency(ci)
        wallet = self._cross_wallet_balance(currency)
        pnl = self._upnl_at(ci, size, entry, price)
        others = sum(self._open_upnl(self._cross_positions(currency, data)))
        fee = formulas.clearance_fee(ci.venue.liquidation_fee_rate * self._notional(ci, size, price), wallet,
                                     pnl, others)
        maint = self._maint(data, pos, ci, price)
        self._cancel_open_orders(data)
        info = {"reason": "liquidation", "market_price": price, "account": True}
        if ci.is_inverse:
            info["fee_coin"] = fee
        fee_usd = fee * price if ci.is_inverse else fee
        with ci.fee_override(fee_usd):
            self._force_order(data, pos.size, price, **info)
        unit = price if ci.is_inverse else 1.0
        self._emit("liquidation", data, ci, side, size, price, self._equity_in(currency) * unit, maint * unit,
                   ratio, max(-pnl, 0.0) * unit, fee_usd,
                   f"cross; at the close {price:.2f}: the account fell to or below its maintenance margin "
                   f"after liquidating {trigger}")

    def _upnl_at(self, ci, size, entry, price) -> float:
        return ci.pnl_coin(size, entry, price) if ci.is_inverse else ci.profitandloss(size, entry, price)

    def _notional(self, ci, size, price) -> float:
        """Liquidated notional in the margin currency."""
        if ci.is_inverse:
            return formulas.inverse_notional_coin(size, ci.p.face, price)
        return abs(size) * ci.p.mult * price

    def _refill_cross(self, data, ci, side, size, price) -> None:
        """The insurance fund brings a bankrupt cross account back to 0: it pays what the wallet plus the
        open cross positions' PnL lacks, so a wallet still backed by open profit stays negative."""
        currency = self._currency(ci)
        balance = self._cross_wallet_balance(currency)
        left = self._cross_positions(currency)
        if left:
            balance = formulas.cross_account_balance(balance, self._open_upnl(left))
        # A fee capped at the margin left ends the wallet at zero give or take rounding (about 1e-11 USD):
        # that is no shortfall for the venue to absorb.
        if balance >= -_DUST * max(1.0, self._notional(ci, size, price)):
            return
        refill = formulas.insurance_refill(balance)
        if currency == USD:
            self.cash += refill
            self.ledger.add(self._now, "insurance_fund", USD, "futures", refill, ci.spec.symbol,
                            "cross wallet below zero after liquidation: refilled by the insurance fund")
        else:
            self._coin_move(currency, "futures", refill, "insurance_fund", ci.spec.symbol,
                            "cross wallet below zero after liquidation: refilled by the insurance fund",
                            price)
        unit = price if ci.is_inverse else 1.0
        self._emit("insurance_fund", data, ci, side, size, price, 0.0, 0.0, math.inf, refill * unit, 0.0,
                   "cross: shortfall beyond the wallet")

    def _step_down(self, data, pos, ci, size, entry, wallet, market, ratio, maint) -> bool:
        """Partial liquidation: cut the position to the previous bracket; True if that made it safe."""
        tiers = ci.tiers_at(self._now)
        basis_price = entry if (ci.is_inverse and ci.venue.maintenance_basis == "entry") else market
        notional = self._notional(ci, size, basis_price)
        k = formulas.tier_index(tiers, notional)
        if k == 0 or ci.p.margin_mode != "isolated":
            return False
        keep_fraction = tiers[k].floor / notional * (1.0 - 1e-9)
        keep = math.floor(abs(pos.size) * keep_fraction)
        cut = abs(pos.size) - keep
        if keep <= 0 or cut <= 0:
            return False
        sign = 1 if pos.size > 0 else -1
        cut_units = cut_size = sign * cut  # backtrader units (inverse: contracts)
        pnl = self._upnl_at(ci, cut_size, entry, market)
        fee = formulas.clearance_fee(ci.venue.liquidation_fee_rate * self._notional(ci, cut_size, market),
                                     wallet, pnl)
        info = {"reason": "liquidation", "partial": True, "market_price": market}
        if ci.is_inverse:
            info["fee_coin"] = fee
        fee_usd = fee * market if ci.is_inverse else fee
        # the realised loss, the fee and the released margin stay in the position's isolated margin
        delta = ci.posted_margin(cut_size, entry) + pnl - fee
        with ci.fee_override(fee_usd):
            self._force_order(data, cut_units, market, **info)
        self._extra[data] += delta
        if not ci.is_inverse:
            self.cash -= delta  # moved from free cash to the isolated margin: no balance change
        unit = market if ci.is_inverse else 1.0
        equity = wallet + self._upnl_at(ci, size, entry, market)
        self._emit("partial_liquidation", data, ci, sign, cut_size, market, equity * unit, maint * unit,
                   ratio, max(-pnl, 0.0) * unit, fee_usd,
                   f"stepped down to bracket {k - 1}; kept {keep:g} units")
        return True

    # --- 4. margin calls, expiry ---------------------------------------------------------------------
    def _check_margin_calls(self) -> None:
        deadline_positions = []
        for data, pos, ci in self._futures_positions():
            if ci.venue.margin_call == "deadline":
                deadline_positions.append((data, pos, ci))
                continue
            close = data.close[0]
            ratio, maint, balance = self._close_margin(data, pos, ci)
            level = ci.venue.warning_level if self.p.warning_level is None else self.p.warning_level
            if ratio >= level:
                if not self._in_call.get(data):
                    self._in_call[data] = True
                    size, _ = self._size_entry(data, pos, ci)
                    unit = close if ci.is_inverse else 1.0
                    self._emit("margin_call", data, ci, 1 if size > 0 else -1, size, close, balance * unit,
                               maint * unit, ratio, 0.0, 0.0, f"margin ratio {ratio:.4f} >= {level:g}")
            else:
                self._in_call[data] = False
        if deadline_positions:
            self._check_deadline_call(deadline_positions)

    def _deadline_account(self, positions) -> tuple[float, float, float]:
        """(equity, maintenance margin, initial margin), USD at the closes, of the futures account a deadline
        venue (CME) calls on: the USD futures wallet (free cash included) plus the isolated margin and the
        unrealised P&L of ``positions`` (its open deadline-venue positions), and their margins summed."""
        equity = self._cross_wallet_balance(USD)
        maint = initial = 0.0
        for data, pos, ci in positions:
            close = data.close[0]
            if ci.p.margin_mode == "isolated":
                equity += self._isolated_wallet(data, pos, ci)
            equity += self._upnl(data, pos, ci, close)
            mm = self._maint(data, pos, ci, close)
            maint += mm
            ratio_im = ci.venue.initial_margin_to_maintenance
            initial += (mm * ratio_im if ratio_im
                        else abs(pos.size) * ci.p.mult * close * ci.initial_margin_rate)
        return equity, maint, initial

    def _check_deadline_call(self, positions) -> None:
        """The deadline call (CME) on the account of ``positions``, the open deadline-venue positions, at the
        closes: raised when equity < maintenance margin, met when equity >= initial margin, missed at the
        first check at or after the deadline, when every one of them is closed (no fee).

        Without a trading calendar the check time is the bar's time and the deadline
        ``margin_call_deadline_hours`` after it. With one (``trading_hours``, CME Globex), the account is
        judged only on a bar during which the market traded, as of the bar's check time (its close, or the
        close of its last session when the market closed within the bar: a Friday's daily bar is judged at
        Friday's close), and the deadline is that many hours of the trading week after it
        (:func:`brokers.sessions.add_week_hours`: the daily halt counts, the weekend does not), so a call
        raised on a Friday is due on Monday. A missed call's positions are closed at the bar's close, no fee:
        the market traded during every bar judged, and on a bar that outlives its session the close stands in
        for the session's last price, as for the judgement itself."""
        data0, pos0, ci0 = positions[0]
        calendar = self._calendar(data0)
        checked = self._now
        if calendar is not None:
            checked = sessions.check_time(calendar, *self._bar_span(data0))
            if checked is None:
                return  # the market was closed during the whole bar: nothing is judged
        equity, maint, initial = self._deadline_account(positions)
        size0 = pos0.size
        side0 = 1 if size0 > 0 else -1
        ratio = formulas.margin_ratio(maint, equity)
        if self._cme_deadline is None:
            if equity < maint:
                hours = ci0.venue.margin_call_deadline_hours
                counted = ""
                if calendar is None:
                    self._cme_deadline = self._now + timedelta(hours=hours)
                else:
                    self._cme_deadline = sessions.add_week_hours(calendar, checked, hours)
                    counted = f" ({hours:g} h of the trading week from {checked:%Y-%m-%d %H:%M} UTC)"
                self._emit("cme_margin_call", data0, ci0, side0, size0, data0.close[0], equity, maint, ratio,
                           0.0, 0.0, f"restore equity to initial margin {initial:,.2f} USD by "
                           f"{self._cme_deadline:%Y-%m-%d %H:%M} UTC{counted}")
            return
        if equity >= initial:
            self._emit("cme_margin_call_met", data0, ci0, side0, size0, data0.close[0], equity, maint, ratio,
                       0.0, 0.0, f"equity {equity:,.2f} >= initial margin {initial:,.2f}")
            self._cme_deadline = None
        elif checked >= self._cme_deadline:
            text = (f"deadline {self._cme_deadline:%Y-%m-%d %H:%M} passed with equity {equity:,.2f} < "
                    f"initial margin {initial:,.2f}")
            self._cme_deadline = None  # the call ends here; the closes below leave the account flat
            for data, pos, ci in positions:
                self._cancel_open_orders(data)
                close = data.close[0]
                pnl = self._upnl(data, pos, ci, close)
                side = 1 if pos.size > 0 else -1
                size = pos.size
                with ci.fee_override(0.0):
                    self._force_order(data, pos.size, close, reason="liquidation", cme_deadline=True)
                self._emit("cme_margin_call_missed", data, ci, side, size, close, equity, maint, ratio,
                           max(-pnl, 0.0), 0.0, f"{text}: closed at the close")

    def _settle_expiries(self) -> None:
        for data, pos, ci in self._futures_positions():
            expiry = ci.p.expiry
            if expiry is not None and self._now >= expiry:
                self._cancel_open_orders(data)
                self._force_order(data, pos.size, data.close[0], reason="expiry")

    # --- events -------------------------------------------------------------------------------------
    def _emit(self, kind, data, ci, side, size, price, equity, maint, ratio, loss, fee,
              detail) -> MarginEvent:
        event = MarginEvent(self._now, kind, ci.spec.symbol, ci.venue.name, "long" if side > 0 else "short",
                            float(ci.qty(size, price)), float(price), float(equity), float(maint),
                            float(ratio), float(loss), float(fee), detail)
        self.add_event(event)
        return event

    def add_event(self, event: MarginEvent) -> None:
        """Append ``event`` to ``broker.events`` and call the strategies' hooks that exist:
        ``notify_margin_event`` (every kind), ``notify_margin_call`` (margin calls),
        ``notify_liquidation`` (liquidations, missed CME calls)."""
        self.events.append(event)
        strategies = getattr(getattr(self, "cerebro", None), "runningstrats", None) or []
        for strategy in strategies:
            hook = getattr(strategy, "notify_margin_event", None)
            if hook is not None:
                hook(event)
            if event.kind in _CALL_KINDS and hasattr(strategy, "notify_margin_call"):
                strategy.notify_margin_call(event)
            if event.kind in _LIQUIDATION_KINDS and hasattr(strategy, "notify_liquidation"):
                strategy.notify_liquidation(event)

    # --- value --------------------------------------------------------------------------------------
    def _resolve_price_datas(self) -> dict[str, object]:
        """coin -> the data whose closes price it: ``price_datas``, else a data without a futures scheme whose
        name starts with the coin (``XBT`` read as BTC; among the venue profiles' coins and those held, the
        longest that fits), else the data of a perpetual futures scheme on the coin."""
        if self._price_data is None:
            found: dict[str, object] = {}
            datas = self._datas()
            names = {d._name: d for d in datas}
            for asset, name in self.p.price_datas.items():
                if name not in names:
                    raise ConfigError(f"price_datas[{asset!r}]={name!r} is not a data name; "
                                      f"names: {', '.join(map(repr, names))}.")
                found[asset] = names[name]
            coins = set(_venue_assets()).union(asset for asset, _ in self._coins)
            for data in datas:
                ci = self.getcommissioninfo(data)
                if isinstance(ci, FuturesCommInfo):
                    continue
                label = (data._name or "").upper().replace("XBT", "BTC")
                fits = [asset for asset in coins if label.startswith(asset)]
                if fits:
                    found.setdefault(max(fits, key=len), data)
            for data in datas:
                ci = self.getcommissioninfo(data)
                if isinstance(ci, FuturesCommInfo) and ci.p.expiry is None \
                        and self._named_coin(data._name) in (None, ci.asset):  # not a default scheme on 'ETH'
                    found.setdefault(ci.asset, data)
            self._price_data = found
        return self._price_data

    def open_at(self, when: datetime) -> None:
        """Date what is booked before the first bar at ``when`` (naive UTC) instead of 1970-01-01: a strategy
        that opens its account before the first bar (so that analyzers starting before it, such as
        backtrader's TimeReturn, read the opening value) dates those entries at the first bar's time. Each
        bar dates its own entries from then on. Only allowed before the first bar."""
        if not self._first_bar:
            raise RuntimeError(f"open_at({when!r}): the run has started; entries are dated at their bar.")
        self._now = when

    def set_price(self, asset: str, price: float) -> None:
        """Price (USD per coin) for valuing ``asset`` (upper-cased, as ``coins``) when no data prices it; one
        set before the run (before ``cerebro.run()``) is kept when the run starts."""
        asset = coin_name("set_price asset", asset)
        self._fixed_prices[asset] = check_positive(f"price[{asset!r}]", price, unit="USD per coin")
        self._dirty = True

    def _require_price(self, asset: str, what: str) -> None:
        """ConfigError unless a data or :meth:`set_price` prices ``asset`` (``what``: the balance, for the
        message): a coin nothing prices would count as 0 USD in every value. Remembered once found."""
        data = self._resolve_price_datas().get(asset)
        if data is None and asset not in self._fixed_prices:
            self._price_data = None  # a coin first held now: a data named after it may price it
            data = self._resolve_price_datas().get(asset)
            if data is None:
                raise ConfigError(self._unpriced_message(asset, what))
        if data is not None:
            self._refuse_replayed(data)
        self._priced.add(asset)

    def _unpriced_message(self, asset: str, what: str) -> str:
        """The one-line message of :meth:`_require_price` for ``asset``, which nothing prices: a data named
        after the coin that carries a dated contract is named as the cause (its price is not spot)."""
        datas = self._datas()
        for data in datas:
            ci = self.getcommissioninfo(data)
            label = (data._name or "").upper().replace("XBT", "BTC")
            if isinstance(ci, FuturesCommInfo) and ci.p.expiry is not None and label.startswith(asset):
                mapping = f"MarginBroker(price_datas={{{asset!r}: {data._name!r}}})"
                return (f"{what}: data {data._name!r} carries a dated futures contract ({ci.venue.name}'s "
                        f"{ci.spec.symbol}, expiry {ci.p.expiry:%Y-%m-%d %H:%M} UTC), whose price is not "
                        f"the spot price, so it does not price {asset}, which would count as 0 USD; price "
                        f"{asset} at its closes anyway with {mapping}, add a spot feed named {asset!r} (and "
                        f"name the contract's data otherwise, e.g. {asset + '-DATED'!r}), or call "
                        f"broker.set_price({asset!r}, usd).")
        names = ", ".join(repr(d._name) for d in datas) or "none"
        examples = f"{asset + 'USDT'!r}" + (" or 'XBTUSD'" if asset == "BTC" else "")
        return (f"{what}: no data prices {asset} (data names: {names}), so it would count as 0 USD; name a "
                f"feed after the coin (cerebro.adddata(feed, name={asset!r}); a name starting with it, such "
                f"as {examples}, prices it too), map one with MarginBroker(price_datas={{{asset!r}: <data "
                f"name>}}), attach a perpetual futures scheme on {asset} to a data, or call "
                f"broker.set_price({asset!r}, usd).")

    def price_of(self, asset: str) -> float:
        """Current USD price of ``asset`` (its data's close), NaN when nothing prices it."""
        price = self._bar_prices.get(asset)
        if price is not None:
            return price
        data = self._resolve_price_datas().get(asset)
        if data is not None and len(data):
            price = self._bar_prices[asset] = data.close[0]  # a bar's close is read many times per bar
            return price
        return self._fixed_prices.get(asset, math.nan)

    def _data_value(self, data, lever=False) -> float:
        """Value (USD) of ``data``'s position as ``getvalue(datas=[data])`` reports it: under a futures scheme
        its signed initial margin (``FuturesCommInfo.getvalue``: what backtrader's ``order_target_value``
        compares its target with), else BackBroker's raw value of one data."""
        ci = self.getcommissioninfo(data)
        pos = self.positions[data]
        close = data.close[0]
        if isinstance(ci, FuturesCommInfo):
            return ci.getvalue(pos, close)
        value = ci.getvaluesize(pos.size, close) if self.p.shortcash else ci.getvalue(pos, close)
        if lever:
            return self._unlevered(ci, value, ci.profitandloss(pos.size, pos.price, close))
        return value

    @staticmethod
    def _unlevered(ci, value: float, unrealized: float) -> float:
        """BackBroker's value (USD) of a long position under a plain backtrader scheme with leverage: its cost
        divided by the scheme's leverage plus its unrealised PnL; a short's (value <= 0) as it is."""
        return (value - unrealized) / ci.get_leverage() + unrealized if value > 0 else value

    def _get_value(self, datas=None, lever=False):
        if datas is not None:  # the sum over datas; the account's value is left alone (BackBroker's is not)
            return sum(self._data_value(data, lever) for data in datas)
        while self._cash_addition:
            amount = self._cash_addition.popleft()
            self._fundshares += amount / self._fundval
            self.cash += amount
            self.ledger.add(self._now, "deposit" if amount >= 0 else "withdrawal", USD, "futures", amount,
                            note="add_cash")
        value = self.cash + self._usd_spot
        unrealized = 0.0
        for data, pos in self.positions.items():
            if not pos.size:
                continue
            ci = self.getcommissioninfo(data)
            close = data.close[0]
            if isinstance(ci, InverseFuturesCommInfo):
                contracts, entry = self._inv[data]
                coin_pnl = ci.pnl_coin(contracts, entry, close)
                value += coin_pnl * close
                unrealized += coin_pnl * close
            elif isinstance(ci, LinearFuturesCommInfo):
                value += ci.posted_margin(pos.size, pos.price) + self._extra.get(data, 0.0)
                value += ci.cashadjust(pos.size, pos.adjbase, close)
                unrealized += ci.profitandloss(pos.size, pos.price, close)
            else:  # any other backtrader scheme: BackBroker's own valuation
                dvalue = ci.getvaluesize(pos.size, close) if self.p.shortcash else ci.getvalue(pos, close)
                dunrealized = ci.profitandloss(pos.size, pos.price, close)
                if not self.p.shortcash:
                    dvalue = abs(dvalue)
                value += self._unlevered(ci, dvalue, dunrealized)
                unrealized += dunrealized
        for (asset, _wallet), balance in self._coins.items():
            if balance:
                price = self.price_of(asset)
                if price == price:
                    value += balance * price
        value += sum(self._assets.values()) - sum(self._liabilities.values())
        self._value = self._valuelever = value
        self._valuemkt = self._valuemktlever = value - self.cash - self._usd_spot
        self._leverage = 1.0
        self._unrealized = unrealized
        self._fundval = value / self._fundshares if self._fundshares else self._fundval
        self._dirty = False
        return value

    def get_value(self, datas=None, mkt=False, lever=False):
        """Total equity in USD (all wallets, coins at their price, unrealised PnL of both kinds, plus assets
        off the wallets, less liabilities). With ``datas``: the sum of those datas' position values (USD),
        each under a futures scheme its signed initial margin (``FuturesCommInfo.getvalue``)."""
        if datas is None and self._dirty:
            self._get_value()
        return super().get_value(datas=datas, mkt=mkt, lever=lever)

    getvalue = get_value

    def get_fundvalue(self) -> float:
        """Net asset value per fund share (USD), at the current account value."""
        if self._dirty:
            self._get_value()
        return self._fundval

    fundvalue = property(get_fundvalue)

    # --- public API (contract in notes/BRIEF.md) ----------------------------------------------------
    def get_cash(self) -> float:
        """USD cash that can be spent: spot USD plus the futures wallet's free balance (margin posted to open
        positions, isolated positions' unrealised P&L and cross positions' unrealised profit excluded, as a
        venue's available-for-withdrawal balance; see ``_free``)."""
        return self._free(USD, "futures") + self._usd_spot

    getcash = get_cash

    def get_coins(self, asset: str) -> float:
        """Coin balance of ``asset`` over all wallets (coins; inverse margin included)."""
        return sum(v for (a, _), v in self._coins.items() if a == asset)

    def get_equity_coin(self, asset: str) -> float:
        """Total equity expressed in ``asset`` (getvalue() / price); NaN when nothing prices it."""
        price = self.price_of(asset)
        return self.get_value() / price if price == price and price > 0 else math.nan

    def free_balance(self, currency: str, wallet: str) -> float:
        """Free balance of ``currency`` ('USD' or a coin) in ``wallet``: what can be spent, moved or posted
        (futures wallet: cash or coins not locked as margin)."""
        check_choice("wallet", wallet, WALLETS)
        return self._free(currency, wallet)

    def get_position_margin(self, data) -> tuple[float, float, float]:
        """(margin ratio, maintenance margin, margin balance) of ``data``'s futures position at its close,
        in the margin currency (USD for linear, coin for inverse); (0, 0, 0) when flat."""
        pos = self.positions.get(data)
        ci = self.getcommissioninfo(data)
        if not pos or not pos.size or not isinstance(ci, FuturesCommInfo):
            return 0.0, 0.0, 0.0
        return self._close_margin(data, pos, ci)

    def set_liability(self, name: str, usd: float) -> None:
        """Record that ``usd`` (USD, >= 0) is owed under ``name`` (e.g. a loan's outstanding debt); equity
        (getvalue) is net of every liability. Loan cash flows themselves are ledgered by the caller."""
        self._liabilities[name] = check_positive(f"liability[{name!r}]", usd, allow_zero=True, unit="USD")
        self._dirty = True

    def set_asset(self, name: str, usd: float) -> None:
        """Record that what is owned under ``name`` off the wallets (e.g. the machines, at book value) is
        worth ``usd`` (USD, >= 0) now; equity (getvalue) includes every asset. Assets are not cash: nothing
        can be paid or posted with them, and no venue counts them as margin."""
        self._assets[name] = check_positive(f"asset[{name!r}]", usd, allow_zero=True, unit="USD")
        self._dirty = True

    def get_assets_usd(self) -> float:
        """Total USD value of the assets off the wallets (see :meth:`set_asset`)."""
        return sum(self._assets.values())

    def get_liabilities_usd(self) -> float:
        """Total USD owed (see :meth:`set_liability`)."""
        return sum(self._liabilities.values())

    def get_unrealized_pnl_usd(self) -> float:
        """Unrealised PnL in USD of every open position, from entry to the current close."""
        if self._dirty:
            self._get_value()
        return self._unrealized

    def get_unrealized_pnl_coin(self, data) -> float:
        """Unrealised PnL in coin of ``data``'s inverse position, from entry to its current close; 0 when flat
        or not inverse."""
        pos = self.positions.get(data)
        ci = self.getcommissioninfo(data)
        if not pos or not pos.size or not isinstance(ci, InverseFuturesCommInfo):
            return 0.0
        return self._upnl(data, pos, ci, data.close[0])

    def closing_release(self, data) -> float:
        """What closing all of ``data``'s position at its close adds to the futures wallet's free balance
        (:meth:`free_balance`), before the closing fee, in the margin currency (USD linear, coin inverse); 0
        when flat. Closing part of it releases that part's share (margin added by hand is released in
        proportion too).

        It is the margin posted to the position and added to it, plus the unrealised PnL the free balance
        does not hold yet: an isolated linear position's, an inverse one's (booked in coin at the fill), and a
        cross linear position's profit (settled into the wallet each bar, but not free to leave it while
        open: see ``_free``; its loss already counts there)."""
        pos = self.positions.get(data)
        ci = self.getcommissioninfo(data)
        if not pos or not pos.size or not isinstance(ci, FuturesCommInfo):
            return 0.0
        close = data.close[0]
        isolated = ci.p.margin_mode == "isolated"
        upnl = self._upnl(data, pos, ci, close)
        if ci.is_inverse:  # what _available_coin holds back, in either mode, plus the coin PnL
            return max(self._isolated_wallet(data, pos, ci), 0.0) + upnl
        margin = ci.posted_margin(pos.size, pos.price) + self._extra.get(data, 0.0)
        if isolated:
            return margin + upnl
        cross = self._settled_split()[1]  # the free balance holds min(cross total, 0) of it
        settled = self._settled(data, pos, ci)
        return margin + upnl - settled + max(cross, 0.0) - max(cross - settled, 0.0)

    def close_now(self, data, size: float, reason: str) -> Order | None:
        """Close ``size`` (signed units held: > 0 sells part of a long) of ``data``'s position at its close,
        now, as a market order a desk places within the bar (not at the next bar's open). ``reason`` is in
        ``order.info['reason']``; the fill is ledgered as realised PnL and fee. If the venue's market did not
        trade during the bar (``trading_hours``: a Saturday on CME; :meth:`market_open`), the close waits: it
        fills at the open of the first bar whose open is in a session (as many units as are still held then,
        at most ``size``; nothing if the position was closed or reversed meanwhile), the strategy's own orders
        staying pending, and None is returned."""
        pos = self.positions.get(data)
        held = pos.size if pos else 0.0
        if not size or size * held < 0 or abs(size) > abs(held) + 1e-12:
            raise ConfigError(f"close_now: size={size!r} must close part of the position held ({held}).")
        if not self.market_open(data, "close"):
            self._defer_close(data, reason, size)
            return None
        return self._force_order(data, size, data.close[0], reason=reason)

    def get_margin_ratio(self) -> float:
        """Largest margin ratio (maintenance / margin balance, fraction; 1.0 = where the venue acts) over open
        positions, at the closes; 0 when flat. A deadline venue's (CME) positions count as one: the account's
        maintenance margin over its equity (:meth:`_deadline_account`), the ratio its calls act on (>= 1: a
        call), not a position's own margin."""
        worst = 0.0
        deadline = []
        for data, pos, ci in self._futures_positions():
            if ci.venue.margin_call == "deadline":
                deadline.append((data, pos, ci))
            else:
                worst = max(worst, self._close_margin(data, pos, ci)[0])
        if deadline:
            equity, maint, _ = self._deadline_account(deadline)
            worst = max(worst, formulas.margin_ratio(maint, equity))
        return worst

    def account_state(self, asset: str) -> tuple[float, float, float, float, float, float]:
        """What an equity recorder reads each bar, in one call: (equity USD, equity in ``asset`` coin, cash
        USD, ``asset`` coins, unrealised PnL USD, margin ratio fraction); each equals its own getter
        (get_value, get_equity_coin, get_cash, get_coins, get_unrealized_pnl_usd, get_margin_ratio)."""
        if self._dirty:
            self._get_value()
        value = self._value  # what get_value() returns, read once for the USD and the coin figure
        price = self.price_of(asset)
        return (value, value / price if price == price and price > 0 else math.nan, self.get_cash(),
                self.get_coins(asset), self._unrealized, self.get_margin_ratio())

    def get_liquidation_price(self, data) -> float:
        """Current liquidation price (USD) of ``data``'s position; NaN when flat."""
        pos = self.positions.get(data)
        ci = self.getcommissioninfo(data)
        if not pos or not pos.size or not isinstance(ci, FuturesCommInfo):
            return math.nan
        size, entry = self._size_entry(data, pos, ci)
        return ci.liquidation_price(size, entry, self._position_wallet(data, pos, ci), self._now)

    def add_margin(self, data, amount: float) -> bool:
        """Move ``amount`` (USD for linear, coin for inverse) from free balance to ``data``'s isolated
        position margin. False and no change when flat, cross, or the free balance is short."""
        amount = check_positive("amount", amount, unit="margin currency")
        pos = self.positions.get(data)
        ci = self.getcommissioninfo(data)
        if not pos or not pos.size or not isinstance(ci, FuturesCommInfo) or ci.p.margin_mode != "isolated":
            return False
        if ci.is_inverse:
            if self._available_coin(ci.asset) < amount:
                return False
        else:
            if self._free(USD, "futures") < amount:
                return False
            self.cash -= amount
        self._extra[data] += amount
        self._dirty = True
        return True

    def credit_coins(self, asset: str, qty: float, kind: str = "mining_credit", note: str = "",
                     wallet: str = "spot") -> None:
        """Credit ``qty`` coins of ``asset`` to ``wallet`` (mined coins, loan collateral released, ...)."""
        qty = check_positive("qty", qty, allow_zero=True, unit="coins")
        if qty:
            self._coin_move(asset, wallet, qty, kind, "", note)

    def debit_coins(self, asset: str, qty: float, kind: str, note: str = "", wallet: str = "spot") -> bool:
        """Debit ``qty`` coins from ``wallet``; False and no change when short."""
        qty = check_positive("qty", qty, allow_zero=True, unit="coins")
        if self._coins.get((asset, wallet), 0.0) + 1e-12 < qty:
            return False
        if qty:
            self._coin_move(asset, wallet, -qty, kind, "", note)
        return True

    def debit_usd(self, amount: float, kind: str, note: str = "") -> bool:
        """Pay ``amount`` USD from spot cash, then free futures cash (:func:`usd_debit_legs`); False and no
        change when both together are short by more than :data:`CASH_TOLERANCE_USD`."""
        amount = check_positive("amount", amount, allow_zero=True, unit="USD")
        free_futures = max(self._free(USD, "futures"), 0.0)
        if self._usd_spot + free_futures + CASH_TOLERANCE_USD < amount:
            return False
        from_spot, rest = usd_debit_legs(amount, self._usd_spot, free_futures)
        if from_spot:
            self._usd_spot -= from_spot
            self.ledger.add(self._now, kind, USD, "spot", -from_spot, note=note)
        if rest:
            self.cash -= rest
            self.ledger.add(self._now, kind, USD, "futures", -rest, note=note)
        self._dirty = True
        return True

    def credit_usd(self, amount: float, kind: str, note: str = "", wallet: str = "spot") -> None:
        """Credit ``amount`` USD to ``wallet`` (loan draws, hedge proceeds paid out, ...)."""
        amount = check_positive("amount", amount, allow_zero=True, unit="USD")
        self._usd_move(wallet, amount, kind, note)

    def sell_coins(self, asset: str, qty: float, price: float, fee_rate: float = 0.0,
                   kind: str = "coin_sale", wallet: str = "spot") -> float:
        """Spot-sell ``qty`` coins at ``price`` (USD/coin) less ``fee_rate`` (fraction); USD to the spot
        wallet. Both legs and the fee are ledgered. Returns the net USD, 0.0 (no change) if coins are
        short."""
        qty = check_positive("qty", qty, allow_zero=True, unit="coins")
        price = check_positive("price", price, unit="USD per coin")
        fee_rate = check_positive("fee_rate", fee_rate, allow_zero=True, unit="fraction")
        if qty == 0 or self._coins.get((asset, wallet), 0.0) + 1e-12 < qty:
            return 0.0
        gross = qty * price
        fee = gross * fee_rate
        self._coin_move(asset, wallet, -qty, kind, "", ("sold at {:.2f}", price))
        self._usd_move("spot", gross, kind, ("{:g} {} at {:.2f}", qty, asset, price))
        if fee:
            self._usd_move("spot", -fee, "fee", ("spot sale fee {:g}", fee_rate))
        return gross - fee

    def buy_coins(self, asset: str, usd: float, price: float, fee_rate: float = 0.0,
                  kind: str = "coin_purchase") -> float:
        """Spot-buy coins for ``usd`` of spot cash at ``price`` (USD/coin), ``fee_rate`` (fraction) of it
        going to the fee: coins = usd x (1 - fee_rate) / price, to the spot wallet. Both legs and the fee
        are ledgered, as in :meth:`sell_coins`. Returns the coins bought, 0.0 (no change) if spot cash is
        short."""
        usd = check_positive("usd", usd, allow_zero=True, unit="USD")
        price = check_positive("price", price, unit="USD per coin")
        fee_rate = check_positive("fee_rate", fee_rate, allow_zero=True, unit="fraction")
        if usd == 0 or self._usd_spot + CASH_TOLERANCE_USD < usd:
            return 0.0
        fee = usd * fee_rate
        qty = (usd - fee) / price
        self._usd_move("spot", -(usd - fee), kind, ("{:g} {} at {:.2f}", qty, asset, price))
        if fee:
            self._usd_move("spot", -fee, "fee", ("spot purchase fee {:g}", fee_rate))
        self._coin_move(asset, "spot", qty, kind, "", ("bought at {:.2f}", price))
        return qty

    def deposit(self, currency: str, amount: float, wallet: str = "spot") -> None:
        """Deposit ``amount`` of ``currency`` ('USD' or a coin) into ``wallet`` (ledger kind 'deposit')."""
        amount = check_positive("amount", amount, unit=currency)
        check_choice("wallet", wallet, WALLETS)
        if currency == USD:
            self._usd_move(wallet, amount, "deposit", "")
        else:
            self._coin_move(currency, wallet, amount, "deposit", "", "")

    def withdraw(self, currency: str, amount: float, wallet: str = "spot") -> bool:
        """Withdraw ``amount`` from ``wallet`` (free balance only); False and no change when short."""
        amount = check_positive("amount", amount, unit=currency)
        check_choice("wallet", wallet, WALLETS)
        if self._free(currency, wallet) + 1e-12 < amount:
            return False
        if currency == USD:
            self._usd_move(wallet, -amount, "withdrawal", "")
        else:
            self._coin_move(currency, wallet, -amount, "withdrawal", "", "")
        return True

    def transfer(self, currency: str, amount: float, from_wallet: str, to_wallet: str) -> bool:
        """Move ``amount`` between wallets (e.g. spot -> futures to meet a margin call); False when short."""
        amount = check_positive("amount", amount, unit=currency)
        check_choice("from_wallet", from_wallet, WALLETS)
        check_choice("to_wallet", to_wallet, WALLETS)
        if from_wallet == to_wallet or self._free(currency, from_wallet) + 1e-12 < amount:
            return False
        note = f"{from_wallet} -> {to_wallet}"
        if currency == USD:
            self._usd_move(from_wallet, -amount, "transfer", note)
            self._usd_move(to_wallet, amount, "transfer", note)
        else:
            self._coin_move(currency, from_wallet, -amount, "transfer", "", note)
            self._coin_move(currency, to_wallet, amount, "transfer", "", note)
        return True

    def reconcile(self) -> float:
        """Largest |ledger balance - actual balance| over every (currency, wallet), each in its own currency
        (USD or coin); 0 when consistent."""
        return max(map(abs, self._residuals().values()), default=0.0)

    def reconcile_usd(self) -> float:
        """:meth:`reconcile` in USD (the summary's ``ledger_residual_usd``): the largest |ledger balance -
        actual balance| over every (currency, wallet), a coin wallet's valued at the coin's current price; 0
        when consistent, NaN when a coin wallet is off and nothing prices the coin."""
        worst = 0.0
        for (currency, _), residual in self._residuals().items():
            if residual:
                usd = abs(residual) * (1.0 if currency == USD else self.price_of(currency))
                if usd != usd:
                    return math.nan
                worst = max(worst, usd)
        return worst

    def _residuals(self) -> dict[tuple[str, str], float]:
        """Ledger balance - actual balance of every (currency, wallet), in that currency."""
        actual: dict[tuple[str, str], float] = defaultdict(float)
        actual[(USD, "spot")] = self._usd_spot
        wallet = self.cash
        for data, pos, ci in self._futures_positions():
            if not ci.is_inverse:
                wallet += ci.posted_margin(pos.size, pos.price) + self._extra.get(data, 0.0)
                wallet -= self._settled(data, pos, ci)
        actual[(USD, "futures")] = wallet
        for key, value in self._coins.items():
            actual[key] += value
        booked = self.ledger.balances()
        return {k: booked.get(k, 0.0) - actual.get(k, 0.0) for k in set(actual) | set(booked)}

    # --- balance helpers ----------------------------------------------------------------------------
    def _available_coin(self, asset: str) -> float:
        """Coins in the futures wallet not posted as margin (nor assigned to isolated positions)."""
        free = self._coins.get((asset, "futures"), 0.0)
        for data, pos, ci in self._futures_positions():
            if ci.is_inverse and ci.asset == asset:
                # the isolated margin as it stands: funding paid from it has already left the coins too
                free -= max(self._isolated_wallet(data, pos, ci), 0.0)
        return free

    def _free(self, currency: str, wallet: str) -> float:
        if currency == USD:
            if wallet == "futures":
                # What may leave the wallet: cash less the isolated positions' settled variation margin and
                # the cross positions' unrealised profit (a loss counts). Binance's "available for
                # withdrawal" is at most min(crossWalletBalance - cross MM, crossWalletBalance + cross uPnL
                # - cross IM) (https://www.binance.com/en-IN/blog/futures/10-most-frequently-asked-questions-
                # about-binance-futures-421499824684903916, 2022-08-08, question 1);
                # crossWalletBalance + min(uPnL, 0) - IM is below both, and needs no margin sums per call.
                isolated, cross = self._settled_split()
                return self.cash - isolated - max(cross, 0.0)
            return self._usd_spot if wallet == "spot" else 0.0
        if wallet == "futures":
            return self._available_coin(currency)
        return self._coins.get((currency, wallet), 0.0)

    def _usd_move(self, wallet: str, amount: float, kind: str, note: str | tuple) -> None:
        if wallet == "spot":
            self._usd_spot += amount
        elif wallet == "futures":
            self.cash += amount
        else:
            raise ConfigError(f"wallet={wallet!r} holds no USD; allowed: 'spot', 'futures'.")
        self.ledger.add(self._now, kind, USD, wallet, amount, note=note)
        self._dirty = True

    def _coin_move(self, asset: str, wallet: str, amount: float, kind: str, instrument: str = "",
                   note: str | tuple = "", price: float | None = None) -> None:
        """Move coins and ledger it, valued at ``price`` (USD per coin: a fill's price, so the ledger and the
        event of a forced close value one coin amount alike) or, by default, the coin's price at this bar."""
        self._coins[(asset, wallet)] += amount
        if amount > 0.0 and asset not in self._priced and not self._first_bar:
            self._require_price(asset, f"{kind} of {amount:g} {asset}")
        if price is None:
            price = self.price_of(asset)  # NaN before any bar: the entry's USD value is then unknown
        self.ledger.add(self._now, kind, asset, wallet, amount, instrument, note, amount * price)
        self._dirty = True

    def _equity_in(self, currency: str) -> float:
        """Cross account equity in ``currency``: its margin balance at the closes
        (:func:`brokers.formulas.cross_account_balance`)."""
        return formulas.cross_account_balance(self._cross_wallet_balance(currency),
                                              self._open_upnl(self._cross_positions(currency)))
