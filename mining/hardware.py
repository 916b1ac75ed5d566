"""Mining hardware: the ASIC catalog (data in ``mining/hardware.toml``, with a source per model) and user
rigs.

A :class:`HardwareSpec` is one machine: hash rate (H/s), wall power (W) and the coin it mines. Catalog names
match case-, space-, ``-``/``_``-insensitively, with or without the "Antminer" prefix, so the CLI shorthand
``S19Pro``, ``S19 Pro`` and ``s19_pro`` are the same model. ETH GPU rigs are user-defined: call
:func:`custom_spec` or write the shorthand ``"500MH/1200W"`` (hash rate with unit GH/TH/PH -> BTC SHA-256,
MH -> ETH Ethash; then wall power in W).
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources

from minehedge.errors import ConfigError, DataError, did_you_mean
from mining.revenue import UNIT_HS, check_asset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Size of each hash-rate unit in H/s, and the coin each unit's algorithm mines here.
HASH_UNITS: dict[str, float] = {"MH/s": 1e6, "GH/s": 1e9, "TH/s": 1e12, "PH/s": 1e15}
UNIT_ASSET: dict[str, str] = {"MH/s": "ETH", "GH/s": "BTC", "TH/s": "BTC", "PH/s": "BTC"}

_SPEC_TOKEN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MH|GH|TH|PH)(?:/S)?\s*/\s*(\d+(?:\.\d+)?)\s*W\s*$",
                         re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One mining machine.

    name: canonical name (catalog key, or the user's label); display: human name; asset: "BTC" or "ETH";
    hashrate_hs: nominal hash rate in H/s; power_w: wall power in W at that hash rate; year: release year
    (0 when unknown); source: where the figures come from.
    """

    name: str
    display: str
    asset: str
    hashrate_hs: float
    power_w: float
    year: int = 0
    source: str = "user-defined"

    def hashrate_in_unit(self, asset: str | None = None) -> float:
        """Hash rate in the asset's revenue unit: TH/s for BTC, MH/s for ETH."""
        return self.hashrate_hs / UNIT_HS[asset or self.asset]

    @property
    def efficiency_j_per_th(self) -> float:
        """Joules per terahash (W per TH/s)."""
        return self.power_w / (self.hashrate_hs / 1e12)

    @property
    def energy_kwh_per_day(self) -> float:
        """Energy at full uptime, kWh per day (power_w x 24 / 1,000)."""
        return self.power_w * 24.0 / 1000.0


def normalise_model_name(name: str) -> str:
    """Lower-case, drop spaces/``-``/``_``/``.`` and a leading "antminer": ``"Antminer S19 Pro"`` ->
    ``"s19pro"``."""
    key = re.sub(r"[\s_\-.]+", "", str(name)).lower()
    return key.removeprefix("antminer")


@cache
def load_catalog() -> dict[str, HardwareSpec]:
    """The packaged catalog (``mining/hardware.toml``) as ``{canonical name: HardwareSpec}``."""
    text = resources.files("mining").joinpath("hardware.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    catalog: dict[str, HardwareSpec] = {}
    for name, entry in raw.get("models", {}).items():
        try:
            unit = entry["unit"]
            catalog[name] = HardwareSpec(
                name=name, display=entry["display"], asset=check_asset(entry["asset"]),
                hashrate_hs=float(entry["hashrate"]) * HASH_UNITS[unit], power_w=float(entry["power_w"]),
                year=int(entry["year"]), source=entry["source"],
            )
        except (KeyError, ValueError, ConfigError) as exc:
            raise DataError(f"mining/hardware.toml: model {name!r} is malformed ({exc!r}).") from exc
    return catalog


def known_models() -> list[str]:
    """Canonical catalog names, e.g. ``['S9', 'S17Pro', 'S19', 'S19Pro', 'S19XP', 'S21']``."""
    return list(load_catalog())


def get_model(name: str) -> HardwareSpec:
    """The catalog model called ``name`` (any accepted spelling); else :class:`ConfigError` listing the
    known."""
    catalog = load_catalog()
    by_key = {normalise_model_name(k): spec for k, spec in catalog.items()}
    spec = by_key.get(normalise_model_name(name))
    if spec is None:
        close = difflib.get_close_matches(normalise_model_name(name), list(by_key), n=1, cutoff=0.6)
        hint = f" Did you mean '{by_key[close[0]].name}'?" if close else did_you_mean(str(name), catalog)
        raise ConfigError(
            f"model={name!r} is not in the hardware catalog; known models: {', '.join(catalog)} "
            f"(or a custom spec such as '110TH/3250W' or '500MH/1200W').{hint}"
        )
    return spec


def custom_spec(name: str, hashrate: float, unit: str, power_w: float, year: int = 0,
                source: str = "user-defined") -> HardwareSpec:
    """A user-defined machine or rig: ``hashrate`` in ``unit`` (MH/s -> ETH; GH/s, TH/s, PH/s -> BTC), W."""
    unit_key = unit if unit in HASH_UNITS else f"{unit.upper().removesuffix('/S')}/s"
    if unit_key not in HASH_UNITS:
        raise ConfigError(f"unit={unit!r} is not a hash-rate unit; choose one of: {', '.join(HASH_UNITS)}.")
    if not hashrate > 0:
        raise ConfigError(f"hashrate={hashrate!r} must be > 0 ({unit_key}).")
    if not power_w > 0:
        raise ConfigError(f"power_w={power_w!r} must be > 0 (W).")
    return HardwareSpec(name=name, display=name, asset=UNIT_ASSET[unit_key],
                        hashrate_hs=float(hashrate) * HASH_UNITS[unit_key], power_w=float(power_w),
                        year=int(year), source=source)


def resolve_spec(model: str | HardwareSpec) -> HardwareSpec:
    """A :class:`HardwareSpec` from a spec, a catalog name, or a custom token like ``"500MH/1200W"``."""
    if isinstance(model, HardwareSpec):
        return model
    match = _SPEC_TOKEN.match(str(model))
    if match:
        value, prefix, watts = match.groups()
        return custom_spec(str(model).strip(), float(value), f"{prefix.upper()}/s", float(watts))
    return get_model(model)
