"""The command line from outside the repository: ``python -m minehedge`` and the installed ``minehedge``
command (setup.cfg's console script), and the clear error when a file in the working folder hides one of the
project's top-level packages."""

from __future__ import annotations

import configparser
import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the repository (only) on PYTHONPATH."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=300)


def test_python_dash_m_minehedge_shows_the_help_from_another_folder(tmp_path):
    done = _child(["-m", "minehedge", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m minehedge [-h] [--version] COMMAND ...")
    for command in ("run", "sweep", "compare", "data", "policies"):
        assert f"    {command} " in done.stdout, command


def test_python_dash_m_minehedge_names_itself_in_errors(tmp_path):
    done = _child(["-m", "minehedge", "run", "--grid", "hedge_ratio=0:1:0.5"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "python -m minehedge run: error: unrecognized arguments: --grid" in done.stderr
    assert "--grid is an option of `sweep`, not of `run`" in done.stderr


def test_python_dash_m_minehedge_runs_a_backtest_from_another_folder(data_dir, tmp_path):
    done = _child(["-m", "minehedge", "run", "--policy", "sell_daily", "--start", "2022-01-01", "--end",
                   "2022-01-10", "--json", "--out", "rep"], tmp_path, MINEHEDGE_DATA_DIR=str(data_dir))
    assert done.returncode == 0, done.stderr
    assert '"bars": 10' in done.stdout
    assert (tmp_path / "rep" / "summary.md").is_file()
    assert "report written to rep" in done.stderr


def test_setup_cfg_declares_the_minehedge_command():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = [line.strip() for line in config["options.entry_points"]["console_scripts"].splitlines()
               if line.strip()]
    assert scripts == ["minehedge = minehedge.cli:main"]
    target = scripts[0].split("=", 1)[1].strip()
    module, function = target.split(":")
    from minehedge import cli

    assert getattr(importlib.import_module(module), function) is cli.main


def test_the_installed_command_names_itself(capsys, monkeypatch):
    from minehedge import cli

    monkeypatch.setattr(sys, "argv", ["/venv/bin/minehedge", "run", "--start", "2022-13-01"])
    assert cli.main() == 2
    assert capsys.readouterr().err.startswith("minehedge: error: ")
    assert cli.program_name("/repo/run_backtest.py") == "run_backtest.py"
    assert cli.program_name("/x/minehedge/__main__.py") == "python -m minehedge"


def test_a_data_py_in_the_working_folder_is_named_as_what_hides_the_package(tmp_path):
    (tmp_path / "data.py").write_text("x = 1\n")
    done = _child(["-c", "from minehedge import api"], tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: minehedge needs its package 'data'")
    assert f"Python finds {tmp_path / 'data.py'} first" in last
    assert "Rename that file or run from another folder." in last


def test_a_mining_package_of_ones_own_is_named_too_but_a_folder_of_csv_files_named_data_is_not(tmp_path):
    (tmp_path / "mining").mkdir()
    (tmp_path / "mining" / "__init__.py").write_text("")
    (tmp_path / "data").mkdir()  # a folder without __init__.py: no package, so it hides nothing
    (tmp_path / "data" / "btc.csv").write_text("time,close\n")
    done = _child(["-c", "from minehedge import api"], tmp_path)
    assert done.returncode == 1
    assert f"Python finds {tmp_path / 'mining' / '__init__.py'} first" in done.stderr
    assert "Rename that folder or run from another folder." in done.stderr
    (tmp_path / "mining" / "__init__.py").unlink()
    (tmp_path / "mining").rmdir()
    done = _child(["-c", "from minehedge import api; print('ok')"], tmp_path)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
