"""The benchmarks' peak-RSS probe measures a process's own memory, not what it inherited from its parent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.single import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
STATUS = Path("/proc/self/status")
GROWTH_MIB = 200


def resident_mb() -> float:
    """This process's resident set size now (VmRSS, kB -> MiB)."""
    line = next(line for line in STATUS.read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024.0


@pytest.mark.skipif(not STATUS.exists(), reason="VmHWM is Linux's /proc")
def test_a_child_started_after_the_parent_grew_reports_its_own_peak():
    block = bytearray(GROWTH_MIB * 2**20)
    for page in range(0, len(block), 4096):  # touch every page so it is resident
        block[page] = 1
    parent_now = resident_mb()
    assert parent_now >= GROWTH_MIB and peak_rss_mb() >= parent_now  # the probe sees the parent's own peak
    child = subprocess.run([sys.executable, "-c", "from benchmarks.single import peak_rss_mb; print(peak_rss_mb())"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    # getrusage's ru_maxrss would report at least the parent's peak here (Linux keeps it across execve)
    assert float(child.stdout) < parent_now - GROWTH_MIB * 0.9
    del block
