"""analyzers.files.atomic_write: the file's permissions are those of any new file (0666 less the umask)."""

from __future__ import annotations

import stat

from analyzers import files
from analyzers.files import atomic_write


def test_atomic_write_gives_the_umasks_usual_permissions(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_UMASK", 0o022)
    path = atomic_write(tmp_path / "summary.json", lambda stream: stream.write(b"{}"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_bytes() == b"{}"
    monkeypatch.setattr(files, "_UMASK", 0o077)
    path = atomic_write(tmp_path / "equity.csv", lambda stream: stream.write(b"x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["equity.csv", "summary.json"]
