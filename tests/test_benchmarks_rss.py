"""The benchmarks' peak-RSS probe measures a process's own memory, not what it inherited from its parent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.single import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
GROWTH_MIB = 200


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's /proc")
def test_a_child_started_after_the_parent_grew_reports_its_own_peak():
    before = peak_rss_mb()
    block = bytearray(GROWTH_MIB * 2**20)
    for page in range(0, len(block), 4096):  # touch every page so it is resident
        block[page] = 1
    assert peak_rss_mb() >= before + GROWTH_MIB * 0.9
    child = subprocess.run([sys.executable, "-c", "from benchmarks.single import peak_rss_mb; print(peak_rss_mb())"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    # getrusage's ru_maxrss would report at least the parent's peak here (Linux keeps it across execve)
    assert float(child.stdout) < peak_rss_mb() - GROWTH_MIB * 0.9
    del block
