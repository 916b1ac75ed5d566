"""``--out`` of ``run`` and ``compare``: what may be replaced, and what is refused before anything runs.

Uses the contract API of tests/test_cli_commands.py (closed-form runs, no data).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import minehedge.cli as cli
from minehedge.cli import REPORT_MARKER, staged_output_dir
from tests.test_cli_commands import CONTRACT, contract_api, run_main  # noqa: F401  (contract_api: autouse)

RUN = ["run", "--start", "2020-01-01", "--set", "hedge_ratio=0.25"]
COMPARE = ["compare", "--start", "2020-01-01", "--policies", "unhedged,static_hedge"]
SWEEP = ["sweep", "--start", "2020-01-01", "--grid", "hedge_ratio=0,1", "--workers", "1"]


def tree(root: Path) -> list[str]:
    """Every file and folder under ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def runs(monkeypatch):
    """Counts the backtests the contract API runs."""
    count = []
    run_backtest, compare_runs = CONTRACT.run_backtest, CONTRACT.compare_runs
    monkeypatch.setattr(CONTRACT, "run_backtest",
                        lambda *args, **kw: count.append("run") or run_backtest(*args, **kw))
    monkeypatch.setattr(CONTRACT, "compare_runs",
                        lambda *args, **kw: count.append("compare") or compare_runs(*args, **kw))
    return count


def test_a_report_folder_gets_a_marker_and_is_replaced_by_the_next_report(capsys, tmp_path):
    out = tmp_path / "run1"
    assert run_main(capsys, [*RUN, "--out", str(out)])[0] == 0
    assert tree(tmp_path) == ["run1", f"run1/{REPORT_MARKER}", "run1/summary.json"]
    assert json.loads((out / REPORT_MARKER).read_text()) == {"minehedge_report": 1, "files": ["summary.json"]}
    assert run_main(capsys, [*COMPARE, "--out", str(out)])[0] == 0  # a report replaces a report
    assert tree(tmp_path) == ["run1", f"run1/{REPORT_MARKER}", "run1/comparison.csv"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_main(capsys, [*RUN, "--out", str(empty)])[0] == 0
    assert (empty / "summary.json").is_file()


def test_a_report_written_before_the_marker_existed_is_replaced(capsys, tmp_path):
    out = tmp_path / "cmp1"
    out.mkdir()
    for name in ("comparison.csv", "summary.md", "compare_equity_usd.png"):
        (out / name).write_text("old")
    code, _, err = run_main(capsys, [*RUN, "--out", str(out)])
    assert code == 0 and err.endswith(f"report written to {out}\n")
    assert tree(out) == [REPORT_MARKER, "summary.json"]


@pytest.mark.parametrize("command", [RUN, COMPARE])
def test_out_that_holds_other_files_is_refused_before_anything_runs_and_nothing_is_lost(capsys, tmp_path,
                                                                                       monkeypatch, runs,
                                                                                       command):
    monkeypatch.chdir(tmp_path)
    reports = Path("reports")
    assert run_main(capsys, [*RUN, "--out", "reports/run1"])[0] == 0
    (reports / "sweep1").mkdir()
    (reports / "sweep1" / "results.csv").write_text("status,config_hash\nok,abc\n")
    (reports / "notes.txt").write_text("my notes")
    before, runs[:] = tree(tmp_path), []
    for out in ("reports", "reports/sweep1"):
        code, stdout, err = run_main(capsys, [*command, "--out", out])
        assert (code, stdout) == (2, "")
        assert err == (f"run_backtest.py: error: out='{out}' is not empty and is not a minehedge report; "
                       "choose another folder.\n")
    assert tree(tmp_path) == before and runs == []  # nothing deleted, no staging folder, nothing ran
    assert (reports / "notes.txt").read_text() == "my notes"


def test_a_report_with_a_file_of_the_users_added_is_refused(capsys, tmp_path, runs):
    out = tmp_path / "run1"
    assert run_main(capsys, [*RUN, "--out", str(out)])[0] == 0
    (out / "notes.txt").write_text("my notes")
    before, runs[:] = tree(tmp_path), []
    code, _, err = run_main(capsys, [*RUN, "--out", str(out)])
    assert code == 2 and runs == [] and tree(tmp_path) == before
    assert err == (f"run_backtest.py: error: out='{out}' holds files that are not part of its minehedge report "
                   "(notes.txt); move them away or choose another folder.\n")


def test_staged_output_dir_refuses_a_folder_that_is_not_a_report(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("1")
    with pytest.raises(cli.ConfigError, match="is not empty and is not a minehedge report"):
        with staged_output_dir(out):
            pass
    assert tree(tmp_path) == ["mine", "mine/data.csv"]
    os.remove(out / "data.csv")
    with staged_output_dir(out) as folder:
        (folder / "a.txt").write_text("1")
    assert tree(out) == [REPORT_MARKER, "a.txt"]


def in_work_folder(tmp_path: Path, monkeypatch, out: str) -> str:
    """Make tmp_path/work the current folder; ``out`` with ``CWD`` standing for its absolute path."""
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    return str(here) if out == "CWD" else out


#: What ``run`` and ``sweep`` say of an ``--out`` that is the current folder or holds it.
CURRENT_FOLDER = {
    "run": "which a report cannot replace; give a sub-folder (for example reports/run1).",
    "sweep": "a sweep writes results.csv, top.csv and its heatmaps into a folder of their own: give a sub-folder "
             "(for example reports/sweep1).",
}


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("out", [".", "..", "CWD"])
def test_out_that_is_the_current_folder_or_holds_it_is_refused_and_leaves_nothing(capsys, tmp_path, monkeypatch,
                                                                                  runs, sweeps, command, out):
    out = in_work_folder(tmp_path, monkeypatch, out)
    code, stdout, err = run_main(capsys, [*{"run": RUN, "sweep": SWEEP}[command], "--out", out])
    assert (code, stdout, runs, sweeps) == (2, "", [], [])
    assert err == (f"run_backtest.py: error: out='{out}' is the current folder or holds it"
                   f"{',' if command == 'run' else ';'} {CURRENT_FOLDER[command]}\n")
    assert tree(tmp_path) == ["work"]  # no hidden .partial or .old folder
    code, _, err = run_main(capsys, [*COMPARE, "--out", "."])
    assert code == 2 and "is the current folder or holds it" in err and tree(tmp_path) == ["work"]


def test_staging_folders_a_killed_writer_left_are_removed_on_the_next_write(capsys, tmp_path):
    dead_pid = 2**22 + 1  # above Linux's pid_max: no such process
    stale = [f".rep.pid{dead_pid}.abcd_123.partial", f".rep.pid{dead_pid}.x1y2z3w4.old", ".rep.k3x6n4k_.partial"]
    kept = [f".rep.pid{os.getppid()}.abcdefgh.partial",  # a writer that is still running
            f".rep2.pid{dead_pid}.abcdefgh.partial", ".rep.notes"]  # another out's; not a staging folder
    for name in stale + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text("{}")
    assert run_main(capsys, [*RUN, "--out", str(tmp_path / "rep")])[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "rep"])
    assert sorted(os.listdir(tmp_path / "rep")) == [REPORT_MARKER, "summary.json"]


# ------------------------------------------------------------------------------------------ unwritable --out



@pytest.fixture
def sweeps(monkeypatch):
    """Counts the configurations the contract API's sweeps run."""
    count = []
    summary = CONTRACT.run_summary
    monkeypatch.setattr(CONTRACT, "run_summary", lambda config, shared: count.append(1) or summary(config, shared))
    return count


def test_a_sweep_written_into_the_current_folder_is_refused_saying_how_to_resume_it_and_its_folder_resumes(
        capsys, tmp_path, monkeypatch, sweeps):
    monkeypatch.chdir(tmp_path)
    assert run_main(capsys, [*SWEEP, "--out", "sweep1"])[0] == 0 and len(sweeps) == 2
    monkeypatch.chdir(tmp_path / "sweep1")
    code, _, err = run_main(capsys, [*SWEEP, "--out", "."])
    assert code == 2 and err.endswith(f"example reports/sweep1); to resume the sweep in {tmp_path / 'sweep1'}, run "
                                      "the same command from its parent folder with --out sweep1.\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, [*SWEEP, "--out", "sweep1"])
    assert code == 0 and "skipped 2 of 2 configurations already in" in err and len(sweeps) == 2


@pytest.mark.parametrize("command", [RUN, COMPARE, SWEEP])
def test_out_under_a_file_exits_2_before_anything_runs(capsys, tmp_path, monkeypatch, runs, sweeps, command):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine")
    code, stdout, err = run_main(capsys, [*command, "--out", "notes.txt/rep"])
    assert (code, stdout, runs, sweeps) == (2, "", [], [])
    assert err.endswith("run_backtest.py: error: out='notes.txt/rep': cannot write there (Not a directory).\n")
    assert tree(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("command", [RUN, COMPARE, SWEEP])
@pytest.mark.parametrize("out", ["ro/rep", "ro/new/rep", "ro"])
def test_out_in_a_read_only_folder_exits_2_before_anything_runs(capsys, tmp_path, monkeypatch, runs, sweeps,
                                                                command, out):
    """Permissions do not bind root (the CI user), so the file system's refusal is simulated: creating
    anything in ro/ fails as it does for a user without write permission there."""
    import errno
    import tempfile

    monkeypatch.chdir(tmp_path)
    Path("ro").mkdir()
    read_only = Path("ro").resolve()
    mkdtemp = tempfile.mkdtemp

    def refusing_mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == read_only:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refusing_mkdtemp)
    code, stdout, err = run_main(capsys, [*command, "--out", out])
    assert (code, stdout, runs, sweeps) == (2, "", [], [])
    assert err.endswith(f"run_backtest.py: error: out='{out}': cannot write there (Permission denied).\n")
    assert tree(tmp_path) == ["ro"]
