"""Atomic file writing: a temporary file beside the target, then ``os.replace``, so an interrupted run never
leaves a half-written report file (readers see the old file or the new one, never a mix)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)  # read once (setting it is the only way): report files get the usual 0666 & ~umask
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(stream)`` on a temporary file in ``path``'s folder, fsync it, then rename it to ``path``.

    The temporary file is removed if ``write`` raises (or the run is interrupted inside it).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; a report is an ordinary, shareable file
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
