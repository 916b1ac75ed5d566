"""The comparison folder of several runs on the same market (the ``compare`` command): comparison.csv, a
side-by-side summary.md, loans.csv when a run had loans, and overlay charts of equity and drawdown in USD and
in coin. Atomic writes.

Input: ``{run name: RunResult}`` and the flat rows (``{"policy": name, **summary}``) the caller ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from analyzers import charts
from analyzers.files import atomic_write
from analyzers.loan_stats import loans_markdown
from analyzers.report import HEADLINE_KEYS, RunResult, format_value
from analyzers.windows import windows_markdown

COMPARISON_CHARTS: tuple[str, ...] = ("compare_equity_usd.png", "compare_equity_coin.png")


def comparison_markdown(results: Mapping[str, RunResult], rows: Sequence[Mapping[str, object]],
                        windows: pd.DataFrame | None = None) -> str:
    """summary.md of a comparison: one column per run, headline metrics as rows, a table per window of
    ``windows`` (``analyzers.windows.window_stats`` rows with a ``policy`` column) when given, the loans of
    every run (one table, loans across) when any run had one, then the assumptions."""
    names = [str(row.get("policy", i)) for i, row in enumerate(rows)]
    keys = [k for k in HEADLINE_KEYS if any(k in row for row in rows)]
    lines = ["# Comparison", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(format_value(key, row.get(key), str(row.get("asset") or ""))
                                                for row in rows) + " |")
    if windows is not None:
        lines += ["", windows_markdown(windows).rstrip("\n")]
    if any(result.loans for result in results.values()):
        asset = next(iter(results.values())).asset
        lines += ["", loans_markdown({run: result.loans for run, result in results.items()},
                                     asset).rstrip("\n")]
    lines += ["", "## Assumptions", ""]
    shared: dict[str, object] = {}
    if results:
        first = next(iter(results.values())).assumptions
        shared = {k: v for k, v in first.items() if all(r.assumptions.get(k) == v for r in results.values())}
    for name, text in shared.items():
        items = text if isinstance(text, (list, tuple)) else [text]
        lines.append(f"- **{name}** (all runs): " + ("; ".join(map(str, items)) if items else "none"))
    for run, result in results.items():
        for name, text in result.assumptions.items():
            if name not in shared:
                items = text if isinstance(text, (list, tuple)) else [text]
                lines.append(f"- **{name}** ({run}): " + "; ".join(map(str, items)))
    loans = "loans.csv, " if any(result.loans for result in results.values()) else ""
    lines += ["", "Files: comparison.csv, " + loans + ", ".join(COMPARISON_CHARTS) + ".", ""]
    return "\n".join(lines)


def write_comparison(results: Mapping[str, RunResult], rows: Sequence[Mapping[str, object]],
                     folder: str | os.PathLike[str], dpi: int = 110,
                     windows: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write comparison.csv (``rows`` as given), summary.md and the overlay charts into ``folder``; with
    ``windows`` (``analyzers.windows.window_stats`` rows with a ``policy`` column first), windows.csv (one row
    per policy and window) and a table per window in summary.md; when a run had loans, loans.csv (a
    ``policy`` column, then ``analyzers.loan_stats.LOAN_COLUMNS``: one row per policy and loan)."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    table = pd.DataFrame(list(rows))
    written["comparison.csv"] = atomic_write(
        target / "comparison.csv", lambda s: s.write(table.to_csv(index=False, lineterminator="\n").encode()))
    if windows is not None:
        text = windows.to_csv(index=False, lineterminator="\n")
        written["windows.csv"] = atomic_write(target / "windows.csv", lambda s: s.write(text.encode()))
    loans = [{"policy": run, **row} for run, result in results.items() for row in result.loans]
    if loans:
        text = pd.DataFrame(loans).to_csv(index=False, lineterminator="\n")
        written["loans.csv"] = atomic_write(target / "loans.csv", lambda s: s.write(text.encode()))
    text = comparison_markdown(results, rows, windows)
    written["summary.md"] = atomic_write(target / "summary.md", lambda s: s.write(text.encode("utf-8")))
    for name, figure in comparison_figures(results).items():
        written[name] = charts.save_figure(figure, target / name, dpi=dpi)
    return written


def comparison_figures(results: Mapping[str, RunResult]) -> dict:
    """The overlay charts, {file name: matplotlib Figure} (:data:`COMPARISON_CHARTS`; none without runs): each
    run's equity from its opening value (:meth:`RunResult.valuation`), as the summary counts drawdowns."""
    if not results:
        return {}
    asset = next(iter(results.values())).asset
    return {name: charts.compare_chart({run: r.valuation(column) for run, r in results.items()}, unit=unit,
                                       title=f"Equity and drawdown in {unit}: {', '.join(results)}")
            for name, column, unit in (("compare_equity_usd.png", "equity_usd", "USD"),
                                       ("compare_equity_coin.png", "equity_coin", asset))}
