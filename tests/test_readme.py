"""The README stays true: its set-up commands are CI's, and it documents every policy and venue."""

from __future__ import annotations

import re
from pathlib import Path

from brokers.venues import available_venues
from strategies.registry import policy_specs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def test_readme_setup_commands_are_what_ci_runs():
    block = README.split("## Set-up on a fresh machine", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ['python -m pip install -e ".[dev,dask]"', "python -m pytest"]
    ci_lines = [line.strip() for line in CI.splitlines()]
    for command in commands:
        assert command in ci_lines, command


def test_readme_documents_every_policy_and_venue():
    table = README.split("| policy | rule |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", " ".join(row.split("|")[1] for row in table.splitlines()[2:])))
    assert documented == set(policy_specs())
    for venue in available_venues():
        assert f"| `{venue}` |" in README, venue


def test_readme_image_exists():
    for path in re.findall(r"\]\((docs/[^)]+\.png)\)", README):
        assert (ROOT / path).stat().st_size > 10_000, path
