"""Policy registry: name -> strategy class, and each policy's parameters with defaults and units.

The CLI (``policies``, ``--set``, ``--grid``) and the README's policy table read this; the specs are the same
objects the classes derive their backtrader ``params`` from, so the three can never disagree.
"""

from __future__ import annotations

from minehedge.config import ParamSpec
from minehedge.errors import check_choice
from strategies.base import MinerStrategy
from strategies.policies import POLICIES


def policy_class(name: str) -> type[MinerStrategy]:
    """The strategy class of policy ``name`` (ConfigError with did-you-mean when unknown)."""
    return POLICIES[check_choice("policy", name, POLICIES)]


def policy_specs() -> dict[str, list[ParamSpec]]:
    """Every policy's parameters, in declaration order."""
    return {name: list(cls.specs) for name, cls in POLICIES.items()}


def policy_doc(name: str) -> str:
    """The first paragraph of the policy's docstring: its rule, in words."""
    doc = (policy_class(name).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())
