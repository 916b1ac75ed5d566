"""``python -m minehedge COMMAND ...``: the command line of ``run_backtest.py`` (and of the installed
``minehedge`` command), from any folder once minehedge is installed."""

from minehedge.cli import main

# The guard matters: sweep workers start with "spawn"/"forkserver", which import this module as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main(prog="python -m minehedge"))
