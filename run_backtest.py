"""Command line of minehedge: ``python run_backtest.py COMMAND ...`` (see ``--help``). All logic is in
:mod:`minehedge.cli` (parsing, printing) and :mod:`minehedge.api` (orchestration), importable from notebooks.
"""

from minehedge.cli import main

# The guard matters: sweep workers start with "spawn"/"forkserver", which import this file as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
