"""A mining fleet: deployments and retirements of machines, and its daily economics.

:meth:`Fleet.simulate` turns a network (or hashprice) frame into one row per day - hash rate, coins mined,
revenue, power, hosting, pool fee, curtailment, net cash flow, depreciation and break-even prices - with
numpy over (cohort x day) arrays, no per-day Python loop. :func:`per_bar` spreads the daily flows pro rata
over intraday bars. Strategies compute the schedule once per run and read it per bar.

Units: money USD; coins BTC or ETH; hash rate H/s (``hashrate_hs``) or the asset's revenue unit
(``hashrate_units``: TH/s for BTC, MH/s for ETH); energy kWh; power price USD/kWh; "per day" = per UTC day.

Fleet shorthand (:func:`parse_fleet`), comma-separated items ``[-]MODEL:UNITS@YYYY-MM-DD[$PRICE]``:

* ``S19Pro:1000@2020-06-01`` deploys 1,000 Antminer S19 Pro hashing from 2020-06-01 (00:00 UTC);
* ``S19Pro:1000@2020-06-01$2400`` the same at USD 2,400 per machine (capex and depreciation; default 0);
* ``-S9:500@2021-01-01`` retires 500 S9 from 2021-01-01 (oldest deployments of that model first);
* ``110TH/3250W:10@2020-06-01`` or ``500MH/1200W:40@2019-01-01`` deploy a custom machine or ETH GPU rig.

Model names accept any spelling of :mod:`mining.hardware` (``S19Pro``, ``S19 Pro``, ``s19_pro``).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from minehedge.errors import ConfigError, DataError, check_positive
from mining.hardware import HardwareSpec, resolve_spec
from mining.price_schedule import PLAUSIBLE_USD_PER_KWH, PriceSchedule, parse_price_schedule
from mining.revenue import UNIT_HS, _utc_index, check_asset, fpps_payout, network_hashprice

DAYS_PER_YEAR: float = 365.25
DAYS_PER_MONTH: float = DAYS_PER_YEAR / 12.0
DAY = pd.Timedelta(days=1)

# Columns of the daily schedule that are amounts per day (spread pro rata over intraday bars) ...
FLOW_COLUMNS: tuple[str, ...] = (
    "coins_gross", "pool_fee_coin", "coins_mined", "revenue_usd", "pool_fee_usd", "power_kwh",
    "power_cost_usd", "hosting_usd", "net_cash_flow_usd", "capex_usd", "depreciation_usd",
)
# ... and the rest are levels (the value of the day the bar opens in).

_ITEM = re.compile(
    r"^\s*(?P<retire>-)?\s*(?P<model>[^:@$]+?)\s*:\s*(?P<units>\d+)\s*@\s*(?P<date>\d{4}-\d{2}-\d{2})"
    r"\s*(?:\$\s*(?P<price>\d+(?:\.\d+)?))?\s*$"
)


@dataclass(frozen=True, slots=True)
class Deployment:
    """``units`` machines of ``spec`` hash from ``date`` (UTC midnight) on; bought at ``unit_price_usd``
    each."""

    date: pd.Timestamp
    spec: HardwareSpec
    units: int
    unit_price_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Retirement:
    """``units`` machines of model ``model`` (a spec name) stop hashing from ``date`` on, oldest first."""

    date: pd.Timestamp
    model: str
    units: int


def _utc_day(value, parameter: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{parameter}={value!r} is not a date (use YYYY-MM-DD).") from None
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return ts.normalize()


def deploy(model: str | HardwareSpec, units: int, date, unit_price_usd: float = 0.0) -> Deployment:
    """A :class:`Deployment` with checked arguments (model: catalog name, custom token or spec)."""
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ConfigError(f"units={units!r} must be a whole number of machines > 0.")
    return Deployment(_utc_day(date, "date"), resolve_spec(model), int(units),
                      check_positive("unit_price_usd", unit_price_usd, allow_zero=True,
                                     unit="USD per machine"))


def retire(model: str | HardwareSpec, units: int, date) -> Retirement:
    """A :class:`Retirement` with checked arguments."""
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ConfigError(f"units={units!r} must be a whole number of machines > 0.")
    return Retirement(_utc_day(date, "date"), resolve_spec(model).name, int(units))


def parse_fleet(text: str) -> tuple[list[Deployment], list[Retirement]]:
    """Parse the fleet shorthand (see the module docstring) into deployments and retirements."""
    deployments: list[Deployment] = []
    retirements: list[Retirement] = []
    items = [item for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"fleet={text!r} is empty; expected e.g. 'S19Pro:1000@2020-06-01'.")
    for item in items:
        match = _ITEM.match(item)
        if not match:
            raise ConfigError(
                f"fleet item {item.strip()!r} is not [-]MODEL:UNITS@YYYY-MM-DD[$PRICE], "
                "e.g. 'S19Pro:1000@2020-06-01$2400' or '-S9:500@2021-01-01'."
            )
        if match["retire"] and match["price"]:
            raise ConfigError(f"fleet item {item.strip()!r}: a retirement takes no $price.")
        try:  # the model, units and date are checked there: the error names the item they came from
            if match["retire"]:
                retirements.append(retire(match["model"], int(match["units"]), match["date"]))
            else:
                deployments.append(deploy(match["model"], int(match["units"]), match["date"],
                                          float(match["price"] or 0.0)))
        except ConfigError as exc:
            raise ConfigError(f"fleet item {item.strip()!r}: {exc}") from None
    return deployments, retirements


def breakeven_coin_price(cost_usd_per_day, coins_per_day, pool_fee: float = 0.0):
    """Coin price (USD/coin) at which mining pays its costs: cost / (coins x (1 - pool fee)).

    ``coins_per_day``: gross FPPS coins before the pool fee; ``cost_usd_per_day``: the USD costs to cover.
    """
    return cost_usd_per_day / fpps_payout(coins_per_day, pool_fee)


def breakeven_power_price(revenue_usd_per_day, energy_kwh_per_day, fixed_cost_usd_per_day=0.0,
                          pool_fee: float = 0.0, hosting_usd_per_kwh=0.0):
    """Power price (USD/kWh) at which mining breaks even:
    (revenue x (1 - pool fee) - fixed costs) / energy - hosting per kWh. ``revenue_usd_per_day`` is gross."""
    return (fpps_payout(revenue_usd_per_day, pool_fee) - fixed_cost_usd_per_day) / energy_kwh_per_day \
        - hosting_usd_per_kwh


def idle_fleet_note(daily: pd.DataFrame) -> str:
    """Why a fleet mined nothing over ``daily`` (:meth:`Fleet.simulate`'s schedule of a run's days), for a
    run note; "" when it mined something (``coins_gross`` > 0 on a day) or the network paid nothing on every
    day (nothing a setting could change: ETH after the Merge, a synthetic market). Else: no machine installed,
    or curtailment on every day the network paid: the power and hosting price above the break-even power
    price (USD/kWh, after hosting) every such day, quoted with the highest break-even and the lowest power
    price of those days."""
    if (daily["coins_gross"].to_numpy(dtype=float) > 0.0).any():
        return ""
    installed = daily["units"].to_numpy(dtype=float) > 0.0
    if not installed.any():
        return "the fleet mined nothing: none of its machines was installed on any day of the run."
    paying = installed & (daily["coins_per_unit_day"].to_numpy(dtype=float) > 0.0)
    if not paying.any():
        return ""
    days = daily.index[paying]
    breakeven = daily["breakeven_power_usd_per_kwh"].to_numpy(dtype=float)[paying]
    power = daily["power_price_usd_per_kwh"].to_numpy(dtype=float)[paying]
    best = int(np.nanargmax(breakeven)) if np.isfinite(breakeven).any() else 0
    when = ("on every day of the run" if paying.all() else
            f"on each of the {int(paying.sum()):,} days it had machines and the network paid (of "
            f"{len(daily):,} in the run)")
    cents = (" Prices are in USD per kWh: 0.045 is 4.5 cents." if power.min() > PLAUSIBLE_USD_PER_KWH else "")
    return (f"the fleet mined nothing: it was curtailed {when} (curtail=true), as its power and hosting cost "
            f"more than its coins paid on each: the break-even power price (after hosting) was at most "
            f"{breakeven[best]:.4g} USD/kWh ({days[best].date()}), the power price at least "
            f"{power.min():.4g} USD/kWh.{cents}")


def straight_line_book_value(cost_usd, age_days, life_days: float):
    """Book value (USD) of hardware bought for ``cost_usd`` (USD), ``age_days`` (days; scalars or arrays)
    after its purchase, written off in a straight line over ``life_days`` (days):
    cost x (1 - min(max(age, 0), life) / life). The full cost at the purchase, 0 from the end of its life on;
    no salvage value."""
    return cost_usd * (1.0 - np.clip(age_days, 0.0, life_days) / life_days)


def trailing_hashprice(hashprice_usd_per_unit_day, window_days: int) -> np.ndarray:
    """The ``window_days``-day trailing mean of a daily hashprice series (USD per TH/s per day for BTC, per
    MH/s per day for ETH; one value per consecutive UTC day, oldest first): each day's mean of its own value
    and the ``window_days`` - 1 days before it (fewer at the series' start; NaN days are left out). No later
    day enters a day's mean, so a series of values known on their days gives means known on their days."""
    if isinstance(window_days, bool) or int(window_days) != window_days or window_days < 1:
        raise ConfigError(f"market_value_window_days={window_days!r} must be a whole number of days >= 1.")
    values = pd.Series(np.asarray(hashprice_usd_per_unit_day, dtype=float))
    return values.rolling(int(window_days), min_periods=1).mean().to_numpy()


def value_on_day(days_ns: np.ndarray, values: np.ndarray, instants_ns) -> np.ndarray:
    """``values`` (one per day of ``days_ns``: UTC day starts, ns since the epoch, ascending) of the day each
    of ``instants_ns`` (ns since the epoch, UTC) falls in; instants before the first day take the first day's
    value, instants after the last day the last day's."""
    position = np.searchsorted(days_ns, np.asarray(instants_ns, dtype=np.int64), side="right") - 1
    return np.asarray(values)[np.clip(position, 0, len(days_ns) - 1)]


def hashprice_market_value(book_usd, hashprice_now, hashprice_at_purchase):
    """Market value (USD) of machines whose straight-line book value is ``book_usd`` (USD), when machine
    prices track hashprice: book x ``hashprice_now`` / ``hashprice_at_purchase`` (both in the same unit, USD
    per TH/s or MH/s per day: the trailing means known now and on the purchase day, see
    :func:`trailing_hashprice`). 0 where the book value is 0; the book value itself where the purchase day's
    hashprice is not a positive number (no reference to scale from). Scalars or arrays (broadcast)."""
    book = np.asarray(book_usd, dtype=float)
    reference = np.asarray(hashprice_at_purchase, dtype=float)
    usable = np.isfinite(reference) & (reference > 0)
    scaled = book * np.asarray(hashprice_now, dtype=float) / np.where(usable, reference, 1.0)
    return np.where(book == 0, 0.0, np.where(usable, scaled, book))


class Fleet:
    """Machines over time and the costs of running them.

    deployments, retirements: see :class:`Deployment` / :class:`Retirement` (or use :meth:`from_shorthand`).
    asset: "BTC" or "ETH" (default: the deployments' coin; all machines must mine the same coin).
    uptime: fraction of time a running machine hashes (0-1], scales hash rate and energy.
    power_price_usd_per_kwh: USD/kWh, a constant or a dated schedule: a
        :class:`~mining.price_schedule.PriceSchedule`, its shorthand (``"0.045,0.07@2022-03-01"``: the first
        price from before the run, each dated one from that UTC day on), a mapping {date: price} or a pandas
        Series indexed by date (each value applies from its date until the next one). A schedule without a
        first undated price must start on or before the first simulated day.
    hosting_usd_per_kwh: hosting charged per kWh drawn (paid only while machines run); USD/kWh, a constant or
        a dated schedule in the same forms.
    hosting_usd_per_unit_month: fixed hosting per installed machine per month (month = 365.25/12 days; paid
        whether the machine runs or is curtailed).
    pool_fee: FPPS pool fee, fraction of the expected coins (0.02 = 2%).
    curtail: economic curtailment - each day, a cohort (one deployment) stays off when its expected revenue
        after the pool fee is below its power + per-kWh hosting cost that day. Decided on the day's own
        hashprice and power price (miners curtail in real time; at daily resolution this is the idealised
        rule, so curtailment never lowers a day's net cash flow).
    depreciation_years: straight-line life of the purchase price (years of 365.25 days).
    market_value: also report ``market_value_usd`` = book value x trailing hashprice / trailing hashprice on
        the deployment day (``market_value_window_days``-day trailing mean, no lookahead): machine prices
        follow hashprice (:meth:`market_value_at`; deployments before the frame's first day are scaled from
        that day's trailing hashprice, so they start at book value).
    """

    def __init__(self, deployments: Iterable[Deployment] = (), retirements: Iterable[Retirement] = (), *,
                 asset: str | None = None, uptime: float = 1.0,
                 power_price_usd_per_kwh: float | PriceSchedule | str | Mapping | pd.Series = 0.05,
                 hosting_usd_per_kwh: float | PriceSchedule | str | Mapping | pd.Series = 0.0,
                 hosting_usd_per_unit_month: float = 0.0,
                 pool_fee: float = 0.02, curtail: bool = True, depreciation_years: float = 3.0,
                 market_value: bool = False, market_value_window_days: int = 30) -> None:
        self.deployments: list[Deployment] = sorted(deployments, key=lambda d: d.date)
        self.retirements: list[Retirement] = sorted(retirements, key=lambda r: r.date)
        if not self.deployments:
            raise ConfigError("fleet has no deployments; give at least one, e.g. 'S19Pro:1000@2020-06-01'.")
        assets = {d.spec.asset for d in self.deployments}
        if asset is None and len(assets) > 1:
            raise ConfigError(f"fleet mixes machines for {sorted(assets)}; one fleet mines one coin.")
        self.asset = check_asset(asset if asset is not None else assets.pop())
        wrong = [d.spec.name for d in self.deployments if d.spec.asset != self.asset]
        if wrong:
            raise ConfigError(f"asset={self.asset!r} but these machines mine another coin: {wrong}.")
        if not 0.0 < float(uptime) <= 1.0:
            raise ConfigError(f"uptime={uptime!r} must be a fraction in (0, 1].")
        if not 0.0 <= float(pool_fee) < 1.0:
            raise ConfigError(f"pool_fee={pool_fee!r} must be a fraction in [0, 1) (0.02 means 2%).")
        self.uptime = float(uptime)
        self.pool_fee = float(pool_fee)
        self.power_price = _kwh_price("power_price_usd_per_kwh", power_price_usd_per_kwh)
        self.hosting_usd_per_kwh = _kwh_price("hosting_usd_per_kwh", hosting_usd_per_kwh)
        self.hosting_usd_per_unit_month = check_positive(
            "hosting_usd_per_unit_month", hosting_usd_per_unit_month, allow_zero=True,
            unit="USD/machine/month")
        self.curtail = bool(curtail)
        self.depreciation_years = check_positive("depreciation_years", depreciation_years, unit="years")
        self.market_value = bool(market_value)
        if int(market_value_window_days) < 1:
            raise ConfigError(f"market_value_window_days={market_value_window_days!r} must be >= 1 (days).")
        self.market_value_window_days = int(market_value_window_days)
        self._retired_steps = self._allocate_retirements()

    @classmethod
    def from_shorthand(cls, text: str, **kwargs) -> Fleet:
        """A fleet from the shorthand, e.g. ``Fleet.from_shorthand("S19Pro:1000@2020-06-01",
        pool_fee=0.02)``."""
        deployments, retirements = parse_fleet(text)
        return cls(deployments, retirements, **kwargs)

    def cache_key(self) -> tuple:
        """Every setting :meth:`simulate` reads, as a hashable tuple: two fleets with equal keys give equal
        schedules on the same data (a price schedule counts by its dates and prices)."""
        return (tuple(self.deployments), tuple(self.retirements), self.asset, self.uptime, self.power_price,
                self.hosting_usd_per_kwh, self.hosting_usd_per_unit_month, self.pool_fee, self.curtail,
                self.depreciation_years, self.market_value, self.market_value_window_days)

    def _allocate_retirements(self) -> list[list[tuple[pd.Timestamp, int]]]:
        """Per deployment, the (date, units) it loses to retirements: oldest deployment of the model first."""
        remaining = [d.units for d in self.deployments]
        steps: list[list[tuple[pd.Timestamp, int]]] = [[] for _ in self.deployments]
        for r in self.retirements:
            left = r.units
            for i, d in enumerate(self.deployments):
                if left == 0:
                    break
                if d.spec.name != r.model or d.date > r.date or remaining[i] == 0:
                    continue
                take = min(left, remaining[i])
                remaining[i] -= take
                left -= take
                steps[i].append((r.date, take))
            if left:
                raise ConfigError(
                    f"retirement of {r.units} x {r.model} on {r.date.date()} exceeds the "
                    f"{r.units - left} machines of that model deployed by then and not yet retired."
                )
        return steps

    def simulate(self, frame: pd.DataFrame, fee_window_days: int = 1) -> pd.DataFrame:
        """The fleet's daily schedule over ``frame``'s days.

        ``frame``: a network frame (the contract; hashprice computed with
        :func:`mining.revenue.network_hashprice` and ``fee_window_days``) or a hashprice frame that already
        has ``coins_per_unit_day`` (and ``price_usd``, or ``hashprice_usd_per_unit_day`` to derive it).
        Index: daily, one row per UTC day. Returns, per day (FLOW_COLUMNS are amounts for the day):

        units (installed machines), hashrate_hs and hashrate_units (running: after uptime and curtailment;
        TH/s for BTC, MH/s for ETH), installed_hashrate_hs (after uptime, before curtailment),
        curtailed_fraction (curtailed / installed hash rate), price_usd, coins_per_unit_day,
        hashprice_usd_per_unit_day, coins_gross (FPPS expected value), pool_fee_coin, coins_mined (what the
        pool pays = gross - fee), revenue_usd (gross x price), pool_fee_usd, power_kwh, power_cost_usd,
        power_price_usd_per_kwh, hosting_usd, net_cash_flow_usd (revenue - pool fee - power - hosting),
        capex_usd (purchases that day), depreciation_usd, book_value_usd (end of day),
        [market_value_usd], breakeven_price_usd and breakeven_power_usd_per_kwh (cash operating
        break-even of the installed fleet with every machine on: power + hosting; excludes depreciation and
        financing), breakeven_price_all_in_usd (adds depreciation).
        """
        if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            raise DataError("simulate needs a non-empty daily frame (network or hashprice).")
        index = _utc_index(frame.index)
        days = index.normalize()
        if "coins_per_unit_day" in frame.columns:
            coins_per_unit = pd.to_numeric(frame["coins_per_unit_day"], errors="coerce").to_numpy(dtype=float)
            if "price_usd" in frame.columns:
                price = pd.to_numeric(frame["price_usd"], errors="coerce").to_numpy(dtype=float)
            elif "hashprice_usd_per_unit_day" in frame.columns:
                usd = pd.to_numeric(frame["hashprice_usd_per_unit_day"],
                                    errors="coerce").to_numpy(dtype=float)
                with np.errstate(divide="ignore", invalid="ignore"):
                    price = usd / coins_per_unit
            else:
                raise DataError("hashprice frame needs price_usd or hashprice_usd_per_unit_day beside "
                                "coins_per_unit_day.")
        else:
            hashprice = network_hashprice(frame, self.asset, fee_window_days)
            coins_per_unit = hashprice["coins_per_unit_day"].to_numpy(dtype=float)
            price = pd.to_numeric(frame["price_usd"], errors="coerce").to_numpy(dtype=float)

        day_ns = days.asi8
        n_cohorts, n_days = len(self.deployments), len(days)
        installed = np.zeros((n_cohorts, n_days))
        for i, d in enumerate(self.deployments):
            installed[i] = d.units * (day_ns >= d.date.value)
            for when, units in self._retired_steps[i]:
                installed[i] -= units * (day_ns >= when.value)

        active_days = installed.sum(axis=0) > 0
        bad = active_days & (~np.isfinite(coins_per_unit) | ((coins_per_unit > 0) & ~np.isfinite(price)))
        if bad.any():
            first = days[np.argmax(bad)].date()
            raise DataError(f"no hashprice or price on {first} ({int(bad.sum())} fleet days): the network "
                            "frame must cover every day the fleet runs.")
        coins_per_unit = np.where(np.isfinite(coins_per_unit), coins_per_unit, 0.0)
        price = np.where(coins_per_unit > 0, price, np.nan_to_num(price, nan=0.0))
        power_price = _price_on(self.power_price, days)
        hosting_per_kwh = _price_on(self.hosting_usd_per_kwh, days)

        hash_units = np.array([d.spec.hashrate_hs / UNIT_HS[self.asset] for d in self.deployments])[:, None]
        kwh_per_unit = np.array([d.spec.energy_kwh_per_day for d in self.deployments])[:, None]
        running = installed * self.uptime  # machine-days of hashing
        gross = running * hash_units * coins_per_unit
        energy = running * kwh_per_unit
        variable_cost = energy * (power_price + hosting_per_kwh)
        revenue = gross * price
        if self.curtail:
            off = fpps_payout(revenue, self.pool_fee) < variable_cost
        else:
            off = np.zeros_like(revenue, dtype=bool)
        on = ~off
        hosting_fixed = installed.sum(axis=0) * self.hosting_usd_per_unit_month / DAYS_PER_MONTH

        out = pd.DataFrame(index=frame.index)
        installed_hs = (running * hash_units).sum(axis=0) * UNIT_HS[self.asset]
        running_units = (running * hash_units * on).sum(axis=0)
        out["units"] = installed.sum(axis=0)
        out["hashrate_hs"] = running_units * UNIT_HS[self.asset]
        out["hashrate_units"] = running_units
        out["installed_hashrate_hs"] = installed_hs
        with np.errstate(divide="ignore", invalid="ignore"):
            out["curtailed_fraction"] = np.where(installed_hs > 0, 1.0 - out["hashrate_hs"] / installed_hs,
                                                 0.0)
        out["price_usd"] = price
        out["coins_per_unit_day"] = coins_per_unit
        out["hashprice_usd_per_unit_day"] = coins_per_unit * price
        coins_gross = (gross * on).sum(axis=0)
        out["coins_gross"] = coins_gross
        out["pool_fee_coin"] = coins_gross * self.pool_fee
        out["coins_mined"] = fpps_payout(coins_gross, self.pool_fee)
        out["revenue_usd"] = (revenue * on).sum(axis=0)
        out["pool_fee_usd"] = out["revenue_usd"] * self.pool_fee
        out["power_kwh"] = (energy * on).sum(axis=0)
        out["power_price_usd_per_kwh"] = power_price
        out["power_cost_usd"] = out["power_kwh"] * power_price
        out["hosting_usd"] = out["power_kwh"] * hosting_per_kwh + hosting_fixed
        out["net_cash_flow_usd"] = (out["revenue_usd"] - out["pool_fee_usd"] - out["power_cost_usd"]
                                    - out["hosting_usd"])
        self._add_capital(out, day_ns, installed, coins_per_unit * price)

        all_on_coins = gross.sum(axis=0)
        all_on_kwh = energy.sum(axis=0)
        cash_cost = all_on_kwh * (power_price + hosting_per_kwh) + hosting_fixed
        with np.errstate(divide="ignore", invalid="ignore"):
            has_coins = all_on_coins > 0
            out["breakeven_price_usd"] = np.where(
                has_coins, breakeven_coin_price(cash_cost, all_on_coins, self.pool_fee), np.nan)
            out["breakeven_price_all_in_usd"] = np.where(
                has_coins, breakeven_coin_price(cash_cost + out["depreciation_usd"].to_numpy(), all_on_coins,
                                                self.pool_fee), np.nan)
            out["breakeven_power_usd_per_kwh"] = np.where(
                all_on_kwh > 0,
                breakeven_power_price(revenue.sum(axis=0), all_on_kwh, hosting_fixed, self.pool_fee,
                                      hosting_per_kwh),
                np.nan)
        return out

    def _add_capital(self, out: pd.DataFrame, day_ns: np.ndarray, installed: np.ndarray,
                     hashprice: np.ndarray) -> None:
        """capex, straight-line depreciation, book value (and market value) columns, in place."""
        life_days = self.depreciation_years * DAYS_PER_YEAR
        price_each = np.array([d.unit_price_usd for d in self.deployments])[:, None]
        start_ns = np.array([d.date.value for d in self.deployments])[:, None]
        age_start = (day_ns[None, :] - start_ns) / DAY.value  # days since deployment at the day's start
        used_start = np.clip(age_start, 0.0, life_days)
        used_end = np.clip(age_start + 1.0, 0.0, life_days)
        out["capex_usd"] = (np.array([d.units for d in self.deployments])[:, None] * price_each
                            * (age_start == 0)).sum(axis=0)
        out["depreciation_usd"] = (installed * price_each * (used_end - used_start) / life_days).sum(axis=0)
        book = self._book_matrix(day_ns + DAY.value)  # at each day's end
        out["book_value_usd"] = book.sum(axis=0)
        if self.market_value:  # book at the day's end, scaled by the trailing hashprice of the day itself
            trailing = trailing_hashprice(hashprice, self.market_value_window_days)
            out["market_value_usd"] = self._market_matrix(book, day_ns, day_ns, trailing).sum(axis=0)

    def book_value_at(self, times, paid_until=None) -> np.ndarray:
        """Book value (USD) of the fleet's machines at each of ``times`` (instants; naive = UTC): each
        deployment's machines not retired by then x their unit price, written off straight-line over
        ``depreciation_years`` from the deployment's date (:func:`straight_line_book_value`).

        A deployment is paid pro rata over its day, as :func:`per_bar` spreads its ``capex_usd`` over the
        day's bars, so inside that day only the share paid so far counts; at a day's end this is
        :meth:`simulate`'s ``book_value_usd``. Machines deployed before ``times`` count as owned.
        ``paid_until`` (an instant): no purchase is paid after it (an insolvent miner buys nothing more), so a
        deployment counts only the share of its price paid by then."""
        times_ns = _utc_index(pd.DatetimeIndex(times)).asi8
        limit = None if paid_until is None else _utc_index(pd.DatetimeIndex([paid_until])).asi8[0]
        return self._book_matrix(times_ns, limit).sum(axis=0)

    def market_value_at(self, times, hashprice: pd.Series, seen=None, paid_until=None,
                        window_days: int | None = None) -> np.ndarray:
        """Market value (USD) of the fleet's machines at each of ``times`` (instants; naive = UTC), when
        machine prices track hashprice: per deployment, its :meth:`book_value_at` (with ``paid_until``) x the
        trailing hashprice of the day each of ``seen`` falls in / the trailing hashprice of the deployment's
        day (:func:`hashprice_market_value`).

        ``hashprice``: USD per TH/s (BTC) or MH/s (ETH) per day, indexed by consecutive UTC days, each day's
        value as known on that day (a strategy passes its published-lagged line: the bars of day D see day
        D-1's hashprice, so nothing looks ahead); its ``window_days``-day trailing mean (default
        ``market_value_window_days``) is what machine prices follow. ``seen`` (instants, one per time; default
        ``times``): whose day's hashprice values each time; a strategy values the end of a bar with the
        hashprice of the day the bar opens in. Deployments before the series' first day are scaled from that
        day's trailing hashprice (their purchase day's is not in it): they start at book value there."""
        times_ns = _utc_index(pd.DatetimeIndex(times)).asi8
        seen_ns = times_ns if seen is None else _utc_index(pd.DatetimeIndex(seen)).asi8
        limit = None if paid_until is None else _utc_index(pd.DatetimeIndex([paid_until])).asi8[0]
        days_ns = _utc_index(hashprice.index).normalize().asi8
        trailing = trailing_hashprice(hashprice.to_numpy(dtype=float),
                                      self.market_value_window_days if window_days is None else window_days)
        return self._market_matrix(self._book_matrix(times_ns, limit), seen_ns, days_ns, trailing).sum(axis=0)

    def _market_matrix(self, book: np.ndarray, seen_ns: np.ndarray, days_ns: np.ndarray,
                       trailing: np.ndarray) -> np.ndarray:
        """Market value (USD) per deployment (rows) from its book values ``book`` at the instants of the
        columns, valued with the trailing hashprice of the days of ``seen_ns`` (one per column)."""
        start_ns = np.array([d.date.value for d in self.deployments], dtype=np.int64)
        now = value_on_day(days_ns, trailing, seen_ns)[None, :]
        at_purchase = value_on_day(days_ns, trailing, start_ns)[:, None]
        return hashprice_market_value(book, now, at_purchase)

    def _book_matrix(self, times_ns: np.ndarray, paid_until_ns: int | None = None) -> np.ndarray:
        """Book value (USD) per deployment (rows) at each instant (columns, ns since the epoch, UTC)."""
        start_ns = np.array([d.date.value for d in self.deployments], dtype=np.int64)[:, None]
        age = (np.asarray(times_ns, dtype=np.int64)[None, :] - start_ns) / DAY.value  # days since deployment
        paid = np.clip(age, 0.0, 1.0)  # share of the price paid: spread over the deployment's day
        if paid_until_ns is not None:
            paid = np.minimum(paid, np.clip((paid_until_ns - start_ns) / DAY.value, 0.0, 1.0))
        units = np.zeros_like(age)
        for i, d in enumerate(self.deployments):
            units[i] = d.units
            for when, retired in self._retired_steps[i]:
                units[i] -= retired * (times_ns > when.value)  # a retirement takes effect at its day's start
        price_each = np.array([d.unit_price_usd for d in self.deployments])[:, None]
        return straight_line_book_value(paid * units * price_each, age,
                                        self.depreciation_years * DAYS_PER_YEAR)

    def breakeven_at(self, schedule: pd.DataFrame, date) -> dict[str, float]:
        """Break-even coin price (USD/coin, cash and all-in) and power price (USD/kWh) on ``date``, from a
        schedule returned by :meth:`simulate` (the row of the UTC day containing ``date``)."""
        day = _utc_day(date, "date")
        index = _utc_index(schedule.index).normalize()
        where = np.flatnonzero(index == day)
        if len(where) == 0:
            raise DataError(f"date={day.date()} is outside the schedule ({index[0].date()} .. "
                            f"{index[-1].date()}).")
        row = schedule.iloc[where[0]]
        return {key: float(row[key]) for key in
                ("breakeven_price_usd", "breakeven_price_all_in_usd", "breakeven_power_usd_per_kwh")}


def _kwh_price(name: str, value) -> float | PriceSchedule:
    """A USD/kWh price parameter: a number >= 0 (float), or a dated schedule (:mod:`mining.price_schedule`)
    whose prices are all >= 0; :class:`ConfigError` naming ``name`` and the value otherwise."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):  # numpy numbers too
        return check_positive(name, float(value), allow_zero=True, unit="USD/kWh")
    if isinstance(value, str):  # a number written as text, as 0.5.0 took it ('0.05'), else a schedule
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            return check_positive(name, number, allow_zero=True, unit="USD/kWh")
    try:
        schedule = parse_price_schedule(name, value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} {exc}.") from None
    negative = [price for price in schedule.prices if price < 0]
    if negative:
        raise ConfigError(f"{name}={str(schedule)!r} has a price below 0 ({negative[0]}); prices must be "
                          ">= 0 (USD/kWh).")
    return schedule


def _price_on(price: float | PriceSchedule, days: pd.DatetimeIndex) -> np.ndarray:
    """The price (USD/kWh) in force on each of ``days``: a constant repeated, or the schedule's."""
    return price.on(days) if isinstance(price, PriceSchedule) else np.full(len(days), price)


def bar_edges(bar_times: Sequence | pd.DatetimeIndex,
              bar_length: pd.Timedelta | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(opens, ends) of the bars, in ns since the epoch (UTC; naive times are UTC). Each bar covers [its
    open, the next bar's open); the last one ``bar_length`` (default: the median bar spacing; a day for one
    bar)."""
    opens = _utc_index(bar_times).asi8
    if bar_length is None:
        bar_length = pd.Timedelta(np.median(np.diff(opens))) if len(opens) > 1 else DAY
    return opens, np.append(opens[1:], opens[-1] + pd.Timedelta(bar_length).value) if len(opens) else opens


def per_bar(schedule: pd.DataFrame, bar_times: Sequence | pd.DatetimeIndex,
            bar_length: pd.Timedelta | None = None) -> pd.DataFrame:
    """The daily schedule on intraday (or daily) bars.

    Each bar covers [its open, the next bar's open) - the last one ``bar_length`` (default: the median bar
    spacing) - and gets every FLOW_COLUMNS amount pro rata to the part of each UTC day it covers, so the bar
    amounts sum to the daily totals (a 4h bar gets 1/6 of its day; bars across midnight split between days).
    Level columns take the value of the day the bar opens in. ``schedule``: from :meth:`Fleet.simulate`,
    one row per consecutive UTC day. Vectorised (np.interp on cumulative daily amounts).
    """
    days = _utc_index(schedule.index).normalize()
    if len(days) > 1 and (np.diff(days.asi8) != DAY.value).any():
        raise DataError("per_bar needs a schedule with one row per consecutive UTC day.")
    bars = _utc_index(bar_times)
    if len(bars) == 0:
        return pd.DataFrame(columns=schedule.columns, index=bar_times)
    starts, ends = (edge.astype(float) for edge in bar_edges(bars, bar_length))
    knots = np.append(days.asi8, days.asi8[-1] + DAY.value).astype(float)
    out = pd.DataFrame(index=pd.Index(bar_times) if not isinstance(bar_times, pd.Index) else bar_times)
    flows = [c for c in FLOW_COLUMNS if c in schedule.columns]
    for column in flows:
        cumulative = np.append(0.0, np.cumsum(schedule[column].to_numpy(dtype=float)))
        out[column] = np.interp(ends, knots, cumulative) - np.interp(starts, knots, cumulative)
    position = np.searchsorted(days.asi8, bars.asi8, side="right") - 1
    inside = (position >= 0) & (bars.asi8 < days.asi8[-1] + DAY.value)
    for column in schedule.columns:
        if column in flows:
            continue
        values = schedule[column].to_numpy()
        taken = values[np.clip(position, 0, len(values) - 1)]
        if taken.dtype.kind == "f":
            taken = np.where(inside, taken, np.nan)
        out[column] = taken
    return out[list(schedule.columns)]


Fleet.per_bar = staticmethod(per_bar)  # Fleet.per_bar(schedule, bar_times): the same function, for discovery
