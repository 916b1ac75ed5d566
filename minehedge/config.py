"""Run configuration: parameter schemas, value parsing, grids and TOML config files, checked before any run.

Three layers feed one configuration, later ones winning key by key:

1. each policy's parameter defaults (a list of :class:`ParamSpec` from the strategies registry);
2. a TOML file given with ``--config FILE.toml``;
3. command-line flags.

Everything is validated *before* a run starts (freqtrade style): an unknown key gets "did you mean", a bad
value raises :class:`~minehedge.errors.ConfigError` naming the key, the value and what is allowed.

TOML layout (keys are the long flag names; ``data-dir`` and ``data_dir`` are the same key)::

    asset = "BTC"              # --asset
    timeframe = "1d"           # --timeframe
    start = 2019-01-01         # --start (a TOML date or a "YYYY-MM-DD" string)
    end = 2023-12-31           # --end
    data_venue = "binance"     # --data-venue (the price file's exchange; default: the longest coverage)
    policy = "static_hedge"    # --policy
    policies = ["unhedged", "static_hedge"]   # --policies (or one comma-separated string)
    workers = 4                # --workers
    rank_by = "sharpe:desc"    # --rank-by
    max_configs = 20000        # --max-configs (default 10,000)
    [set]                      # --set key=value, one per policy parameter
    hedge_ratio = 0.5
    [grid]                     # --grid key=spec, one per swept parameter
    hedge_ratio = "0:1:0.25"   # start:stop:step (see parse_grid_values)
    leverage = [1, 2, 3, 5]    # or an explicit list
    windows = ["stress", "halving=2024-04-01:2024-05-31"]   # --window, run and compare (see parse_windows)

Relative paths (``data_dir``, ``out``) are relative to the current directory, as on the command line.
Standard library only (plus ``tomli`` on Python 3.10).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from minehedge.errors import ConfigError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Python types a parameter may have. Dates are ``datetime.date`` (UTC calendar days).
PARAM_TYPES: tuple[type, ...] = (int, float, bool, str, dt.date)
_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", dt.date: "date"}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}

#: A grid range never expands to more points than this (a typo like 0:1e6:1 stops here, not in RAM).
MAX_GRID_POINTS = 100_000
#: A sweep's grid (the product of its keys' values) is refused above this many configurations unless
#: ``--max-configs`` raises it: at about a second per full-range configuration and core, 10,000 are an hour
#: or more on a laptop, and a step typed one decimal too fine asks for days.
MAX_SWEEP_CONFIGS = 10_000


# --------------------------------------------------------------------------------------------- ParamSpec


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's schema: how the CLI parses, validates and documents it.

    ``type`` is one of :data:`PARAM_TYPES`. ``unit`` is free text shown in ``policies`` (``"fraction"``,
    ``"x"``, ``"USD/kWh"``, ``"days"``...). Constraints, all optional and inclusive: ``choices`` (allowed
    values), ``minimum`` / ``maximum`` (``refuse_minimum``, a reason, makes the range open at its minimum: a
    stop-loss distance of 0 means nothing). ``nullable`` lets the value be ``None`` (written ``none`` on the
    command line), for parameters whose default means "off" (a stop-loss, a loan date).

    ``schedule`` lets a number parameter also take a dated schedule (a price that changes over time):
    ``schedule(name, value)`` turns a value that is not a number into an object whose ``prices`` are each
    checked against ``minimum`` / ``maximum``, or raises :class:`ValueError` with the reason (a clause that
    follows ``name=value``); ``schedule_forms`` says in words what it takes, for :meth:`allowed`.
    """

    name: str
    type: type
    default: Any
    unit: str = ""
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    schedule: Callable[[str, Any], Any] | None = None
    schedule_forms: str = ""
    #: Non-empty: ``minimum`` itself is refused (the range is open there), and this says why.
    refuse_minimum: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise TypeError(f"ParamSpec {self.name!r}: type must be one of {list(_TYPE_NAMES.values())}")
        if self.choices is not None and not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        # A schema whose own default is invalid is a programming error: fail at import, not at run time.
        # The default is stored converted (1 -> 1.0 for a float), so a hash of the defaults is stable.
        object.__setattr__(self, "default", self.coerce(self.default, context="default of"))

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def allowed(self) -> str:
        """What values are allowed, in words (used in every error message and in ``policies``)."""
        unit = f" {self.unit}" if self.unit else ""
        if self.choices is not None:
            text = "one of: " + ", ".join(map(str, self.choices))
        elif self.minimum is not None and self.maximum is not None:
            opening = "(" if self.refuse_minimum else "["
            text = f"{self.type_name} in {opening}{self.minimum}, {self.maximum}]{unit}"
        elif self.minimum is not None:
            text = f"{self.type_name} {'>' if self.refuse_minimum else '>='} {self.minimum}{unit}"
        elif self.maximum is not None:
            text = f"{self.type_name} <= {self.maximum}{unit}"
        elif self.type is dt.date:
            text = "a date YYYY-MM-DD"
        else:
            text = f"{'an' if self.type_name == 'int' else 'a'} {self.type_name}{unit}"
        if self.schedule is not None:
            text += f", or {self.schedule_forms}"
        return text + (" or none" if self.nullable else "")

    def coerce(self, value: Any, *, context: str = "") -> Any:
        """Return ``value`` converted to this parameter's type and checked; raise :class:`ConfigError`.

        Strings (from the command line) are parsed by type; typed values (from TOML or Python) are
        checked: an int is accepted for a float, a float with an integral value for an int, never a bool
        for a number.
        """
        label = f"{context} {self.name}".strip() if context else self.name
        # a TOML date-time is shown as it was written, not as Python's datetime.datetime(2019, 1, 1, 0, 0)
        shown = value.isoformat() if isinstance(value, (dt.date, dt.time)) else repr(value)

        def bad(reason: str = "") -> ConfigError:
            return ConfigError(f"{label}={shown} {reason or 'is not allowed'}; allowed: {self.allowed()}.")

        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE
                             and self.type is not str):
            if self.nullable:
                return None
            if value is not None and self.schedule is not None:  # `none,0.05@2019-01-01` split by a --grid
                raise bad("may not be none alone (a schedule's first item none, as in none,0.05@2019-01-01, "
                          "needs the rest of it: in a --grid, separate schedules with ';')")
            raise bad("may not be none" if value is not None and str(value).strip() else "may not be empty")
        converted = _convert(value, self.type)
        if converted is _INVALID and self.schedule is not None:
            return self._coerce_schedule(value, bad)
        if converted is _INVALID:
            raise bad(f"is not {'an' if self.type_name == 'int' else 'a'} {self.type_name}")
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(
                f"{label}={shown} is not allowed; allowed: {self.allowed()}."
                + did_you_mean(str(converted), [str(c) for c in self.choices])
            )
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            if isinstance(converted, float) and not math.isfinite(converted):
                raise bad("is not a finite number")
            if self.minimum is not None and converted < self.minimum:
                raise bad("is out of range")
            if self.refuse_minimum and converted == self.minimum:
                raise bad(f"is not allowed: {self.refuse_minimum}")
            if self.maximum is not None and converted > self.maximum:
                raise bad("is out of range")
        return converted

    def _coerce_schedule(self, value: Any, bad: Callable[[str], ConfigError]) -> Any:
        """``value`` as this parameter's dated schedule (see ``schedule``), every price within range."""
        try:
            converted = self.schedule(self.name, value)
        except ValueError as exc:  # ConfigError too
            raise bad(str(exc)) from None
        for price in converted.prices:
            if ((self.minimum is not None and price < self.minimum)
                    or (self.maximum is not None and price > self.maximum)):
                raise bad(f"has a price out of range ({price})")
        return converted

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (``policies --json``)."""
        return {
            "name": self.name,
            "type": self.type_name,
            "default": self.default.isoformat() if isinstance(self.default, dt.date) else self.default,
            "unit": self.unit,
            "doc": self.doc,
            "allowed": self.allowed(),
        }


_INVALID = object()


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or ``_INVALID``."""
    if isinstance(value, str):
        text = value.strip()
        if kind is str:
            return value
        if kind is bool:
            low = text.lower()
            return True if low in _TRUE else False if low in _FALSE else _INVALID
        if kind is int:
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else _INVALID
        if kind is float:
            try:
                return float(Decimal(text))  # Decimal first: "0.1" -> the float nearest 0.1, and no "nan"
            except InvalidOperation:
                return _INVALID
        if kind is dt.date:
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                return _INVALID
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):
        return _INVALID  # True is an int in Python, never a number here
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return _INVALID
    if kind is float:
        return float(value) if isinstance(value, (int, float)) else _INVALID
    if kind is dt.date:
        if isinstance(value, dt.datetime):
            return _INVALID  # a timestamp where a calendar day is meant is a mistake worth naming
        return value if isinstance(value, dt.date) else _INVALID
    if kind is str:
        return _INVALID  # no silent str(3) for a string parameter
    return _INVALID


def spec_map(specs: Iterable[ParamSpec]) -> dict[str, ParamSpec]:
    """``{name: spec}``; a duplicate name is a programming error."""
    out: dict[str, ParamSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate ParamSpec name {spec.name!r}")
        out[spec.name] = spec
    return out


def defaults(specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Every parameter at its default."""
    return {spec.name: spec.default for spec in specs}


def check_param_name(name: str, specs: Mapping[str, ParamSpec], *, owner: str) -> ParamSpec:
    """The spec for ``name``, or :class:`ConfigError` "owner has no parameter 'x'. Did you mean ...".

    ``owner`` names whose parameters these are, e.g. ``"policy 'static_hedge'"``.
    """
    if name not in specs:
        allowed = sorted(specs)
        raise ConfigError(
            f"{owner} has no parameter {name!r}; its parameters are: {', '.join(allowed) or '(none)'}."
            + did_you_mean(name, allowed)
        )
    return specs[name]


def validate_params(values: Mapping[str, Any], specs: Iterable[ParamSpec], *, owner: str) -> dict[str, Any]:
    """Every parameter of ``specs``: the defaults, overridden by ``values`` (converted and checked)."""
    by_name = spec_map(specs)
    out = defaults(by_name.values())
    for name, value in values.items():
        out[name] = check_param_name(name, by_name, owner=owner).coerce(value, context=f"{owner}:")
    return out


def check_policy(name: str, registry: Mapping[str, Any]) -> str:
    """``name`` if it is a registered policy; else :class:`ConfigError` listing them, with did-you-mean."""
    if name not in registry:
        allowed = sorted(registry)
        raise ConfigError(
            f"policy={name!r} is not a known policy; choose one of: {', '.join(allowed)}."
            + did_you_mean(name, allowed)
        )
    return name


# ----------------------------------------------------------------------------- values: --set and --grid


def parse_scalar(text: str) -> Any:
    """Best-effort typed value of a bare string: bool, int, float, date, None, else the string itself.

    ``"true"``/``"false"`` -> bool, ``"3"`` -> 3, ``"0.5"``/``"1e-3"`` -> float, ``"2020-03-12"`` -> date,
    ``"none"`` -> None. Where a :class:`ParamSpec` is known, prefer :meth:`ParamSpec.coerce`, which parses by
    the declared type (so a string parameter keeps ``"1"`` as text).
    """
    text = text.strip()
    low = text.lower()
    if low in {"true", "false"}:
        return low == "true"
    if low in _NONE:
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return text


def parse_assignment(text: str, *, flag: str = "--set") -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")`` (value untouched: typed later by the parameter's spec)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ConfigError(f"{flag} {text!r} is not of the form key=value (for example "
                          f"{flag} hedge_ratio=0.5).")
    if not value.strip():
        raise ConfigError(f"{flag} {text!r} has no value after '='.")
    return key, value.strip()


def parse_grid_values(spec: Any, *, key: str = "grid") -> list[Any]:
    """The values a grid spec stands for, in order.

    * ``"start:stop:step"`` (three numbers): an arithmetic range computed in **decimal** arithmetic, so
      ``0:1:0.1`` gives exactly the floats written 0.0, 0.1, ..., 1.0 (not 0.30000000000000004). The stop is
      **included** when it lies on the grid (start + k*step == stop, exactly in decimal); otherwise the range
      ends at the last point below stop. step must be > 0 and stop >= start. If start, stop and step are all
      integers the values are ints, else floats.
    * ``"a,b,c"``: an explicit list; each item stays a string until the parameter's spec types it.
    * ``"a;b;c"``: the same for values that hold commas themselves (a dated price schedule, a fleet of several
      items): when the spec has a ``;``, it alone separates the values.
    * a TOML array: an explicit list of typed values.
    * anything else: a one-point grid.

    A string with colons that are not three numbers (``S19Pro:1000@2020-06-01``) is one value, not a range.
    Duplicate values are an error (they would be the same configuration twice).
    """
    if isinstance(spec, (list, tuple)):
        values = list(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ConfigError(f"{key}={spec!r}: empty grid; give start:stop:step or a comma-separated list.")
        parts = text.split(":")
        separator = ";" if ";" in text else ","
        decimals = _decimals(parts) if len(parts) == 3 and separator not in text else None
        if decimals is not None:
            values = _decimal_range(key, text, *decimals, integral=all(_is_int_literal(p) for p in parts))
        else:
            values = [item.strip() for item in text.split(separator)]
            if any(not item for item in values):
                listed = "semicolon" if separator == ";" else "comma"
                raise ConfigError(f"{key}={spec!r}: empty item in the {listed}-separated list.")
    else:
        values = [spec]
    if not values:
        raise ConfigError(f"{key}={spec!r}: the grid has no values.")
    seen: set[str] = set()
    for value in values:
        token = repr(value)
        if token in seen:
            raise ConfigError(f"{key}={spec!r}: value {value!r} appears twice.")
        seen.add(token)
    return values


def _is_int_literal(text: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", text) is not None


def _decimals(parts: list[str]) -> tuple[Decimal, Decimal, Decimal] | None:
    try:
        numbers = tuple(Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        return None
    if not all(n.is_finite() for n in numbers):
        return None
    return numbers  # type: ignore[return-value]


def _decimal_range(key: str, text: str, start: Decimal, stop: Decimal, step: Decimal, *,
                   integral: bool) -> list:
    if step <= 0:
        raise ConfigError(f"{key}={text!r}: step={step} must be > 0 (start:stop:step with start <= stop).")
    if stop < start:
        raise ConfigError(f"{key}={text!r}: stop={stop} is below start={start} "
                          "(start:stop:step, start <= stop).")
    count = int((stop - start) / step) + 1  # exact: Decimal division of finite decimals, floored by int()
    if count > MAX_GRID_POINTS:
        raise ConfigError(f"{key}={text!r} expands to {count} points; at most {MAX_GRID_POINTS} are allowed.")
    points = [start + step * k for k in range(count)]
    return [int(p) for p in points] if integral else [float(p) for p in points]


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"--grid key=spec"`` text -> ``(key, values)``; see :func:`parse_grid_values` for the spec."""
    key, value = parse_assignment(text, flag="--grid")
    return key, parse_grid_values(value, key=key)


# ------------------------------------------------------------------------------- the global config keys

#: Keys that flags and config files share, with their schema. ``set``, ``grid`` and ``policies`` are
#: structured and handled by :func:`normalise`.
GLOBAL_SPECS: dict[str, ParamSpec] = spec_map(
    [
        ParamSpec("asset", str, "BTC", doc="coin mined and hedged", choices=("BTC", "ETH")),
        ParamSpec("timeframe", str, "1d", doc="bar size of the price feed", choices=("1d", "4h", "1h")),
        ParamSpec("start", dt.date, None, doc="first UTC day (default: first day the data cover)",
                  nullable=True),
        ParamSpec("end", dt.date, None, doc="last UTC day, inclusive (default: last day covered)",
                  nullable=True),
        ParamSpec("venue", str, None, doc="venue profile of the futures leg (default: the policy's)",
                  nullable=True),
        ParamSpec("data_venue", str, None, doc="exchange whose price file the run uses, a venue of "
                  "MANIFEST.csv (default: the file covering the range longest)", nullable=True),
        ParamSpec("seed", int, 0, doc="random seed where randomness exists", minimum=0),
        ParamSpec("data_dir", str, None, doc="data folder with MANIFEST.csv (else $MINEHEDGE_DATA_DIR)",
                  nullable=True),
        ParamSpec("out", str, None, doc="output folder", nullable=True),
        ParamSpec("json", bool, False, doc="print machine-readable JSON on stdout"),
        ParamSpec("policy", str, "static_hedge", doc="hedge policy (see `policies`)"),
        ParamSpec("workers", int, None, doc="local worker processes (default: one per core)", minimum=1,
                  nullable=True),
        ParamSpec("scheduler", str, None, doc="Dask scheduler address, e.g. tcp://host:8786", nullable=True),
        ParamSpec("dask_local", int, None, doc="start a local Dask cluster with N workers", minimum=1,
                  nullable=True),
        ParamSpec("rank_by", str, "sharpe", doc="metric[:asc|:desc] that ranks sweep results"),
        ParamSpec("top", int, 10, doc="how many top configurations to print and write", minimum=1),
        ParamSpec("max_configs", int, MAX_SWEEP_CONFIGS,
                  doc="the most configurations a sweep's grid may have", minimum=1),
    ]
)
STRUCTURED_KEYS = ("set", "grid", "policies", "windows")
EXECUTOR_KEYS = ("workers", "scheduler", "dask_local")
ALL_KEYS = (*GLOBAL_SPECS, *STRUCTURED_KEYS)

_SCHEDULER = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def canonical_key(key: str) -> str:
    """``data-dir`` and ``data_dir`` are the same key (flags use dashes, Python names underscores)."""
    return key.replace("-", "_")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML config file; return its keys normalised (see :func:`normalise`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"--config {str(path)!r}: no such file.") from None
    except OSError as exc:
        raise ConfigError(f"--config {str(path)!r}: cannot read it ({exc.strerror}).") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"--config {str(path)!r} is not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {str(path)!r} is not valid TOML: {exc}.") from None
    return normalise(table, source=str(path))


def unknown_key_error(source: str, key: str, known: Sequence[str], hint: str = "") -> ConfigError:
    """The error for a key of a config mapping (``source``: a file, the command line, an API call) that is not
    one of ``known``: the key, the known keys, a "did you mean" and ``hint``."""
    return ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(known)}."
                       + did_you_mean(canonical_key(str(key)), known) + hint)


def normalise(table: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Check every key and value of a config mapping (file or flags); return it typed.

    Result: global keys as typed scalars; ``set`` as ``{name: raw value}`` (typed later by the policy's
    specs); ``grid`` as ``{name: [values]}``; ``policies`` as a list of names. Only keys present are returned,
    so later layers override earlier ones key by key.
    """
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = canonical_key(str(raw_key))
        where = f"{source}: {raw_key}"
        if key not in ALL_KEYS:
            close = did_you_mean(key, ALL_KEYS)  # a misspelt key of the file itself: no [set] hint
            hint = ("" if source == "command line" or close else
                    f" A policy's parameters go in the file's [set] table ([set] then {raw_key} = ...); "
                    "`policies` lists them.")
            raise unknown_key_error(source, raw_key, ALL_KEYS, hint)
        if key in out:
            raise ConfigError(f"{where}: given twice (as '{key}' and with dashes).")
        if key == "set":
            out["set"] = _name_table(value, where, item=lambda name, v: v)
        elif key == "grid":
            out["grid"] = _name_table(value, where, item=lambda name, v: parse_grid_values(v, key=name))
        elif key == "policies":
            out["policies"] = parse_policy_list(value, where=where)
        elif key == "windows":
            out["windows"] = parse_windows(value, where="--window" if source == "command line" else where)
        else:
            spec = GLOBAL_SPECS[key]
            if key == "asset" and isinstance(value, str):
                value = value.upper()  # "btc" is obviously BTC
            out[key] = spec.coerce(value, context=f"{source}:")
            if key == "scheduler" and out[key] is not None and not _SCHEDULER.match(out[key]):
                raise ConfigError(
                    f"{source}: scheduler={value!r} is not a scheduler address; allowed: "
                    "scheme://host:port, for example tcp://10.0.0.5:8786."
                )
    return out


def _name_table(value: Any, where: str, *, item) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of name = value (got {value!r}).")
    out: dict[str, Any] = {}
    for name, v in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise ConfigError(f"{where}: {name!r} is not a parameter name.")
        out[str(name)] = item(str(name), v)  # a table value is for its parameter's spec to take or refuse
    return out


def parse_policy_list(value: Any, *, where: str = "--policies") -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; empty items and duplicates are errors."""
    if isinstance(value, str):
        names = [item.strip() for item in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ConfigError(f"{where}={value!r}: give policy names, comma-separated or as a list of strings.")
    if not names or any(not n for n in names):
        raise ConfigError(f"{where}={value!r}: empty policy name.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}={value!r}: {', '.join(duplicates)} listed twice.")
    return names


# ------------------------------------------------------------------------------------ windows: --window


@dataclass(frozen=True)
class Window:
    """A named stretch of UTC calendar days, ``start`` to ``end`` inclusive, whose statistics a run reports
    besides its whole-period figures (``analyzers.windows``): an episode within one run, never a run of its
    own."""

    name: str
    start: dt.date
    end: dt.date

    def spec(self) -> str:
        """``NAME=START:END``, as ``--window`` takes it."""
        return f"{self.name}={self.start}:{self.end}"


#: Named windows ``--window NAME`` takes (BTC figures from the shared daily data, USD per coin).
WINDOW_PRESETS: dict[str, Window] = {
    # the 2018 bear market: 13,863 at the year's first open, 3,692 at its last close, low 3,129 on 12-15
    "2018": Window("2018", dt.date(2018, 1, 1), dt.date(2018, 12, 31)),
    # March 2020: 8,523 at the month's first open, low 3,858 on 03-13 (the COVID crash), 6,424 at its close
    "covid-crash": Window("covid-crash", dt.date(2020, 3, 1), dt.date(2020, 3, 31)),
    # the run-up (28,990 -> a 67,555 close on 11-08), the May crash (low 30,000 on 05-19), China's mining ban
    # (the network hash rate down by half from mid-May to early July)
    "2021": Window("2021", dt.date(2021, 1, 1), dt.date(2021, 12, 31)),
    # Luna (May), 3AC and Celsius (June, low 17,567 on 06-18), FTX (November, low 15,460 on 11-21)
    "2022": Window("2022", dt.date(2022, 1, 1), dt.date(2022, 12, 31)),
}
#: ``--window NAME`` for several presets at once.
WINDOW_GROUPS: dict[str, tuple[str, ...]] = {"stress": ("2018", "covid-crash", "2021", "2022")}
_WINDOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _window_help() -> str:
    presets = ", ".join(WINDOW_PRESETS)
    groups = "; ".join(f"{name} (all of {', '.join(names)})" for name, names in WINDOW_GROUPS.items())
    return (f"NAME=START:END (UTC days YYYY-MM-DD, END included; NAME of letters, digits, '_', '.', '-'), a "
            f"preset ({presets}) or {groups}")


def parse_window(text: str, *, where: str = "--window") -> list[Window]:
    """The windows ``text`` stands for: ``NAME=START:END`` (one), a preset name (one, :data:`WINDOW_PRESETS`)
    or a group name (several, :data:`WINDOW_GROUPS`). A malformed spec, an unknown name or START after END
    raises :class:`ConfigError` naming the value and what is allowed."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}={text!r} is not a window; allowed: {_window_help()}.")
    spec = text.strip()
    name, sep, span = spec.partition("=")
    if not sep:
        if spec in WINDOW_PRESETS:
            return [WINDOW_PRESETS[spec]]
        if spec in WINDOW_GROUPS:
            return [WINDOW_PRESETS[key] for key in WINDOW_GROUPS[spec]]
        raise ConfigError(f"{where} {text!r} is not a window; allowed: {_window_help()}."
                          + did_you_mean(spec, [*WINDOW_PRESETS, *WINDOW_GROUPS]))
    name = name.strip()
    if not _WINDOW_NAME.fullmatch(name):
        raise ConfigError(f"{where} {text!r}: the name {name!r} is not allowed; allowed: {_window_help()}.")
    days = [part.strip() for part in span.split(":")]
    if len(days) != 2 or not all(_ISO_DAY.fullmatch(day) for day in days):
        raise ConfigError(f"{where} {text!r}: {span.strip()!r} is not START:END; allowed: {_window_help()}.")
    try:
        start, end = (dt.date.fromisoformat(day) for day in days)
    except ValueError as exc:
        raise ConfigError(f"{where} {text!r}: {exc}; allowed: {_window_help()}.") from None
    if start > end:
        raise ConfigError(f"{where} {text!r}: START {start} is after END {end}; START must be on or before "
                          "END.")
    return [Window(name, start, end)]


def parse_windows(value: Any, *, where: str = "--window") -> list[Window]:
    """Every window of ``value``: a spec string (:func:`parse_window`), a :class:`Window`, or a list of them
    (repeated flags, a TOML array), in order; a name given twice (a preset inside a group too) is an
    error."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    windows: list[Window] = []
    for item in items:
        windows += [item] if isinstance(item, Window) else parse_window(item, where=where)
    names = [window.name for window in windows]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{where}: window {twice[0]!r} is given twice; give each window once, under its "
                          "own name (a group such as stress includes its presets).")
    return windows


def clip_windows(windows: Sequence[Window], first: dt.date | None,
                 last: dt.date | None) -> tuple[list[Window], list[str]]:
    """``windows`` within a run's days ``first`` to ``last`` (inclusive; None: not known yet, unchecked) and a
    note for each window cut to them. A window with no day in the run raises :class:`ConfigError`: its
    figures would be those of another period. A window partly outside keeps its days within the run (its
    rows then show the clipped start and end)."""
    span = f"{first or 'its first day'} to {last or 'its last day'}"
    fitted: list[Window] = []
    notes: list[str] = []
    for window in windows:
        if (last is not None and window.start > last) or (first is not None and window.end < first):
            raise ConfigError(f"window {window.spec()} is outside the run ({span}); give windows within it "
                              "(--window NAME=START:END), or a --start and --end that cover it.")
        start = max(window.start, first) if first is not None else window.start
        end = min(window.end, last) if last is not None else window.end
        if (start, end) != (window.start, window.end):
            notes.append(f"window {window.spec()} is clipped to {start}:{end}, its part within the run "
                         f"({span})")
        fitted.append(Window(window.name, start, end))
    return fitted, notes


def merge(file_layer: Mapping[str, Any], flag_layer: Mapping[str, Any]) -> dict[str, Any]:
    """Config file overridden by flags, key by key (``set`` and ``grid`` parameter by parameter).

    The executor (``workers``, ``scheduler``, ``dask_local``) is one choice: any executor flag replaces the
    file's. A parameter both fixed (``set``) and swept (``grid``): the layer that mentions it last wins (a
    ``--grid`` flag overrides the file's ``[set]`` and vice versa); within one layer it is an error.
    """
    merged = {k: v for k, v in file_layer.items() if k not in ("set", "grid")}
    if any(k in flag_layer for k in EXECUTOR_KEYS):  # an executor flag replaces the file's executor choice
        merged = {k: v for k, v in merged.items() if k not in EXECUTOR_KEYS}
    merged.update({k: v for k, v in flag_layer.items() if k not in ("set", "grid")})
    file_set, file_grid = dict(file_layer.get("set", {})), dict(file_layer.get("grid", {}))
    flag_set, flag_grid = dict(flag_layer.get("set", {})), dict(flag_layer.get("grid", {}))
    for layer_set, layer_grid, where in ((file_set, file_grid, "the config file"),
                                         (flag_set, flag_grid, "the flags")):
        both = sorted(set(layer_set) & set(layer_grid))
        if both:
            raise ConfigError(
                f"{', '.join(both)}: both fixed (set) and swept (grid) in {where}; keep one of the two."
            )
    for name in flag_grid:
        file_set.pop(name, None)
    for name in flag_set:
        file_grid.pop(name, None)
    merged["set"] = {**file_set, **flag_set}
    merged["grid"] = {**file_grid, **flag_grid}
    return merged


def resolve(merged: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Fill defaults and cross-check keys: the settings one command runs with.

    ``data_dir`` falls back to ``$MINEHEDGE_DATA_DIR`` (else None: the data layer downloads and caches).
    """
    settings = {key: spec.default for key, spec in GLOBAL_SPECS.items()}
    settings.update({"set": {}, "grid": {}, "policies": None, "windows": []})
    settings.update(merged)
    if settings["data_dir"] is None and environ.get("MINEHEDGE_DATA_DIR"):
        settings["data_dir"] = environ["MINEHEDGE_DATA_DIR"]
    if settings["start"] is not None and settings["end"] is not None and settings["start"] > settings["end"]:
        raise ConfigError(f"start={settings['start']} is after end={settings['end']}; start must be <= end.")
    parse_rank_by(settings["rank_by"])  # syntax now; the metric name once the Summary keys are known
    executors = [k for k in ("scheduler", "dask_local") if settings[k] is not None]
    if len(executors) > 1 or (executors and "workers" in merged and merged["workers"] is not None):
        given = [f"--{k.replace('_', '-')}" for k in ("workers", "scheduler", "dask_local")
                 if merged.get(k) is not None]
        raise ConfigError(f"{', '.join(given)}: choose one executor (local --workers, "
                          "--scheduler or --dask-local).")
    return settings


def parse_rank_by(text: str) -> tuple[str, bool | None]:
    """``"metric"``, ``"metric:asc"`` or ``"metric:desc"`` -> ``(metric, descending or None for default)``."""
    metric, sep, order = text.partition(":")
    metric = metric.strip()
    if not metric:
        raise ConfigError(f"rank_by={text!r}: name a metric, for example sharpe or max_drawdown_pct:asc.")
    if not sep:
        return metric, None
    order = order.strip().lower()
    if order not in ("asc", "desc"):
        raise ConfigError(f"rank_by={text!r}: order {order!r} is not allowed; allowed: asc, desc.")
    return metric, order == "desc"
