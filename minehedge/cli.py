"""The command line (``python run_backtest.py`` in the repository; ``minehedge`` or ``python -m minehedge``
once installed): argument parsing and printing. The work happens in :mod:`minehedge.api` (single runs,
comparisons, policy registry, data helpers) and :mod:`minehedge.sweep` (sweeps).

Exit codes: 0 success; 1 a run failed (a bug or an unexpected error: its traceback is printed), or a sweep
finished with failed configurations, or ``data validate`` found errors; 2 a usage, configuration or data
problem the user can fix (one message on stderr, no traceback); 130 interrupted (Ctrl-C); 141 stdout is a
pipe whose reader closed it (``... | head``), which ends the command quietly.

Output files are never half-written: ``run`` and ``compare`` build their report in a temporary sibling
folder that replaces ``--out`` only when complete; ``sweep`` replaces each file atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import glob
import json
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from minehedge.config import (
    GLOBAL_SPECS,
    MAX_SWEEP_CONFIGS,
    WINDOW_GROUPS,
    WINDOW_PRESETS,
    ParamSpec,
    check_param_name,
    check_policy,
    clip_windows,
    load_config_file,
    merge,
    normalise,
    parse_assignment,
    parse_rank_by,
    resolve,
    spec_map,
    validate_params,
)
from minehedge.errors import ConfigError, MinehedgeError, did_you_mean

PROG = "run_backtest.py"
#: The program name of each way to start the command line (``sys.argv[0]``'s file name -> the name messages
#: use).
_PROGRAM_NAMES = {"__main__.py": "python -m minehedge", "minehedge": "minehedge",
                  "minehedge.exe": "minehedge", "minehedge-script.py": "minehedge"}
COMMANDS = ("run", "sweep", "compare", "data", "policies")
DATA_ACTIONS = ("list", "validate", "download", "hashprice", "breakeven")
DEFAULT_SWEEP_OUT = "reports/sweep"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a tool that a closed pipe ended


class UsageError(ConfigError):
    """Bad command line (argparse's complaint, with usage and did-you-mean)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and suggests the closest command.

    An unrecognized flag is reported by the (sub)command it was given to, with that command's usage line: a
    flag of another command names the commands that have it, a typo gets "did you mean" among the command's
    own flags."""

    def __init__(self, *args: Any, suggest: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --work must not silently mean --workers
        super().__init__(*args, **kwargs)
        self.suggest = tuple(suggest)
        # the top-level parser's: "run", "data list", ... -> its parser
        self.commands: dict[str, _Parser] = {}

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """argparse's, but a foreign option (another command's) that takes a value is set aside with its
        value, so that the value never becomes a positional (a POLICY, a FILE, the command) and the error
        names the option with its value (``policies --venue bitmex static_hedge``)."""
        args = list(sys.argv[1:] if args is None else args)
        self._given = args  # for error(): what was typed when no command was found
        kept, foreign = _set_aside_foreign_options(args, self)
        ns, extras = super().parse_known_args(kept, namespace)
        return ns, foreign + extras

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse would report them with the top-level usage; the command's parser does
            self.commands.get(_command_of(ns), self).error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def error(self, message: str):  # type: ignore[override]
        if message.endswith("required: COMMAND"):  # `--verson` alone: argparse says only that no command came
            typed = [arg for arg in getattr(self, "_given", ()) if arg.startswith("-")
                     and arg.split("=")[0] not in self._option_string_actions]
            if typed:
                message = f"unrecognized arguments: {' '.join(typed)}"
        choice = re.search(r"invalid choice: (['\"]?)(.+?)\1 \(", message)
        unknown = re.search(r"unrecognized arguments: (--[\w-]+)", message)
        if choice and self.suggest:
            message += "." + did_you_mean(choice.group(2), self.suggest)
        elif unknown:
            message += "." + _unknown_flag_hint(unknown.group(1), self.prog.removeprefix(_prog).strip())
        raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")


#: The program name of the parser :func:`build_parser` made last (``run_backtest.py``, ``minehedge``, ...).
_prog = PROG
#: The long options of each command ("run", "sweep", "compare", "policies", "data list", ...).
_OPTIONS: dict[str, set[str]] = {}
#: The settings keys (argparse dests, which are the config-file keys) of each command.
_KEYS: dict[str, set[str]] = {}


#: The long options that take a value in some command (``--venue``, ``--set``, ...; not ``--json``).
_VALUE_OPTIONS: set[str] = set()


def _set_aside_foreign_options(args: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str],
                                                                                              list[str]]:
    """``args`` split into what ``parser`` parses and the options of other commands that take a value, each
    with its value (the next argument, unless it looks like an option). A parser with sub-commands reads
    only the arguments before its first positional, the sub-command: the rest is the sub-command's."""
    own = parser._option_string_actions
    has_commands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    kept: list[str] = []
    foreign: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or (has_commands and not arg.startswith("-")):
            return kept + list(args[i:]), foreign
        if arg in _VALUE_OPTIONS and arg not in own:
            value = args[i + 1:i + 2]
            takes = bool(value) and not (value[0].startswith("-") and parser._negative_number_matcher.match(
                value[0]) is None)
            foreign += [arg, *value] if takes else [arg]
            i += 2 if takes else 1
            continue
        kept.append(arg)
        i += 1
    return kept, foreign


def _command_of(ns: argparse.Namespace) -> str:
    """``"run"``, ``"data list"``, ...: the command a parsed namespace belongs to."""
    return " ".join(str(part) for part in (getattr(ns, "command", None), getattr(ns, "action", None)) if part)


def _commands_text(commands: Sequence[str]) -> str:
    """Commands as text (`run`, `sweep` and `data`): the data actions are `data` when all of them are
    listed."""
    names = list(commands)
    data = [f"data {action}" for action in DATA_ACTIONS]
    if all(name in names for name in data):
        names = [name for name in names if name not in data[1:]]
        names[names.index(data[0])] = "data"
    return _and_list([f"`{name}`" for name in names])


def _and_list(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _unknown_flag_hint(flag: str, command: str) -> str:
    """What to say about ``flag``, which ``command`` does not take."""
    own = _OPTIONS.get(command)
    if flag == "--version" and command:  # the program's option, not a command's
        return f" --version is an option of the program: {_prog} --version."
    if own is None:  # the top-level parser: no command chosen yet
        owners = [name for name, options in _OPTIONS.items() if flag in options]
        if owners:
            return f" {flag} is an option of {_commands_text(owners)}: give it after the command."
        return did_you_mean(flag, sorted(set().union(*_OPTIONS.values(), {"--version", "--help"})))
    if flag in own:  # `data --json list`: an option of the action, given before it
        return f" Give {flag} after `{command}`."
    owners = [name for name, options in _OPTIONS.items() if flag in options]
    if owners:
        return f" {flag} is an option of {_commands_text(owners)}, not of `{command}`."
    close = did_you_mean(flag, sorted(own))
    if close:
        return close
    # a misspelt option of another command (`policies --venu bitmex`): name it and where it belongs
    others = sorted(set().union(*_OPTIONS.values()) - own)
    match = difflib.get_close_matches(flag, others, n=1, cutoff=0.6)
    if not match:
        return ""
    owners = [name for name, options in _OPTIONS.items() if match[0] in options]
    return f" Did you mean '{match[0]}'? It is an option of {_commands_text(owners)}, not of `{command}`."


# ------------------------------------------------------------------------------------------ the parser


#: The market flags most commands take: (flag, add_argument keywords).
_MARKET_FLAGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("--data-dir", {"dest": "data_dir", "metavar": "DIR",
                    "help": "data folder holding MANIFEST.csv (else $MINEHEDGE_DATA_DIR, "
                            "else download and cache)"}),
    ("--asset", {"help": "BTC or ETH (default BTC)"}),
    ("--timeframe", {"help": "1d, 4h or 1h (default 1d)"}),
    ("--start", {"metavar": "YYYY-MM-DD", "help": "first UTC day (default: first in the data)"}),
    ("--end", {"metavar": "YYYY-MM-DD", "help": "last UTC day (default: last in the data)"}),
    ("--venue", {"help": "venue profile of the futures leg (default: the policy's)"}),
    ("--data-venue", {"dest": "data_venue", "metavar": "NAME",
                      "help": "exchange whose price file the run uses, a venue of MANIFEST.csv (e.g. "
                              "binance; default: the file covering the range longest)"}),
    ("--seed", {"help": "random seed where randomness exists (default 0)"}),
)
#: ``--start``'s help in the commands that run backtests, whose default start is the fleet's
#: (api.load_market).
_RUN_START_HELP = ("first UTC day (default: the fleet's first deployment, or the data's first bar at the "
                   "timeframe when that is later)")
#: Market flags a data action has no use for, so it refuses them (naming the commands that take them) rather
#: than ignore them: no data action has a futures leg or anything random; hashprice and break-even are daily
#: network series; ``list`` shows the data folder and the cache whatever the range; ``download`` fills the
#: cache, never the data folder.
_DATA_OMITS = {
    "list": ("--asset", "--timeframe", "--start", "--end", "--venue", "--data-venue", "--seed"),
    "validate": ("--venue", "--data-venue", "--seed"),
    "download": ("--data-dir", "--venue", "--data-venue", "--seed"),
    "hashprice": ("--timeframe", "--venue", "--data-venue", "--seed"),
    "breakeven": ("--timeframe", "--venue", "--data-venue", "--seed"),
}


def _common(parser: argparse.ArgumentParser, *, market: bool = True, omit: Sequence[str] = (),
            helps: Mapping[str, str] | None = None) -> None:
    """The flags every command takes, and the market flags (but ``omit``); ``helps``: flag -> its help
    here."""
    s = argparse.SUPPRESS  # absent flags stay absent, so the config file's values survive
    parser.add_argument("--config", metavar="FILE.toml", default=s,
                        help="TOML file with the same keys as the flags")
    parser.add_argument("--json", action="store_true", default=s,
                        help="print machine-readable JSON on stdout")
    if not market:
        return
    for flag, keywords in _MARKET_FLAGS:
        if flag not in omit:
            own_help = (helps or {}).get(flag)
            parser.add_argument(flag, default=s, **(keywords | {"help": own_help} if own_help else keywords))


def _window_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", "--windows", dest="windows", action="append", default=argparse.SUPPRESS,
                        metavar="NAME=START:END",
                        help="also report the run's figures within these UTC days, END included "
                             f"(repeatable); or a preset: {', '.join(WINDOW_PRESETS)}, or "
                             f"{', '.join(WINDOW_GROUPS)} for all of them")


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    parser.add_argument("--policy", default=s, help="hedge policy (default static_hedge; see `policies`)")
    parser.add_argument("--set", dest="set", action="append", metavar="KEY=VALUE", default=s,
                        help="set a policy parameter (repeatable), e.g. --set hedge_ratio=0.5")


def _version_text() -> str:
    """``minehedge X.Y.Z (backtrader A, pandas B, Python C)``: what a bug report needs to reproduce a run (a
    package installed without its metadata shows as ``unknown``)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import minehedge

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    return (f"minehedge {minehedge.__version__} (backtrader {of('backtrader')}, pandas {of('pandas')}, "
            f"Python {platform.python_version()})")


class _VersionAction(argparse.Action):
    """``--version``: the text is built when asked for, not on every start (it reads package metadata)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(_version_text())  # on stdout, as argparse's own version action prints
        parser.exit()


def build_parser(prog: str = PROG) -> _Parser:
    global _prog
    _prog = prog
    s = argparse.SUPPRESS
    parser = _Parser(prog=prog, description="Backtest crypto miners who hedge or lever up with futures.",
                     suggest=COMMANDS)
    parser.add_argument("--version", action=_VersionAction,
                        help="print minehedge's version and the versions it runs on, and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="one backtest: print the summary, write the report folder")
    _common(run, helps={"--start": _RUN_START_HELP})
    _policy_flags(run)
    run.add_argument("--out", default=s, metavar="DIR",
                     help="report folder (summary.json, events.csv, charts...)")
    _window_flag(run)

    sweep = commands.add_parser("sweep",
                                help="a grid of backtests in parallel -> results.csv, top.csv, heatmaps")
    _common(sweep, helps={"--start": _RUN_START_HELP})
    _policy_flags(sweep)
    sweep.add_argument("--grid", action="append", metavar="KEY=SPEC", default=s,
                       help="swept parameter (repeatable): start:stop:step (stop included) or a,b,c")
    sweep.add_argument("--workers", default=s, metavar="N",
                       help="local worker processes (default: one per core)")
    sweep.add_argument("--scheduler", default=s, metavar="ADDRESS",
                       help="existing Dask scheduler, tcp://HOST:8786")
    sweep.add_argument("--dask-local", dest="dask_local", default=s, metavar="N",
                       help="start a local Dask cluster with N worker processes")
    sweep.add_argument("--rank-by", dest="rank_by", default=s, metavar="METRIC[:asc|:desc]",
                       help="metric ranking the top configurations (default sharpe)")
    sweep.add_argument("--top", default=s, metavar="N", help="how many top configurations (default 10)")
    sweep.add_argument("--max-configs", dest="max_configs", default=s, metavar="N",
                       help=f"refuse a grid of more configurations than N (default {MAX_SWEEP_CONFIGS:,})")
    sweep.add_argument("--out", default=s, metavar="DIR", help=f"sweep folder (default {DEFAULT_SWEEP_OUT})")

    compare = commands.add_parser("compare", help="several policies on the same market, fleet and period")
    _common(compare, helps={"--start": _RUN_START_HELP})
    compare.add_argument("--policies", default=s, metavar="A,B,...",
                         help="policies to compare (default: all)")
    compare.add_argument("--set", dest="set", action="append", metavar="KEY=VALUE", default=s,
                         help="set a parameter in every compared policy that has it (repeatable)")
    compare.add_argument("--out", default=s, metavar="DIR",
                         help="folder for comparison.csv, charts, summary.md")
    _window_flag(compare)

    data = commands.add_parser("data", help="list, validate, download data; hashprice and break-even series")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    data.suggest = DATA_ACTIONS
    helps = {
        "list": "what the data folder and the cache hold",
        "validate": "check a file, or the data of a range, and print the findings",
        "download": "download a range into the cache (needs network)",
        "hashprice": "hashprice per day (USD per TH/s per day; ETH: per MH/s)",
        "breakeven": "the fleet's break-even coin price per day",
    }
    for name in DATA_ACTIONS:
        sub = actions.add_parser(name, help=helps[name])
        _common(sub, omit=_DATA_OMITS.get(name, ()))
        if name == "validate":
            sub.add_argument("file", nargs="?", default=s, help="a CSV file (default: the data of the range)")
        if name == "breakeven":
            _policy_flags(sub)

    policies = commands.add_parser("policies", help="every policy with its parameters, defaults and units")
    policies.add_argument("names", nargs="*", metavar="POLICY",
                          help="show only these policies (default: all)")
    _common(policies, market=False)
    parser.commands = {"run": run, "sweep": sweep, "compare": compare, "policies": policies,
                       **{f"data {name}": sub for name, sub in actions.choices.items()}}
    for name, sub in parser.commands.items():
        _OPTIONS[name] = {o for action in sub._actions for o in action.option_strings if o.startswith("--")}
        _KEYS[name] = {action.dest for action in sub._actions if action.dest != "help"}
        _VALUE_OPTIONS.update(o for action in sub._actions if action.nargs != 0
                              for o in action.option_strings if o.startswith("--"))
    return parser


# ------------------------------------------------------------------------------------------ settings


def _settings(ns: argparse.Namespace) -> dict[str, Any]:
    """Config file, then flags over it, checked; plus defaults and the environment."""
    given = {k: v for k, v in vars(ns).items() if k not in ("command", "action", "config", "file", "names")}
    if "set" in given:
        pairs = [parse_assignment(text, flag="--set") for text in given["set"]]
        given["set"] = dict(pairs)  # a key repeated on the command line: the last one wins
    if "grid" in given:
        grid: dict[str, str] = {}
        for text in given["grid"]:
            key, spec = parse_assignment(text, flag="--grid")
            if key in grid:
                raise ConfigError(f"--grid {key}=... is given twice; give each swept parameter once.")
            grid[key] = spec
        given["grid"] = grid
    flags = normalise(given, source="command line")
    file_layer = load_config_file(ns.config) if getattr(ns, "config", None) else {}
    _check_file_keys(file_layer, _command_of(ns), ns.config if file_layer else "")
    return resolve(merge(file_layer, flags), os.environ)


def _check_file_keys(file_layer: Mapping[str, Any], command: str, source: str) -> None:
    """A config file's keys must be ones ``command`` uses: a sweep's ``[grid]`` given to ``run`` would
    otherwise be ignored without a word (the flags cannot be: each command's parser has only its own)."""
    foreign = [key for key in file_layer if key not in _KEYS.get(command, file_layer)]
    if not foreign:
        return
    by_owners: dict[str, list[str]] = {}
    for key in foreign:
        owners = [name for name, keys in _KEYS.items() if key in keys]
        by_owners.setdefault(_commands_text(owners) if owners else "no command", []).append(repr(key))
    parts = [f"{_and_list(keys)} ({'keys' if len(keys) > 1 else 'a key'} of {owners})"
             for owners, keys in by_owners.items()]
    them = "it" if len(foreign) == 1 else "them"
    [owners] = by_owners if len(by_owners) == 1 else [""]
    elsewhere = f", or use the file with {owners}" if owners.count("`") == 2 else ""
    raise ConfigError(f"{source}: `{command}` does not use {'; '.join(parts)}; remove {them} from the file"
                      f"{elsewhere}.")


def _api():
    """The orchestration module, imported only when a command needs it (keeps --help and errors fast)."""
    from minehedge import api

    return api


def _registry() -> dict[str, list[ParamSpec]]:
    return _api().policy_specs()


def _owner(policy: str) -> str:
    return f"policy '{policy}'"


def _base_config(settings: Mapping[str, Any], policy: str | None,
                 params: Mapping[str, Any]) -> dict[str, Any]:
    """The run configuration handed to :mod:`minehedge.api` (and hashed by sweeps); ``data_venue`` only when
    given, so a sweep's configurations without it hash as before."""
    named = {} if settings.get("data_venue") is None else {"data_venue": settings["data_venue"]}
    return {
        "asset": settings["asset"],
        "timeframe": settings["timeframe"],
        "start": settings["start"],
        "end": settings["end"],
        "venue": settings["venue"],
        "seed": settings["seed"],
        "data_dir": settings["data_dir"],
        "policy": policy,
        "params": dict(params),
        **named,
    }


def _with_globals(settings: Mapping[str, Any], values: Mapping[str, Any],
                specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Policy values with the policy's ``asset`` parameter (if it has one) taken from ``--asset``, and its
    ``venue`` from ``--venue`` when it is one of the policy's venues (``--set venue`` must agree)."""
    names = {spec.name for spec in specs}
    values = dict(values)
    venue = settings.get("venue")
    venues = next((spec.choices or () for spec in specs if spec.name == "venue"), ())
    if venue is not None and venue in venues:  # compare: a policy that cannot trade it keeps its own
        given = values.get("venue")
        if given is not None and given != venue:
            raise ConfigError(f"--set venue={given!r} contradicts --venue {venue}; give one of them.")
        values["venue"] = venue
    if "asset" not in names:
        return values
    asset = str(settings["asset"]).upper()
    given = values.get("asset")
    if given is not None and str(given).upper() != asset:
        raise ConfigError(f"--set asset={given!r} contradicts --asset {asset}; use --asset alone.")
    return {**values, "asset": asset}


def _check_venue(settings: Mapping[str, Any], policies: Sequence[str],
                 registry: Mapping[str, Sequence[ParamSpec]]) -> None:
    """``--venue`` must name a venue one of ``policies`` can trade (it is ignored by policies without
    futures)."""
    venue = settings.get("venue")
    if venue is None:
        return
    specs = [spec for policy in policies for spec in registry[policy] if spec.name == "venue"]
    if not specs:
        raise ConfigError(f"--venue {venue}: {', '.join(policies)} trade(s) no futures; drop --venue.")
    allowed = sorted({choice for spec in specs for choice in (spec.choices or ())})
    if allowed and venue not in allowed:
        raise ConfigError(f"--venue {venue!r} is not allowed; choose one of: {', '.join(allowed)}."
                          + did_you_mean(venue, allowed))


def _policy_config(settings: Mapping[str, Any], *, together: bool = True, owner: str = "") -> dict[str, Any]:
    """The run config of ``settings``' policy; with ``together``, its rules across parameters and the venue's
    are checked too (``api.check_config``), before any data load. ``data breakeven`` reads only the fleet's,
    and its errors name the command (``owner``), not a policy it does not run."""
    registry = _registry()
    policy = check_policy(settings["policy"], registry)
    _check_venue(settings, [policy], registry)
    params = validate_params(_with_globals(settings, settings["set"], registry[policy]), registry[policy],
                             owner=owner or _owner(policy))
    config = _base_config(settings, policy, params)
    if together:
        _api().check_config(config)
    return config


# ------------------------------------------------------------------------------------------ commands


def cmd_run(ns: argparse.Namespace, settings: dict[str, Any]) -> int:
    config = _policy_config(settings)
    clip_windows(settings["windows"], settings["start"], settings["end"])  # outside --start/--end: refused
    if settings["out"]:
        check_output_dir(settings["out"])  # before the run, which may take a while
    outcome = _api().run_backtest(config, checked=True, windows=settings["windows"])  # config: checked
    report_run_messages({config["policy"]: outcome}, named=False)
    if settings["out"]:
        with staged_output_dir(settings["out"]) as folder:
            outcome.write_report(folder)
        _note(f"report written to {settings['out']}")
    windows = [] if outcome.windows is None else outcome.windows.to_dict("records")
    loans = outcome.loans
    if settings["json"]:
        _print_json({**outcome.summary, **({"windows": windows} if windows else {}),
                     **({"loans": loans} if loans else {})})
    else:
        print(format_table([{"key": k, "value": v} for k, v in outcome.summary.items()], ["key", "value"],
                           header=False))
        if windows:  # metrics down, windows across
            keys = _window_keys()
            print(f"\nwindows: {'; '.join(_window_title(row) for row in windows)}")
            print(format_table([{"metric": k, **{row["window"]: row[k] for row in windows}} for k in keys],
                               ["metric", *[row["window"] for row in windows]]))
        _print_loans({"": loans})
    return EXIT_OK


def _print_loans(loans: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """The loans table (``analyzers.loan_stats.loans_table``: metrics down, loans across), after a blank line
    and the heading ``loans``; nothing when no run had a loan. ``loans``: policy name ("" for one run) -> its
    ``RunResult.loans``."""
    if not any(loans.values()):
        return
    from analyzers.loan_stats import loans_table

    table, titles = loans_table(loans)
    print("\nloans")
    print(format_table(table, ["metric", *titles]))


def _window_keys() -> tuple[str, ...]:
    from analyzers.windows import TABLE_KEYS

    return TABLE_KEYS


def _window_title(row: Mapping[str, Any]) -> str:
    from analyzers.windows import window_title

    return window_title(row)


def report_run_messages(outcomes: Mapping[str, Any], *, named: bool) -> None:
    """On stderr: the run notes, then the warnings, of each policy's run (``{policy: RunOutcome}``), each text
    once (a note that is also a warning, as an event date outside the run, only as the warning); ``named``
    (compare): each names the policies whose runs gave it, ``note (static_hedge and dynamic_hedge): ...``."""
    for kind, label in (("notes", "note"), ("warnings", "warning")):
        owners: dict[str, list[str]] = {}
        for policy, outcome in outcomes.items():
            for text in getattr(outcome, kind):
                if kind == "notes" and text in outcome.warnings:
                    continue
                names = owners.setdefault(text, [])
                if policy not in names:
                    names.append(policy)
        for text, names in owners.items():
            _note(f"{label} ({_and_list(names)}): {text}" if named else f"{label}: {text}")


def sweep_grid(settings: Mapping[str, Any], specs: Sequence[ParamSpec], policy: str) -> dict[str, list[Any]]:
    """The ``grid`` setting typed by the policy's specs (``seed`` by its global spec); checked, no
    duplicates."""
    by_name = spec_map(specs)
    typed: dict[str, list[Any]] = {}
    for key, values in settings["grid"].items():
        if key == "asset":
            raise ConfigError("--grid asset: a sweep mines one coin; run one sweep per asset with --asset.")
        if key == "seed":
            spec = GLOBAL_SPECS["seed"]
        else:
            known = {**by_name, "seed": GLOBAL_SPECS["seed"]}
            spec = check_param_name(key, known, owner=_owner(policy))
        converted = [spec.coerce(v, context=f"--grid {key}: {_owner(policy)}:") for v in values]
        duplicates = sorted({repr(v) for v in converted if converted.count(v) > 1})
        if duplicates:
            raise ConfigError(f"--grid {key}: value {duplicates[0]} appears twice once typed "
                              f"as {spec.type_name}.")
        typed[key] = converted
    return typed


def _check_grid_size(grid: Mapping[str, Sequence[Any]], cap: int) -> None:
    """A grid of more than ``cap`` configurations is refused before anything runs (``--max-configs``)."""
    count = math.prod(len(values) for values in grid.values())
    if count > cap:
        sizes = " x ".join(f"{key}: {len(values):,}" for key, values in grid.items())
        raise ConfigError(f"the grid has {count:,} configurations ({sizes}), more than max_configs={cap:,}; "
                          "narrow it (fewer values, a coarser step), or raise the cap with --max-configs "
                          f"{count} if you "
                          "mean to run them all.")


def _rank_metric(rank_by: str, summary_keys: Sequence[str],
                 grid: Mapping[str, Sequence[Any]]) -> tuple[str, Any]:
    """``(metric, descending)`` of ``--rank-by``, checked before the sweep runs: a Summary key or swept
    parameter whose values are numbers (or booleans)."""
    from analyzers.summary_keys import NOT_NUMERIC

    metric, descending = parse_rank_by(rank_by)
    text = {key for key, values in grid.items()
            if any(value is not None and not isinstance(value, (int, float)) for value in values)}
    text |= NOT_NUMERIC & set(summary_keys)
    rankable = [key for key in dict.fromkeys([*summary_keys, *grid, "seconds"]) if key not in text]
    if metric in text:
        raise ConfigError(f"rank_by={metric!r} is not a number (a date or a name), so it cannot rank "
                          f"configurations; allowed: {', '.join(rankable)}.")
    if metric not in rankable:
        raise ConfigError(
            f"rank_by={metric!r} is not a Summary key or swept parameter; allowed: {', '.join(rankable)}."
            + did_you_mean(metric, rankable)
        )
    return metric, descending


def cmd_sweep(ns: argparse.Namespace, settings: dict[str, Any]) -> int:
    from minehedge import sweep

    api = _api()
    registry = api.policy_specs()
    policy = check_policy(settings["policy"], registry)
    if not settings["grid"]:
        raise ConfigError("sweep needs at least one --grid KEY=SPEC (for example --grid "
                          "hedge_ratio=0:1:0.25).")
    _check_venue(settings, [policy], registry)
    if settings["venue"] is not None and "venue" in settings["grid"]:
        raise ConfigError(f"--venue {settings['venue']} and --grid venue=...: give one of them.")
    fixed = validate_params(_with_globals(settings, settings["set"], registry[policy]), registry[policy],
                            owner=_owner(policy))
    grid = sweep_grid(settings, registry[policy], policy)
    _check_grid_size(grid, settings["max_configs"])
    metric, descending = _rank_metric(settings["rank_by"], api.SUMMARY_KEYS, grid)
    points = sweep.expand_grid(_base_config(settings, policy, fixed), grid)
    _check_points(api, points)
    out = Path(settings["out"] or DEFAULT_SWEEP_OUT)
    check_sweep_dir(out)
    sweep.check_writable(out)  # before the data load and a --dask-local cluster, which take a while
    executor = sweep.make_executor(settings["workers"], settings["scheduler"], settings["dask_local"])
    _note(f"sweep of {len(points)} configurations ({' x '.join(f'{k}: {len(v)}' for k, v in grid.items())})")

    # loaded and validated once for the whole sweep: one market per funding venue or default start swept
    shared = api.load_shared([point.config for point in points])
    markets = getattr(shared, "by_key", {}).values()  # api.Markets
    for text in dict.fromkeys(market.assumptions.get("start") for market in markets):
        if text:  # a default start moved to the data's first bar, as run and compare say
            _note(f"note: {text}")
    for text in api.sweep_price_notes([point.config for point in points], shared):
        _note(f"note: {text}")
    for text in api.sweep_funding_warnings([point.config for point in points], shared):
        _note(f"warning: {text}")
    for text in api.sweep_price_warnings([point.config for point in points], shared):
        _note(f"warning: {text}")
    with executor:
        report = sweep.run_sweep(
            points, api.run_summary, shared, data_fingerprint=shared.fingerprint_of, out_dir=out,
            executor=executor, progress=not settings["json"], log=_note,
        )
    frame = sweep.read_results(report.results_path, report.hashes)
    ranked = sweep.rank_results(frame, metric, top=settings["top"], descending=descending)
    top_path = sweep.write_top(out, report.results_path, list(ranked["config_hash"]))
    charts: list[Path] = []
    if len(grid) == 2:
        x, y = list(grid)
        charts = sweep.write_heatmaps(out, frame, x, y, [metric, *sweep.HEATMAP_METRICS], log=_note)
    else:  # no heatmap: an earlier two-parameter sweep's must not look current
        sweep.remove_stale_heatmaps(out, [], log=_note)
    report_sweep_failures(report.failed)

    columns = [*grid, metric,
               *[k for k in ("max_drawdown_pct", "liquidations", "total_return_pct") if k != metric]]
    columns = [c for c in dict.fromkeys(columns) if c in ranked.columns]
    if settings["json"]:
        _print_json({
            "results": str(report.results_path), "top_file": str(top_path),
            "charts": [str(c) for c in charts],
            "configurations": report.total, "skipped": report.skipped, "ran": report.ran,
            "failed": len(report.failed), "rank_by": metric,
            "top": ranked.to_dict(orient="records"),
        })
    else:
        print(f"results: {report.results_path} ({report.total} configurations: {report.skipped} skipped, "
              f"{report.ran} run, {len(report.failed)} failed)")
        if ranked.empty:  # every configuration of the grid failed: its top.csv has a header only
            print(f"nothing to rank by {metric}: all {report.total} configurations failed ({top_path} has no "
                  "rows)")
        else:
            print(f"top {len(ranked)} by {metric}: {top_path}")
            print(format_table(ranked[columns].to_dict(orient="records"), columns))
        for chart in charts:
            print(f"chart: {chart}")
    return EXIT_FAILED if report.failed else EXIT_OK


def _check_points(api: Any, points: Sequence[Any]) -> None:
    """Every configuration of a sweep is checked against its policy's and venue's rules (``api.check_config``)
    before the data load. When all break them, the first's error; when some do, a note with how many and the
    first one's swept values and error: those configurations are recorded as failed, the rest run."""
    invalid = []
    for point in points:
        try:
            api.check_config(point.config)
        except ConfigError as exc:
            invalid.append((point, exc))
    if not invalid:
        return
    point, error = invalid[0]
    if len(invalid) == len(points):
        raise error
    swept = ", ".join(f"{key}={value}" for key, value in point.swept.items())
    _note(f"{len(invalid)} of the grid's {len(points)} configurations break the policy's or the venue's "
          f"rules and will be recorded as failed (the first: {swept}: {error})")


def report_sweep_failures(failed: Sequence[Mapping[str, Any]]) -> None:
    """On stderr: one line per failed configuration, then what to do about them.

    A configuration or data error (``user_error``: ConfigError, DataError) fails the same way on every re-run,
    so it gets neither a traceback nor the advice to re-run. A crash or a dead worker may not: the first one's
    traceback is shown, and a re-run retries it.
    """
    for failure in failed:
        _note(f"failed: {failure['swept']}: {failure['error']}")
    crashes = [failure for failure in failed if not failure.get("user_error")]
    if crashes:
        _note(f"first failure's traceback:\n{crashes[0]['traceback'].rstrip()}")
        _note(f"{len(crashes)} configurations failed; re-run the same command to retry them.")
    if len(failed) > len(crashes):
        _note(f"{len(failed) - len(crashes)} configurations failed with a configuration or data error; fix "
              "the configuration (a re-run fails the same way).")


def compare_configs(settings: Mapping[str, Any], registry: Mapping[str, Sequence[ParamSpec]]) -> list[dict]:
    """One configuration per policy: same market and period; each ``--set`` applied where the policy has
    it."""
    policies = settings["policies"] or sorted(registry)
    for policy in policies:
        check_policy(policy, registry)
    _check_venue(settings, policies, registry)
    names = {spec.name for policy in policies for spec in registry[policy]}
    for key in settings["set"]:
        if key not in names:
            raise ConfigError(
                f"--set {key}=...: none of the compared policies ({', '.join(policies)}) has "
                f"a parameter {key!r}."
                + did_you_mean(key, sorted(names))
            )
    configs = []
    for policy in policies:
        own = {spec.name for spec in registry[policy]}
        values = _with_globals(settings, {k: v for k, v in settings["set"].items() if k in own},
                               registry[policy])
        configs.append(_base_config(settings, policy,
                                    validate_params(values, registry[policy], owner=_owner(policy))))
        _api().check_config(configs[-1], name_policy=True)  # the rule may be one of its defaults, not a --set
    return configs


def cmd_compare(ns: argparse.Namespace, settings: dict[str, Any]) -> int:
    api = _api()
    configs = compare_configs(settings, api.policy_specs())
    clip_windows(settings["windows"], settings["start"], settings["end"])  # outside --start/--end: refused
    windows = settings["windows"]
    if settings["out"]:  # compare_configs checked each configuration
        with staged_output_dir(settings["out"]) as folder:
            comparison = api.compare_runs(configs, folder, checked=True, windows=windows)
    else:
        comparison = api.compare_runs(configs, None, checked=True, windows=windows)
    report_run_messages(comparison.outcomes, named=True)
    if settings["out"]:
        _note(f"comparison written to {settings['out']}")
    rows = comparison.rows
    by_window = ({} if comparison.windows is None
                 else {name: group.to_dict("records")
                       for name, group in comparison.windows.groupby("window", sort=False)})
    loans = {name: outcome.loans for name, outcome in comparison.outcomes.items()}
    if settings["json"]:  # a list of rows; with windows (loans) each row gets its policy's windows (loans)
        _print_json([{**row,
                      **({"windows": comparison.outcomes[row["policy"]].windows.to_dict("records")}
                         if by_window else {}),
                      **({"loans": loans[row["policy"]]} if any(loans.values()) else {})} for row in rows])
    else:  # metrics down, policies across: reads like the summary.md table
        keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "policy"]
        table = [{"metric": k, **{row["policy"]: row.get(k) for row in rows}} for k in keys]
        print(format_table(table, ["metric", *[row["policy"] for row in rows]]))
        for window_rows in by_window.values():  # then one table per window, in the same layout
            print(f"\nwindow {_window_title(window_rows[0])}")
            table = [{"metric": k, **{row["policy"]: row[k] for row in window_rows}} for k in _window_keys()]
            print(format_table(table, ["metric", *[row["policy"] for row in window_rows]]))
        _print_loans(loans)
    return EXIT_OK


def cmd_policies(ns: argparse.Namespace, settings: dict[str, Any]) -> int:
    registry = _registry()
    names = getattr(ns, "names", None) or []
    if names:
        registry = {check_policy(name, registry): registry[name] for name in dict.fromkeys(names)}
    if settings["json"]:
        _print_json({name: [spec.to_dict() for spec in specs] for name, specs in registry.items()})
        return EXIT_OK
    for name, specs in registry.items():  # a parameter a line, its doc under it: no 250-character table rows
        print(name)
        for spec in specs:
            row = spec.to_dict()
            default = "none" if row["default"] is None else row["default"]
            print(f"  {row['name']} = {default}  ({row['allowed'] or row['type']})")
            if row["doc"]:
                print(textwrap.fill(row["doc"], width=110, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                    break_on_hyphens=False))
        print()
    return EXIT_OK


def _check_used(values: Mapping[str, Any], used: Sequence[str]) -> None:
    """``data breakeven`` reads only the fleet's parameters: a hedge setting given to it is an error, not
    silently ignored."""
    unused = [key for key in values if key not in used]
    if unused:
        given = " --set ".join(f"{key}={values[key]}" for key in unused)
        uses = ", ".join(key for key in used if key != "asset")  # the asset comes from --asset
        raise ConfigError(f"--set {given}: `data breakeven` does not use {_and_list(unused)}; it uses only "
                          f"the fleet's settings ({uses}); drop {'it' if len(unused) == 1 else 'them'}."
                          + did_you_mean(unused[0], used))


#: The settings ``data validate`` reads to check the data of a range; with a FILE it checks that file alone.
_VALIDATE_RANGE_KEYS = ("data_dir", "asset", "timeframe", "start", "end")


def _check_file_alone(ns: argparse.Namespace) -> None:
    """``data validate FILE`` reads nothing but the file: a range setting given with it (a flag or a key of
    the config file) is an error, not silently ignored."""
    flags = [f"--{key.replace('_', '-')} {getattr(ns, key)}" for key in _VALIDATE_RANGE_KEYS
             if hasattr(ns, key)]
    in_file = load_config_file(ns.config) if getattr(ns, "config", None) else {}
    keys = [repr(key) for key in _VALIDATE_RANGE_KEYS if key in in_file and not hasattr(ns, key)]
    given = [part for part in (" ".join(flags), f"{_and_list(keys)} of {ns.config}" if keys else "") if part]
    if given:
        them = "it" if len(flags) + len(keys) == 1 else "them"
        raise ConfigError(f"{'; '.join(given)}: `data validate FILE` checks that file alone and does not use "
                          f"{them}; drop {them}, or give no FILE to check the data of a range.")


def cmd_data(ns: argparse.Namespace, settings: dict[str, Any]) -> int:
    api = _api()
    if ns.action == "validate" and getattr(ns, "file", None):
        _check_file_alone(ns)
    if ns.action == "breakeven":
        # first: a hedge setting is refused, whatever its value
        _check_used(settings["set"], api.BREAKEVEN_PARAMS)
        config = _policy_config(settings, together=False, owner="`data breakeven`")
    else:
        config = _base_config(settings, None, {})
    if ns.action == "list":
        rows = api.data_list(config)
    elif ns.action == "validate":
        rows = api.data_validate(config, Path(ns.file) if getattr(ns, "file", None) else None)
    elif ns.action == "download":
        rows = api.data_download(config)
    elif ns.action == "hashprice":
        rows, gaps = api.hashprice_report(config)
        if gaps:
            _note(f"note: {gaps}")
    else:
        warnings: list[str] = []
        rows = api.breakeven(config, warnings)
        for text in warnings:
            _note(f"warning: {text}")
    if settings["json"]:
        _print_json(rows)
    else:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        if rows:
            print(format_table(rows, columns))
        else:
            print(api.data_list_empty(config) if ns.action == "list" else "(nothing)")
    if ns.action == "validate" and any(row.get("level") == "error" for row in rows):
        return EXIT_FAILED
    return EXIT_OK


HANDLERS = {"run": cmd_run, "sweep": cmd_sweep, "compare": cmd_compare, "data": cmd_data,
            "policies": cmd_policies}


def program_name(argv0: str) -> str:
    """The name messages give the program started as ``argv0`` (``sys.argv[0]``): ``minehedge`` for the
    installed command, ``python -m minehedge``, else :data:`PROG`."""
    return _PROGRAM_NAMES.get(os.path.basename(argv0), PROG)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit code. ``prog``: the program
    name of the usage lines and messages (default: from ``sys.argv[0]`` when ``argv`` is None, see
    :func:`program_name`, else :data:`PROG`)."""
    from minehedge.sweep import SweepInterrupted

    whole_program = argv is None  # the process ends when main returns (else: a caller's, left as it was)
    if prog is None:
        prog = program_name(sys.argv[0]) if argv is None else PROG
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = None
    try:
        ns = build_parser(prog).parse_args(argv)
        settings = _settings(ns)
        code = HANDLERS[ns.command](ns, settings)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SystemExit as exc:  # --help and --version print and exit 0 through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except MinehedgeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SweepInterrupted as exc:
        _ignore_further_interrupts(whole_program)
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _ignore_further_interrupts(whole_program)
        print(f"{prog}: interrupted; nothing half-written was kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a run that failed: the traceback is what the user reports
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # `... | head`: the reader has what it wanted; end quietly, as other command-line tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            return EXIT_PIPE_CLOSED
        traceback.print_exc(file=sys.stderr)
        command = " ".join(str(part) for part in (getattr(ns, "command", None), getattr(ns, "action", None))
                           if part)
        print(f"{prog}: error: `{command or prog}` failed with an unexpected error (traceback above).",
              file=sys.stderr)
        return EXIT_FAILED


# ------------------------------------------------------------------------------------------ output


#: Written into every report folder ``run`` and ``compare`` make: the files of the report, so that a later
#: ``--out`` of the same folder knows it replaces a report and nothing else.
REPORT_MARKER = ".minehedge-report.json"
#: What reports written before the marker existed hold (analyzers.report / analyzers.comparison): such a
#: folder, holding summary.json or comparison.csv and nothing else but these, is a previous report too.
_LEGACY_REPORT_FILES = frozenset({
    "summary.json", "summary.md", "events.csv", "equity.csv", "ledger.csv", "comparison.csv",
    "price.png", "equity_drawdown.png", "margin_ratio.png", "mining.png",
    "compare_equity_usd.png", "compare_equity_coin.png",
})


def _report_files(folder: Path) -> set[str] | None:
    """The file names of the minehedge report in ``folder`` (its marker included), or None if it holds
    none."""
    marker = folder / REPORT_MARKER
    if marker.is_file():
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return {REPORT_MARKER, *map(str, files)}
    names = {p.name for p in folder.iterdir()}
    if names & {"summary.json", "comparison.csv"} and names <= _LEGACY_REPORT_FILES:
        return set(names)
    return None


def _holds_current_folder(out: Path) -> bool:
    """Whether the existing folder ``out`` is the current folder or one of its ancestors."""
    here = Path.cwd().resolve()
    return out.resolve() in (here, *here.parents)


def check_sweep_dir(out: Path) -> None:
    """A sweep's ``--out``: a folder (new, or holding files of its own: a sweep replaces only its own files,
    so an earlier sweep's folder resumes), but not the current folder or one holding it, as for ``run`` and
    ``compare`` (:func:`check_output_dir`): a sweep's results.csv, top.csv and heatmaps get a folder of their
    own. The error says how to resume a sweep that was written into the current folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file; a sweep needs a folder.")
    if out.is_dir() and _holds_current_folder(out):
        here = Path.cwd().resolve()
        resume = (f"; to resume the sweep in {here}, run the same command from its parent folder with --out "
                  f"{here.name}" if out.resolve() == here and (here / "results.csv").is_file() else "")
        raise ConfigError(f"out={str(out)!r} is the current folder or holds it; a sweep writes results.csv, "
                          "top.csv and its heatmaps into a folder of their own: give a sub-folder (for "
                          f"example reports/sweep1){resume}.")


def check_output_dir(out: str | Path) -> Path:
    """``out`` as a Path if a report may be written there; else a :class:`ConfigError` saying why.

    Allowed: a new folder, an empty one, or a previous minehedge report (which the new report replaces whole).
    Anything else would be deleted by the replacement, so it is refused.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file; give a folder.")
    if out.is_dir():
        if _holds_current_folder(out):
            raise ConfigError(f"out={str(out)!r} is the current folder or holds it, which a report cannot "
                              "replace; give a sub-folder (for example reports/run1).")
        names = sorted(p.name for p in out.iterdir())
        report = _report_files(out) if names else set()
        if report is None:
            raise ConfigError(f"out={str(out)!r} is not empty and is not a minehedge report; "
                              "choose another folder.")
        extra = [name for name in names if name not in report]
        if extra:
            raise ConfigError(
                f"out={str(out)!r} holds files that are not part of its minehedge report "
                f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); move them away or "
                "choose another folder."
            )
    from minehedge.sweep import check_writable

    check_writable(out, replace=True)
    return out


#: The staging folders of :func:`staged_output_dir` after ``.NAME.``: ``pidPID.XXXXXXXX.partial`` (or
#: ``.old``); without ``pidPID.``, from versions that did not record the writer.
_STAGING_NAME = re.compile(r"(?:pid(\d+)\.)?[a-z0-9_]{8}\.(?:partial|old)")


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging folders of ``out`` that a killed writer left (its process is gone)."""
    prefix = f".{out.name}."
    for path in out.parent.glob(glob.escape(prefix) + "*"):
        match = _STAGING_NAME.fullmatch(path.name[len(prefix):])
        if match is None or not path.is_dir() or (match.group(1) and _process_alive(int(match.group(1)))):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


@contextlib.contextmanager
def staged_output_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out``, on error it vanishes.

    So a failed run never leaves a half-written report, and a successful one never mixes old and new files.
    ``out`` must pass :func:`check_output_dir`: only a previous report is ever replaced. The new report gets
    the marker file :data:`REPORT_MARKER` listing its files.
    """
    out = check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.pid{os.getpid()}.", suffix=".partial",
                                    dir=out.parent))
    try:
        yield staging
        check_output_dir(out)  # still empty or a report (the run may have taken long)
        files = sorted(p.name for p in staging.iterdir())
        (staging / REPORT_MARKER).write_text(json.dumps({"minehedge_report": 1, "files": files}) + "\n",
                                             encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.pid{os.getpid()}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def _ignore_further_interrupts(whole_program: bool) -> None:
    """The program is ending after a Ctrl-C; another one (impatience) must not turn the exit (interpreter
    shutdown, the sweep's workers already ended) into a traceback."""
    import signal
    import threading

    if whole_program and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (so that a BrokenPipeError is about stdout)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout (a notebook, a test)
        return False


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def json_ready(value: Any) -> Any:
    """Plain JSON values: NaN/inf -> null, dates ISO, numpy scalars unwrapped, paths as strings."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(json_ready(value), allow_nan=False))


def format_value(value: Any) -> str:
    """Human-readable cell: thousands separators for large numbers, 4 significant digits for small ones."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0 or not math.isfinite(value):
            return repr(value) if not math.isfinite(value) else "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        text = f"{value:.4g}"  # 4 significant digits, but never fewer decimals than the rows above (0.50)
        return f"{value:.2f}" if "e" not in text and len(text.split(".")[-1]) < 2 else text
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1000 else str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, header: bool = True,
                 indent: str = "") -> str:
    """Columns aligned (numbers right, text left)."""
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    numeric = [all(_is_numeric(row.get(c)) for row in rows if row.get(c) is not None) for c in columns]
    widths = [max([len(c) if header else 0, *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    lines = [line(list(columns)), indent + "  ".join("-" * w for w in widths)] if header else []
    return "\n".join(lines + [line(r) for r in cells])


def _is_numeric(value: Any) -> bool:
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()
    return isinstance(value, (int, float)) and not isinstance(value, bool)
