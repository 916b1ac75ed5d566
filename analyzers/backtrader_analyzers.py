"""backtrader ``Analyzer`` subclasses: equity recording, drawdowns, margin events, mining P&L, hedge
effectiveness, fills and a flat Summary record; plus :func:`add_analyzers` and :func:`build_run_result`.

Thin classes over the pure functions in ``analyzers.metrics``, ``analyzers.event_stats`` and
``analyzers.ledger_stats``. Per bar they only append floats to lists (one shared :class:`EquityRecorder`
per strategy and asset); everything else is computed once in ``stop()`` with numpy/pandas. Each
``get_analysis()`` returns a closed ``AutoOrderedDict`` whose keys are documented on the class.

The broker is read through the MarginBroker contract (``getvalue``, ``get_equity_coin``, ``get_cash``,
``get_coins``, ``get_unrealized_pnl_usd``, ``get_margin_ratio``, ``warning_level``, ``events``, ``ledger``,
``reconcile``). On a plain ``BackBroker`` the methods it lacks are reported as NaN (coin equity is then
USD equity / price, the same definition), the event log and the ledger as empty.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from datetime import timedelta

import minehedge.compat  # noqa: F401  (must precede backtrader)

import backtrader as bt
import numpy as np
import pandas as pd

from analyzers import event_stats, ledger_stats, loan_stats, metrics
from analyzers.report import EQUITY_COLUMNS, RunResult
from analyzers.summary_keys import SUMMARY_KEYS
from brokers.ledger import Ledger
from minehedge.errors import ConfigError, check_choice
from minehedge.timeframes import timeframe_span

ASSETS: tuple[str, ...] = ("BTC", "ETH")
_RECORDERS_ATTRIBUTE = "_minehedge_equity_recorders"  # strategy attribute: {(asset, price data id): recorder}


def _closed(rets: bt.AutoOrderedDict) -> bt.AutoOrderedDict:
    rets._close()
    return rets


def _resolve_price_data(analyzer: bt.Analyzer, price_data: object) -> bt.feed.DataBase:
    """The feed whose close is the coin price (USD per coin): None -> data0, an int index, or a name."""
    if price_data is None:
        return analyzer.datas[0]
    if isinstance(price_data, int):
        if not 0 <= price_data < len(analyzer.datas):
            raise ConfigError(f"price_data={price_data!r} is out of range; the run has "
                              f"{len(analyzer.datas)} data feeds.")
        return analyzer.datas[price_data]
    names = [data._name for data in analyzer.datas]
    check_choice("price_data", price_data, names)
    return analyzer.datas[names.index(price_data)]


def _resolve_asset(analyzer: bt.Analyzer, feed: bt.feed.DataBase) -> str:
    """The analyzer's ``asset`` param (``"BTC"``/``"ETH"``), checked; None = the run's coin: the strategy's
    ``asset`` param (the project's policies have one), else the coin the price feed's name starts with
    (``XBT`` read as BTC), else ``"BTC"``."""
    asset = analyzer.p.asset
    if asset is None:
        asset = getattr(analyzer.strategy.params, "asset", None)
    if asset is None:
        label = (feed._name or "").upper().replace("XBT", "BTC")
        asset = next((coin for coin in ASSETS if label.startswith(coin)), "BTC")
    check_choice("asset", asset, ASSETS)
    return asset


def _events(broker: object) -> list:
    return list(getattr(broker, "events", []))


# broker attribute: (ledger, its length, frame) of the last build
_LEDGER_ATTRIBUTE = "_minehedge_ledger_frame"


def _ledger(broker: object) -> pd.DataFrame:
    """The broker's ledger as ``ledger_stats.ledger_frame(..., notes=False)``, built once per run and shared
    by every analyzer and the report (a Ledger is append-only: with the same number of entries it is the same
    table). No statistic reads the notes; the report adds them. Callers must not modify the returned frame."""
    ledger = getattr(broker, "ledger", None)
    if ledger is None:
        return ledger_stats.ledger_frame([], notes=False)
    size = len(ledger) if isinstance(ledger, Ledger) else None
    cached = getattr(broker, _LEDGER_ATTRIBUTE, None)
    if size is not None and cached is not None and cached[0] is ledger and cached[1] == size:
        return cached[2]
    frame = ledger_stats.ledger_frame(ledger, notes=False)
    if size is not None:
        setattr(broker, _LEDGER_ATTRIBUTE, (ledger, size, frame))
    return frame


def _ledger_notes(broker: object, entries: int) -> Callable[[], list[str]]:
    """A function returning the notes of the first ``entries`` entries of the broker's ledger (the rows of
    :func:`_ledger`'s table), rendered when it is called."""
    ledger = getattr(broker, "ledger", None)
    if isinstance(ledger, Ledger):
        return lambda: ledger.note_texts()[:entries]
    if ledger is None:
        return list
    return lambda: ledger_stats.ledger_frame(ledger)["note"].tolist()[:entries]


_ORDINAL_OF_EPOCH = 719_163  # date(1970, 1, 1).toordinal(): backtrader stores times as ordinal days


def _bar_times_utc(numbers: list[float]) -> pd.DatetimeIndex:
    """backtrader's float datetimes (proleptic ordinal days, naive UTC) as a UTC index, vectorised and
    rounded to the millisecond (float days carry ~10 microseconds of noise)."""
    milliseconds = np.round((np.asarray(numbers, dtype=float) - _ORDINAL_OF_EPOCH) * 86_400_000.0)
    return pd.DatetimeIndex(pd.to_datetime(milliseconds.astype(np.int64), unit="ms", utc=True),
                            name="datetime")


def _on_bars(values: pd.Series, curve: pd.Series, bars: int) -> np.ndarray:
    """A per-point series of ``curve`` from :mod:`analyzers.metrics` (``drawdown_pct``, ...), which leave
    NaN points out, put back on ``curve``'s last ``bars`` points (the per-bar rows, without the opening value
    first), NaN where ``curve`` is NaN: an undefined equity (a NaN price, a coin nothing prices) gives an
    undefined drawdown on that bar. Aligned by position, not by time: a price feed coarser than another
    data repeats its bar time on several rows, and the metrics keep the order of a curve already in time
    order."""
    defined = ~np.isnan(curve.to_numpy(dtype="float64"))
    out = np.full(len(curve), math.nan)
    out[defined] = values.to_numpy(dtype="float64")
    return out[len(curve) - bars:]


class _ReadsBroker(bt.Analyzer):
    """Base of these analyzers: they read the broker (or the ledger) themselves, so backtrader's per-bar
    cash/value notifications, sent to every analyzer on every bar, stop here (children still get them; a
    subclass that wants ``notify_cashvalue``/``notify_fund`` must derive from ``bt.Analyzer`` instead).
    A MinerStrategy skips that notification altogether when no analyzer needs it
    (``strategies.base.listens_to_cashvalue``)."""

    uses_cashvalue_notifications = False

    #: Attributes that hold the live run, not its results: left out when the analyzer is pickled (below).
    _live_attributes: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, object]:
        """The analyzer without the live run (the strategy, its data feeds and lines, the broker readers
        bound in ``start``, some of them lambdas), so its results pickle: ``cerebro.optstrategy`` sends each
        run's analyzers back from the worker processes (``optreturn``). backtrader itself clears
        ``strategy`` and the ``data*`` attributes of the top-level analyzers only; this does it for the
        children too. What ``get_analysis()`` and the recorded tables need is kept."""
        state = self.__dict__.copy()
        for name in list(state):
            if name in self._live_attributes:
                del state[name]
            elif name == "strategy" or name.startswith("data"):
                state[name] = None  # as backtrader's optreturn leaves them
        return state

    def _notify_cashvalue(self, cash: float, value: float) -> None:
        for child in self._children:
            child._notify_cashvalue(cash, value)

    def _notify_fund(self, cash: float, value: float, fundvalue: float, shares: float) -> None:
        for child in self._children:
            child._notify_fund(cash, value, fundvalue, shares)

    # Per-bar dispatch. backtrader calls _prenext/_nextstart/_next on every analyzer and, through them, on
    # every child each bar. Most of these analyzers work only in stop(): from the start on, a bar reaches
    # only the children that do something per bar, and an analyzer with neither per-bar work of its own nor
    # such children is skipped.
    def _start(self) -> None:
        super()._start()
        self._bar_children = [child for child in self._children if _works_per_bar(child)]
        if not self._bar_children and not _overrides_bar_hooks(self):
            self._prenext = self._nextstart = self._next = _skip_bar

    def _prenext(self) -> None:
        for child in self._bar_children:
            child._prenext()
        self.prenext()

    def _nextstart(self) -> None:
        for child in self._bar_children:
            child._nextstart()
        self.nextstart()

    def _next(self) -> None:
        for child in self._bar_children:
            child._next()
        self.next()


def _skip_bar() -> None:
    """The per-bar hook of an analyzer that does nothing per bar (see ``_ReadsBroker._start``)."""


def _overrides_bar_hooks(analyzer: bt.Analyzer) -> bool:
    cls = type(analyzer)
    return any(getattr(cls, name) is not getattr(bt.Analyzer, name)
               for name in ("prenext", "nextstart", "next"))


def _works_per_bar(analyzer: bt.Analyzer) -> bool:
    """False only for one of these analyzers whose bar hooks are backtrader's no-ops (started, so its own
    per-bar children are known): every other analyzer is dispatched each bar as backtrader does."""
    if not isinstance(analyzer, _ReadsBroker):
        return True
    return _overrides_bar_hooks(analyzer) or bool(analyzer._bar_children)


class EquityRecorder(_ReadsBroker):
    """Per-bar account state, for equity.csv, the drawdowns and the charts.

    Params: ``asset`` (``"BTC"``/``"ETH"``: coin for coin-terms equity and coin balance; None, the default:
    the run's coin, :func:`_resolve_asset`), ``price_data`` (None = data0, an index or a feed name: its close
    is the coin price, USD per coin).

    get_analysis() keys:
      bars: number of bars recorded; start / end: first and last bar time (pandas Timestamp, UTC);
      equity: DataFrame (UTC index, one row per bar) with columns equity_usd (USD, ``broker.getvalue()``),
        equity_coin (coin, ``broker.get_equity_coin(asset)``), cash_usd (USD), coins (coin balance),
        unrealized_pnl_usd (USD), margin_ratio (``broker.get_margin_ratio()``, fraction: the largest
        maintenance margin / margin balance over positions, on CME the account's, the ratio its calls act on;
        1.0 = where the venue liquidates or calls), drawdown_pct (percent of the
        USD peak, the opening value included, 0-100) and price_usd (USD per coin, the price feed's close);
      opening_time, opening_equity_usd (USD), opening_equity_coin (coin): see :meth:`valuation`.

    Each row is labelled with its bar's open time and holds the account at that bar's close. The opening
    value is read when the analyzer starts, after a MinerStrategy has made its deposits (opening coins at the
    first bar's open): the account before the first bar's move, mining, costs and orders.
    """

    params = (("asset", None), ("price_data", None))
    _live_attributes = ("_price_feed", "_read_equity", "_read_cash", "_read_coin_equity", "_read_coins",
                        "_read_unrealized", "_read_margin_ratio", "_read_state", "_close_line",
                        "_datetime_line", "_append", "next")

    def __init__(self) -> None:
        self._price_feed = _resolve_price_data(self, self.p.price_data)
        self.p.asset = _resolve_asset(self, self._price_feed)
        self._span: timedelta | None = None  # the price feed's bar (start)
        recorders = getattr(self.strategy, _RECORDERS_ATTRIBUTE, None)
        if recorders is None:
            recorders = {}
            setattr(self.strategy, _RECORDERS_ATTRIBUTE, recorders)
        recorders.setdefault((self.p.asset, id(self._price_feed)), self)
        self._time: list[float] = []
        self._columns: dict[str, list[float]] = {name: [] for name in (
            "equity_usd", "equity_coin", "cash_usd", "coins", "unrealized_pnl_usd", "margin_ratio",
            "price_usd")}
        self._frame: pd.DataFrame | None = None
        self._opening: dict[str, float] = dict.fromkeys(("equity_usd", "equity_coin", "coins", "price_usd"),
                                                        math.nan)

    def create_analysis(self) -> None:
        self.rets = bt.AutoOrderedDict()

    def start(self) -> None:
        self._span = timeframe_span(self._price_feed._timeframe, self._price_feed._compression)
        broker = self.strategy.broker
        asset = self.p.asset
        nan = math.nan
        equity_coin = getattr(broker, "get_equity_coin", None)
        coins = getattr(broker, "get_coins", None)
        price_of = getattr(broker, "price_of", None)
        self._opening = {"equity_usd": float(broker.getvalue()),
                         "equity_coin": float(equity_coin(asset)) if equity_coin else nan,
                         "coins": float(coins(asset)) if coins else nan,
                         "price_usd": float(price_of(asset)) if price_of else nan}
        unrealized = getattr(broker, "get_unrealized_pnl_usd", None)
        margin_ratio = getattr(broker, "get_margin_ratio", None)
        self._read_equity = broker.getvalue
        self._read_cash = broker.get_cash
        self._read_coin_equity = (lambda: equity_coin(asset)) if equity_coin else None
        self._read_coins = (lambda: coins(asset)) if coins else (lambda: nan)
        self._read_unrealized = unrealized or (lambda: nan)
        self._read_margin_ratio = margin_ratio or (lambda: nan)
        self._close_line = self._price_feed.close
        self._datetime_line = self._price_feed.datetime
        self._append = [self._columns[name].append for name in self._columns]
        state = getattr(broker, "account_state", None)
        if state is not None:  # a MarginBroker: the six account figures in one call
            self._read_state = functools.partial(state, asset)
            self.next = self._next_from_state

    def _next_from_state(self) -> None:
        (equity_usd, equity_coin, cash, coins, unrealized, ratio, price) = self._append
        value, in_coin, free_cash, coin_balance, upnl, margin_ratio = self._read_state()
        close = self._close_line[0]
        self._time.append(self._datetime_line[0])
        equity_usd(value)
        equity_coin(in_coin)
        cash(free_cash)
        coins(coin_balance)
        unrealized(upnl)
        ratio(margin_ratio)
        price(close)

    def next(self) -> None:
        (equity_usd, equity_coin, cash, coins, unrealized, ratio, price) = self._append
        value = self._read_equity()
        close = self._close_line[0]
        self._time.append(self._datetime_line[0])
        equity_usd(value)
        equity_coin(self._read_coin_equity() if self._read_coin_equity else value / close)
        cash(self._read_cash())
        coins(self._read_coins())
        unrealized(self._read_unrealized())
        ratio(self._read_margin_ratio())
        price(close)

    def frame(self) -> pd.DataFrame:
        """The per-bar table (see class docstring); built once, valid from the first bar on."""
        if self._frame is None or len(self._frame) != len(self._time):
            index = _bar_times_utc(self._time)
            frame = pd.DataFrame({name: np.asarray(v, dtype=float) for name, v in self._columns.items()},
                                 index=index)
            opened = self._with_opening(frame["equity_usd"], "equity_usd")
            frame["drawdown_pct"] = _on_bars(metrics.drawdown_pct(opened), opened, len(frame))
            self._frame = frame.loc[:, [*EQUITY_COLUMNS, "price_usd"]]
        return self._frame

    def opening_time(self) -> pd.Timestamp | None:
        """The opening value's label: one bar before the first bar's label, since every row is labelled with
        its bar's open time and holds the account at the bar's close (the opening is the close of the bar
        before). The bar is the price feed's declared span, or the median spacing when it has none."""
        if not self._time:
            return None
        first = _bar_times_utc(self._time[:1])[0]
        span = self._span
        if span is not None:
            return first - pd.Timedelta(span)
        spacing = np.diff(metrics.epoch_ns(_bar_times_utc(self._time)))
        return first - (pd.Timedelta(int(np.median(spacing)), unit="ns") if spacing.size
                        else pd.Timedelta(days=1))

    def valuation(self, column: str = "equity_usd") -> pd.Series:
        """``column`` (``equity_usd``, USD, or ``equity_coin``, coin) with the opening value first, labelled
        :meth:`opening_time`: the curve the summary's returns, CAGR, Sharpe, Sortino and drawdowns use, so the
        first bar's move counts. Without a positive opening value (an account opened with nothing, or a broker
        that cannot value coins before the first bar) it is the per-bar column alone."""
        return self._with_opening(self.frame()[column], column)

    def _with_opening(self, values: pd.Series, column: str) -> pd.Series:
        return metrics.with_opening(values, self.opening_time(), self._opening[column])

    def opening(self) -> dict[str, object]:
        """The opening for :class:`RunResult`: time (:meth:`opening_time`), equity_usd (USD), equity_coin
        (coin)."""
        return {"time": self.opening_time(), "equity_usd": self._opening["equity_usd"],
                "equity_coin": self._opening["equity_coin"]}

    def holdings(self) -> pd.DataFrame:
        """The coins held (``coins_held``, coin, every wallet) and their price (``price_usd``, USD per coin)
        per bar, with the opening first, labelled :meth:`opening_time`: the opening coins at the price that
        valued them (NaN for an account opened without coins: nothing priced them, nothing needed to). With
        opening coins that nothing priced (a broker without ``set_price`` before the first bar), or no coin
        balance to read (a plain BackBroker: NaN coins), it is the per-bar rows alone."""
        frame = self.frame()
        held = frame.loc[:, ["coins", "price_usd"]].rename(columns={"coins": "coins_held"})
        coins, price = self._opening["coins"], self._opening["price_usd"]
        if not len(held) or math.isnan(coins) or (coins != 0.0 and math.isnan(price)):
            return held
        head = pd.DataFrame({"coins_held": [coins], "price_usd": [price]},
                            index=pd.DatetimeIndex([self.opening_time()], name=held.index.name))
        return pd.concat([head, held])

    def stop(self) -> None:
        frame = self.frame()
        self.rets.bars = len(frame)
        self.rets.start = frame.index[0] if len(frame) else None
        self.rets.end = frame.index[-1] if len(frame) else None
        self.rets.equity = frame
        self.rets.opening_time = self.opening_time()
        self.rets.opening_equity_usd = self._opening["equity_usd"]
        self.rets.opening_equity_coin = self._opening["equity_coin"]
        _closed(self.rets)


class _UsesRecorder(_ReadsBroker):
    """Base: shares one EquityRecorder per (strategy, asset, price feed) instead of recording twice."""

    params = (("asset", None), ("price_data", None))

    def __init__(self) -> None:
        feed = _resolve_price_data(self, self.p.price_data)
        self.p.asset = _resolve_asset(self, feed)
        recorders = getattr(self.strategy, _RECORDERS_ATTRIBUTE, {})
        existing = recorders.get((self.p.asset, id(feed)))
        # A new recorder created here becomes this analyzer's child, so it is driven bar by bar. (Compare with
        # None: an Analyzer's truth value is len(strategy), which is 0 before the first bar.)
        if existing is None:
            existing = EquityRecorder(asset=self.p.asset, price_data=self.p.price_data)
        self.recorder = existing

    def create_analysis(self) -> None:
        self.rets = bt.AutoOrderedDict()


class Drawdown(_UsesRecorder):
    """Drawdowns of total equity in USD and in coin terms (``metrics.drawdown_stats``), from the opening value
    and on every bar (not resampled daily as the returns are): finer bars see intraday troughs, so compare
    drawdowns between runs of the same bar size.

    get_analysis() keys, under ``usd`` (equity in USD) and ``coin`` (equity in coin):
      max_drawdown_pct (percent of the running peak, 0-100; 100 = ruin), max_drawdown (largest
      ``peak - max(equity, 0)``: USD under ``usd``, coin under ``coin``), peak / trough / recovery (UTC
      Timestamps of the deepest % drawdown; recovery None if never recovered), longest_underwater_days
      (calendar days), ruined (bool: equity reached <= 0), ruin_time (Timestamp or None), min_equity (USD /
      coin). And ``underwater``: DataFrame (UTC index) with drawdown_usd_pct, drawdown_usd (USD),
      drawdown_coin_pct, drawdown_coin (coin).
    """

    def stop(self) -> None:
        frame = self.recorder.frame()
        underwater = pd.DataFrame(index=frame.index)
        for unit, column in (("usd", "equity_usd"), ("coin", "equity_coin")):
            curve = self.recorder.valuation(column)  # the opening value first: the first bar's move counts
            stats = metrics.drawdown_stats(curve)
            block = self.rets[unit]
            block.max_drawdown_pct = stats.max_drawdown_pct
            block.max_drawdown = stats.max_drawdown_amount
            block.peak = stats.peak_time
            block.trough = stats.trough_time
            block.recovery = stats.recovery_time
            block.longest_underwater_days = stats.longest_underwater_days
            block.ruined = stats.ruined
            block.ruin_time = stats.ruin_time
            block.min_equity = stats.min_equity
            underwater[f"drawdown_{unit}_pct"] = _on_bars(metrics.drawdown_pct(curve), curve, len(frame))
            underwater[f"drawdown_{unit}"] = _on_bars(metrics.drawdown_amount(curve), curve, len(frame))
        self.rets.underwater = underwater
        _closed(self.rets)


class MarginEvents(_UsesRecorder):
    """Margin calls, liquidations, CME and loan calls from ``broker.events``, and time above the warning
    level.

    get_analysis() keys:
      counts: {kind: number of events} for every kind in ``brokers.events.EVENT_KINDS``;
      every key of ``event_stats.event_totals`` (margin_calls, liquidations, liquidation_loss_usd (USD),
        liquidation_fee_usd (USD), cme_calls, cme_calls_met, cme_calls_missed, loan_calls, loan_calls_met,
        loan_liquidations, loan_liquidation_loss_usd (USD), insurance_fund_events, insurance_shortfall_usd
        (USD), missed_payments, insolvencies (count of ``insolvency`` events: the miner raises one per spell,
        at its first bar),
        insolvency (bool), ruin (bool));
      insolvent_days: calendar days insolvent, ``event_stats.insolvent_days`` (each spell from its
        ``insolvency`` bar to its ``insolvency_cured`` bar, or to the end of the last bar if never cured);
      records: list of dicts, one per event in log order (every MarginEvent field; ``time`` -> ``datetime``);
      warning_level: ``broker.warning_level`` (fraction; NaN if the broker has none);
      time_above_warning_days: calendar days with margin ratio >= warning level (each bar counts until the
        next bar); time_above_warning_pct: percent of bars with margin ratio >= warning level.
    """

    def stop(self) -> None:
        broker = self.strategy.broker
        events = _events(broker)
        self.rets.counts = bt.AutoOrderedDict(event_stats.count_events(events))
        for key, value in event_stats.event_totals(events).items():
            self.rets[key] = value
        self.rets.records = event_stats.event_records(events)
        level = float(getattr(broker, "warning_level", math.nan))
        frame = self.recorder.frame()
        days, pct = event_stats.time_above_level(frame.index, frame["margin_ratio"].to_numpy(), level)
        self.rets.insolvent_days = event_stats.insolvent_days(events, frame.index)
        self.rets.warning_level = level
        self.rets.time_above_warning_days = days
        self.rets.time_above_warning_pct = pct
        _closed(self.rets)


class MiningPnL(_UsesRecorder):
    """The mining operation's P&L from the ledger (kinds mining_credit, power_cost, hosting_cost, pool_fee)
    and curtailment from the strategy.

    Strategy interface (optional): a ``mining_state`` attribute, read once per bar, with a float
    ``curtailed_fraction`` (0-1: share of the bar's time the fleet was switched off). Without it the
    curtailment keys are NaN.

    get_analysis() keys:
      coins_mined (coin, net of pool fees taken in coin), coins_mined_gross (coin), pool_fee_coin (coin),
      mining_revenue_usd (USD: each credit valued at the price of the bar it was mined), power_cost_usd,
      hosting_cost_usd, pool_fee_usd (USD, >= 0), net_operating_cash_flow_usd (USD: revenue - costs),
      break_even_price_usd (USD per coin over the run: cash costs / net coins), break_even_price_last_usd
      (USD per coin, last bar that mined), curtailed_days (calendar days, each bar weighted by the
      share of the installed hash rate switched off), curtailed_pct (percent of the run's time, so weighted),
      per_bar: DataFrame from ``ledger_stats.mining_frame`` (UTC index).
    """

    def __init__(self) -> None:
        super().__init__()
        self._curtailed: list[float] = []

    def next(self) -> None:
        state = getattr(self.strategy, "mining_state", None)
        self._curtailed.append(getattr(state, "curtailed_fraction", math.nan) if state is not None
                               else math.nan)

    def stop(self) -> None:
        frame = self.recorder.frame()
        prices = frame["price_usd"]
        per_bar = ledger_stats.mining_frame(_ledger(self.strategy.broker), self.p.asset, prices)
        totals = per_bar.sum()
        self.rets.coins_mined = float(totals["coins_net"])
        self.rets.coins_mined_gross = float(totals["coins_gross"])
        self.rets.pool_fee_coin = float(totals["pool_fee_coin"])
        self.rets.mining_revenue_usd = float(totals["revenue_usd"])
        self.rets.power_cost_usd = float(totals["power_cost_usd"])
        self.rets.hosting_cost_usd = float(totals["hosting_cost_usd"])
        self.rets.pool_fee_usd = float(totals["pool_fee_usd"])
        self.rets.net_operating_cash_flow_usd = float(totals["net_cash_flow_usd"])
        self.rets.break_even_price_usd = (float(totals["cash_cost_usd"] / totals["coins_net"])
                                          if totals["coins_net"] > 0 else math.nan)
        mined = per_bar["break_even_price_usd"].dropna()
        self.rets.break_even_price_last_usd = float(mined.iloc[-1]) if len(mined) else math.nan
        curtailed = np.asarray(self._curtailed, dtype=float)
        if curtailed.size and not np.isnan(curtailed).all():
            durations = metrics.bar_durations_days(frame.index)
            self.rets.curtailed_days = float(np.nansum(curtailed * durations))
            self.rets.curtailed_pct = self.rets.curtailed_days / durations.sum() * 100.0
        else:
            self.rets.curtailed_days = math.nan
            self.rets.curtailed_pct = math.nan
        self.rets.per_bar = per_bar
        _closed(self.rets)


class HedgeEffectiveness(_UsesRecorder):
    """The futures leg's P&L, funding and fees (ledger, futures wallet) and how much it cut the variance of
    the coins the miner held.

    Exposure: the coins held in every wallet (spot, futures, pledged collateral; ``EquityRecorder.holdings``,
    the opening coins first) times the price: the unhedged change over a period is the coins held at its start
    times the price change, USD. Coins sold stop counting when sold; a treasury that holds none has no
    exposure. Hedge P&L = cumulative futures-wallet P&L entries (``ledger_stats.FUTURES_PNL_KINDS``) +
    ``broker.get_unrealized_pnl_usd()``, USD. Both sampled at the last bar of each UTC day
    (``metrics.last_per_day``, as the Sharpe ratio), so the figure does not depend on the bar size.

    get_analysis() keys:
      every key of ``ledger_stats.futures_leg_totals`` (realized_pnl_usd, settlement_usd, liquidation_usd,
        insurance_fund_usd, funding_paid_usd, funding_received_usd, funding_net_usd, fees_paid_usd,
        realized_total_usd; USD);
      unrealized_pnl_usd (USD, last bar); futures_pnl_usd (USD: realized_total + unrealized);
      coins_held (coin, last bar), exposure_usd (USD: coins_held x price, last bar);
      variance_reduction_pct (percent, ``metrics.hedge_variance_reduction_pct``; NaN when no coin was held
        at any sample: nothing to hedge);
      daily: DataFrame (UTC daily index, the opening's day first) with coins_held, price_usd, hedge_pnl_usd.
    """

    params = (("wallet", "futures"),)

    def stop(self) -> None:
        frame = self.recorder.frame()
        ledger = _ledger(self.strategy.broker)
        for key, value in ledger_stats.futures_leg_totals(ledger, self.p.wallet).items():
            self.rets[key] = value
        unrealized = frame["unrealized_pnl_usd"].fillna(0.0)
        hedge_pnl = ledger_stats.futures_pnl_by_time(ledger, frame.index, frame["unrealized_pnl_usd"],
                                                     wallet=self.p.wallet)
        samples = self.recorder.holdings()
        samples["hedge_pnl_usd"] = hedge_pnl.reindex(samples.index, fill_value=0.0)  # 0 at opening
        daily = metrics.last_per_day(samples)
        self.rets.unrealized_pnl_usd = float(unrealized.iloc[-1]) if len(frame) else 0.0
        self.rets.futures_pnl_usd = self.rets.realized_total_usd + self.rets.unrealized_pnl_usd
        self.rets.coins_held = float(frame["coins"].iloc[-1]) if len(frame) else 0.0
        self.rets.exposure_usd = (self.rets.coins_held * float(frame["price_usd"].iloc[-1]) if len(frame)
                                  else 0.0)
        self.rets.variance_reduction_pct = metrics.hedge_variance_reduction_pct(
            daily["coins_held"], daily["price_usd"], daily["hedge_pnl_usd"])
        self.rets.daily = daily
        _closed(self.rets)


class Fills(_ReadsBroker):
    """Every completed order, for the price chart and trades list.

    get_analysis() keys: fills: list of dicts with datetime (UTC Timestamp), instrument (the contract, as
    events and the ledger name it: ``BTCUSDT``, ``XBTUSD``; under a backtrader scheme without a contract
    spec, the feed's name), side
    (``"buy"``/``"sell"``), size (coins, signed: negative for sells), contracts (the venue's order units,
    signed: ``order.executed.size``), price (USD per coin), commission (USD), reason
    (``order.info['reason']``, e.g. ``"liquidation"``, else ``""``).

    Coins are the commission scheme's ``qty(contracts, price)`` at the fill price: contracts x face / price
    for an inverse contract, contracts x multiplier for a linear one (CME BTC: 5 coins a contract; equal to
    contracts for coin-sized contracts); contracts x ``mult`` under any other backtrader scheme.
    """

    def create_analysis(self) -> None:
        self.rets = bt.AutoOrderedDict()
        self._fills: list[dict[str, object]] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.status != order.Completed:
            return
        contracts, price = float(order.executed.size), float(order.executed.price)
        comminfo = self.strategy.broker.getcommissioninfo(order.data)
        qty = getattr(comminfo, "qty", None)
        contract = getattr(getattr(comminfo, "spec", None), "symbol", None)  # a minehedge scheme's contract
        self._fills.append({
            "datetime": pd.Timestamp(bt.num2date(order.executed.dt), tz="UTC"),
            "instrument": contract or order.data._name or "data",
            "side": "buy" if order.isbuy() else "sell",
            "size": float(qty(contracts, price)) if qty else contracts * comminfo.p.mult,
            "contracts": contracts,
            "price": price,
            "commission": float(order.executed.comm),
            "reason": str(order.info.get("reason", "") or ""),
        })

    def stop(self) -> None:
        self.rets.fills = list(self._fills)
        _closed(self.rets)


def _reconcile_residual_usd(broker: object) -> float:
    """The ledger residual in USD: ``broker.reconcile_usd()`` (a MarginBroker: coin wallets at the coin's
    price), else ``broker.reconcile()`` as a number or a mapping's ``residual_usd``; NaN if absent."""
    in_usd = getattr(broker, "reconcile_usd", None)
    if in_usd is not None:
        return float(in_usd())
    reconcile = getattr(broker, "reconcile", None)
    if reconcile is None:
        return math.nan
    result = reconcile()
    if isinstance(result, Mapping):
        return float(result.get("residual_usd", math.nan))
    residual = getattr(result, "residual_usd", result)
    try:
        return float(residual)
    except (TypeError, ValueError):
        return math.nan


class Summary(_UsesRecorder):
    """One flat record of the run (for summary.json, the sweep table and the compare command).

    Builds its own Drawdown, MarginEvents, MiningPnL and HedgeEffectiveness children (available as
    ``.drawdown``, ``.margin_events``, ``.mining``, ``.hedge``) on the shared EquityRecorder (``.recorder``).

    get_analysis() keys (units in the suffix; ``_pct`` is percent):
      start, end (ISO-8601 UTC strings), bars, asset, initial_equity_usd (the opening value: deposits, opening
      coins at the first bar's open; ``EquityRecorder.valuation``), final_equity_usd,
      final_equity_coin, total_return_pct, cagr_pct (calendar days / 365.25, from the opening to the last
      bar's close), max_drawdown_pct,
      max_drawdown_usd, max_drawdown_coin_pct, max_drawdown_coin, longest_underwater_days,
      sharpe, sortino (daily returns, x sqrt(365), risk-free ``risk_free_daily`` per day),
      margin_calls (margin_call, cme_margin_call and desk_margin_call events), liquidations (liquidation,
      partial_liquidation and cme_margin_call_missed events), liquidation_loss_usd (the price loss at those
      fills, >= 0), liquidation_fee_usd, cme_calls_missed, loan_calls,
      loan_liquidations, insurance_shortfall_usd, time_above_warning_days, coins_mined, mining_revenue_usd,
      power_cost_usd, hosting_cost_usd, pool_fee_usd, net_operating_cash_flow_usd, curtailed_days,
      futures_pnl_usd (the futures wallet's result: price P&L, funding and insurance refills less futures and
      liquidation fees, so the next three overlap it), funding_paid_usd, funding_received_usd (futures
      wallet), fees_paid_usd (all wallets,
      trading + liquidation fees), hedge_variance_reduction_pct (percent: ``HedgeEffectiveness``; NaN
      when no coin was held), ruined (equity reached <= 0), insolvent
      (ruined, an ``insolvency``/``ruin`` event, or ``strategy.insolvent`` true: balance-sheet or cash
      insolvency), insolvencies (cash insolvency: the number of ``insolvency`` events, which the miner raises
      once per spell, on the bar its bills went unpaid; a cure is an ``insolvency_cured`` event and is not
      counted), insolvent_days (calendar days: each spell from its ``insolvency`` bar's time to its
      ``insolvency_cured`` bar's time, or, never cured, to the end of the run's last bar, which lasts the
      median bar spacing; the duration of the bars that closed insolvent, counted as time_above_warning_days
      counts its bars, so intraday bars count hours / 24), ledger_residual_usd
      (USD: the largest ledger-versus-balance residual over wallets, coin wallets at the last price,
      ``broker.reconcile_usd()``; NaN when the broker has none).
    """

    params = (("risk_free_daily", 0.0),)

    def __init__(self) -> None:
        super().__init__()
        kwargs = {"asset": self.p.asset, "price_data": self.p.price_data}
        self.drawdown = Drawdown(**kwargs)
        self.margin_events = MarginEvents(**kwargs)
        self.mining = MiningPnL(**kwargs)
        self.hedge = HedgeEffectiveness(**kwargs)

    def _initial_equity_usd(self, equity: pd.Series, frame: pd.DataFrame) -> float:
        """The opening value (USD), also when it is zero or below (debt beyond the assets), which the
        valuation curve leaves out; the first bar's equity when nothing valued the opening."""
        if not len(frame):
            return math.nan
        opening = self.recorder.opening()["equity_usd"]
        return float(opening) if opening is not None and math.isfinite(opening) else float(equity.iloc[0])

    def stop(self) -> None:  # children have stopped already (Analyzer._stop runs them first)
        frame = self.recorder.frame()
        equity = self.recorder.valuation("equity_usd")  # from the opening value: the first bar's move counts
        draw, events = self.drawdown.rets, self.margin_events.rets
        mining, hedge = self.mining.rets, self.hedge.rets
        ledger = _ledger(self.strategy.broker)
        returns = metrics.daily_returns(equity)
        record = {
            "start": frame.index[0].isoformat() if len(frame) else None,
            "end": frame.index[-1].isoformat() if len(frame) else None,
            "bars": len(frame),
            "asset": self.p.asset,
            "initial_equity_usd": self._initial_equity_usd(equity, frame),
            "final_equity_usd": float(frame["equity_usd"].iloc[-1]) if len(frame) else math.nan,
            "final_equity_coin": float(frame["equity_coin"].iloc[-1]) if len(frame) else math.nan,
            "total_return_pct": metrics.total_return_pct(equity),
            "cagr_pct": metrics.cagr_pct(equity),
            "max_drawdown_pct": draw.usd.max_drawdown_pct,
            "max_drawdown_usd": draw.usd.max_drawdown,
            "max_drawdown_coin_pct": draw.coin.max_drawdown_pct,
            "max_drawdown_coin": draw.coin.max_drawdown,
            "longest_underwater_days": draw.usd.longest_underwater_days,
            "sharpe": metrics.sharpe_ratio(returns, self.p.risk_free_daily),
            "sortino": metrics.sortino_ratio(returns, self.p.risk_free_daily),
            "margin_calls": events.margin_calls,
            "liquidations": events.liquidations,
            "liquidation_loss_usd": events.liquidation_loss_usd,
            "liquidation_fee_usd": events.liquidation_fee_usd,
            "cme_calls_missed": events.cme_calls_missed,
            "loan_calls": events.loan_calls,
            "loan_liquidations": events.loan_liquidations,
            "insurance_shortfall_usd": events.insurance_shortfall_usd,
            "time_above_warning_days": events.time_above_warning_days,
            "coins_mined": mining.coins_mined,
            "mining_revenue_usd": mining.mining_revenue_usd,
            "power_cost_usd": mining.power_cost_usd,
            "hosting_cost_usd": mining.hosting_cost_usd,
            "pool_fee_usd": mining.pool_fee_usd,
            "net_operating_cash_flow_usd": mining.net_operating_cash_flow_usd,
            "curtailed_days": mining.curtailed_days,
            "futures_pnl_usd": hedge.futures_pnl_usd,
            "funding_paid_usd": hedge.funding_paid_usd,
            "funding_received_usd": hedge.funding_received_usd,
            "fees_paid_usd": ledger_stats.fees_paid_usd(ledger),
            "hedge_variance_reduction_pct": hedge.variance_reduction_pct,
            "ruined": bool(draw.usd.ruined),
            "insolvent": bool(draw.usd.ruined or events.insolvency or events.ruin
                              or getattr(self.strategy, "insolvent", False)),
            "insolvencies": events.insolvencies,
            "insolvent_days": events.insolvent_days,
            "ledger_residual_usd": _reconcile_residual_usd(self.strategy.broker),
        }
        assert tuple(record) == SUMMARY_KEYS  # one list of keys for the docs, the CLI and the sweep table
        for key, value in record.items():
            self.rets[key] = value
        _closed(self.rets)


def add_analyzers(cerebro: bt.Cerebro, asset: str | None = None, price_data: object = None,
                  risk_free_daily: float = 0.0) -> None:
    """Add what :func:`build_run_result` needs: ``Summary`` (name ``"summary"``) and ``Fills``
    (``"fills"``). ``asset`` None: the run's coin, resolved when the run starts (:func:`_resolve_asset`: the
    strategy's ``asset`` param, else the price feed's name, else BTC)."""
    if asset is not None:
        check_choice("asset", asset, ASSETS)
    cerebro.addanalyzer(Summary, _name="summary", asset=asset, price_data=price_data,
                        risk_free_daily=risk_free_daily)
    cerebro.addanalyzer(Fills, _name="fills")


def with_broker_notes(assumptions: Mapping[str, object] | None, broker: object) -> dict[str, object]:
    """``assumptions`` with the broker's own (``broker.assumptions``: MarginBroker's constant funding rate,
    ...) first under ``"run notes"``, each once: a note the caller listed already is not repeated. Unchanged
    for a broker without any."""
    out = dict(assumptions or {})
    notes = out.get("run notes", [])
    notes = [notes] if isinstance(notes, str) else list(notes)
    missing = [note for note in getattr(broker, "assumptions", None) or [] if note not in notes]
    if missing:
        out["run notes"] = missing + notes
    return out


def build_run_result(strategy: bt.Strategy, assumptions: Mapping[str, object] | None = None,
                     title: str = "") -> RunResult:
    """A :class:`analyzers.report.RunResult` from a finished strategy run with :func:`add_analyzers`.
    ``assumptions`` (name -> text or list of texts) go to the report as given, plus the broker's own
    (:func:`with_broker_notes`)."""
    summaries = [a for a in strategy.analyzers if isinstance(a, Summary)]
    if not summaries:
        raise ConfigError("build_run_result needs a Summary analyzer on the strategy; "
                          "call analyzers.add_analyzers(cerebro) before cerebro.run().")
    summary = summaries[0]
    fills = [f for a in strategy.analyzers if isinstance(a, Fills) for f in a.rets.get("fills", [])]
    frame = summary.recorder.frame()
    broker = strategy.broker
    ledger = _ledger(broker)
    events = event_stats.event_records(_events(broker))
    return RunResult(
        summary=dict(summary.get_analysis()),
        equity=frame.loc[:, list(EQUITY_COLUMNS)],
        prices=frame["price_usd"].rename("price_usd"),
        events=events,
        ledger=ledger_stats.LedgerRecords(ledger, notes=_ledger_notes(broker, len(ledger))),
        trades=fills,
        asset=summary.p.asset,
        opening=summary.recorder.opening(),
        warning_level=float(getattr(broker, "warning_level", math.nan)),
        assumptions=with_broker_notes(assumptions, broker),
        title=title,
        loans=loan_stats.loan_rows(getattr(strategy, "loan_statements", list)(), events),
    )
