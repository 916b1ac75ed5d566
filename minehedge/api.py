"""Orchestration shared by ``run_backtest.py`` and notebooks: load a market once, run policies on it,
compare them, and answer the data questions (hashprice, break-even, validation).

A *config* is a plain dict (what the CLI builds from flags and TOML):
``{"asset", "timeframe", "start", "end", "venue", "seed", "data_dir", "policy", "params": {...}}``;
``start``/``end`` are UTC days, ``end`` inclusive, None for "all the data cover"; ``params`` are the
policy's parameters (see :func:`policy_specs`). Errors a user can fix raise
:class:`minehedge.errors.MinehedgeError` subclasses.

Example (notebook)::

    from minehedge import api
    market = api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2020-01-01", "end": "2022-12-31"})
    outcome = api.run_policy(market, "static_hedge", {"hedge_ratio": 0.5, "leverage": 3})
    outcome.summary["max_drawdown_pct"], outcome.result.equity
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import minehedge.compat

import backtrader as bt
import numpy as np
import pandas as pd

import minehedge
from analyzers import metrics
from analyzers.backtrader_analyzers import SUMMARY_KEYS, add_analyzers, build_run_result
from analyzers.report import RunResult, write_report
from brokers.broker import MarginBroker
from brokers.dated import dated_price_frame
from brokers.venues import load_venue
from data.api import load_funding, load_history, load_network, load_ohlcv, resolve_data_dir
from data.feeds import FastPandasData, MinerFeed, build_feed_frame, network_day_seen
from data.frames import parse_timeframe
from data.funding import SettlementRates
from minehedge.config import (
    ParamSpec,
    Window,
    clip_windows,
    parse_windows,
    unknown_key_error,
    validate_params,
)
from minehedge.errors import ConfigError, DataCoverageError, DataError, ManifestMismatchError, did_you_mean
from mining.fleet import Fleet, parse_fleet
from mining.price_schedule import PriceSchedule
from mining.revenue import ETH_MERGE
from strategies.base import DEFAULT_FLEET, fleet_for
from strategies.policies import MAX_HISTORY_DAYS
from strategies.registry import policy_class
from strategies.registry import policy_specs as _registry_specs

__all__ = ["SUMMARY_KEYS", "Comparison", "Market", "Markets", "RunOutcome", "load_market", "load_markets",
           "market_key", "run_policy", "run_backtest", "check_config", "compare", "compare_runs",
           "fit_windows", "add_windows",
           "policy_specs", "load_shared", "run_summary", "hashprice", "breakeven", "BREAKEVEN_PARAMS",
           "data_list", "data_list_empty", "data_validate", "data_download"]

#: Funding file to use for each venue profile (see data.funding); None: no funding (dated contracts only).
FUNDING_VENUE = {"binance_usdm": "binance", "binance_coinm": "binance", "bitmex": "bitmex",
                 "generic": "constant", "cme": None}
#: The exchange (a MANIFEST.csv venue) each venue profile's contracts trade on. A run of a policy that trades
#: futures whose price file is from other exchanges judges its liquidations on their prices: a note says so
#: (:func:`price_venue_note`). bitmex, cme and generic have no price file in the data folder, so the spot
#: file stands in for their contracts, as the README's "Data" says, without a note.
PRICE_EXCHANGE = {"binance_usdm": "binance", "binance_coinm": "binance"}
#: Network history loaded before the first bar: the publication lag and fee smoothing need earlier days.
NETWORK_LEAD = timedelta(days=40)
#: Price history loaded before the first bar: the longest volatility window plus the return into the
#: first bar.
HISTORY_LEAD = pd.Timedelta(days=MAX_HISTORY_DAYS + 1)


def policy_specs() -> dict[str, list[ParamSpec]]:
    """Every policy's parameters (name, type, default, unit, doc, bounds)."""
    return _registry_specs()


@dataclass
class Market:
    """One asset's bars with the miner lines, loaded and validated once (picklable: sent once to each
    sweep worker). ``frame`` feeds :class:`data.feeds.MinerFeed`; ``history_close`` holds the closes (USD per
    coin) of the bars before the frame's first (up to :data:`HISTORY_LEAD`, oldest first), the feed's
    ``history_close``; ``fingerprint`` changes whenever the data or the venue/mining tables do;
    ``assumptions`` are printed in every report."""

    asset: str
    timeframe: str
    frame: pd.DataFrame
    funding_venue: str | None
    assumptions: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    history_close: tuple[float, ...] = ()
    #: Each funding settlement's own rate (the broker's ``funding_rates``), paid before the frame's
    #: ``funding_rate`` line; None without a funding series. A copy whose frame changes the funding lines
    #: must change or drop this too (``dataclasses.replace(market, frame=..., funding_rates=None)``).
    funding_rates: SettlementRates | None = None
    #: Which of the funding settlements within the bars are the constant fallback instead of venue data, said
    #: for a warning (None: every settlement is venue data, or no funding), and the first and last settlement
    #: time (UTC) of each run of assumed settlements.
    funding_assumption: str | None = None
    funding_assumed_spans: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()
    #: The price file's venue (MANIFEST.csv's ``venue``, e.g. ``bitstamp+coinbase``; ``yahoo`` for yfinance;
    #: "" unknown), whether the config named it (``data_venue``), and, when it did not, ``(venue, first
    #: day)`` of every venue with a file that serves the same bars (what ``data_venue`` would load instead).
    price_venue: str = ""
    price_venue_named: bool = False
    price_files: tuple[tuple[str, str], ...] = ()

    def feed(self) -> MinerFeed:
        """A fresh :class:`data.feeds.MinerFeed` of this market (bars, miner lines, price history)."""
        return MinerFeed(dataname=self.frame, name=self.asset, history_close=self.history_close)


@dataclass
class RunOutcome:
    """A finished run: the flat ``summary``, the full :class:`analyzers.report.RunResult`, and ``warnings``:
    what the user must see at once (a leverage the venue's brackets refused, so the hedge was not what was
    asked; an event date, entry_date or loan_date, outside the run's bars); the details are in the run notes
    too."""

    summary: dict[str, Any]
    result: RunResult
    seconds: float
    warnings: list[str] = field(default_factory=list)
    #: ``analyzers.windows.window_stats`` rows of the run's windows (``windows=`` of :func:`run_backtest` and
    #: :func:`compare_runs`, or :func:`add_windows`); None when none were asked for.
    windows: pd.DataFrame | None = None

    @property
    def notes(self) -> list[str]:
        """The run notes (refused orders, a loan cut short, constant funding assumed, ...), as in summary.md,
        after the range's own notes: a default start moved to the data's first bar (the fleet hashes before
        the data at the run's timeframe begin), bars past the network data dropped (an ``end`` cut short),
        prices from another exchange than the futures venue's (:func:`price_venue_note`), windows clipped to
        the run."""
        keys = ("start", "range", "price venue", "windows")
        range_notes = [self.result.assumptions.get(key) for key in keys]
        return [note for note in range_notes if note] + list(self.result.assumptions.get("run notes", []))

    @property
    def loans(self) -> list[dict[str, Any]]:
        """One row per loan the run serviced (``RunResult.loans``: ``analyzers.loan_stats.loan_rows``), [] if
        none."""
        return [dict(row) for row in self.result.loans]

    def write_report(self, folder: str | Path) -> Path:
        return write_report(self.result, folder, windows=self.windows)


def _day(value: Any, name: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a date; use YYYY-MM-DD.") from None
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).normalize()


def _profile_venue(config: dict[str, Any]) -> str:
    """The venue profile a config's futures trade on (the policy's ``venue``, else ``binance_usdm``)."""
    return (config.get("params") or {}).get("venue") or config.get("venue") or "binance_usdm"


def _funding_venue(config: dict[str, Any]) -> str | None:
    funding = FUNDING_VENUE.get(_profile_venue(config), "constant")
    if str(config.get("asset") or "BTC").upper() == "ETH" and funding is not None:
        # ETH funding exists only as the (inferred) Binance ETHUSDT 8h file from 2023; earlier settlements
        # use the constant fallback, which the funding info reports as an assumption.
        funding = "binance-inferred" if funding == "binance" else "constant"
    return funding


def _first_deployment(config: dict[str, Any]):
    """The fleet's first :class:`mining.fleet.Deployment` (None without a fleet)."""
    fleet = (config.get("params") or {}).get("fleet")
    if not fleet:
        return None
    deployments, _ = parse_fleet(fleet_for(str(config.get("asset") or "BTC"), fleet))
    return min(deployments, key=lambda d: pd.Timestamp(d.date)) if deployments else None


def _default_start(config: dict[str, Any]) -> pd.Timestamp | None:
    """No --start: the first day the fleet hashes (the longest range that means something for a miner)."""
    first = _first_deployment(config)
    return None if first is None else pd.Timestamp(first.date).tz_convert("UTC")


def _first_deployment_text(config: dict[str, Any]) -> str:
    """The fleet's first deployment, named: ``2017-01-01 (S9:4000@2017-01-01 of the default fleet)``."""
    first, day = _first_deployment(config), _default_start(config).date()
    fleet = str((config.get("params") or {}).get("fleet"))
    deployment = f"{first.spec.name}:{first.units}@{day}"
    whose = ("the default fleet" if fleet == DEFAULT_FLEET
             else f"fleet={fleet}") if fleet != deployment else ""
    return f"{day} ({deployment + ' of ' + whose if whose else 'fleet=' + fleet})"


def _default_start_text(config: dict[str, Any]) -> str:
    """Where a start the user never gave came from: the fleet's first deployment, named."""
    return ("no start was given, so the run starts on the fleet's first deployment, "
            f"{_first_deployment_text(config)}")


def _first_bar_after(asset: str, timeframe: str, after: pd.Timestamp, end: pd.Timestamp | None,
                     data_dir: Any, venue: str | None) -> pd.Timestamp | None:
    """The earliest first bar, after ``after``, of an OHLCV file of the data folder from which the files serve
    ``asset`` at ``timeframe`` up to ``end`` (exclusive; None: the end of the data), as the loader chooses
    them (:func:`data.manifest.choose_file`); None when there is none, no data folder, or the files cover
    ``after`` already (a load from it failed for another reason, which a later start must not hide)."""
    from data.manifest import choose_file, read_manifest

    directory = resolve_data_dir(data_dir)
    if directory is None:
        return None
    manifest = read_manifest(directory)
    try:
        choose_file(manifest, asset, "ohlcv", timeframe, after, end, venue)
        return None
    except DataError:
        pass
    firsts = manifest.loc[(manifest["asset"] == asset) & (manifest["kind"] == "ohlcv"), "first"]
    for first in sorted(set(firsts)):
        if first <= after:
            continue
        try:
            choose_file(manifest, asset, "ohlcv", timeframe, first, end, venue)
        except DataError:
            continue
        return pd.Timestamp(first)
    return None


def market_key(config: dict[str, Any]) -> tuple:
    """Everything :func:`load_market` reads from ``config``: two configs with equal keys get the same market.
    Besides the asset, bars, range and data folder, that is the funding venue (each policy's own ``venue``)
    and, without a ``start``, the fleet's first day (the default start)."""
    start = _day(config.get("start"), "start") or _default_start(config)
    return (str(config.get("asset") or "BTC").upper(), str(config.get("timeframe") or "1d"),
            None if start is None else start.isoformat(), str(_day(config.get("end"), "end")),
            config.get("data_dir"), config.get("data_venue"), _funding_venue(config))


@dataclass
class Markets:
    """The markets a set of configurations needs, each loaded once (:func:`load_markets`): configurations
    that differ only in policy parameters share one; a different funding venue, or a different fleet start
    when no ``start`` is given, loads another. Picklable: a sweep sends it once to each worker."""

    by_key: dict[tuple, Market]

    def for_config(self, config: dict[str, Any]) -> Market:
        return self.by_key[market_key(config)]

    def fingerprint_of(self, config: dict[str, Any]) -> str:
        """The fingerprint of ``config``'s own market: what a sweep hashes each configuration with, so adding
        a venue or a fleet to a grid leaves the finished configurations' hashes (and results) as they were."""
        return self.for_config(config).fingerprint


def load_markets(configs: list[dict[str, Any]]) -> Markets:
    """One :class:`Market` per distinct :func:`market_key` among ``configs``."""
    by_key: dict[tuple, Market] = {}
    for config in configs:
        key = market_key(config)
        if key not in by_key:
            by_key[key] = load_market(config)
    return Markets(by_key)


#: The keys of a config (module docstring); ``data_venue`` names the OHLCV file's venue in the data folder.
CONFIG_KEYS = ("asset", "timeframe", "start", "end", "venue", "seed", "data_dir", "data_venue", "policy",
               "params")


def check_config_keys(config: dict[str, Any], source: str = "config") -> None:
    """ConfigError for a key of ``config`` that is not one of :data:`CONFIG_KEYS` (a misspelt ``strat`` would
    otherwise load all the data), naming it, the known keys and the closest; a policy parameter given at the
    top level is told to go into ``params``."""
    for key in config:
        if key not in CONFIG_KEYS:
            owners = [name for name, specs in policy_specs().items() if any(s.name == key for s in specs)]
            hint = (f" {key!r} is a parameter of {', '.join(owners)}: give it in 'params' (or to run_policy)."
                    if owners else
                    " Windows are an argument of their own: run_backtest(config, windows=[...]) or "
                    "compare_runs(configs, out, windows=[...])." if key == "windows" else "")
            raise unknown_key_error(source, key, CONFIG_KEYS, hint)


def load_market(config: dict[str, Any]) -> Market:
    """Load, validate and align OHLCV, network data and funding for ``config`` (asset, timeframe, range,
    data_dir, venue). A range outside the data raises DataError naming the covered range; a key that is not
    one of :data:`CONFIG_KEYS` raises ConfigError (:func:`check_config_keys`)."""
    check_config_keys(config, "load_market")
    asset = str(config.get("asset") or "BTC").upper()
    timeframe = str(config.get("timeframe") or "1d")
    data_dir = config.get("data_dir")
    default_start = _default_start(config) if _day(config.get("start"), "start") is None else None
    start = _day(config.get("start"), "start") or default_start
    end = _day(config.get("end"), "end")
    end_exclusive = end + pd.Timedelta(days=1) if end is not None else None
    if start is not None and end is not None and start > end:
        if default_start is None:
            raise ConfigError(f"start={start.date()} is after end={end.date()}; start must be <= end.")
        raise ConfigError(f"{_default_start_text(config)}, which is after end={end.date()}; give a start on "
                          f"or before the end (--start YYYY-MM-DD), an end on or after {start.date()}, or a "
                          f"fleet deployed by {end.date()} (--set fleet=MODEL:UNITS@YYYY-MM-DD).")
    data_venue = config.get("data_venue")
    if data_venue is not None:
        _check_data_venue(asset, timeframe, data_venue, data_dir)
    start_note = ""
    try:
        ohlcv = load_ohlcv(asset, timeframe, start, end_exclusive, data_dir=data_dir,
                           venue=config.get("data_venue"))
        if ohlcv.frame.empty:
            raise DataCoverageError(f"no {asset} {timeframe} bars between {start} and {end}.")
    except DataCoverageError as exc:  # the fleet's start is outside the data (not: no data, or unusable data)
        if default_start is None:
            raise
        # the fleet hashes before the data at this timeframe begin (intraday files start later): the run
        # starts on the data's first bar, the later of the two, as if given as --start
        later = _first_bar_after(asset, timeframe, start, end_exclusive, data_dir, config.get("data_venue"))
        if later is None or (end_exclusive is not None and later >= end_exclusive):
            raise DataError(f"{_default_start_text(config)}, where the data have no bars: {exc} Give a "
                            "start within the data (--start YYYY-MM-DD), or a fleet deployed within "
                            "them.") from None
        ohlcv = load_ohlcv(asset, timeframe, later, end_exclusive, data_dir=data_dir,
                           venue=config.get("data_venue"))
        start_note = (f"no start was given, so the run starts on the first bar of the {asset} {timeframe} "
                      f"data, {ohlcv.frame.index[0]:%Y-%m-%d %H:%M} UTC: the fleet's first deployment, "
                      f"{_first_deployment_text(config)}, is before the data at {timeframe} begin "
                      "(--start YYYY-MM-DD sets another start)")
    bars = ohlcv.frame
    first, last = bars.index[0], bars.index[-1]
    # Network data to the end of what exists; bars past it are dropped for BTC (no revenue data), kept for
    # ETH after the Merge (2022-09-15), where mining revenue is zero rather than unknown.
    network_from = first.normalize() - NETWORK_LEAD
    if asset == "ETH":  # a run after the Merge mines nothing but still reads the last days before it
        network_from = min(network_from, ETH_MERGE - NETWORK_LEAD)
    # ... but a file shorter than its MANIFEST row is an error only where it lacks a day the bars see
    network_to = network_day_seen(last) + pd.Timedelta(days=1)
    network = load_network(asset, network_from, None, data_dir=data_dir, needed_end=network_to)
    if network.frame.empty:
        raise DataError(f"no {asset} network data from {network_from.date()} on, so no mining revenue for "
                        f"bars from {first.date()}; {network.info.reason}")
    net_last = network.frame.index[-1]
    if asset == "BTC" and net_last + pd.Timedelta(days=1) < first.normalize():
        raise DataError(f"the BTC network data end on {net_last.date()}, before the first bar "
                        f"{first.date()}: mining revenue is unknown for every bar; start the run by "
                        f"{(net_last + pd.Timedelta(days=1)).date()}.")
    merged = asset == "ETH" and net_last >= ETH_MERGE
    if net_last + pd.Timedelta(days=1) < last.normalize() and not merged:
        bars = bars.loc[: net_last + pd.Timedelta(days=1)]
        assumptions_end = f"bars after {net_last.date()} dropped: no network data beyond it"
    else:
        assumptions_end = ""
    funding_venue = _funding_venue(config)
    funding = None
    funding_assumption = None
    assumed_spans: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()
    assumptions: dict[str, Any] = {"data files": [str(ohlcv.info)], "network": str(network.info)}
    if start_note:
        assumptions["start"] = start_note
    if assumptions_end:
        assumptions["range"] = assumptions_end
    if funding_venue is not None:
        # The venue follows the exchange profile; a data folder without its file gets the flagged constant.
        # The settlements within the bars, no more: a funding file cut after the last bar's close serves
        # the run.
        loaded = load_funding(asset, funding_venue, bars.index[0],
                              bars.index[-1] + parse_timeframe(timeframe),
                              data_dir=data_dir, venue_file_required=False)
        funding = loaded.frame
        if funding_venue == "constant":  # the loader's "venue='constant' requested": a name never given
            reason = f"the {_profile_venue(config)} venue has no {asset} funding history in the data"
            loaded = dataclasses.replace(loaded, info=dataclasses.replace(loaded.info, reason=reason))
        assumptions["funding"] = str(loaded.info)
        if _profile_venue(config) == "binance_coinm" and loaded.info.file:
            # no COIN-M funding history is shipped: the USD-M contract's rates stand in for the inverse one's
            assumptions["funding"] += ("\n  PROXY: binance_coinm's own (COIN-M) funding rates are not in the "
                                       "data; these are the Binance USD-M (USDT-margined) perpetual's, which "
                                       "move with them but are not the same")
        if loaded.info.assumed_settlements:
            assumed_spans = true_runs(loaded.frame["assumed"])
            funding_assumption = _assumed_funding_text(loaded.info, assumed_spans)
    else:
        assumptions["funding"] = "none (dated contracts pay no funding)"
    rates = SettlementRates(funding) if funding is not None and not funding.empty else None
    if ohlcv.report is not None and getattr(ohlcv.report, "bad_ticks", None):
        assumptions["masked bad ticks"] = [str(tick) for tick in ohlcv.report.bad_ticks]
    frame = build_feed_frame(bars, network.frame, funding, asset, timeframe=timeframe)
    history = load_history(ohlcv, frame.index[0], HISTORY_LEAD)
    history_close = tuple(float(x) for x in history.frame["close"].to_numpy())
    assumptions["price history"] = f"before the first bar (volatility windows): {history.info.reason}"
    digest = hashlib.sha256()
    digest.update(minehedge.__version__.encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    digest.update(np.asarray(history_close, dtype=float).tobytes())
    if funding is not None:  # each settlement's own rate is paid, not only the bar's mean in the frame
        digest.update(pd.util.hash_pandas_object(funding, index=True).to_numpy().tobytes())
    for folder, pattern in ((Path(__file__).parents[1] / "brokers" / "venues", "*.toml"),
                            (Path(__file__).parents[1] / "mining", "*.toml")):
        for path in sorted(folder.glob(pattern)):
            digest.update(path.read_bytes())
    price_files = () if data_venue is not None or ohlcv.info.source != "csv" else _price_files(
        asset, timeframe, frame.index[0], frame.index[-1] + parse_timeframe(timeframe), data_dir)
    return Market(asset, timeframe, frame, funding_venue, assumptions, digest.hexdigest()[:16], history_close,
                  rates, funding_assumption, assumed_spans, str(ohlcv.info.venue or ""),
                  data_venue is not None, price_files)


def _check_data_venue(asset: str, timeframe: str, venue: str, data_dir: Any) -> None:
    """``data_venue`` must name a venue of the data folder's MANIFEST.csv with an OHLCV file of ``asset`` at
    ``timeframe`` (or finer, resampled): ConfigError listing them otherwise."""
    from data.manifest import ohlcv_venues, read_manifest

    directory = resolve_data_dir(data_dir)
    if directory is None:
        raise ConfigError(f"data_venue={venue!r} (--data-venue) names the exchange of a price file in a data "
                          "folder, and none is set: give --data-dir DIR (or set MINEHEDGE_DATA_DIR), or drop "
                          "--data-venue (the download has one series per coin).")
    venues = ohlcv_venues(read_manifest(directory), asset, timeframe)
    if str(venue).lower() not in {v.lower() for v in venues}:
        raise ConfigError(f"data_venue={venue!r} (--data-venue): the data folder has no {asset} price file "
                          f"from it at {timeframe} (or finer, to resample); venues with one: "
                          f"{', '.join(venues) or 'none'}." + did_you_mean(str(venue), venues))


def _price_files(asset: str, timeframe: str, first: pd.Timestamp, end: pd.Timestamp,
                 data_dir: Any) -> tuple[tuple[str, str], ...]:
    """``(venue, first day of the file)`` of each MANIFEST.csv venue whose OHLCV file serves ``asset`` at
    ``timeframe`` from ``first`` to ``end`` (exclusive), the file ``data_venue`` would load."""
    from data.manifest import covering_ohlcv_venues, read_manifest

    manifest = read_manifest(resolve_data_dir(data_dir))
    return tuple((venue, f"{since:%Y-%m-%d}")
                 for venue, since in covering_ohlcv_venues(manifest, asset, timeframe, first, end))


def _exchanges(venue: str) -> set[str]:
    """The exchanges of a MANIFEST.csv venue: ``bitstamp+coinbase`` -> {bitstamp, coinbase}; a suffix
    qualifies an exchange (``binance-perp-inferred``, an inferred Binance perpetual -> {binance})."""
    return {part.split("-", 1)[0].strip().lower() for part in str(venue).split("+")}


def price_venue_note(market: Market, policy: str, values: dict[str, Any]) -> str:
    """The note that a futures policy's prices, and so its liquidations, come from another exchange than its
    venue profile's (:data:`PRICE_EXCHANGE`): "" when they do not, when the policy trades no futures, when
    the venue has no price file of its own (bitmex, cme, generic), or when the config named the price file's
    venue (``data_venue``)."""
    exchange = PRICE_EXCHANGE.get(str(values.get("venue")))
    if (exchange is None or not policy_class(policy).uses_futures or market.price_venue_named
            or not market.price_venue or exchange in _exchanges(market.price_venue)):
        return ""
    if market.price_venue == "yahoo":
        return (f"prices (and liquidations) are yfinance's {market.asset}-USD series (no data folder), not "
                f"{exchange}'s")
    text = (f"prices (and liquidations) are from {market.price_venue}'s {market.asset} {market.timeframe} "
            f"file, not {exchange}'s")
    own = [(venue, first) for venue, first in market.price_files if exchange in _exchanges(venue)]
    if not own:
        return (f"{text}; the data folder has no {exchange} {market.asset} file at {market.timeframe} (or "
                "finer) covering the run")
    venue, first = own[0]
    return f"{text}; --data-venue {venue} uses {exchange}'s own ({first} on)"


def _assumed_funding_text(info: Any, spans: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]) -> str:
    """``"756 of the 5,478 funding settlements (2019-01-01 00:00 to 2019-09-09 16:00 UTC) are the constant
    0.0001 per 8h, not venue data (funding/btc_binance_... does not cover them)"``, from a
    :class:`data.funding.FundingInfo` with assumed settlements and their spans (:func:`true_runs`)."""
    when = "; ".join(f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}" for first, last in spans)
    source = f"{info.file} does not cover them" if info.file else info.reason
    return (f"{info.assumed_settlements:,} of the {info.settlements:,} funding settlements ({when} UTC) are "
            f"the constant {info.fallback_rate:g} per 8h, not venue data ({source})")


def true_runs(flags: pd.Series) -> tuple[tuple[pd.Timestamp, pd.Timestamp], ...]:
    """The first and last index label of each run of consecutive True values of boolean ``flags``."""
    values = flags.to_numpy(dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], values, [False])).astype(np.int8)))
    return tuple((flags.index[lo], flags.index[hi - 1])
                 for lo, hi in zip(edges[::2], edges[1::2], strict=True))


def funding_warning(market: Market, policy: str, values: dict[str, Any], ledger: Any = None) -> str:
    """The warning a run of ``policy`` with parameters ``values`` on ``market`` prints when funding it pays or
    receives is the constant fallback, not the venue's history ("" when the market has none, when the policy
    holds no futures, or for dated contracts, which pay no funding): its funding figures and the hedge's P&L
    rest on that assumption on those dates, which the report's assumptions alone did not make plain.

    With the run's ``ledger`` (:class:`brokers.ledger.Ledger`) the warning says how much funding (USD) the
    run booked on bars that hold an assumed settlement, and is "" when it booked none there (no position
    was held then); without it (a sweep, before its runs) it says what such a run would rest on."""
    if (market.funding_assumption is None or not policy_class(policy).uses_futures
            or values.get("contract") == "dated"):
        return ""
    advice = ("`data list` shows which venues' funding files cover those dates (--venue chooses the venue).")
    if ledger is None:
        return (f"{market.funding_assumption}: a run holding a perpetual position then pays and receives "
                f"that assumption; {advice}")
    columns = ledger.to_columns(notes=False)
    funding = np.asarray(columns["kind"], dtype=object) == "funding"
    opens = pd.DatetimeIndex([t for t, f in zip(columns["datetime"], funding, strict=True) if f])
    opens = opens.tz_localize("UTC") if opens.tz is None else opens.tz_convert("UTC")
    amounts = np.asarray(columns["amount_usd"], dtype=float)[funding]
    bar = parse_timeframe(market.timeframe)
    held = np.zeros(len(opens), dtype=bool)
    for first, last in market.funding_assumed_spans:  # a bar [open, open + bar) holding an assumed settlement
        held |= np.asarray((opens <= last) & (opens + bar > first))
    paid = abs(float(amounts[held & (amounts < 0)].sum()))
    received = float(amounts[held & (amounts > 0)].sum())
    if not paid and not received:
        return ""
    return (f"{market.funding_assumption}: on those bars this run paid {paid:,.0f} USD and received "
            f"{received:,.0f} USD of funding at that assumed rate; {advice}")


def _policy_params(policy: str, params: dict[str, Any] | None, venue: str | None, *,
                   together: bool = True, owner: str = "") -> dict[str, Any]:
    """``params`` checked for ``policy``: each on its own (filled with the defaults), then together (the
    policy's ``check_params``) unless ``together`` is False (a caller that reads only the fleet's, whose
    errors name it, ``owner``, rather than the policy)."""
    cls = policy_class(policy)
    values = dict(params or {})
    if venue and any(s.name == "venue" for s in cls.specs):
        values.setdefault("venue", venue)
    values = validate_params(values, cls.specs, owner=owner or f"policy {policy!r}")
    if together:
        cls.check_params(values)
    return values


def check_config(config: dict[str, Any], *, name_policy: bool = False) -> None:
    """Raise :class:`ConfigError` for what is wrong with ``config``'s policy parameters without looking at any
    data: each parameter's own range, and the policy's and venue's rules across them (``dynamic_hedge``'s
    min_ratio <= max_ratio, the venue's contract on the asset, its leverage cap, ...; ``check_params``).
    With ``name_policy`` (a comparison, where the rule broken may be one of a policy's defaults, not a value
    the user gave) the message starts with ``policy '<name>': ``.
    :func:`run_backtest` and :func:`compare_runs` call it before they load the market (unless told with
    ``checked=True`` that their caller just did); a caller that loads it itself (a sweep) can call it
    first."""
    policy = config.get("policy") or "static_hedge"
    asset = str(config.get("asset") or "BTC").upper()
    try:
        _policy_params(policy, {"asset": asset, **(config.get("params") or {})}, config.get("venue"))
    except ConfigError as exc:
        prefix = f"policy {policy!r}"
        if not name_policy or str(exc).startswith(prefix):  # a parameter's own check names the policy already
            raise
        raise type(exc)(f"{prefix}: {exc}") from None


def run_policy(market: Market, policy: str, params: dict[str, Any] | None = None, *, venue: str | None = None,
               preload: bool = True, runonce: bool = True, title: str = "") -> RunOutcome:
    """Run ``policy`` with ``params`` on ``market``: a MarginBroker, a MinerFeed, every analyzer."""
    started = time.perf_counter()
    strategy, values, dated_note = _run_cerebro(market, policy, params, venue, preload, runonce)
    assumptions = dict(market.assumptions)
    assumptions["policy"] = f"{policy}: " + ", ".join(f"{k}={v}" for k, v in values.items() if k != "fleet")
    assumptions["fleet"] = values.get("fleet", "")
    assumptions["machines"] = machines_assumption(values)
    for name, what in (("power_usd_per_kwh", "power price"), ("hosting_usd_per_kwh", "hosting price")):
        if isinstance(values.get(name), PriceSchedule):
            assumptions[what] = f"{name}={values[name]}: {values[name].describe()}"
    if values.get("debt_usd"):
        assumptions["debt"] = debt_assumption(values)
    if "venue" in values:
        profile = load_venue(values["venue"])
        assumptions["venue"] = (f"{profile.name} ({profile.contract_type}; {profile.source}, as of "
                                f"{profile.as_of})")
    if dated_note:
        assumptions["dated contracts"] = dated_note
    price_note = price_venue_note(market, policy, values)
    if price_note:
        assumptions["price venue"] = price_note
    notes = list(getattr(strategy, "notes", []) or [])  # build_run_result puts the broker's own first
    sortino_note = metrics.sortino_note(strategy.analyzers.getbyname("summary").rets["sortino"])
    notes += [sortino_note] if sortino_note else []
    if notes:
        assumptions["run notes"] = notes
    result = build_run_result(strategy, assumptions,
                              title=title or f"{market.asset} {market.timeframe} {policy}")
    summary = {key: result.summary.get(key) for key in result.summary}
    leverage = strategy.leverage_warning() if hasattr(strategy, "leverage_warning") else ""
    funding = funding_warning(market, policy, values, strategy.broker.ledger)
    warnings = [text for text in (leverage, *(getattr(strategy, "run_warnings", []) or []), funding) if text]
    return RunOutcome(summary, result, time.perf_counter() - started, warnings)


def debt_assumption(values: dict[str, Any]) -> str:
    """The debt owed at the first bar (``debt_usd`` > 0) of a run with policy parameters ``values``, for the
    report's assumptions: its terms, and that it is a liability from the opening with no cash credited."""
    head = (f"{values['debt_usd']:,.2f} USD owed at the first bar (loan:existing_debt, the existing lender), "
            f"at {values['debt_rate']:.4%} a year: ")
    tail = ("; no cash was credited for it (it was spent before the run): equity is net of it from the "
            "opening")
    if values["debt_type"] == "equipment":
        return (f"{head}an equipment loan repaid in {values['debt_term_months']} monthly instalments, the "
                f"first a month after the first bar{tail}")
    return (f"{head}a coin loan against {values['debt_collateral_coins']:,.8g} {values['asset']} pledged "
            f"from the opening (beside start_coins), interest paid monthly in USD; called below "
            f"{values['debt_call_ratio']:.0%} collateral / debt, met back at {values['debt_cure_ratio']:.0%},"
            f" within {values['debt_call_deadline_days']:g} days; the lender sells at an LTV of "
            f"{values['debt_liquidation_ltv']:g}{tail}")


def machines_assumption(values: dict[str, Any]) -> str:
    """How a run with policy parameters ``values`` counts its machines in equity (``hardware_value``), for the
    report's assumptions: two runs on different bases differ here."""
    life = f"straight-line book value over {values['depreciation_years']:g} years"
    unpriced = "machines without a price are treated as owned and written off"
    if values.get("hardware_value", "book") == "book":
        return f"machines bought at a price are in equity at {life}, no salvage value; {unpriced}"
    return (f"machines bought at a price are in equity at market value (hardware_value=market): {life} (no "
            f"salvage value) x the {values['market_value_window_days']}-day trailing mean of hashprice as "
            "each bar sees it (the day before its own) / that mean on the purchase day, taking machine "
            "prices to track hashprice (a proxy, not quoted machine prices); priced machines deployed before "
            f"the first bar start at book value there; {unpriced}")


def _run_cerebro(market: Market, policy: str, params: dict[str, Any] | None, venue: str | None,
                 preload: bool = True, runonce: bool = True) -> tuple[bt.Strategy, dict[str, Any], str]:
    """The finished strategy of one run (MarginBroker, MinerFeed, every analyzer), its validated params and
    the note on dated-contract pricing ("" for perpetuals)."""
    values = _policy_params(policy, {"asset": market.asset, **(params or {})}, venue)
    if values["asset"] != market.asset:
        raise ConfigError(f"asset={values['asset']!r} does not match the market's asset {market.asset!r}.")
    values["asset"] = market.asset
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=runonce)
    feed = market.feed()
    cerebro.adddata(feed)
    dated_note = ""
    if values.get("contract") == "dated" and policy_class(policy).uses_futures:
        # No futures history here: the contract is priced by brokers.dated from spot and an assumed basis.
        dated = dated_price_frame(market.frame, values["annual_basis"], values["expiry_cycle"])
        cerebro.adddata(FastPandasData(dataname=dated, name=f"{market.asset}-DATED",
                                       timeframe=feed.p.timeframe, compression=feed.p.compression))
        dated_note = (f"dated {values['expiry_cycle']} contracts priced as spot x (1 + "
                      f"{values['annual_basis']:g} "
                      "x years to expiry) (assumed basis; no futures price data), cash-settled at expiry")
    cerebro.broker = MarginBroker(cash=0.0, funding_rates=market.funding_rates)
    cerebro.addstrategy(policy_class(policy), **values)
    add_analyzers(cerebro, market.asset)
    return cerebro.run()[0], values, dated_note


def run_backtest(config: dict[str, Any], *, checked: bool = False, windows: Any = None) -> RunOutcome:
    """One run from a CLI-style config, checked (:func:`check_config`) before the market loads unless
    ``checked``: the caller has just checked it (the CLI, which checks before it looks at ``--out``).
    ``windows``: ``--window`` specs or :class:`minehedge.config.Window` objects (see :func:`fit_windows`)
    whose statistics the outcome carries (``RunOutcome.windows``); checked against the run's bars before it
    runs."""
    policy = config.get("policy") or "static_hedge"
    if not checked:
        check_config(config)
    market = load_market(config)
    fitted, note = fit_windows(windows, market)
    outcome = run_policy(market, policy, config.get("params"), venue=config.get("venue"))
    return add_windows(outcome, fitted, note) if fitted else outcome


def fit_windows(windows: Any, market: Market) -> tuple[list[Window], str]:
    """``windows`` (specs such as ``"2018"``, ``"stress"`` or ``"crash=2020-03-01:2020-03-31"``, or
    :class:`Window` objects; None for none) parsed and clipped to ``market``'s bars (their first and last UTC
    day), and the note on what was clipped ("" if nothing). A window with no day in the bars is a
    :class:`ConfigError` (``minehedge.config.clip_windows``)."""
    if not windows:
        return [], ""
    days = pd.DatetimeIndex(market.frame.index)
    first, last = (days[0].date(), days[-1].date()) if len(days) else (None, None)
    fitted, notes = clip_windows(parse_windows(windows, where="windows"), first, last)
    return fitted, "; ".join(notes)


def add_windows(outcome: RunOutcome, windows: list[Window], note: str = "") -> RunOutcome:
    """``outcome`` with the statistics of ``windows`` (``analyzers.windows.run_window_stats``: per-window
    figures of this same run), and ``note`` (on clipped windows) in its assumptions and notes."""
    from analyzers.windows import run_window_stats

    if note:
        outcome.result.assumptions = {**outcome.result.assumptions, "windows": note}
    outcome.windows = run_window_stats(outcome.result, windows)
    return outcome


@dataclass
class Comparison:
    """What :func:`compare_runs` returns: the table's ``rows`` (``{"policy": name, **summary}`` each) and each
    policy's :class:`RunOutcome` (its run notes and warnings, its full result), in the order compared; with
    windows, ``windows``: every policy's ``RunOutcome.windows`` rows with a ``policy`` column first."""

    rows: list[dict[str, Any]]
    outcomes: dict[str, RunOutcome]
    windows: pd.DataFrame | None = None


def compare_runs(configs: list[dict[str, Any]], out: Path | None, *, checked: bool = False,
                 windows: Any = None) -> Comparison:
    """Run every config on the same bars (each market loaded once: policies on another funding venue get
    their venue's funding, :func:`load_markets`), so each row equals a separate ``run`` of its config; write
    comparison.csv, charts and summary.md into ``out`` when given. Each config is checked first
    (:func:`check_config`; the error names the policy) unless ``checked``: the caller has just checked each
    with ``name_policy=True`` (the CLI). ``windows`` (as for :func:`run_backtest`): each run's statistics
    over them, in ``Comparison.windows`` and windows.csv."""
    if not configs:
        raise ConfigError("compare needs at least one policy.")
    if not checked:
        for config in configs:
            check_config(config, name_policy=True)
    markets = load_markets(configs)
    fitted = {key: fit_windows(windows, market) for key, market in markets.by_key.items()}  # before the runs
    outcomes = {}
    for config in configs:
        policy = config.get("policy")
        outcomes[policy] = run_policy(markets.for_config(config), policy, config.get("params"),
                                      venue=config.get("venue"))
        if windows:
            add_windows(outcomes[policy], *fitted[market_key(config)])
    rows = [{"policy": name, **outcome.summary} for name, outcome in outcomes.items()]
    table = None
    if windows:
        table = pd.concat([o.windows.assign(policy=name) for name, o in outcomes.items()], ignore_index=True)
        table = table.loc[:, ["policy", *table.columns.drop("policy")]]
    if out is not None:
        from analyzers.comparison import write_comparison

        write_comparison({name: o.result for name, o in outcomes.items()}, rows, Path(out), windows=table)
    return Comparison(rows, outcomes, table)


def compare(configs: list[dict[str, Any]], out: Path | None) -> list[dict[str, Any]]:
    """:func:`compare_runs`' rows: one per policy, ``{"policy": name, **summary}``."""
    return compare_runs(configs, out).rows


# --- sweeps: the market is loaded once and shipped to each worker once --------------------------------
def load_shared(configs: dict[str, Any] | list[dict[str, Any]]) -> Market | Markets:
    """What a sweep shares with its workers: the market of one config, or the markets of a sweep's configs
    (:func:`load_markets`: one per funding venue or default start among them)."""
    return load_market(configs) if isinstance(configs, dict) else load_markets(configs)


def sweep_funding_warnings(configs: list[dict[str, Any]], shared: Market | Markets) -> list[str]:
    """The distinct :func:`funding_warning` texts of a sweep's ``configs`` on their ``shared`` markets, each
    once: a sweep prints them before it runs, not once per configuration."""
    return _sweep_texts(configs, shared, funding_warning)


def sweep_price_notes(configs: list[dict[str, Any]], shared: Market | Markets) -> list[str]:
    """The distinct :func:`price_venue_note` texts of a sweep's ``configs`` on their ``shared`` markets, each
    once."""
    return _sweep_texts(configs, shared, price_venue_note)


def sweep_price_warnings(configs: list[dict[str, Any]], shared: Market | Markets) -> list[str]:
    """The distinct :func:`mining.price_schedule.price_warnings` of a sweep's ``configs`` (a power or hosting
    price above 1 USD/kWh), each once, as a run gives them."""
    from mining.price_schedule import price_warnings

    joined = _sweep_texts(configs, shared, lambda _market, _policy, values: "\n".join(price_warnings(values)))
    return list(dict.fromkeys(text for texts in joined for text in texts.split("\n")))


def _sweep_texts(configs: list[dict[str, Any]], shared: Market | Markets, text_of) -> list[str]:
    """The distinct non-empty ``text_of(market, policy, values)`` of ``configs`` (validated parameters on
    their market), in order; a configuration that breaks its policy's rules (recorded as failed) says
    nothing."""
    texts: dict[str, None] = {}
    for config in configs:
        market = shared.for_config(config) if isinstance(shared, Markets) else shared
        policy = config.get("policy") or "static_hedge"
        try:
            values = _policy_params(policy, {"asset": market.asset, **(config.get("params") or {})},
                                    config.get("venue"))
        except ConfigError:
            continue
        text = text_of(market, policy, values)
        if text:
            texts[text] = None
    return list(texts)


def run_summary(config: dict[str, Any], shared: Market | Markets) -> dict[str, Any]:
    """One sweep configuration on its shared market: the flat Summary record, as ``run_policy(...).summary``
    (the report's tables, which a sweep discards, are not built)."""
    market = shared.for_config(config) if isinstance(shared, Markets) else shared
    strategy, _, _ = _run_cerebro(market, config.get("policy") or "static_hedge", config.get("params"),
                                  config.get("venue"))
    return dict(strategy.analyzers.summary.get_analysis())


# --- data questions -------------------------------------------------------------------------------------
def _network_range(config: dict[str, Any]) -> tuple[str, pd.DataFrame]:
    """The daily network rows of the config's range. ETH days after the Merge, where the network data end,
    are rows of NaN (no price, no network values): mining there earns nothing, as in :func:`load_market`
    (:func:`mining.revenue.network_hashprice` gives them zero coins, method ``merged``)."""
    asset = str(config.get("asset") or "BTC").upper()
    start = _day(config.get("start"), "start")
    end = _day(config.get("end"), "end")
    end_exclusive = end + pd.Timedelta(days=1) if end is not None else None
    if asset == "ETH" and end is None and start is not None and start >= ETH_MERGE:
        raise ConfigError(f"start={start.date()} is after the Merge ({ETH_MERGE.date()}), where ETH mining "
                          "ended: every day from it earns 0; give end=YYYY-MM-DD (--end) to list those days.")
    after_merge = asset == "ETH" and end is not None and end > ETH_MERGE
    if after_merge:  # read to the Merge (the data must reach it); the days after it are known: no revenue
        first = ETH_MERGE if start is not None and start > ETH_MERGE else start
        loaded = load_network(asset, first, ETH_MERGE + pd.Timedelta(days=1), data_dir=config.get("data_dir"))
    else:
        loaded = load_network(asset, start, end_exclusive, data_dir=config.get("data_dir"))
    frame = loaded.frame
    if after_merge and not frame.empty:
        days = pd.date_range(start if start is not None else frame.index[0], end, freq="D", tz="UTC")
        frame = frame.reindex(frame.index.union(days)).loc[days[0]:]
    if frame.empty:
        raise DataError(f"no {asset} network data between {start} and {end}.")
    return asset, frame


def hashprice(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per day: hashprice in USD per TH/s and PH/s per day (BTC; per MH/s for ETH) and coins per
    unit per day, from :func:`mining.revenue.network_hashprice` (expected value, before pool fees)."""
    return _hashprice_rows(config)[0]


def hashprice_report(config: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """:func:`hashprice`'s rows and why some are NaN, for a note ("" when none is): the days whose difficulty,
    subsidy or fees are unknown (no coins per unit), and those with coins but no USD price."""
    return _hashprice_rows(config)


def _hashprice_rows(config: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    from mining.revenue import network_hashprice, per_th_to_per_ph

    asset, network = _network_range(config)
    frame = network_hashprice(network, asset)
    # after the Merge nothing is mined, whatever the (possibly unknown) price
    frame.loc[frame["method"] == "merged", "hashprice_usd_per_unit_day"] = 0.0
    no_coins = frame["coins_per_unit_day"].isna()
    no_price = frame["hashprice_usd_per_unit_day"].isna() & ~no_coins
    reasons = ((no_coins, "lack the network data (difficulty, subsidy or fees) coins per unit need"),
               (no_price, f"have coins per unit but no {asset} USD price in the data"))
    gaps = [f"{int(mask.sum()):,} day(s) between {mask.idxmax():%Y-%m-%d} and "
            f"{mask[::-1].idxmax():%Y-%m-%d}, which {why}" for mask, why in reasons if mask.any()]
    note = "hashprice is nan on " + "; and on ".join(gaps) + ". Nothing is assumed for them." if gaps else ""
    rows = []
    for day, row in frame.iterrows():
        usd, coins = float(row["hashprice_usd_per_unit_day"]), float(row["coins_per_unit_day"])
        if asset == "BTC":
            rows.append({"date": day.strftime("%Y-%m-%d"), "hashprice_usd_per_th_day": usd,
                         "hashprice_usd_per_ph_day": per_th_to_per_ph(usd), "coins_per_th_day": coins})
        else:
            rows.append({"date": day.strftime("%Y-%m-%d"), "hashprice_usd_per_mh_day": usd,
                         "coins_per_mh_day": coins})
    return rows, note


#: The policy parameters :func:`breakeven` reads (the fleet's); any other one changes nothing there.
BREAKEVEN_PARAMS = ("asset", "fleet", "uptime", "power_usd_per_kwh", "hosting_usd_per_kwh", "pool_fee",
                    "curtail", "depreciation_years")


def breakeven(config: dict[str, Any], warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per day: the fleet's cash break-even coin price (USD/coin) and power price (USD/kWh), and the
    hash rate running that day (after uptime and curtailment): ``hashrate_ths`` (TH/s) for BTC,
    ``hashrate_mhs`` (MH/s) for ETH. Reads only :data:`BREAKEVEN_PARAMS` of ``config["params"]``.
    ``warnings``: a list that gets the warnings a run would give on those parameters (a power or hosting
    price above 1 USD/kWh, :func:`mining.price_schedule.price_warnings`)."""
    from mining.price_schedule import price_warnings
    from mining.revenue import network_hashprice

    asset, network = _network_range(config)
    params = _policy_params(config.get("policy") or "unhedged", config.get("params"), None, together=False,
                            owner="breakeven")
    if warnings is not None:
        warnings.extend(price_warnings(params))
    fleet = Fleet.from_shorthand(fleet_for(asset, params["fleet"]), asset=asset, uptime=params["uptime"],
                                 power_price_usd_per_kwh=params["power_usd_per_kwh"],
                                 hosting_usd_per_kwh=params["hosting_usd_per_kwh"],
                                 pool_fee=params["pool_fee"],
                                 curtail=params["curtail"], depreciation_years=params["depreciation_years"])
    daily = network_hashprice(network, asset)
    daily["price_usd"] = network["price_usd"]
    schedule = fleet.simulate(daily[["coins_per_unit_day", "price_usd"]])
    rows = []
    for day, row in schedule.iterrows():
        price = float(network.at[day, "price_usd"])  # the schedule's is 0 where nothing is mined
        rows.append({"date": day.strftime("%Y-%m-%d"), "price_usd": price if price == price else None,
                     "breakeven_price_usd": float(row["breakeven_price_usd"]),
                     "breakeven_price_all_in_usd": float(row["breakeven_price_all_in_usd"]),
                     "breakeven_power_usd_per_kwh": float(row["breakeven_power_usd_per_kwh"]),
                     f"hashrate_{'ths' if asset == 'BTC' else 'mhs'}": float(row["hashrate_units"])})
    return rows


def data_list(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What the data directory's manifest and the download cache hold."""
    from data.cache import cache_dir
    from data.manifest import read_manifest

    rows: list[dict[str, Any]] = []
    directory = resolve_data_dir(config.get("data_dir"))
    if directory is not None:
        for entry in read_manifest(directory).itertuples():
            rows.append({"where": "data_dir", "file": entry.file, "asset": entry.asset, "kind": entry.kind,
                         "timeframe": entry.timeframe, "venue": entry.venue, "rows": int(entry.rows),
                         "first": entry.first.strftime("%Y-%m-%d %H:%M"),
                         "last": entry.last.strftime("%Y-%m-%d %H:%M")})
    folder = cache_dir()
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        rows.append({"where": "cache", "file": path.name, "bytes": path.stat().st_size})
    return rows


def data_list_empty(config: dict[str, Any]) -> str:
    """What ``data list`` says when it lists nothing: where it looked and what to do."""
    from data.cache import cache_dir

    directory = resolve_data_dir(config.get("data_dir"))
    where = (f"the data directory {directory} lists no files in its MANIFEST.csv"
             if directory is not None else
             "no data directory (set MINEHEDGE_DATA_DIR or pass --data-dir, e.g. ../shared/data)")
    return (f"nothing to list: {where}, and the download cache {cache_dir()} is empty "
            "(`data download --asset BTC --start ...` fills it, with network access).")


def _findings(report: Any) -> list[dict[str, Any]]:
    """A validation report as rows ``{"level": error|warning|info, "what", "detail"}``."""
    from data.validate import unchecked_text

    rows = [{"level": "error", "what": "consistency", "detail": text} for text in report.errors]
    rows += [{"level": "warning", "what": "bad tick",
              "detail": f"{t.timestamp} {t.field}={t.value:g} (neighbours {t.reference:g}, "
                        f"{t.ranges:.0f} ranges)"}
             for t in report.bad_ticks]
    if report.unchecked:  # too few neighbours to judge: never reported as clean
        rows.append({"level": "warning", "what": "bad ticks not checked",
                     "detail": unchecked_text(report.unchecked)})
    rows += [{"level": "warning", "what": "gap", "detail": f"{g.after} -> {g.before} ({g.missing_bars} bars)"}
             for g in report.gaps]
    if report.zero_volume:
        rows.append({"level": "info", "what": "zero-volume bars",
                     "detail": f"{len(report.zero_volume)} bars"})
    if report.missing_volume:
        rows.append({"level": "info", "what": "missing volume",
                     "detail": f"{len(report.missing_volume)} bars"})
    rows.append({"level": "info", "what": "summary",
                 "detail": f"{report.source} [{report.timeframe}]: {report.rows} bars, "
                           f"{report.first} -> {report.last}"})
    return rows


def _folder_hint(folder: Path) -> str:
    """What to give instead of a data folder: one OHLCV file its MANIFEST.csv lists, or the folder as
    --data-dir; "" for a folder without a manifest."""
    from data.manifest import read_manifest

    try:
        ohlcv = read_manifest(folder).query("kind == 'ohlcv'")["path"]
    except DataError:
        return ""
    example = f"for example {ohlcv.iloc[0]}; " if len(ohlcv) else ""
    return f" ({example}a data folder with MANIFEST.csv is --data-dir)"


#: The kinds of file ``data validate FILE`` checks (MANIFEST.csv's ``kind``; futures files are OHLCV files).
VALIDATED_KINDS = ("ohlcv", "futures", "network", "funding")


def _kinds_text() -> str:
    """The kinds ``data validate`` checks, with the header each needs, for messages."""
    from data.funding import FORMAT_COLUMNS
    from data.network import CSV_REQUIRED, ETHERSCAN_GLASSNODE_COLUMNS
    from data.price_schedule import PRICE_COLUMNS

    funding = " | ".join(",".join(columns) for columns in FORMAT_COLUMNS.values())
    return ("ohlcv (datetime or date, open, high, low, close, volume), network (time or date, "
            f"{', '.join(CSV_REQUIRED)}; or {', '.join(ETHERSCAN_GLASSNODE_COLUMNS)}), funding (datetime "
            f"or date, and {funding}) and price ({', '.join(PRICE_COLUMNS)}: a power or hosting price "
            "schedule)")


def _file_kind(path: Path, listed: Any) -> tuple[str, str, str]:
    """(kind, asset, venue) of a file given to ``data validate``: its MANIFEST.csv row's, else read from its
    header (asset and venue "" for OHLCV). DataError naming the kinds it checks for a file of none of them."""
    from data.csvfile import file_bytes, read_csv
    from data.frames import OHLCV_COLUMNS
    from data.funding import format_of_columns
    from data.network import FILE_COLUMNS
    from data.price_schedule import PRICE_COLUMNS

    if listed is not None:
        if listed.kind not in VALIDATED_KINDS:
            raise DataError(f"{path.name}: MANIFEST.csv says kind={listed.kind!r}; `data validate` checks "
                            f"files of the kinds {_kinds_text()}.")
        return listed.kind, listed.asset, listed.venue
    content = file_bytes(path, "CSV")
    if not content.strip():
        return "ohlcv", "", ""  # the OHLCV reader says it is empty
    header = list(read_csv(path, content, nrows=0).columns)
    if tuple(str(column).strip().lower() for column in header) == PRICE_COLUMNS:  # read_price_rows' test
        return "price", "", ""
    venue = next((venue for venue, (required, _) in FILE_COLUMNS.items() if set(required) <= set(header)),
                 None)
    if venue is not None:
        return "network", "", venue
    funding = format_of_columns(header)
    if funding is not None:
        return "funding", *funding
    if not set(OHLCV_COLUMNS) & set(header):
        raise DataError(f"{path.name}: its header ({', '.join(header)}) is not that of a file `data "
                        f"validate` checks: {_kinds_text()}.")
    return "ohlcv", "", ""


def _series_findings(path: Path, kind: str, asset: str, venue: str,
                     listed: Any) -> tuple[list[dict[str, Any]], Any]:
    """Findings on a network or funding file, as its reader checks it (columns, numbers, ISO 8601 times: a
    DataError) plus the order of its times, its missing days (network), and the summary; and its rows'
    times."""
    from data.funding import implausible_rates, read_funding_rows
    from data.network import read_network_file
    from data.validate import order_errors

    name = path.name
    if kind == "network":
        raw = read_network_file(path, venue)
        settled = None
    else:
        raw, settled = read_funding_rows(path, asset, venue)
    index = raw.index
    if index.empty:
        raise DataError(f"{name}: no rows (only a header); a {kind} file needs rows to validate.")
    rows = [{"level": "error", "what": "consistency", "detail": f"{name}: {e}"} for e in order_errors(index)]
    implausible = implausible_rates(raw) if kind == "funding" else None
    if implausible is not None:  # an error, as a run refuses the file where it reads such a rate
        rows.append({"level": "error", "what": "funding rate", "detail": f"{name}: {implausible}"})
    if kind == "network":
        days = index.sort_values().unique()
        steps = days[1:] - days[:-1]
        for i in np.flatnonzero(steps > pd.Timedelta(days=1)):
            rows.append({"level": "warning", "what": "gap",
                         "detail": f"{days[i]} -> {days[i + 1]} ({steps[i].days - 1} days)"})
    what = f"{kind} {venue}" + (f", {listed.timeframe}" if listed is not None else "")
    settlements = f" ({len(settled)} settlements)" if settled is not None else ""
    rows.append({"level": "info", "what": "summary",
                 "detail": f"{name} [{what}]: {len(index)} rows{settlements}, "
                           f"{index.min()} -> {index.max()}"})
    return rows, index


def _price_findings(path: Path) -> tuple[list[dict[str, Any]], Any]:
    """Findings on a price schedule file (``date,usd_per_kwh``, which ``power_usd_per_kwh=FILE.csv`` reads):
    read as a run reads it (:func:`data.price_schedule.read_price_rows`: header, dates, numbers; an error
    there is a DataError naming the line), then the order of its dates (duplicate or decreasing) and prices
    below the price parameters' minimum, errors both (a run refuses them), prices above the plausible
    bound (:data:`mining.price_schedule.PLAUSIBLE_USD_PER_KWH`), a warning as a run's, and the summary; and
    its days."""
    from data.price_schedule import read_price_rows
    from data.validate import order_errors, rows_text
    from mining.price_schedule import PLAUSIBLE_USD_PER_KWH
    from strategies.base import BASE_SPECS

    name = path.name
    try:
        rows = read_price_rows(path)
    except ValueError as exc:  # the clause follows the value it is about: here the file
        raise DataError(f"{name} {exc}.") from None
    index = pd.DatetimeIndex([day for day, _, _ in rows])
    prices = np.array([price for _, price, _ in rows])
    findings = [{"level": "error", "what": "consistency", "detail": f"{name}: {text}"}
                for text in order_errors(index)]
    specs = [spec for spec in BASE_SPECS if spec.schedule is not None]  # the parameters a price file prices
    minimum = max(spec.minimum for spec in specs)

    def listed(rows_of: np.ndarray) -> str:
        return rows_text(index, rows_of,
                         lambda i: f"line {rows[i][2]} {index[i].date()} usd_per_kwh={prices[i]:g}")

    low = prices < minimum
    if low.any():
        findings.append({"level": "error", "what": "consistency", "detail": (
            f"{name}: usd_per_kwh below {minimum} ({' and '.join(spec.name for spec in specs)} must be >= "
            f"{minimum} {specs[0].unit}), {listed(low)}")})
    high = prices > PLAUSIBLE_USD_PER_KWH  # what a run warns of: cents typed for dollars, most likely
    if high.any():
        findings.append({"level": "warning", "what": "plausibility", "detail": (
            f"{name}: usd_per_kwh above {PLAUSIBLE_USD_PER_KWH:g} USD/kWh, more than any industrial power "
            f"price miners paid: cents for dollars? (a run warns too), {listed(high)}")})
    findings.append({"level": "info", "what": "summary",
                     "detail": f"{name} [price]: {len(rows)} rows, {index.min().date()} -> "
                               f"{index.max().date()}, {prices.min():g} to {prices.max():g} USD/kWh"})
    return findings, index


def _ohlcv_findings(path: Path) -> tuple[list[dict[str, Any]], Any]:
    """Findings on an OHLCV file: :func:`data.validate.validate_ohlcv` at the timeframe its median bar spacing
    tells; when that spacing is no timeframe, the row checks that need none; and its rows' times."""
    from data.frames import TIMEFRAMES
    from data.ohlcv_csv import read_ohlcv_csv
    from data.validate import row_errors, validate_ohlcv

    frame = read_ohlcv_csv(path)
    name = path.name
    if len(frame) < 2:
        raise DataError(f"{name}: {'no rows (only a header)' if frame.empty else 'one row'}; validation "
                        "needs at least two bars (their spacing tells the timeframe).")
    # the spacing of the sorted stamps: an unsorted file is reported as such by validate_ohlcv
    steps = np.diff(np.sort(frame.index.as_unit("ns").asi8))
    spacing = pd.Timedelta(int(np.median(steps[steps > 0])) if (steps > 0).any() else 0, unit="ns")
    timeframe = next((key for key, step in TIMEFRAMES.items() if step == spacing), None)
    if timeframe is not None:
        _, report = validate_ohlcv(frame, timeframe, source=name, bad_ticks="keep", raise_on_error=False)
        return _findings(report), frame.index
    rows = [{"level": "error", "what": "bar spacing",
             "detail": f"{name}: median bar spacing {spacing} is not one of {', '.join(TIMEFRAMES)}, so the "
                       "UTC grid, gaps and bad ticks were not checked."}]
    rows += [{"level": "error", "what": "consistency", "detail": text} for text in row_errors(frame, name)]
    rows.append({"level": "info", "what": "summary",
                 "detail": f"{name} [spacing {spacing}]: {len(frame)} bars, {frame.index[0]} "
                           f"-> {frame.index[-1]}"})
    return rows, frame.index


def data_validate(config: dict[str, Any], path: Path | None) -> list[dict[str, Any]]:
    """Validate one CSV file (``path``: OHLCV, network, funding or a price schedule, the kind its MANIFEST.csv
    row or its header says) or the OHLCV range of ``config``, reporting, never masking."""
    from data.manifest import listed_choice

    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"data validate {str(path)!r}: that is a folder; give one OHLCV CSV file"
                              f"{_folder_hint(path)}, or no file to check the data of a range (--asset, "
                              "--timeframe, --start, --end).")
        listed = listed_choice(path)
        kind, asset, venue = _file_kind(path, listed)
        if kind in ("network", "funding"):
            findings, index = _series_findings(path, kind, asset, venue, listed)
        elif kind == "price":
            findings, index = _price_findings(path)
        else:
            findings, index = _ohlcv_findings(path)
        # a file its folder's MANIFEST.csv lists: checked against its row, as a run does
        if listed is not None:
            try:
                listed.check_file(index, None, None)
            except ManifestMismatchError as exc:
                findings.insert(0, {"level": "error", "what": "MANIFEST.csv", "detail": str(exc)})
        return findings
    else:
        start = _day(config.get("start"), "start")
        end = _day(config.get("end"), "end")
        try:
            loaded = load_ohlcv(str(config.get("asset") or "BTC").upper(),
                                str(config.get("timeframe") or "1d"),
                                start, end + pd.Timedelta(days=1) if end is not None else None,
                                data_dir=config.get("data_dir"), bad_ticks="keep")
        except ManifestMismatchError as exc:  # a finding about the data, not a mistake in the command
            return [{"level": "error", "what": "MANIFEST.csv", "detail": str(exc)}]
        report, mismatch = loaded.report, None
    findings = _findings(report) if report is not None else []
    if mismatch is not None:
        findings.insert(0, {"level": "error", "what": "MANIFEST.csv", "detail": str(mismatch)})
    return findings


def data_download(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Download OHLCV (yfinance) and network data (Coin Metrics) for the range into the cache."""
    asset = str(config.get("asset") or "BTC").upper()
    timeframe = str(config.get("timeframe") or "1d")
    start = _day(config.get("start"), "start")
    end = _day(config.get("end"), "end")
    end_exclusive = end + pd.Timedelta(days=1) if end is not None else None
    ohlcv = load_ohlcv(asset, timeframe, start, end_exclusive, source="yfinance")
    network = load_network(asset, start, end_exclusive, source="coinmetrics")
    return [{"what": "ohlcv", "rows": len(ohlcv.frame), "source": str(ohlcv.info)},
            {"what": "network", "rows": len(network.frame), "source": str(network.info)}]
