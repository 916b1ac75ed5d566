"""The one home of reading a CSV file: every reader of the package (OHLCV, network, funding, MANIFEST.csv, the
download cache, a sweep's results) goes through :func:`read_csv`.

A file that is missing, empty (0 bytes) or holds only blank space (no header line), or that pandas cannot
tokenize, is a :class:`~minehedge.errors.DataError` naming the file and what to do, never a pandas traceback.
When a MANIFEST.csv of a folder above the file lists it, the message says what its row promises (rows, times,
bytes), so an interrupted copy is recognised as one.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from minehedge.errors import DataError

#: What to do with a file its MANIFEST.csv lists but that is missing or empty.
RESTORE = ("Restore it from its source (MANIFEST.csv's source_repo and source_path) or copy the data folder "
           "again")


def file_bytes(path: str | Path, kind: str) -> bytes:
    """The bytes of the ``kind`` file (e.g. 'OHLCV', 'network') at ``path``; DataError when it does not exist,
    saying so plainly, and when a MANIFEST.csv lists it, that the manifest lists it but the file is
    missing."""
    path = Path(path)
    if not path.is_file():
        row = _manifest_row(path)
        if row is None:
            raise DataError(f"{kind} file {str(path)!r} does not exist.")
        raise DataError(f"{kind} file {str(path)!r} is missing: MANIFEST.csv lists it ({_promise(row)}) but "
                        f"there is no such file. {RESTORE}, or remove its row from MANIFEST.csv.")
    return path.read_bytes()


def read_csv(path: str | Path, content: bytes | None = None, *, kind: str = "CSV", expected: str = "",
             listed: bool = True, **options) -> pd.DataFrame:
    """``pd.read_csv`` of the ``kind`` file ``path`` (of ``content``, its bytes, when the caller read them).

    DataError naming the file when it is missing (:func:`file_bytes`), empty or blank (no header line: what it
    holds, what its MANIFEST.csv row says when ``listed`` and a manifest above it lists it, and what to do;
    ``expected`` describes the header the file needs), not well-formed CSV, or not UTF-8 text."""
    path = Path(path)
    if content is None:
        content = file_bytes(path, kind)
    if not content.strip():
        raise DataError(empty_message(path, content, kind=kind, expected=expected, listed=listed))
    try:
        return pd.read_csv(io.BytesIO(content), **options)
    except pd.errors.EmptyDataError:  # e.g. blank lines pandas skips before any header
        raise DataError(empty_message(path, content, kind=kind, expected=expected, listed=listed)) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{kind} file {str(path)!r} is not well-formed CSV: {str(exc).strip()}. Every line "
                        "needs the header's columns (a stray comma, an unclosed quote?); fix "
                        "or restore the file.") from None
    except UnicodeDecodeError as exc:  # a UTF-16 spreadsheet export, latin-1 text, a binary file
        raise DataError(f"{kind} file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                        "save it as UTF-8 CSV (a spreadsheet's 'CSV UTF-8'), or restore the file.") from None


def empty_message(path: Path, content: bytes, *, kind: str = "CSV", expected: str = "",
                  listed: bool = True) -> str:
    """What to say about a file with no header line: ``content`` is empty or blank space."""
    size = len(content)
    holds = f"holds only blank space ({size} byte{'s' if size > 1 else ''})" if size else "is empty (0 bytes)"
    text = f"{kind} file {str(path)!r} {holds}: no header line and no rows"
    row = _manifest_row(path) if listed else None
    if row is not None:
        return (f"{text}, but MANIFEST.csv lists it with {_promise(row)}: the copy was cut short or the file "
                f"emptied. {RESTORE}.")
    need = f" ({expected})" if expected else ""
    return f"{text}. Give a CSV file with a header line{need} and data rows, or restore the file."


def _manifest_row(path: Path):
    """The MANIFEST.csv row listing ``path`` (:func:`data.manifest.listed_choice`), None when none does or the
    manifest cannot be read (its own error is reported where it is read)."""
    from data.manifest import listed_choice  # data.manifest reads MANIFEST.csv through this module

    try:
        return listed_choice(path)
    except (DataError, OSError):
        return None


def _promise(row) -> str:
    """What a MANIFEST.csv row says of its file: rows, first -> last, bytes."""
    size = f", {row.size.strip()} bytes" if row.size.strip() else ""
    return f"{row.rows or '?'} rows, {row.first} -> {row.last}{size}"
