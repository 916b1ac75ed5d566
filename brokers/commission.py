"""Futures commission schemes: backtrader ``CommInfoBase`` subclasses that call :mod:`brokers.formulas`.

* :class:`LinearFuturesCommInfo` - USD(T)-margined contracts; size in units of ``mult`` coins; PnL, fees
  and margin in USD. Initial margin is notional / ``leverage`` at the entry price (or ``fixed_margin``
  USD per unit, backtrader's native fixed guarantee, e.g. a CME performance bond).
* :class:`InverseFuturesCommInfo` - coin-margined contracts of ``face`` USD; PnL, fees and margin in coin.
  backtrader's USD cash is not touched by these (the :class:`brokers.broker.MarginBroker` books coin);
  ``profitandloss`` and ``getcommission`` report USD equivalents at the fill price so trades and
  analyzers still show sensible numbers.

backtrader's own ``leverage`` handling (dividing the cash cost of longs) is disabled: ``get_leverage()``
returns 1 and the margin per unit already includes the leverage.

Value and size, for ``order_target_value`` / ``order_target_percent`` and sizers that call ``getsize``: as
backtrader values futures (``CommInfoBase.getvalue``: "For future-like objects it is fixed at size * margin"),
a position's value is its initial margin in USD, but signed (negative for shorts), and ``getsize(price,
cash)`` is the size whose margin is ``cash``, with no second leverage (see :meth:`FuturesCommInfo.getvalue`).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from datetime import date, datetime, timezone

import minehedge.compat  # noqa: F401  (before backtrader)

import backtrader as bt

from brokers import formulas
from brokers.venues import InstrumentSpec, VenueProfile, check_fee_rate, check_leverage, load_venue
from minehedge.errors import ConfigError, check_choice, check_positive

MARGIN_MODES = ("isolated", "cross")


class FuturesCommInfo(bt.CommInfoBase):
    """Shared parameters of the futures schemes.

    Params:
      - ``venue``: venue profile name (``binance_usdm`` ...) or a :class:`VenueProfile`.
      - ``symbol``: instrument of the venue (default: its first).
      - ``leverage`` (x): initial margin = notional / leverage; checked against the venue's brackets.
      - ``margin_mode``: ``'isolated'`` (margin per position) or ``'cross'`` (the wallet backs all).
      - ``commission``: taker fee, fraction of notional per fill, 0 to 0.01 (None: the venue's latest taker
        fee); a string holding a number is converted. Beyond 0.01 (1 %) is refused as a percent typed as a
        fraction (:func:`brokers.venues.check_fee_rate`).
      - ``maker``: maker fee for Limit fills, fraction of notional, -0.01 to 0.01, negative = a rebate (None:
        the venue's).
      - ``fixed_per_contract`` (USD per contract per side; None: the venue's).
      - ``liquidation`` / ``funding`` (bool): switch the broker's liquidation and funding for this data.
      - ``expiry`` (datetime UTC or None): dated contract; the broker cash-settles it, paying the taker fee,
        at the close of the first bar whose *open* is at or after ``expiry``. So pass the open time of the
        bar whose close is the settlement price, not the contract's expiry time (one bar late): on 1h bars a
        contract expiring at 08:00 given as 08:00 settles at the 08:00-09:00 bar's close (the 09:00 price);
        give 07:00 to settle at the 08:00 price (daily bars: give the expiry day's 00:00). The policies pass
        ``settlement_bar`` from :func:`brokers.dated.dated_price_frame`, that open time. None: perpetual. A
        date or an ISO string is accepted and converted (:func:`check_expiry`).
    """

    params = (
        ("stocklike", False),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
        ("commission", None),
        ("maker", None),
        ("fixed_per_contract", None),
        ("venue", "generic"),
        ("symbol", None),
        ("leverage", 1.0),
        ("margin_mode", "isolated"),
        ("liquidation", True),
        ("funding", True),
        ("expiry", None),
    )

    is_inverse = False

    def __init__(self) -> None:
        venue = self.p.venue
        self.venue: VenueProfile = venue if isinstance(venue, VenueProfile) else load_venue(str(venue))
        self.spec: InstrumentSpec = self.venue.instrument(self.p.symbol)
        expected = "inverse" if self.is_inverse else "linear"
        if self.venue.contract_type != expected:
            raise ConfigError(
                f"venue={self.venue.name!r} lists {self.venue.contract_type} contracts; use "
                f"{'InverseFuturesCommInfo' if self.venue.is_inverse else 'LinearFuturesCommInfo'} for it "
                f"(this scheme is {expected})."
            )
        check_choice("margin_mode", self.p.margin_mode, MARGIN_MODES)
        self.p.leverage = check_contract_leverage(self.venue, self.spec, self.p.leverage)
        fees = self.venue.fees[-1]
        self.p.commission = (fees.taker if self.p.commission is None
                             else check_fee_rate("commission", self.p.commission))
        self.p.maker = (fees.maker if self.p.maker is None
                        else check_fee_rate("maker", self.p.maker, maker=True))
        if self.p.fixed_per_contract is None:
            self.p.fixed_per_contract = fees.fixed_per_contract
        self.p.fixed_per_contract = check_positive("fixed_per_contract", self.p.fixed_per_contract,
                                                   allow_zero=True, unit="USD")
        self.p.expiry = check_expiry(self.p.expiry)
        super().__init__()
        self._fee_override: float | None = None
        self._rate = self.p.commission  # the fee rate in force: taker, or maker inside maker_fill()
        self._tier_cache: dict[date, tuple[formulas.MaintenanceTier, ...]] = {}

    # --- venue data ---------------------------------------------------------------------------------
    @property
    def asset(self) -> str:
        return self.spec.asset

    def tiers_at(self, when: datetime) -> tuple[formulas.MaintenanceTier, ...]:
        """Maintenance brackets in force on ``when`` (cached per day; dated venue data)."""
        day = when.date()
        tiers = self._tier_cache.get(day)
        if tiers is None:
            tiers = self._tier_cache[day] = self.spec.tiers_at(day)
        return tiers

    @property
    def initial_margin_rate(self) -> float:
        """Initial margin as a fraction of notional: 1 / leverage."""
        return 1.0 / self.p.leverage

    def get_leverage(self) -> float:
        # backtrader divides long cash costs by this; our margin per unit already includes the leverage.
        return 1.0

    @property
    def whole_units(self) -> bool:
        """True when the contract trades in whole units (inverse contracts; linear contracts of other than
        one coin, e.g. CME's 5 and 0.1 BTC); False for coin-sized linear contracts (Binance BTCUSDT),
        traded in fractions. The venue profiles list no size step, so this is the only rounding rule."""
        return self.is_inverse or self.p.mult != 1.0

    def getvalue(self, position, price: float) -> float:
        """Signed value of ``position`` at ``price`` (USD; < 0 short): its initial margin, size x
        ``get_margin(price)`` (linear: |size| x price x mult / leverage; inverse: contracts x face /
        leverage).

        backtrader values a futures position at ``abs(size) * get_margin(price)`` (comminfo.py
        ``CommInfoBase.getvalue``). Signed here, so that ``order_target_value`` (backtrader strategy.py: it
        buys when ``target`` > ``broker.getvalue(datas=[data])``, sells when below) reaches a short it is
        asked for. :meth:`brokers.broker.MarginBroker.get_value` with ``datas`` reads it; the account's
        value (``getvalue()``) is the broker's own equity, and ``getvaluesize`` (the USD that BackBroker
        moves out of cash at a fill) is unchanged."""
        return position.size * self.get_margin(price)

    def getsize(self, price: float, cash: float) -> float:
        """Size whose initial margin at ``price`` is ``cash`` USD: cash / ``get_margin(price)``, truncated to
        whole units where the contract trades in them (:attr:`whole_units`), fractional otherwise.

        backtrader's ``CommInfoBase.getsize`` returns ``int(leverage * (cash // get_margin(price)))`` for
        futures; ``get_margin`` here already divides by the leverage, so no second one is applied.
        backtrader's ``order_target_value`` buys or sells ``getsize(data.close[0], |target - value|)``.
        Fees are left out, as backtrader leaves them out."""
        units = cash / self.get_margin(price)
        return float(math.floor(round(units, 9))) if self.whole_units else units

    @contextmanager
    def maker_fill(self):
        """Within the block fills pay the maker rate (the broker uses it for Limit orders)."""
        self._rate = self.p.maker
        try:
            yield
        finally:
            self._rate = self.p.commission

    @contextmanager
    def fee_override(self, fee_usd: float):
        """Within the block every commission query returns ``fee_usd`` (the broker's liquidation fee)."""
        self._fee_override = fee_usd
        try:
            yield
        finally:
            self._fee_override = None


class LinearFuturesCommInfo(FuturesCommInfo):
    """Linear (USD-margined) futures. Size: units of ``mult`` coins (Binance BTCUSDT: 1; CME BTC: 5).

    Params (in addition to :class:`FuturesCommInfo`):
      - ``mult`` (coins per unit; None: the venue's contract size).
      - ``fixed_margin`` (USD per unit or None): backtrader's fixed guarantee instead of notional/leverage.
    """

    params = (("mult", None), ("fixed_margin", None))

    def __init__(self) -> None:
        super().__init__()
        if self.p.mult is None:
            self.p.mult = self.spec.contract_size
        self.p.mult = check_positive("mult", self.p.mult, unit="coins per unit")
        if self.p.fixed_margin is not None:
            self.p.fixed_margin = check_positive("fixed_margin", self.p.fixed_margin, unit="USD per unit")
            self.p.margin = self.p.fixed_margin
        else:
            self.p.margin = 1.0  # placeholder for backtrader; get_margin() computes from price

    def get_margin(self, price: float) -> float:
        """USD locked per unit at ``price``: fixed_margin, else price x mult / leverage (initial margin)."""
        if self.p.fixed_margin is not None:
            return self.p.fixed_margin
        return formulas.initial_margin(price * self.p.mult, self.p.leverage)

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        """USD fee: |size| x (price x mult x taker + fixed per contract); the liquidation fee when forced."""
        if self._fee_override is not None:
            return self._fee_override
        return abs(size) * (price * self.p.mult * self._rate + self.p.fixed_per_contract)

    def profitandloss(self, size: float, price: float, newprice: float) -> float:
        """USD PnL of ``size`` units from ``price`` to ``newprice`` (formulas.linear_pnl)."""
        return formulas.linear_pnl(size * self.p.mult, price, newprice)

    def cashadjust(self, size: float, price: float, newprice: float) -> float:
        """Variation margin in USD (same as the PnL from the last mark)."""
        return formulas.linear_pnl(size * self.p.mult, price, newprice)

    # --- margin figures (USD) -----------------------------------------------------------------------
    def qty(self, size: float, price: float | None = None) -> float:
        """Signed coins for ``size`` units: size x mult (``price`` is not needed, taken for the inverse
        scheme's signature)."""
        return size * self.p.mult

    def posted_margin(self, size: float, entry: float) -> float:
        """Initial margin locked for a position (USD): |size| x get_margin(entry)."""
        return abs(size) * self.get_margin(entry)

    def maintenance_margin(self, size: float, price: float, when: datetime) -> float:
        return formulas.maintenance_margin(abs(size) * self.p.mult * price, self.tiers_at(when))

    def liquidation_price(self, size: float, entry: float, wallet: float, when: datetime) -> float:
        return formulas.linear_liquidation_price(size * self.p.mult, entry, wallet, self.tiers_at(when))

    def bankruptcy_price(self, size: float, entry: float, wallet: float) -> float:
        return formulas.linear_bankruptcy_price(size * self.p.mult, entry, wallet)

    def funding_payment(self, size: float, mark: float, rate: float) -> float:
        """USD paid by the holder at one settlement (negative = received)."""
        return formulas.linear_funding_payment(size * self.p.mult, mark, rate)


class InverseFuturesCommInfo(FuturesCommInfo):
    """Inverse (coin-margined) futures. Size: contracts of ``face`` USD (BitMEX XBTUSD 1, Binance BTCUSD 100).

    Params (in addition to :class:`FuturesCommInfo`): ``face`` (USD per contract; None: the venue's).
    """

    params = (("face", None), ("mult", 1.0))
    is_inverse = True

    def __init__(self) -> None:
        super().__init__()
        if self.p.face is None:
            self.p.face = self.spec.face_usd
        self.p.face = check_positive("face", self.p.face, unit="USD per contract")
        # backtrader's margin per unit (get_margin): face / leverage, the initial margin of one contract in
        # USD (its coin margin valued at the entry price). USD cash is not locked for it: the broker posts the
        # coin (getoperationcost and getvaluesize are 0).
        self.p.margin = formulas.initial_margin(self.p.face, self.p.leverage)

    def getoperationcost(self, size: float, price: float) -> float:
        return 0.0  # margin is coin; the broker checks the coin wallet

    def getvaluesize(self, size: float, price: float) -> float:
        return 0.0  # no USD moves out of cash at a fill

    def cashadjust(self, size: float, price: float, newprice: float) -> float:
        return 0.0  # coin PnL is booked by the broker at fills

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        """USD equivalent of the coin fee (the broker books the coin): |size| x face x taker + fixed."""
        if self._fee_override is not None:
            return self._fee_override
        return abs(size) * (self.p.face * self._rate + self.p.fixed_per_contract)

    #: Entry (USD per coin) that :meth:`profitandloss` uses instead of the price it is given; set only on the
    #: copies :meth:`with_entry` makes for backtrader's Trade.
    trade_entry: float | None = None

    def profitandloss(self, size: float, price: float, newprice: float) -> float:
        """USD value at ``newprice`` of the coin PnL (formulas.inverse_pnl x newprice) of ``size`` contracts
        entered at ``price`` (at :attr:`trade_entry` instead, on a :meth:`with_entry` copy)."""
        if self.trade_entry is not None:
            price = self.trade_entry
        if not size or not price:
            return 0.0
        return formulas.inverse_pnl(size, self.p.face, price, newprice) * newprice

    def with_entry(self, entry: float) -> InverseFuturesCommInfo:
        """A copy of this scheme whose :meth:`profitandloss` uses ``entry`` (USD per coin) as the entry price.

        backtrader's Trade keeps its own average price, arithmetic, and computes a closing fill's P&L as
        ``comminfo.profitandloss(-closed, trade.price, fill price)`` ("the trade has an independent pnl",
        backtrader trade.py ``Trade.update``), with the ``comminfo`` of the order's notification. Inverse
        venues average entries harmonically (contracts / sum(contracts_i / price_i)), as the broker books
        them; the broker gives each inverse fill's notification this copy, with the entry the fill was
        booked against, so the trade's pnl is the P&L the broker booked."""
        twin = copy.copy(self)
        twin.trade_entry = entry
        return twin

    # --- coin figures -------------------------------------------------------------------------------
    def qty(self, size: float, price: float) -> float:
        """Signed coins for ``size`` contracts at ``price`` (USD per coin): contracts x face / price."""
        return formulas.inverse_notional_coin(size, self.p.face, price) * (1 if size > 0 else -1)

    def coin_fee(self, size: float, price: float) -> float:
        """Coin fee of a fill: |size| x face / price x rate (+ fixed USD per contract / price)."""
        return abs(size) * (self.p.face * self._rate + self.p.fixed_per_contract) / price

    def posted_margin(self, size: float, entry: float) -> float:
        """Initial margin in coin: |size| x face / entry / leverage."""
        return formulas.initial_margin(formulas.inverse_notional_coin(size, self.p.face, entry),
                                       self.p.leverage)

    def pnl_coin(self, size: float, entry: float, price: float) -> float:
        return formulas.inverse_pnl(size, self.p.face, entry, price)

    def maintenance_margin(self, size: float, price: float, when: datetime,
                           entry: float | None = None) -> float:
        """Coin maintenance margin: on the mark notional (Binance) or the entry value (BitMEX basis)."""
        basis_price = entry if (self.venue.maintenance_basis == "entry" and entry) else price
        return formulas.maintenance_margin(formulas.inverse_notional_coin(size, self.p.face, basis_price),
                                           self.tiers_at(when))

    def liquidation_price(self, size: float, entry: float, wallet: float, when: datetime) -> float:
        return formulas.inverse_liquidation_price(size, self.p.face, entry, wallet, self.tiers_at(when),
                                                  basis=self.venue.maintenance_basis)

    def bankruptcy_price(self, size: float, entry: float, wallet: float) -> float:
        return formulas.inverse_bankruptcy_price(size, self.p.face, entry, wallet)

    def funding_payment(self, size: float, mark: float, rate: float) -> float:
        """Coin paid by the holder at one settlement (negative = received)."""
        return formulas.inverse_funding_payment(size, self.p.face, mark, rate)


def check_expiry(expiry: object) -> datetime | None:
    """A dated contract's ``expiry`` as a naive UTC datetime (the broker's clock): a datetime (naive: taken as
    UTC; aware: converted to UTC), a date (its 00:00 UTC) or an ISO string of either (``'2021-03-26'``,
    ``'2021-03-26T08:00'``, ``'2021-03-26 08:00+00:00'``); None stays None (a perpetual). Anything else is a
    ConfigError naming the value and the forms allowed."""
    if expiry is None:
        return None
    value = expiry
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            value = None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(f"expiry={expiry!r} is not a date; allowed: a datetime (UTC), a date, or an ISO "
                          "string such as '2021-03-26' or '2021-03-26T08:00' (UTC), or None for a perpetual.")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def check_contract_leverage(venue: VenueProfile, spec: InstrumentSpec, leverage: float, *,
                            minimum: float | None = None) -> float:
    """Return ``leverage`` (x) if the contract ``spec`` of ``venue`` allows it on some date: the highest
    first-bracket leverage over its dated bracket tables; else ConfigError naming the maximum and the range
    allowed, from ``minimum`` (the lowest the caller's parameter accepts: a policy's 1) or else from 0 (this
    module's commission schemes take any leverage > 0). It needs no data; the broker re-checks each order
    against the table in force and the order's notional (Order.Margin when exceeded)."""
    loosest = max(spec.tier_tables, key=lambda t: t.tiers[0].max_leverage).tiers
    unit = spec.asset if venue.is_inverse else "USD"
    return check_leverage(leverage, loosest, 0.0, venue=venue.name, unit=unit, minimum=minimum)


def opening_liquidation_distance(venue: VenueProfile, spec: InstrumentSpec, leverage: float) -> float:
    """How far from its liquidation price a position opens at ``leverage`` (margin = notional / leverage),
    as a fraction of the entry price, on the side that opens nearer (the short, for linear contracts), under
    the contract's lowest first-bracket maintenance rate over its dated tables: the most room any date
    gives.
    From the venue's own liquidation formula (linear, or inverse on its ``maintenance_basis``), e.g. Binance
    USD-M at 3x with MMR 0.4 %: (1/3 - 0.004) / 1.004 = 0.328; CME at 2x with 43 %: 0.049. ``inf`` when
    neither side can be liquidated. Fees are left out (they bring it a little nearer)."""
    mmr = min(table.tiers[0].mmr for table in spec.tier_tables)
    tiers = formulas.flat_tiers(mmr)
    distances = []
    for side in (1.0, -1.0):
        if venue.is_inverse:  # one contract of 1 USD at 1 USD per coin: 1 coin of notional
            price = formulas.inverse_liquidation_price(side, 1.0, 1.0, 1.0 / leverage, tiers,
                                                       basis=venue.maintenance_basis)
        else:
            price = formulas.linear_liquidation_price(side, 1.0, 1.0 / leverage, tiers)
        distances.append(math.inf if not math.isfinite(price) or price <= 0.0 else side * (1.0 - price))
    return min(distances)


def futures_comminfo(venue: str | VenueProfile, **kwargs: object) -> FuturesCommInfo:
    """The right scheme for ``venue`` (linear or inverse), with ``kwargs`` as params."""
    profile = venue if isinstance(venue, VenueProfile) else load_venue(str(venue))
    cls = InverseFuturesCommInfo if profile.is_inverse else LinearFuturesCommInfo
    return cls(venue=profile, **kwargs)
