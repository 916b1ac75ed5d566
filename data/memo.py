"""Parsed data files remembered in this process, keyed on the file's *content*.

A load reads the same files several times (the manifest three times; an OHLCV file for the run's range and
again for the price history before it), and a notebook or a compare reads them again. The bytes are read
every time and hashed, so an edited file is never served stale, even a same-size edit made within the
file system's clock resolution; only the parsing is saved. Each call gets its own copy of the frame, so a
caller's changes never leak into the next read.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import pandas as pd


class ParsedFiles:
    """At most ``kept`` parsed frames, least recently used dropped first. ``parse`` errors are not kept, so
    a bad file raises on every read."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._frames: OrderedDict[tuple[Hashable, bytes], pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, owner: Hashable, content: bytes, parse: Callable[[bytes], pd.DataFrame]) -> pd.DataFrame:
        """A copy of ``parse(content)``, parsed once per ``owner`` (what the parse depends on besides the
        bytes, e.g. the file's path) and content."""
        key = (owner, hashlib.blake2b(content, digest_size=16).digest())
        with self._lock:
            parsed = self._frames.get(key)
            if parsed is not None:
                self._frames.move_to_end(key)
        if parsed is None:
            parsed = parse(content)
            with self._lock:
                self._frames[key] = parsed
                while len(self._frames) > self.kept:
                    self._frames.popitem(last=False)
        return parsed.copy()
