"""Error types for user mistakes and unusable data, and helpers that check values and name what is allowed.

A :class:`MinehedgeError` is a problem the user can fix (bad config, bad data, no data): the CLI prints its
message and exits with code 2, never a traceback. Anything else is a bug and keeps its traceback.
Standard library only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MinehedgeError(Exception):
    """Base class: a problem the user can fix. The message says what was wrong and what is allowed."""


class ConfigError(MinehedgeError, ValueError):
    """A parameter, CLI flag or config value is invalid (names the parameter, the value, what is allowed)."""


class DataError(MinehedgeError):
    """Input data fail validation or do not cover what was asked (names the file, row and value)."""


class ManifestMismatchError(DataError):
    """A data file and its MANIFEST.csv row disagree (times, row count, size in bytes), or the row's count or
    size is unreadable: a run refuses the file; ``data validate`` reports it as an error finding."""


class DataCoverageError(DataError):
    """The data exist but do not cover what was asked (a range, its start): the message names what they
    cover."""


class DataUnavailableError(DataError):
    """No data directory, no cache and no network: the message names both remedies."""


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest allowed name, or ``""`` when none is close. Case is
    ignored when comparing (``'mbt'`` suggests ``'MBT'``); the suggestion is spelt as allowed."""
    spelt = {}
    for name in map(str, allowed):
        spelt.setdefault(name.lower(), name)
    close = difflib.get_close_matches(str(value).lower(), list(spelt), n=1, cutoff=0.6)
    return f" Did you mean '{spelt[close[0]]}'?" if close else ""


_CONTAINERS = (tuple, list, frozenset, set, dict)


def check_choice(parameter: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise :class:`ConfigError` naming all three."""
    if allowed.__class__ in _CONTAINERS:  # the common case, without copying (called per bar by the engine)
        try:
            if value in allowed:
                return value  # type: ignore[return-value]
        except TypeError:  # an unhashable value tested against a set: take the long way
            pass
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(
            f"{parameter}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}."
            + did_you_mean(str(value), allowed)
        )
    return value  # type: ignore[return-value]


def _as_number(parameter: str, value: object, unit: str) -> float:
    """``value`` as a float (a number, or a string holding one: ``'10000'``); else ConfigError, with a hint
    for a string that holds a percent (``'0.01%'``: rates are fractions)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        hint = ""
        if isinstance(value, str) and value.strip().endswith("%"):
            hint = " Give a fraction, not a percent: 0.01 % is 0.0001."
        raise ConfigError(f"{parameter}={value!r} is not a number{f' ({unit})' if unit else ''}.{hint}") \
            from None


def check_positive(parameter: str, value: float, *, allow_zero: bool = False, unit: str = "") -> float:
    """Return ``value`` as float if it is > 0 (>= 0 with ``allow_zero``); else raise :class:`ConfigError`.
    A string holding a number (``'10000'``) is converted; any other string is refused."""
    if value.__class__ is float and (value > 0.0 or (allow_zero and value == 0.0)):
        return value  # the common case (called per bar by the engine); NaN and the rest take the long way
    number = _as_number(parameter, value, unit)
    ok = number >= 0 if allow_zero else number > 0
    if not ok or number != number:  # NaN fails too
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{parameter}={value!r} must be {bound}{f' ({unit})' if unit else ''}.")
    return number


def check_between(parameter: str, value: float, low: float, high: float, *, low_open: bool = False,
                  high_open: bool = False, unit: str = "", hint: str = "") -> float:
    """Return ``value`` as float if ``low <= value <= high`` (``<`` on a side marked open); else raise
    :class:`ConfigError` naming the parameter, the value and the range (``unit`` and ``hint``, a sentence such
    as "0.04 is 4 %", are added to the message). A string holding a number is converted, as in
    :func:`check_positive`."""
    number = _as_number(parameter, value, unit)
    above = low < number if low_open else low <= number
    if not (above and (number < high if high_open else number <= high)):  # NaN fails too
        span = f"{low:g} {'<' if low_open else '<='} {parameter} {'<' if high_open else '<='} {high:g}"
        raise ConfigError(f"{parameter}={value!r} is not allowed; allowed: {span}"
                          f"{f' ({unit})' if unit else ''}.{f' {hint}' if hint else ''}")
    return number
