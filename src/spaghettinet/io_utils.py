"""Atomic file writing: outputs are written to a temporary name beside the target, then renamed.

A reader never sees a half-written file, and an interrupted command leaves either the old file or none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` if the block succeeds.

    Works for files and for folders (the block creates whatever it likes at the yielded path).

    Example:
        >>> with atomic_path("out/labels.csv") as tmp:
        ...     tmp.write_text("filename,width\\n")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def read_user_text(path: str | Path, what: str, newline: str | None = None) -> str:
    """Read a text file the user gave us (BOM tolerated), or raise a DataError naming it and the reason.

    Args:
        path: the file.
        what: what the file is, for the message (``"label map"``, ``"label CSV"``).
        newline: as :func:`open`; ``""`` keeps line endings as they are (what the :mod:`csv` module needs).

    Returns:
        The file's text.

    Example:
        >>> read_user_text("training/label_map.pbtxt", "label map")  # doctest: +SKIP
    """
    from spaghettinet.errors import DataError

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the {what}: {exc}", path) from None
