"""Venue profiles: load and validate the dated venue data in ``brokers/venues/*.toml``.

Each profile is data, not code: contract type, margin currency, fee schedule, funding schedule, the
liquidation rule and, per instrument, dated maintenance-tier tables with their documentation source and
as-of date. Tables change over time, so :meth:`InstrumentSpec.tiers_at` selects by date.
Pure standard library (+ ``tomli`` on Python 3.10); no backtrader import.

Validation happens here, before any run starts: unknown venues, instruments or contract types, leverage
above a bracket's maximum, non-positive prices or sizes raise :class:`minehedge.errors.ConfigError`
naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from brokers.formulas import MaintenanceTier, tier_index
from brokers.sessions import check_calendar
from minehedge.errors import ConfigError, check_between, check_choice, check_positive, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

VENUE_DIR = Path(__file__).with_name("venues")
CONTRACT_TYPES = ("linear", "inverse")
MAINTENANCE_BASES = ("mark", "entry")
LIQUIDATION_FILLS = ("liquidation_price", "bankruptcy_price", "close")
MARGIN_CALL_RULES = ("ratio", "deadline")
MAINTENANCE_AMOUNT_RULES = ("binance", "none")
#: The largest |fee rate| a profile or a commission scheme may give, fraction of notional per fill: 1 %. The
#: profiles' takers are 0 to 0.075 % (BitMEX) and their makers -0.025 % (BitMEX's rebate) to 0.02 %, so a rate
#: beyond 1 % is a percent typed as a fraction (0.04 for 0.04 %, a 4 % fee: 100 times the intended cost).
MAX_FEE_RATE = 0.01


def check_fee_rate(parameter: str, value: float, *, maker: bool = False) -> float:
    """Return the fee rate ``value`` (fraction of notional per fill) as float if it is within
    ``0 <= value <= MAX_FEE_RATE`` (a taker fee) or ``-MAX_FEE_RATE <= value <= MAX_FEE_RATE`` (a ``maker``
    fee: negative is a rebate, as BitMEX pays); else ConfigError naming the parameter, the value and the
    range."""
    try:
        negative = float(value) < 0.0
    except (TypeError, ValueError):
        negative = False  # check_between names a value that is not a number
    hint = ("Rates are fractions, not percents: 0.04 % is 0.0004 (futures venues charge under 0.1 %).")
    if negative and not maker:
        hint = "A taker fee is not negative; only a maker fee can be a rebate (BitMEX's maker: -0.00025)."
    return check_between(parameter, value, -MAX_FEE_RATE if maker else 0.0, MAX_FEE_RATE,
                         unit="fraction of notional per fill" + ("; < 0 is a rebate" if maker else ""),
                         hint=hint)


def available_venues() -> list[str]:
    """Names of the bundled venue profiles."""
    return sorted(p.stem for p in VENUE_DIR.glob("*.toml"))


def _as_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}={value!r} is not a date (YYYY-MM-DD).") from None


@dataclass(frozen=True, slots=True)
class TierTable:
    """Maintenance brackets in force from ``effective`` (UTC date) on, with their source."""

    effective: date
    tiers: tuple[MaintenanceTier, ...]
    source: str
    as_of: date


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Trading fees from ``effective`` on: fractions of notional (maker may be negative = rebate)."""

    effective: date
    taker: float
    maker: float
    fixed_per_contract: float
    source: str


def _in_force(dated: tuple, when: date | datetime):
    """The last item of ``dated`` (sorted by ``effective``) in force on ``when``; the first before any."""
    day = when.date() if isinstance(when, datetime) else when
    chosen = dated[0]
    for item in dated:
        if item.effective <= day:
            chosen = item
    return chosen


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One contract. ``contract_size``: coins per unit (linear); ``face_usd``: USD per contract (inverse)."""

    symbol: str
    asset: str
    contract_size: float
    face_usd: float
    tier_tables: tuple[TierTable, ...]

    def tier_table_at(self, when: date | datetime) -> TierTable:
        """The table in force on ``when``; dates before the first table use the first (an assumption)."""
        return _in_force(self.tier_tables, when)

    def tiers_at(self, when: date | datetime) -> tuple[MaintenanceTier, ...]:
        return self.tier_table_at(when).tiers


@dataclass(frozen=True, slots=True)
class VenueProfile:
    """A venue's rules. Units: rates are fractions; hours are UTC; fees are fractions of notional."""

    name: str
    contract_type: str
    margin_currency: str
    maintenance_basis: str
    maintenance_amount_rule: str
    liquidation_fill: str
    liquidation_fee_rate: float
    liquidation_fee_source: str
    partial_liquidation: bool
    margin_call: str
    warning_level: float
    funding_hours_utc: tuple[int, ...]
    funding_interval_hours: float
    default_funding_rate: float
    source: str
    as_of: date
    fees: tuple[FeeSchedule, ...]
    instruments: tuple[InstrumentSpec, ...]
    margin_call_deadline_hours: float = 0.0
    initial_margin_to_maintenance: float = 0.0  # CME: initial = maintenance x this (0: use leverage)
    base_initial_margin: float = 0.0
    #: Trading calendar of :mod:`brokers.sessions` (``cme_globex``); None: the market never closes.
    trading_hours: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def instrument(self, symbol: str | None = None, parameter: str = "symbol") -> InstrumentSpec:
        """The instrument named ``symbol`` (the first one when None); else ConfigError naming the caller's
        ``parameter`` (the commission schemes' ``symbol``), the value, the venue's symbols and the closest one
        (case-insensitively: ``'mbt'`` suggests ``'MBT'``)."""
        if symbol is None:
            return self.instruments[0]
        for spec in self.instruments:
            if spec.symbol == symbol:
                return spec
        symbols = [s.symbol for s in self.instruments]
        raise ConfigError(
            f"{parameter}={symbol!r} is not listed for venue {self.name!r}; choose one of: "
            f"{', '.join(symbols)}." + did_you_mean(str(symbol), symbols)
        )

    def fees_at(self, when: date | datetime) -> FeeSchedule:
        """The fee schedule in force on ``when`` (the first before its effective date)."""
        return _in_force(self.fees, when)

    @property
    def is_inverse(self) -> bool:
        return self.contract_type == "inverse"


def _derive_or_check_cum(rows: list[list[float]], rule: str, where: str) -> tuple[MaintenanceTier, ...]:
    tiers: list[MaintenanceTier] = []
    previous: MaintenanceTier | None = None
    for k, row in enumerate(rows):
        if len(row) not in (3, 4):
            raise ConfigError(f"{where}.tiers[{k}]={row!r}: expected [floor, mmr, max_leverage(, amount)].")
        floor = check_positive(f"{where}.tiers[{k}].floor", row[0], allow_zero=True)
        mmr = check_positive(f"{where}.tiers[{k}].mmr", row[1], unit="fraction")
        if mmr >= 1.0:
            raise ConfigError(f"{where}.tiers[{k}].mmr={mmr!r} must be < 1 (a fraction, not %).")
        max_leverage = check_positive(f"{where}.tiers[{k}].max_leverage", row[2])
        if previous is None:
            if floor != 0.0:
                raise ConfigError(f"{where}.tiers[0].floor={floor!r} must be 0 (the first "
                                  "bracket starts at 0).")
            derived = 0.0
        else:
            if floor <= previous.floor:
                raise ConfigError(f"{where}.tiers[{k}].floor={floor!r} must exceed the previous floor.")
            derived = floor * (mmr - previous.mmr) + previous.maintenance_amount if rule == "binance" else 0.0
        amount = float(row[3]) if len(row) == 4 else derived
        if abs(amount - derived) > 1e-6 * max(1.0, abs(derived)):
            raise ConfigError(
                f"{where}.tiers[{k}] maintenance amount {amount!r} disagrees with Binance's recurrence "
                f"floor x (mmr_n - mmr_n-1) + amount_n-1 = {derived!r}."
            )
        previous = MaintenanceTier(floor, mmr, max_leverage, amount)
        tiers.append(previous)
    if not tiers:
        raise ConfigError(f"{where}.tiers is empty.")
    return tuple(tiers)


def parse_venue(raw: Mapping[str, object], origin: str = "<dict>") -> VenueProfile:
    """Validate a raw profile mapping (as read from TOML) into a :class:`VenueProfile`."""
    try:
        name = str(raw["name"])
        contract_type = check_choice(f"{origin}: contract_type", raw["contract_type"], CONTRACT_TYPES)
        basis = check_choice(f"{origin}: maintenance_basis", raw["maintenance_basis"], MAINTENANCE_BASES)
        if basis == "entry" and contract_type != "inverse":
            # linear margin and liquidation formulas take the mark only (BitMEX's linear contracts, whose
            # maintenance is on the entry value, are not modelled): refused, not silently computed on the mark
            raise ConfigError(f"{origin}: maintenance_basis='entry' is not allowed for {contract_type} "
                              "contracts; allowed: 'mark' (the entry basis is implemented for inverse "
                              "contracts only).")
        rule = check_choice(f"{origin}: maintenance_amount_rule", raw["maintenance_amount_rule"],
                            MAINTENANCE_AMOUNT_RULES)
        fill = check_choice(f"{origin}: liquidation_fill", raw["liquidation_fill"], LIQUIDATION_FILLS)
        call_rule = check_choice(f"{origin}: margin_call", raw["margin_call"], MARGIN_CALL_RULES)
        fee_rate = check_positive(f"{origin}: liquidation_fee_rate", raw["liquidation_fee_rate"],
                                  allow_zero=True)
        warning = check_positive(f"{origin}: warning_level", raw["warning_level"], unit="fraction")
        hours = tuple(int(h) for h in raw["funding_hours_utc"])  # type: ignore[union-attr]
        for h in hours:
            if not 0 <= h < 24:
                raise ConfigError(f"{origin}: funding_hours_utc contains {h!r}; allowed: 0..23 (UTC).")
        fees = tuple(
            FeeSchedule(_as_date(f["effective"], f"{origin}: fees.effective"),
                        check_fee_rate(f"{origin}: fees.taker", f["taker"]),
                        check_fee_rate(f"{origin}: fees.maker", f["maker"], maker=True),
                        float(f.get("fixed_per_contract", 0.0)), str(f["source"]))
            for f in raw["fees"]  # type: ignore[union-attr]
        )
        instruments = []
        for spec in raw["instruments"]:  # type: ignore[union-attr]
            where = f"{origin}: {spec['symbol']}"
            tables = tuple(sorted(
                (TierTable(_as_date(t["effective"], f"{where}.effective"),
                           _derive_or_check_cum(t["tiers"], rule, where), str(t["source"]),
                           _as_date(t["as_of"], f"{where}.as_of"))
                 for t in spec["tier_tables"]),
                key=lambda t: t.effective,
            ))
            if contract_type == "inverse":
                face = check_positive(f"{where}.face_usd", spec["face_usd"], unit="USD per contract")
                size = 1.0
            else:
                size = check_positive(f"{where}.contract_size", spec["contract_size"], unit="coins")
                face = 0.0
            instruments.append(InstrumentSpec(str(spec["symbol"]), str(spec["asset"]), size, face, tables))
    except KeyError as missing:
        raise ConfigError(f"venue profile {origin} lacks the field {missing}.") from None
    if not instruments or not fees:
        raise ConfigError(f"venue profile {origin} needs at least one [[instruments]] and one [[fees]].")
    return VenueProfile(
        name=name, contract_type=contract_type, margin_currency=str(raw["margin_currency"]),
        maintenance_basis=basis, maintenance_amount_rule=rule, liquidation_fill=fill,
        liquidation_fee_rate=fee_rate, liquidation_fee_source=str(raw.get("liquidation_fee_source", "")),
        partial_liquidation=bool(raw.get("partial_liquidation", False)), margin_call=call_rule,
        warning_level=warning, funding_hours_utc=hours,
        funding_interval_hours=float(raw.get("funding_interval_hours", 8)),  # type: ignore[arg-type]
        default_funding_rate=float(raw.get("default_funding_rate", 0.0)),  # type: ignore[arg-type]
        source=str(raw["source"]), as_of=_as_date(raw["as_of"], f"{origin}: as_of"), fees=fees,
        instruments=tuple(instruments),
        # type: ignore[arg-type]
        margin_call_deadline_hours=float(raw.get("margin_call_deadline_hours", 0.0)),
        # type: ignore[arg-type]
        initial_margin_to_maintenance=float(raw.get("initial_margin_to_maintenance", 0.0)),
        base_initial_margin=float(raw.get("base_initial_margin", 0.0)),  # type: ignore[arg-type]
        trading_hours=_trading_hours(raw.get("trading_hours"), origin),
    )


def _trading_hours(value: object, origin: str) -> str | None:
    """The profile's ``trading_hours`` (a calendar of :mod:`brokers.sessions`); None when absent (24/7)."""
    if value is None:
        return None
    return check_calendar(value, f"{origin}: trading_hours")


_CACHE: dict[str, VenueProfile] = {}


def load_venue(name_or_path: str | Path, overrides: Mapping[str, object] | None = None) -> VenueProfile:
    """Load a bundled venue by name (``binance_usdm``, ``binance_coinm``, ``bitmex``, ``cme``, ``generic``)
    or a TOML file by path; ``overrides`` replaces top-level fields (validated like the file)."""
    key = str(name_or_path)
    path = Path(key)
    if path.suffix != ".toml":
        names = available_venues()
        if key not in names:
            raise ConfigError(f"venue={key!r} is not known; choose one of: {', '.join(names)}."
                              + did_you_mean(key, names))
        path = VENUE_DIR / f"{key}.toml"
    elif not path.is_file():
        raise ConfigError(f"venue file {str(path)!r} does not exist.")
    if not overrides and key in _CACHE:
        return _CACHE[key]
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    if overrides:
        unknown = [k for k in overrides if k not in raw]
        if unknown:
            raise ConfigError(f"venue override {unknown[0]!r} is not a field of {path.name}; fields: "
                              f"{', '.join(raw)}." + did_you_mean(unknown[0], raw))
        raw = {**raw, **overrides}
    profile = parse_venue(raw, origin=path.name)
    if not overrides:
        _CACHE[key] = profile
    return profile


def generic_venue(*, contract_type: str = "linear", mmr: float = 0.005, max_leverage: float = 100.0,
                  taker: float = 0.0, maker: float = 0.0, liquidation_fee_rate: float = 0.0,
                  funding_hours_utc: tuple[int, ...] = (0, 8, 16), default_funding_rate: float = 0.0,
                  face_usd: float = 100.0, contract_size: float = 1.0, asset: str = "BTC",
                  liquidation_fill: str = "liquidation_price", maintenance_basis: str = "mark",
                  warning_level: float = 0.8, margin_call: str = "ratio",
                  margin_call_deadline_hours: float = 24.0, partial_liquidation: bool = False,
                  initial_margin_to_maintenance: float = 0.0) -> VenueProfile:
    """The ``generic`` venue with every parameter explicit (rates are fractions, hours UTC)."""
    check_choice("contract_type", contract_type, CONTRACT_TYPES)
    spec: dict[str, object] = {"symbol": f"{asset}-GENERIC", "asset": asset,
                               "tier_tables": [{"effective": date(2000, 1, 1), "as_of": date(2000, 1, 1),
                                                "source": "user parameter",
                                                "tiers": [[0, mmr, max_leverage]]}]}
    if contract_type == "inverse":
        spec["face_usd"] = face_usd
    else:
        spec["contract_size"] = contract_size
    raw = {
        "name": "generic", "contract_type": contract_type,
        "margin_currency": "coin" if contract_type == "inverse" else "USD",
        "maintenance_basis": maintenance_basis, "maintenance_amount_rule": "none",
        "liquidation_fill": liquidation_fill, "liquidation_fee_rate": liquidation_fee_rate,
        "liquidation_fee_source": "user parameter", "partial_liquidation": partial_liquidation,
        "margin_call": margin_call, "warning_level": warning_level,
        "funding_hours_utc": list(funding_hours_utc),
        "funding_interval_hours": 8, "default_funding_rate": default_funding_rate,
        "source": "user parameters (no venue)", "as_of": date(2000, 1, 1),
        "fees": [{"effective": date(2000, 1, 1), "taker": taker, "maker": maker, "source": "user parameter"}],
        "instruments": [spec], "margin_call_deadline_hours": margin_call_deadline_hours,
        "initial_margin_to_maintenance": initial_margin_to_maintenance,
    }
    return parse_venue(raw, origin="generic_venue()")


def check_leverage(leverage: float, tiers: tuple[MaintenanceTier, ...], notional: float = 0.0,
                   parameter: str = "leverage", venue: str = "the venue", unit: str = "", *,
                   minimum: float | None = None) -> float:
    """Return ``leverage`` if it is > 0 (at least ``minimum``, when given: the lowest the caller's parameter
    accepts, e.g. a policy's 1) and within the bracket for ``notional``; else ConfigError naming the leverage
    asked, the maximum and the bracket (``notional`` and the brackets' floors in ``unit``: USD for linear
    contracts, coins for inverse ones), and the range allowed: ``0 < leverage <= 100`` for a commission
    scheme, ``1 <= leverage <= 100`` with ``minimum=1``."""
    value = check_positive(parameter, leverage, unit="x")
    index = tier_index(tiers, abs(notional))
    allowed = tiers[index].max_leverage
    if minimum is None:
        allowed_text = f"0 < {parameter} <= {allowed:g}"
    elif allowed + 1e-9 < minimum:
        allowed_text = f"none ({parameter} must be at least {minimum:g} here)"
    else:
        allowed_text = f"{minimum:g} <= {parameter} <= {allowed:g}"
    if value > allowed + 1e-9:
        raise ConfigError(f"{parameter}={leverage!r} exceeds {venue}'s maximum of {allowed:g}x "
                          f"{bracket_text(tiers, index, notional, unit)}; allowed: {allowed_text}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{parameter}={leverage!r} is below the minimum of {minimum:g}x; "
                          f"allowed: {allowed_text}.")
    return value


def bracket_text(tiers: tuple[MaintenanceTier, ...], index: int, notional: float, unit: str) -> str:
    """Where bracket ``index`` of ``tiers`` holds, in words: ``at any notional``, ``for positions below 200
    BTC of notional (its first bracket; larger ones allow less)`` or ``at a notional of 60,000.00 USD (its
    bracket from 50,000 to 600,000 USD)``."""
    unit = f" {unit}" if unit else ""
    if len(tiers) == 1:
        return "at any notional"
    upper = tiers[index + 1].floor if index + 1 < len(tiers) else None
    if index == 0 and not notional:
        return (f"for positions below {upper:,.0f}{unit} of notional (its first bracket; larger ones "
                "allow less)")
    span = f" to {upper:,.0f}{unit}" if upper is not None else " up"
    return f"at a notional of {notional:,.2f}{unit} (its bracket from {tiers[index].floor:,.0f}{unit}{span})"


def replace(profile: VenueProfile, **changes: object) -> VenueProfile:
    """A copy of ``profile`` with fields changed (e.g. ``liquidation_fee_rate=0``)."""
    return dataclasses.replace(profile, **changes)  # type: ignore[arg-type]
