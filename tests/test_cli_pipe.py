"""Output to a pipe whose reader has gone (``run_backtest.py policies | head -1``): a quiet exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_output_pipe_ends_the_command_quietly_with_141():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is printed: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, str(ROOT / "run_backtest.py"), "policies"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")
