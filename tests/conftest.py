"""Shared fixtures. Real-data tests read the shared files through MINEHEDGE_DATA_DIR.

In CI (CI=true) a missing data directory is a failure, never a skip: .ci/run sets the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import minehedge.compat  # noqa: F401  (headless matplotlib before anything plots)

import pytest


def _data_dir() -> Path | None:
    raw = os.environ.get("MINEHEDGE_DATA_DIR")
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    return path if (path / "MANIFEST.csv").is_file() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data directory (holds MANIFEST.csv)."""
    path = _data_dir()
    if path is None:
        msg = (
            "MINEHEDGE_DATA_DIR is not set or holds no MANIFEST.csv "
            f"(value: {os.environ.get('MINEHEDGE_DATA_DIR')!r}); point it at the shared data folder."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def btc_daily_2021(data_dir: Path):
    """``minehedge.api.load_market`` of BTC daily bars for 2021 (365 bars) from the shared data."""
    from minehedge import api

    return api.load_market({"asset": "BTC", "timeframe": "1d", "start": "2021-01-01", "end": "2021-12-31",
                            "data_dir": str(data_dir)})


@pytest.fixture
def cut_copy(data_dir: Path, tmp_path: Path):
    """A factory ``cut_copy(files, cut) -> folder``: a data folder in tmp_path holding copies of the shared
    ``files`` (paths as in MANIFEST.csv) and their MANIFEST.csv rows, unchanged; each file named in ``cut``
    keeps only the rows whose time (first column) starts within ``(first, last)`` (text prefixes, None: open),
    as an interrupted copy would. The shared folder is only read."""

    def make(files: list[str], cut: dict[str, tuple[str | None, str | None]]) -> Path:
        folder = tmp_path / "data"
        for name in files:
            lines = (data_dir / name).read_text().splitlines(keepends=True)
            first, last = cut.get(name, (None, None))
            kept = [line for line in lines[1:] if (first is None or line[:len(first)] >= first)
                    and (last is None or line[:len(last)] <= last)]
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("".join([lines[0], *kept]))
        manifest = (data_dir / "MANIFEST.csv").read_text().splitlines(keepends=True)
        (folder / "MANIFEST.csv").write_text("".join([manifest[0], *(row for row in manifest[1:]
                                                                     if row.split(",")[0] in files)]))
        return folder

    return make
