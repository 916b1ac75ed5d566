"""The README's examples do what the README shows.

Each command-line example is a ```bash block followed by the ```text block of its output. The command is run
as written (through ``minehedge.cli.main``, from a scratch folder, on the shared data) and every line of the
shown output must appear in what it prints, verbatim; in the ``run`` and ``compare`` examples the lines up to
``... written to DIR`` are the whole of stderr, in order, and the rest is stdout. A ``...`` line stands for rows left out and names how
many there are in all; the one line that depends on the machine (how many worker processes a sweep starts) is
checked up to the worker count. The Python quick start runs as written, and the config-file example is
accepted and runs its sweep.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from minehedge import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _example(heading: str) -> tuple[list[str], list[str]]:
    """(argv after ``python run_backtest.py``, lines of the shown output) of the example under ``heading``."""
    section = README.split(heading, 1)[1]
    bash, rest = section.split("```bash\n", 1)[1].split("```\n", 1)
    assert rest.startswith("```text\n"), f"{heading}: the command's output block must follow it"
    shown = rest[len("```text\n"):].split("```", 1)[0]
    argv = shlex.split(bash.replace("\\\n", " "))
    assert argv[:2] == ["python", "run_backtest.py"], argv
    return argv[2:], [line.rstrip() for line in shown.splitlines()]


def _run(argv: list[str], capsys) -> tuple[list[str], list[str]]:
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    return ([line.rstrip() for line in captured.out.splitlines()],
            [line.rstrip() for line in captured.err.splitlines()])


def _count_in_all(line: str) -> int:
    match = re.search(r"\((\d+) (?:keys|metrics) in all", line)
    assert match, line
    return int(match.group(1))


@pytest.fixture
def in_scratch(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MINEHEDGE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check_rows_then_tables(heading: str, header_rows: int, written: str, capsys) -> list[str]:
    """Run the README example under ``heading``: stderr is its lines up to ``written`` (the run notes, then
    where the report went), in order; stdout has the main table's shown rows up to its "..." line, as many
    rows as that line says with ``header_rows`` of heading, then the tables after it whole, to the end.
    Returns those trailing tables' lines."""
    argv, shown = _example(heading)
    out, err = _run(argv, capsys)
    stderr_lines = shown.index(written) + 1
    assert shown[:stderr_lines] == err
    rows = shown[stderr_lines:]
    elided = next(i for i, line in enumerate(rows) if line.startswith("..."))
    for line in rows[:elided]:
        assert line in out, line
    tables = rows[elided + 1:]
    assert out[len(out) - len(tables):] == tables
    assert len(out) == header_rows + _count_in_all(rows[elided]) + len(tables)
    return tables


@pytest.mark.parametrize(("heading", "header_rows", "written"), [
    ("### One backtest: `run`", 0, "report written to reports/run1"),  # the summary, no header
    ("### Compare policies: `compare`", 2, "comparison written to reports/cmp1"),  # metric/policy header, rule
    ("#### A loan and a hedge: `financed_hedge`", 2, "comparison written to reports/cmp2"),
    ("#### Debt owed when the run starts: `debt_usd`", 2, "comparison written to reports/debt"),
])
def test_example_prints_the_readmes_rows(heading, header_rows, written, in_scratch, capsys):
    # the main table's shown rows up to its "..." line, then (a run with loans) the loans table whole, to the end
    _check_rows_then_tables(heading, header_rows, written, capsys)
    assert (in_scratch / written.rsplit(" ", 1)[1] / "summary.md").is_file()


def test_windows_example_prints_the_readmes_window_tables_whole(in_scratch, capsys):
    # stderr as shown; the main table's shown rows, then every line of the window tables, to stdout's end
    tables = _check_rows_then_tables("#### Stress windows: `--window`", 2, "comparison written to reports/stress",
                                     capsys)
    assert [line for line in tables if line.startswith("window ")] == [
        "window 2018: 2018-01-01 to 2018-12-31, 365 bars", "window covid-crash: 2020-03-01 to 2020-03-31, 31 bars",
        "window 2021: 2021-01-01 to 2021-12-31, 365 bars", "window 2022: 2022-01-01 to 2022-12-31, 365 bars"]
    assert (in_scratch / "reports" / "stress" / "windows.csv").is_file()


def test_sweep_example_prints_the_readmes_ranking(in_scratch, capsys):
    argv, shown = _example("### Parameter sweeps: `sweep`")
    out, err = _run(argv, capsys)
    printed = out + err
    for line in shown:
        if line.startswith("running "):  # the worker count follows the machine's cores
            assert any(re.fullmatch(r"running 20 configurations on .+", p) for p in printed), line
        else:
            assert line in printed, line


def test_dated_power_price_example_prints_the_readmes_table(in_scratch, capsys):
    section = "\n".join(README.split("**Dated power prices.**", 1)[1].splitlines()[1:])
    bash, rest = section.split("```bash\n", 1)[1].split("```\n", 1)
    shown = rest.removeprefix("```text\n").split("```", 1)[0].splitlines()
    out, err = _run(shlex.split(bash)[2:], capsys)
    assert out == shown and err == []


def test_hashprice_example_prints_the_readmes_first_day(in_scratch, capsys):
    section = README.split("### Data: `data`", 1)[1]
    commands = section.split("```bash\n", 1)[1].split("```", 1)[0]
    line = next(c for c in commands.splitlines() if " data hashprice " in c)
    argv = shlex.split(line.split("#", 1)[0])[2:]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0]
    first_shown = json.loads(" ".join(shown.split()).removeprefix("[").split(", ...]", 1)[0])
    out, _ = _run(argv, capsys)
    days = json.loads("\n".join(out))
    assert days[0] == first_shown  # every float exactly, as printed
    assert [day["date"] for day in days] == ["2022-06-01", "2022-06-02", "2022-06-03"]


def test_python_quick_start_runs_as_written(in_scratch):
    snippet = README.split("From Python (a notebook)", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    *statements, last = snippet.strip().splitlines()
    namespace: dict = {}
    exec("\n".join(statements), namespace)  # the README's own code
    drawdown, equity, events = eval(last, namespace)
    opening = 2_000_000.0  # the default start_usd; no opening coins
    usd = np.array([opening, *equity["equity_usd"]])  # the drawdown counts from the opening value
    assert drawdown == pytest.approx(100.0 * np.max(1.0 - usd / np.maximum.accumulate(usd)), rel=1e-12)
    assert equity.index[0].isoformat() == "2020-01-01T00:00:00+00:00" and len(equity) == 1096  # 2020-2022
    assert isinstance(events, list)  # of dicts (the README's words); this fully collateralised short has none


def test_config_file_example_is_accepted_and_runs(in_scratch, capsys):
    block = README.split("### Config files", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    first, toml_text = block.split("\n", 1)
    assert first.startswith("# sweep.toml  ->  python run_backtest.py sweep --config sweep.toml")
    (in_scratch / "sweep.toml").write_text(toml_text)
    assert cli.main(["sweep", "--config", "sweep.toml", "--workers", "1", "--out", "sweep2"]) == 0
    capsys.readouterr()
    results = (in_scratch / "sweep2" / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 20 and all(",ok," in row for row in results[1:])  # 5 hedge ratios x 4 leverages
